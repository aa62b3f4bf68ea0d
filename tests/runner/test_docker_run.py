"""`aipc run` and `aipc down` against the real Docker engine, with the offline
busybox image. Every test writes its pipeline into its own temporary directory
(so the labels that find its containers, network and volumes are its own) and
removes all of them afterwards."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from aipc.cli import main
from tests.helpers import engine_events, free_port

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]


class Pipeline:
    """One .aip file in a temporary directory, and what `aipc run` made of it."""

    def __init__(self, directory: Path, image: str) -> None:
        self.directory = directory
        self.image = image
        self.name = f"t-{uuid.uuid4().hex[:8]}"
        self.path = directory / "pipeline.aip"

    def write(self, body: str) -> "Pipeline":
        self.path.write_text(f'pipeline "{self.name}" {{ image = "{self.image}" }}\n{body}')
        return self

    def labels(self) -> str:
        return f"label=dev.aipc.file={os.path.realpath(self.path)}"

    def containers(self) -> list[str]:
        out = subprocess.run(["docker", "ps", "-a", "--filter", self.labels(), "--format", "{{.Names}}"],
                             capture_output=True, text=True, check=True).stdout
        return out.split()

    def volumes(self) -> list[str]:
        out = subprocess.run(["docker", "volume", "ls", "-q", "--filter", self.labels()],
                             capture_output=True, text=True, check=True).stdout
        return out.split()

    def data_volumes(self) -> list[str]:
        """Its volumes but the cache's records (one per batch stage that ran: runner/cache.py)."""
        return [name for name in self.volumes() if not name.endswith("..cache")]

    def networks(self) -> list[str]:
        out = subprocess.run(["docker", "network", "ls", "-q", "--filter", self.labels()],
                             capture_output=True, text=True, check=True).stdout
        return out.split()


@pytest.fixture
def pipeline(tmp_path, busybox_image):
    made = Pipeline(tmp_path, busybox_image)
    yield made
    # Tear down whatever the test left, then make sure nothing is left.
    if made.containers() or made.volumes() or made.networks():
        from aipc.runner.docker_driver import connect, down
        from aipc.runner.selection import PipelineId

        down(connect(), str(made.path), volumes=True, pipeline=PipelineId(made.name))
    assert made.containers() == [] and made.volumes() == [] and made.networks() == []


