"""Shared fixtures: examples, snapshot formats, and the Docker engine."""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
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


def _read_kubernetes_schemas_once() -> None:
    """kubernetes-validate's validate() reads and parses the version's schema files (its
    definitions are megabytes of JSON) again for every document; the tests validate
    hundreds. Each test process parses each file once: validate() only reads the result."""
    import kubernetes_validate.utils

    if hasattr(kubernetes_validate.utils, "schema_contents"):
        kubernetes_validate.utils.schema_contents = functools.cache(kubernetes_validate.utils.schema_contents)


_read_kubernetes_schemas_once()


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


@pytest.fixture(scope="session")
def _state_homes(tmp_path_factory) -> Iterator[Path]:
    """The folder under which each test gets a state folder of its own (this
    worker's: under pytest-xdist each worker has its own temporary tree)."""
    with pytest.MonkeyPatch.context() as patch:
        homes = tmp_path_factory.mktemp("state")
        # Module- and session-scoped fixtures start before any test's own folder is set:
        # what they start writes here, never into the user's ~/.local/state.
        patch.setenv("XDG_STATE_HOME", str(homes / "shared"))
        yield homes


@pytest.fixture(autouse=True)
def state_home(_state_homes, monkeypatch) -> Path:
    """`aipc run` keeps logs and run records under $XDG_STATE_HOME/aipc: each test
    keeps its own in a folder of its own (subprocesses inherit it), so no test sees
    another's runs, whichever worker ran it, and none writes into the user's."""
    home = _state_homes / f"t{next(_STATE_NUMBERS)}"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


_STATE_NUMBERS = itertools.count()


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
    reachable): `sh`, `wget`, `httpd`, `nc` and the other applets in /bin.

    Built once per machine, only if missing: the engine is shared by every pytest-xdist
    worker (and every other test run on the machine), so the check and the build happen
    under one file lock, and whoever comes second finds the image."""
    from filelock import FileLock

    with FileLock(Path(tempfile.gettempdir()) / "aipc-test-busybox-image.lock"):
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


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the marks
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`--dist loadgroup`, as scripts/test.sh runs the suite), the
    tests of a module that share a module-scoped fixture (a code-server and its browser,
    a language server, a built wheel) run on one worker, so the fixture is made once, as
    it is in a serial run, not once per worker. Every other test goes wherever a worker
    is free. Nothing to mark by hand: a new module-scoped fixture groups its module."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        shared = any(definition.scope in ("module", "package", "class")
                     for name in info.names_closure for definition in info.name2fixturedefs.get(name, ()))
        if shared and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__ if item.module else item.nodeid))
