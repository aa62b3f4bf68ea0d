"""The live view of `aipc run` as a person sees it: the run in a real terminal
(tmux), its screen read while it runs and after a failure."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tests.helpers import ROOT
from tests.runner.test_docker_run import Pipeline

pytestmark = pytest.mark.docker


@pytest.fixture
def terminal(tmp_path):
    """A tmux server of this test's own (its socket), stopped afterwards. It runs in
    the foreground (-D): a daemon would need a /dev/null that is a device."""
    if shutil.which("tmux") is None:
        if os.environ.get("AIPC_REQUIRE_DOCKER") == "1":
            pytest.fail("tmux is missing (scripts/test.sh installs it)")
        pytest.skip("tmux is missing")
    socket = f"aipc-test-{uuid.uuid4().hex[:8]}"
    server = subprocess.Popen(["tmux", "-L", socket, "-D"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def tmux(*args: str) -> str:
        for _ in range(50):  # until the server listens
            done = subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True)
            if done.returncode == 0 or "error connecting" not in done.stderr:
                break
            time.sleep(0.1)
        assert done.returncode == 0, done.stderr
        return done.stdout

    try:
        yield tmux
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def screen_until(tmux, wanted: list[str], timeout: float = 60, history: bool = False) -> str:
    """The screen (or the whole scrollback) once it shows every text of ``wanted``."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = tmux("capture-pane", "-p", "-t", "run", *(["-S", "-500"] if history else []))
        if all(part in text for part in wanted):
            return text
        time.sleep(0.1)
    raise AssertionError(f"never saw {[w for w in wanted if w not in text]} on the screen:\n{text}")


def test_the_live_view_of_a_run_with_a_failure(tmp_path, busybox_image, terminal):
    pipeline = Pipeline(tmp_path, busybox_image).write("""
data first  { script = "echo first; sleep 4" }
data second { script = "echo second; sleep 1" }
train broken {
  after  = [first]
  script = "echo loading; echo 'step 1 of 3'; echo 'ValueError: the loss is nan'; exit 4"
}
eval report { after = [broken] script = "echo never" }
""")
    command = shlex.join([sys.executable, "-m", "aipc", "run", str(pipeline.path), "--jobs", "1"])
    environment = " ".join(f"{name}={shlex.quote(os.environ[name])}" for name in ("XDG_STATE_HOME", "PATH")
                           if name in os.environ)
    # 120 columns, or wider when the temporary folder is deep (a pytest-xdist worker's
    # is): the lines read back below name the pipeline's path and must not wrap.
    width = max(120, len(f"re-run from it: aipc run {pipeline.path} --from broken") + 10)
    terminal("new-session", "-d", "-s", "run", "-x", str(width), "-y", "40", "-c", str(ROOT),
             f"env {environment} {command}; echo EXIT=$?; sleep 600")
    try:
        # While `first` runs: how far the run is, and why each pending stage waits.
        live = screen_until(terminal, ["0 of 4 done, 1 running", "waiting for a free slot (1 running, --jobs 1)",
                                       "waiting for `first`"])
        stages = {"first", "second", "broken", "report"}
        rows = {line.replace("●", " ").split()[0]: line for line in live.splitlines()
                if line.strip() and line.replace("●", " ").split()[0] in stages}
        assert set(rows) == stages, live
        assert "running" in rows["first"]
        assert "pending" in rows["second"] and "waiting for a free slot" in rows["second"]
        assert "pending" in rows["broken"] and "waiting for `first`" in rows["broken"]
        assert "waiting for `broken`" in rows["report"]

        # After the failure: the summary, the failed stage's last lines, how to re-run from it.
        end = screen_until(terminal, ["EXIT=1"], history=True)
        tail = end[end.index("the last lines of `broken`:"):]
        assert tail.splitlines()[1:4] == ["  loading", "  step 1 of 3", "  ValueError: the loss is nan"]
        assert f"re-run from it: aipc run {pipeline.path} --from broken" in tail
        # `broken` came before `second` (the pipeline's order): after its failure nothing new started
        assert "run failed: stage `broken` failed (exited with code 4); 1 of 4 stages done in" in " ".join(
            tail.split())
        summary = end[:end.index("the last lines of `broken`:")].splitlines()
        assert any("second" in line and "skipped" in line for line in summary), end
    finally:
        if pipeline.containers():
            from aipc.runner.docker_driver import connect, down

            down(connect(), str(pipeline.path))