def aipc(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def lines_of(out: str, stage: str) -> list[str]:
    """What a stage printed (the part after its `name | ` prefix)."""
    return [line.split("| ", 1)[1] for line in out.splitlines() if re.match(rf"{re.escape(stage)}(#\d+)? +\| ", line)]


def summary_row(out: str, stage: str) -> list[str]:
    """The cells of a stage's row in the summary table printed at the end."""
    lines = out.splitlines()
    header = max(i for i, line in enumerate(lines) if line.split()[:3] == ["stage", "status", "duration"])
    for line in lines[header + 2:]:
        cells = line.split()
        if cells and cells[0] == stage:
            return cells
    raise AssertionError(f"no summary row for {stage} in:\n{out}")


def test_three_stages_pass_data_through_a_volume_and_leave_no_container(pipeline, capsys):
    pipeline.write("""
volume work { size = 1Gi }
data make { script = "echo 42 > /work/raw" mount work at "/work" }
train transform {
  after = [make]
  script = "echo \\"$(cat /work/raw)-$SUFFIX\\" > /work/model"
  env = { SUFFIX = "trained" }
  mount work at "/work"
}
eval report { after = [transform] script = "echo result: $(cat /work/model)" mount work at "/work" readonly }
""")
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 0, out + err
    assert lines_of(out, "report") == ["result: 42-trained"]
    assert [summary_row(out, name)[1] for name in ("make", "transform", "report")] == ["succeeded"] * 3
    assert re.search(r"\nrun succeeded: 3 of 3 stages done in \d+\.\ds$", out.rstrip()), out
    assert pipeline.containers() == []
    assert pipeline.networks() == []
    [volume] = pipeline.data_volumes()
    assert volume.startswith(f"aipc-{pipeline.name}-") and volume.endswith("-work")

    # The volume persists: a later run of one stage reads what the first run wrote
    # (--no-cache: `report` alone, unchanged, would be cached).
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--only", "report", "--progress", "plain", "--no-cache")
    assert code == 0, out + err
    assert lines_of(out, "report") == ["result: 42-trained"]
    assert "make" not in out and "transform" not in out
    assert pipeline.containers() == []


def test_a_failing_stage_is_named_its_dependant_never_starts_and_siblings_finish(pipeline, capsys):
    pipeline.write("""
data broken { script = "echo about to fail; exit 3" }
data sibling { script = "sleep 1; echo sibling done" }
train dependant { after = [broken] script = "echo dependant ran" }
""")
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain", "--jobs", "2")
    assert code == 1
    assert lines_of(out, "broken") == ["about to fail"]
    assert lines_of(out, "sibling") == ["sibling done"]
    assert lines_of(out, "dependant") == [] and "dependant: running" not in out
    row = summary_row(out, "broken")
    assert row[1] == "failed" and row[3] == "3"
    assert summary_row(out, "dependant")[1] == "skipped"
    assert summary_row(out, "sibling")[1] == "succeeded"
    assert "run failed: stage `broken` failed (exited with code 3)" in out
    assert pipeline.containers() == []


def test_independent_stages_really_run_at_the_same_time(pipeline, capsys):
    # Each stage announces itself, then waits for the other's announcement: both
    # succeed only if they run at the same time.
    wait_for = 'touch /sync/{me}; for i in $(seq 1 150); do [ -e /sync/{other} ] && exit 0; sleep 0.1; done; exit 1'
    pipeline.write(f"""
volume sync {{ size = 1Gi access = rwx }}
data left {{ script = "{wait_for.format(me='left', other='right')}" mount sync at "/sync" }}
data right {{ script = "{wait_for.format(me='right', other='left')}" mount sync at "/sync" }}
""")
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain", "--jobs", "2")
    assert code == 0, out + err
    assert summary_row(out, "left")[1] == summary_row(out, "right")[1] == "succeeded"
    running = [line for line in out.splitlines() if line.endswith(": running")]
    succeeded = [i for i, line in enumerate(out.splitlines()) if ": succeeded" in line]
    assert len(running) == 2 and out.splitlines().index(running[1]) < succeeded[0]


def test_a_timeout_kills_its_stage(pipeline, capsys):
    pipeline.write("""
data slow { script = "echo sleeping; sleep 60" timeout = 2s }
train next { after = [slow] script = "echo never" }
""")
    started = time.monotonic()
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 1
    assert time.monotonic() - started < 30
    assert summary_row(out, "slow")[1:3] == ["timed", "out"]
    assert "137" in summary_row(out, "slow")
    assert "killed: its timeout of 2s passed" in out
    assert summary_row(out, "next")[1] == "skipped"
    assert pipeline.containers() == []


def test_retries_run_the_stage_again(pipeline, capsys):
    pipeline.write("""
volume state { size = 1Gi }
data flaky {
  script = "n=$(cat /state/n 2>/dev/null || echo 0); n=$((n + 1)); echo $n > /state/n; echo attempt $n; [ $n -ge 3 ]"
  mount state at "/state"
  retries = 2
}
""")
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 0, out + err
    assert lines_of(out, "flaky") == ["attempt 1", "attempt 2", "attempt 3"]
    assert "flaky: attempt 1 of 3 exited with code 1; retrying" in out
    assert summary_row(out, "flaky")[1] == "succeeded" and summary_row(out, "flaky")[-1] == "3/3"
    assert pipeline.containers() == []


def test_missing_secret_variables_fail_before_anything_starts(pipeline, capsys, monkeypatch):
    pipeline.write("""
volume out { size = 1Gi }
secret cloud { keys = ["AIPC_TEST_KEY_ID", "AIPC_TEST_SECRET"] }
secret hub { keys = ["AIPC_TEST_TOKEN"] }
data fetch { script = "echo $AIPC_TEST_KEY_ID" secrets = [cloud, hub] mount out at "/out" }
""")
    for name in ("AIPC_TEST_KEY_ID", "AIPC_TEST_SECRET", "AIPC_TEST_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIPC_TEST_SECRET", "s3cr3t")
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 1
    assert "environment variables, which are not set: AIPC_TEST_KEY_ID, AIPC_TEST_TOKEN" in err
    assert out == ""
    assert pipeline.containers() == [] and pipeline.volumes() == []

    monkeypatch.setenv("AIPC_TEST_KEY_ID", "key-from-env")
    monkeypatch.setenv("AIPC_TEST_TOKEN", "t")
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 0, out + err
    assert lines_of(out, "fetch") == ["key-from-env"]
    assert "s3cr3t" not in out + err


def test_stages_are_hardened_and_mounts_limits_and_host_volumes_apply(pipeline, capsys):
    (pipeline.directory / "inputs").mkdir()
    (pipeline.directory / "inputs" / "in.txt").write_text("from the host\n")
    os.chown(pipeline.directory / "inputs", 65532, 65532)  # a host folder the stage's user may write
    pipeline.write("""
volume inputs { host = "./inputs" }
volume shared { size = 1Gi }
data probe {
  script = \"\"\"
    grep -E '^(CapEff|NoNewPrivs)' /proc/self/status
    touch /root-write 2>/dev/null && echo root writable || echo root read-only
    touch /tmp/t && echo tmp writable
    touch /in/x 2>/dev/null && echo in writable || echo in read-only
    cat /in/in.txt
    cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null | head -1
    df -k /dev/shm | tail -1 | awk '{print "shm", $2}'
    echo out > /host/out.txt
  \"\"\"
  mount inputs at "/in" readonly
  mount inputs at "/host"
  mount shared at "/shared"
  resources { cpu = 0.5  memory = 64Mi  shm = 32Mi }
}
""")
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 0, out + err
    printed = lines_of(out, "probe")
    assert printed[:2] == ["CapEff:\t0000000000000000", "NoNewPrivs:\t1"]
    assert printed[2:7] == ["root read-only", "tmp writable", "in read-only", "from the host", str(64 * 1024 * 1024)]
    assert printed[7] == f"shm {32 * 1024}"
    assert (pipeline.directory / "inputs" / "out.txt").read_text() == "out\n"
    assert (pipeline.directory / "inputs" / "out.txt").stat().st_uid == 65532  # the hardened default user


def test_a_gpu_stage_fails_cleanly_without_gpus(pipeline, capsys):
    pipeline.write("""
train gpu { script = "nvidia-smi" resources { gpu = 1 } retries = 2 }
eval after_gpu { after = [gpu] script = "echo never" }
""")
    # Counting the engine's GPUs finds none: nothing starts.
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 1
    assert "the stages need GPUs, and the Docker engine offers none" in err
    assert "--gpus N" in err and "gpu:" not in out
    assert pipeline.containers() == []
    # Told there is one, the stage asks the engine for GPU 0, which it cannot give.
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain", "--gpus", "1")
    assert code == 1
    assert "gpu: failed: Docker cannot start it: could not select device driver" in out
    # ... and what to do about it
    assert ("this Docker engine cannot give containers NVIDIA GPUs: install the NVIDIA Container Toolkit on the "
            "host, run `sudo nvidia-ctk runtime configure --runtime=docker` and restart Docker") in out
    assert summary_row(out, "gpu")[-1] == "1/3"  # the engine's refusal is not retried
    assert summary_row(out, "after_gpu")[1] == "skipped"
    assert pipeline.containers() == []


def test_a_missing_image_is_a_clear_error_before_anything_starts(pipeline, capsys):
    pipeline.write(f"""
data fine {{ script = "echo fine" }}
data missing {{ image = "aipc-test/not-here-{uuid.uuid4().hex[:6]}:1.0" script = "true" }}
""")
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 1
    assert re.search(r"image `aipc-test/not-here-\w+:1.0` is not on this machine and cannot be pulled", err)
    assert "fine" not in out
    assert pipeline.containers() == []


def test_detach_leaves_healthy_services_running_until_down(pipeline, capsys):
    port = free_port(2)
    pipeline.write(f"""
data prep {{ script = "echo prepared" }}
serve web {{
  after    = [prep]
  command  = ["httpd", "-f", "-p", "{port}", "-h", "/www"]
  port     = {port}
  replicas = 2
  health   = "/healthz"
}}
""")
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--detach", "--progress", "plain")
    assert code == 0, out + err
    assert f"web (replica 1) is serving at http://127.0.0.1:{port}" in out
    assert f"web (replica 2) is serving at http://127.0.0.1:{port + 1}" in out
    assert summary_row(out, "web")[1] == "serving"
    assert f"aipc down {pipeline.path}" in out
    containers = sorted(pipeline.containers())
    assert len(containers) == 2 and all(name.startswith(f"aipc-{pipeline.name}-web-") for name in containers)
    for replica_port in (port, port + 1):
        with urllib.request.urlopen(f"http://127.0.0.1:{replica_port}/healthz", timeout=5) as response:
            assert response.read() == b"ok\n"

    code, out, err = aipc(capsys, "down", str(pipeline.path))
    assert code == 0, out + err
    assert all(f"removed container {container}" in out for container in containers)
    assert pipeline.containers() == [] and pipeline.networks() == []
    assert pipeline.data_volumes() == []  # this pipeline has none; down -v is covered by the teardown

    code, out, err = aipc(capsys, "down", str(pipeline.path))
    assert code == 0 and "nothing of" in out


def test_a_service_that_never_gets_healthy_fails_the_run(pipeline, capsys):
    port = free_port()
    pipeline.write(f"""
serve web {{
  command = ["httpd", "-f", "-p", "{port}", "-h", "/www"]
  port    = {port}
  health {{ http = "/missing"  start = 1s  interval = 1s  timeout = 1s  failures = 2 }}
}}
serve front {{ after = [web] command = ["httpd", "-f", "-p", "{port + 1}", "-h", "/www"] port = {port + 1} }}
""")
    started = time.monotonic()
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 1
    assert time.monotonic() - started < 30
    # what the endpoint answered, not only that it was unhealthy
    assert f"web: failed: unhealthy: GET /missing on port {port} failed 2 times in a row: " in out
    assert "404 Not Found" in out.split("web: failed: unhealthy:")[1].splitlines()[0]
    assert summary_row(out, "front")[1] == "skipped"
    assert pipeline.containers() == [] and pipeline.networks() == []


def test_a_foreground_service_that_exits_ends_the_run_with_its_code(pipeline, capsys):
    port = free_port()
    pipeline.write(f"""
serve web {{ script = "echo up; sleep 2; echo bye; exit 5" port = {port} }}
""")
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 1, out + err
    assert lines_of(out, "web") == ["up", "bye"]
    assert "web (replica 1) exited with code 5" in out
    assert summary_row(out, "web")[1:2] == ["stopped"] and "5" in summary_row(out, "web")
    assert pipeline.containers() == [] and pipeline.networks() == []


def start_run(pipeline: Pipeline, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aipc", "run", str(pipeline.path), "--progress", "plain", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)


def read_until(process: subprocess.Popen, wanted: list[str], timeout: float = 60) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while wanted and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line.rstrip("\n"))
        wanted = [text for text in wanted if text not in line]
    assert not wanted, f"never saw {wanted} in:\n" + "\n".join(seen)
    return seen


def test_ctrl_c_stops_and_removes_the_run_containers(pipeline):
    pipeline.write("""
data one { script = "echo one started; sleep 60" }
data two { script = "echo two started; sleep 60" }
train three { after = [one, two] script = "echo never" }
""")
    process = start_run(pipeline, "--jobs", "2")
    try:
        read_until(process, ["one started", "two started"])
        assert len(pipeline.containers()) == 2
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, out
    assert "run interrupted" in out
    assert "three: running" not in out
    assert pipeline.containers() == [] and pipeline.networks() == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_ends_a_foreground_service(pipeline, signum):
    port = free_port()
    pipeline.write(f"""
serve web {{ command = ["httpd", "-f", "-v", "-p", "{port}", "-h", "/www"] port = {port} health = "/healthz" }}
""")
    process = start_run(pipeline)
    try:
        read_until(process, ["press Ctrl-C"])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5) as response:
            assert response.status == 200
        process.send_signal(signum)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, out
    assert re.search(r"web +\| .*GET /index.html|web +\| .*response:200", out), out
    assert pipeline.containers() == [] and pipeline.networks() == []


