"""The suite runs on several pytest-xdist workers (scripts/test.sh): what makes that
safe, shown on a small suite of its own run the way the test command runs it, with
this suite's conftest (tests/conftest.py) as a plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import FIRST_PORT, PORT_BAND, ROOT, free_port

INNER_TESTS = '''
import json, os
from pathlib import Path

import pytest

from tests.helpers import free_port

RECORD = Path(__file__).parent / "record.jsonl"


def record(**fields):
    with RECORD.open("a") as out:
        out.write(json.dumps({"worker": os.environ["PYTEST_XDIST_WORKER"], **fields}) + "\\n")


@pytest.fixture(scope="module")
def expensive():
    record(made="expensive")
    return "made once"


@pytest.mark.parametrize("n", range(4))
def test_shares_the_module_fixture(expensive, n):
    record(test=f"shares-{n}")


@pytest.mark.parametrize("n", range(8))
def test_anywhere(n):
    record(test=f"anywhere-{n}", state=os.environ["XDG_STATE_HOME"], port=free_port(3))


def test_a_snapshot(text_snapshot):
    assert "the same text\\n" == text_snapshot
'''


def test_workers_share_fixtures_safely_and_unused_snapshots_still_fail(tmp_path):
    (tmp_path / "inner").mkdir()
    suite = tmp_path / "inner" / "test_inner.py"
    suite.write_text(INNER_TESTS)
    snapshots = tmp_path / "inner" / "__snapshots__" / "test_inner"
    snapshots.mkdir(parents=True)
    (snapshots / "test_a_snapshot.txt").write_text("the same text\n")
    (snapshots / "test_a_removed_test.txt").write_text("left behind\n")  # its test is gone

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_XDIST_WORKER", None)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-n", "2", "--dist", "loadgroup",
                          "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-c", os.devnull, str(suite)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr

    # Every test passed, yet the run fails: a snapshot no test uses is found across the workers.
    assert "13 passed" in out, out
    assert "1 snapshot passed. 1 snapshot unused." in out, out
    assert run.returncode == 1, out
    assert (snapshots / "test_a_removed_test.txt").exists()  # only --snapshot-update deletes it

    records = [json.loads(line) for line in (tmp_path / "inner" / "record.jsonl").read_text().splitlines()]
    # The module-scoped fixture is made once: its tests all ran on the one worker that made it.
    [made] = [r for r in records if r.get("made")]
    assert {r["worker"] for r in records if r.get("test", "").startswith("shares-")} == {made["worker"]}
    # The other tests went to whichever worker was free; each had a state folder of its
    # own, and each worker's ports come from its own band (gw0's and gw1's do not meet).
    anywhere = [r for r in records if r.get("test", "").startswith("anywhere-")]
    assert len({r["state"] for r in anywhere}) == len(anywhere) == 8
    for r in anywhere:
        band = FIRST_PORT + int(r["worker"][2:]) * PORT_BAND
        assert band <= r["port"] and r["port"] + 2 < band + PORT_BAND, r


def test_a_free_port_is_free_and_in_this_workers_band():
    first = free_port(3)
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])
    assert FIRST_PORT + worker * PORT_BAND <= first < FIRST_PORT + (worker + 1) * PORT_BAND - 2
    import socket

    for port in range(first, first + 3):
        with socket.socket() as probe:
            probe.bind(("0.0.0.0", port))

