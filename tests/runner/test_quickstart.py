"""examples/quickstart.aip runs on a plain Docker engine as the README says.

It names one public image, busybox:1.36. No registry is reachable here, so the
test gives the offline busybox image (tests/conftest.py) that name for the run.
The example runs as a copy under a pipeline name of its own: a run belongs to
the pipeline's name, and other test runs on the same engine may run the example
at the same time."""

from __future__ import annotations

import subprocess
import urllib.request
import uuid

import pytest

from tests.helpers import ROOT
from tests.runner.test_docker_run import aipc, free_port, lines_of, summary_row

pytestmark = pytest.mark.docker

EXAMPLE = ROOT / "examples" / "quickstart.aip"
PUBLIC_IMAGE = "busybox:1.36"


@pytest.fixture(scope="module")
def public_busybox(busybox_image):
    """busybox:1.36, as the offline image when the engine has no image of that name."""
    if subprocess.run(["docker", "image", "inspect", PUBLIC_IMAGE], capture_output=True).returncode == 0:
        yield PUBLIC_IMAGE
        return
    subprocess.run(["docker", "tag", busybox_image, PUBLIC_IMAGE], check=True, capture_output=True)
    try:
        yield PUBLIC_IMAGE
    finally:
        subprocess.run(["docker", "rmi", PUBLIC_IMAGE], capture_output=True)  # the name only: the image stays


def test_the_readme_says_how_to_run_it():
    readme = (ROOT / "README.md").read_text()
    assert "aipc run examples/quickstart.aip" in readme
    images = {line.split('"')[1] for line in EXAMPLE.read_text().splitlines() if line.strip().startswith("image")}
    assert images == {PUBLIC_IMAGE}


def test_the_quickstart_example_runs_on_a_plain_engine(public_busybox, tmp_path, capsys):
    name = f"quickstart-{uuid.uuid4().hex[:8]}"
    copy = tmp_path / "quickstart.aip"
    copy.write_text(EXAMPLE.read_text().replace('pipeline "quickstart"', f'pipeline "{name}"', 1))
    port = free_port()
    try:
        code, out, err = aipc(capsys, "run", str(copy), "-p", f"port={port}", "--detach", "--progress", "plain")
        assert code == 0, out + err
        assert "warning" not in err
        assert lines_of(out, "numbers") == ["wrote 1000 numbers"]
        assert lines_of(out, "model") == ["trained: the mean is 500.5"]
        assert lines_of(out, "check") == ["checked: the model is usable"]
        assert summary_row(out, "report")[1] == "serving"
        assert f"report (replica 1) is serving at http://127.0.0.1:{port}" in out
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/model.txt", timeout=10) as response:
            assert response.read() == b"500.5\n"
    finally:
        code, out, err = aipc(capsys, "down", "-v", str(copy))
    assert code == 0, err
    assert f"removed volume aipc-{name}-work" in out