def test_no_docker_engine_is_a_clear_error(tmp_path, capsys, monkeypatch):
    path = tmp_path / "p.aip"
    path.write_text('data a { image = "busybox:1.36" command = ["true"] }\n')
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    code, out, err = aipc(capsys, "run", str(path))
    assert code == 1
    assert f"aipc run: error: no Docker engine answers at unix://{tmp_path}/no-such.sock" in err
    assert "Traceback" not in err
    code, out, err = aipc(capsys, "down", str(path))
    assert code == 1 and "no Docker engine answers" in err


def moments(found: list[dict], action: str, stage: str) -> list[int]:
    return [event["timeNano"] for event in found
            if event["Action"] == action and event["Actor"]["Attributes"].get("dev.aipc.stage") == stage]


def test_three_services_on_one_container_port_run_side_by_side_through_expose(pipeline, capsys):
    first = free_port(3)
    serve = ('serve {name} {{ script = "mkdir /tmp/w; echo {name} > /tmp/w/who; exec httpd -f -p 8000 -h /tmp/w" '
             'port = 8000  expose = {expose}  health {{ {check}  interval = 1s }} }}\n')
    pipeline.write(serve.format(name="one", expose=first, check='http = "/who"')
                   + serve.format(name="two", expose=first + 1, check='http = "/who"')
                   + serve.format(name="three", expose=first + 2, check="tcp = true"))
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--detach", "--progress", "plain")
    assert code == 0, out + err
    assert "B102" not in err
    for n, name in enumerate(("one", "two", "three")):
        assert f"{name} (replica 1) is serving at http://127.0.0.1:{first + n}" in out
        with urllib.request.urlopen(f"http://127.0.0.1:{first + n}/who", timeout=5) as response:
            assert response.read() == f"{name}\n".encode()


