"""Shared fixtures: examples, snapshot formats, and the Docker engine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import settings
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from tests.helpers import EXAMPLES, ROOT  # noqa: F401 - re-exported for test modules

# In CI, property tests draw the same examples on every run: a red build is
# reproducible, and a new failure comes from a change, not from luck.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")


class YamlSnapshot(SingleFileSnapshotExtension):
    """One reviewable .yaml file per snapshot."""

    _write_mode = WriteMode.TEXT
    file_extension = "yaml"


class TextSnapshot(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT
    file_extension = "txt"


class JsonSnapshot(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT
    file_extension = "json"


@pytest.fixture
def yaml_snapshot(snapshot):
    return snapshot.use_extension(YamlSnapshot)


@pytest.fixture
def text_snapshot(snapshot):
    return snapshot.use_extension(TextSnapshot)


@pytest.fixture
def json_snapshot(snapshot):
    return snapshot.use_extension(JsonSnapshot)


@pytest.fixture(scope="session", autouse=True)
def state_home(tmp_path_factory):
    """`aipc run` keeps logs under $XDG_STATE_HOME/aipc: the tests keep theirs in a
    temporary directory (subprocesses inherit it), never in the user's."""
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("state")
        patch.setenv("XDG_STATE_HOME", str(home))
        yield home


def example_id(path: Path) -> str:
    return path.stem


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A running Docker engine. With AIPC_REQUIRE_DOCKER=1 (the test command sets
    it) a missing engine fails the test instead of skipping it."""
    if docker_available():
        return
    message = "no Docker engine answers `docker info`"
    if os.environ.get("AIPC_REQUIRE_DOCKER") == "1":
        pytest.fail(message + " (AIPC_REQUIRE_DOCKER=1)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_compose() -> str:
    """The docker-compose 1.29 command (Debian's). With AIPC_REQUIRE_DOCKER=1 (the
    test command installs it) a missing one fails the test instead of skipping it."""
    path = shutil.which("docker-compose")
    if path is not None:
        return path
    message = "docker-compose is not installed"
    if os.environ.get("AIPC_REQUIRE_DOCKER") == "1":
        pytest.fail(message + " (AIPC_REQUIRE_DOCKER=1)")
    pytest.skip(message)


BUSYBOX_IMAGE = "aipc-test/busybox:1.0"


def _build_busybox_rootfs(root: Path) -> None:
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.fail("/bin/busybox is missing: install busybox-static (scripts/test.sh does)")
    (root / "bin").mkdir(parents=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    for directory in ("tmp", "etc", "www", "data", "root"):
        (root / directory).mkdir(exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (root / "www" / "healthz").write_text("ok\n")
    (root / "www" / "index.html").write_text("ok\n")


@pytest.fixture(scope="session")
def busybox_image(docker_engine, tmp_path_factory) -> str:
    """A tiny image made offline from the host's static busybox (no registry is
    reachable): `sh`, `wget`, `httpd`, `nc` and the other applets in /bin."""
    inspect = subprocess.run(["docker", "image", "inspect", BUSYBOX_IMAGE], capture_output=True)
    if inspect.returncode == 0:
        return BUSYBOX_IMAGE
    root = tmp_path_factory.mktemp("busybox-rootfs")
    _build_busybox_rootfs(root)
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(
        ["docker", "import", "--change", 'CMD ["sh"]', "--change", "ENV PATH=/bin", "-", BUSYBOX_IMAGE],
        stdin=tar.stdout, check=True, capture_output=True,
    )
    tar.stdout.close()
    tar.wait()
    return BUSYBOX_IMAGE