def test_a_batch_stage_after_services_starts_once_they_are_healthy(pipeline, capsys):
    # Both services take a few seconds to get ready; the client tries once, and the
    # engine's events say it started after both were healthy. A service nothing waits
    # for (`late`) still starts after the batch stages.
    first = free_port(3)
    pipeline.write(f"""
serve db {{
  script = "mkdir /tmp/w; echo pong > /tmp/w/ping; sleep 3; touch /tmp/ready; exec httpd -f -p 7000 -h /tmp/w"
  port   = 7000  expose = {first}
  health {{ command = ["test", "-e", "/tmp/ready"]  interval = 1s  start = 1m }}
}}
serve web {{
  script = "mkdir /tmp/w; echo up > /tmp/w/health; sleep 3; exec httpd -f -p 7001 -h /tmp/w"
  port   = 7001  expose = {first + 1}
  health {{ http = "/health"  interval = 1s }}
}}
data client {{
  after  = [db, web]
  script = "wget -q -O - ${{db.url}}/ping && wget -q -O - http://${{web.host}}:${{web.port}}/health && echo client done"
}}
serve late {{ script = "exec httpd -f -p 7002 -h /www"  port = 7002  expose = {first + 2} }}
""")
    with engine_events(pipeline.labels().removeprefix("label="), pipeline.image) as found:
        code, out, err = aipc(capsys, "run", str(pipeline.path), "--detach", "--progress", "plain")
    assert code == 0, out + err
    assert lines_of(out, "client") == ["pong", "up", "client done"]
    assert summary_row(out, "client")[1] == "succeeded"
    started = moments(found, "start", "client")
    for service in ("db", "web"):
        healthy = moments(found, "health_status: healthy", service)
        assert healthy and started and min(healthy) < min(started), (service, found)
    assert min(moments(found, "start", "late")) > min(moments(found, "die", "client"))



def container_spans(found: list[dict]) -> dict[str, list[tuple[int, int]]]:
    """(start, die) of each stage's containers, in nanoseconds, from the engine's events."""
    begun: dict[str, int] = {}
    spans: dict[str, list[tuple[int, int]]] = {}
    for event in found:
        if event["Action"] == "start":
            begun[event["id"]] = event["timeNano"]
        elif event["Action"] == "die" and "dev.aipc.stage" in event["Actor"]["Attributes"]:
            # (the one container without a stage prepares the volumes before any stage starts)
            stage = event["Actor"]["Attributes"]["dev.aipc.stage"]
            spans.setdefault(stage, []).append((begun.pop(event["id"]), event["timeNano"]))
    return spans


def test_a_sweep_runs_six_instances_two_at_a_time_and_pairs_them(pipeline, capsys):
    from tests.backends.e2e.test_compose_e2e import SWEEP, SWEEP_COORDINATES, most_at_once

    pipeline.path.write_text(SWEEP.replace("IMAGE", pipeline.image).replace('pipeline "e2e-sweep" { }',
                                                                            f'pipeline "{pipeline.name}" {{ }}'))
    with engine_events(pipeline.labels().removeprefix("label="), pipeline.image) as found:
        code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain", "--jobs", "6")
    assert code == 0, out + err
    spans = container_spans(found)
    models = [f"model-{lr}-{seed}" for lr, seed in SWEEP_COORDINATES]
    assert sorted(spans) == sorted(models + [name.replace("model", "score") for name in models])
    assert most_at_once([span for name in models for span in spans[name]]) == 2
    for lr, seed in SWEEP_COORDINATES:
        assert lines_of(out, f"score-{lr}-{seed}") == [f"score-{lr}-{seed} read lr={lr} seed={seed}"]
        assert spans[f"score-{lr}-{seed}"][0][0] >= spans[f"model-{lr}-{seed}"][0][1]
    assert pipeline.containers() == []


def test_a_three_node_group_meets_at_node_0_and_one_failing_node_fails_it(pipeline, capsys):
    from tests.backends.e2e.test_compose_e2e import RENDEZVOUS  # the same program as through docker-compose

    pipeline.write(RENDEZVOUS.replace("IMAGE", pipeline.image).replace("FAIL", "none"))
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 0, out + err
    assert "B120" in err  # one host
    node = {rank: lines_of(out, f"group#node-{rank}") for rank in range(3)}
    master = f"master {pipeline.name}-group-0.{pipeline.name}-group:29500"
    for rank in range(3):
        assert node[rank][0] == f"node {rank} of 3 (3), world 3, {master}"
        assert node[rank][-1] == f"node {rank} done"
    assert sorted(node[0][1:3]) == ["hello from node 1", "hello from node 2"]
    assert "node 0 heard every node" in node[0]
    assert lines_of(out, "after") == ["after every node"]
    assert [summary_row(out, name)[1] for name in ("group", "after")] == ["succeeded"] * 2
    assert pipeline.containers() == []

    pipeline.write(RENDEZVOUS.replace("IMAGE", pipeline.image).replace("FAIL", "2"))
    started = time.monotonic()
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 1
    assert time.monotonic() - started < 15  # node 0 is stopped, not left waiting for node 2
    assert "node 2 fails" in lines_of(out, "group#node-2")
    assert "stage `group` failed (exited with code 5 (node 2 of 3; the others were stopped))" in out
    assert summary_row(out, "group")[1] == "failed" and summary_row(out, "after")[1] == "skipped"
    assert lines_of(out, "after") == []
    assert pipeline.containers() == []


def test_a_group_past_its_timeout_is_stopped_whole(pipeline, capsys):
    pipeline.write('data group { nodes = 2  timeout = 2s  script = "echo node $NODE_RANK up; sleep 60" }\n')
    started = time.monotonic()
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 1
    assert time.monotonic() - started < 30
    assert lines_of(out, "group#node-0") == ["node 0 up"] and lines_of(out, "group#node-1") == ["node 1 up"]
    assert summary_row(out, "group")[1:3] == ["timed", "out"]
    assert pipeline.containers() == []
