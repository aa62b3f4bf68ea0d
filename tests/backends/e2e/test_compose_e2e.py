"""Compiled pipelines run for real: `docker-compose up` (Debian's 1.29) on the local
engine, with the offline busybox image. Each test has its own project, brought
down with its volumes afterwards; no container is left behind."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from aipc.cli import main
from tests.conftest import BUSYBOX_IMAGE
from tests.helpers import engine_events, free_port

pytestmark = pytest.mark.docker

IMAGE = BUSYBOX_IMAGE  # tests/conftest.py builds it (busybox_image)
UP_TIMEOUT = 120  # seconds; every pipeline here finishes in a few


@dataclass
class Project:
    """One compiled pipeline and the docker-compose project that runs it."""

    name: str
    directory: Path
    docker_compose: str

    @property
    def file(self) -> Path:
        return self.directory / "compose.yaml"

    def compile(self, text: str, *options: str) -> str:
        source = self.directory / "pipeline.aip"
        source.write_text(text.replace("IMAGE", IMAGE))
        status = main(["compile", str(source), "--target", "compose", "-o", str(self.file), *options])
        assert status == 0
        return self.file.read_text()

    def compose(self, *args: str, timeout: int = UP_TIMEOUT, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([self.docker_compose, "-p", self.name, "-f", str(self.file), *args],
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})

    def containers(self, service: str | None = None) -> list[dict]:
        """`docker inspect` of the project's containers (of one service), by number."""
        filters = ["--filter", f"label=com.docker.compose.project={self.name}"]
        if service is not None:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        ids = subprocess.run(["docker", "ps", "-a", "-q", *filters], capture_output=True, text=True,
                             check=True, timeout=30).stdout.split()
        if not ids:
            return []
        inspected = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True,
                                              check=True, timeout=30).stdout)
        return sorted(inspected, key=lambda c: c["Config"]["Labels"]["com.docker.compose.container-number"])

    def one(self, service: str) -> dict:
        (container,) = self.containers(service)
        return container


@pytest.fixture
def project(tmp_path, docker_engine, busybox_image, docker_compose):
    project = Project(f"aipc-e2e-{uuid.uuid4().hex[:10]}", tmp_path, docker_compose)
    yield project
    if project.file.exists():
        down = project.compose("down", "--volumes", "--remove-orphans", "--timeout", "1", timeout=120)
        assert down.returncode == 0, down.stderr
    assert project.containers() == [], "containers left behind"


def started(container: dict) -> datetime:
    return moment(container["State"]["StartedAt"])


def finished(container: dict) -> datetime:
    return moment(container["State"]["FinishedAt"])


def moment(text: str) -> datetime:
    """Docker's RFC 3339 times have up to nine fractional digits; keep microseconds."""
    stamp, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{stamp}.{(fraction + '000000')[:6]}").replace(tzinfo=timezone.utc)


def never_started(container: dict) -> bool:
    return container["State"]["StartedAt"].startswith("0001-01-01")


CHAIN = '''
pipeline "e2e-chain" { labels = { suite = "e2e" } }
volume work { size = 16Mi }
secret token { keys = ["AIPC_E2E_TOKEN"] }

data first {
  image  = "IMAGE"
  env    = { PRICE = "$5 and $${HOME}" }
  script = """
    set -eu
    sleep 4  # longer than docker-compose 1.29 takes to start the next container
    echo "first $PRICE" >> /work/log
  """
  mount work at "/work"
}

train second {
  image   = "IMAGE"
  after   = [first]
  command = ["sh", "-c", "set -eu; grep -q first /work/log; echo second >> /work/log"]
  mount work at "/work"
}

eval third {
  image   = "IMAGE"
  after   = [second]
  secrets = [token]
  script  = """
    set -eu
    printf 'first $5 and $${HOME}\\nsecond\\n' | cmp - /work/log
    echo "the token is <$AIPC_E2E_TOKEN>"
    if touch /work/x 2>/dev/null; then echo "readonly mount is writable"; exit 1; fi
    if touch /etc/x 2>/dev/null; then echo "root file system is writable"; exit 1; fi
    touch /tmp/x
    grep -q '^CapEff:[[:space:]]*0000000000000000$' /proc/self/status
    grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/self/status
    echo "third saw the data"
  """
  mount work at "/work" readonly
}
'''


def test_three_batch_stages_pass_data_through_a_volume_in_order(project):
    text = project.compile(CHAIN)
    assert "from-the-caller" not in text
    up = project.compose("up", env={"AIPC_E2E_TOKEN": "from-the-caller"})
    assert up.returncode == 0, up.stdout + up.stderr
    assert "third saw the data" in up.stdout
    assert "the token is <from-the-caller>" in up.stdout  # passed through, never written down
    first, second, third = (project.one(name) for name in ("first", "second", "third"))
    assert [c["State"]["ExitCode"] for c in (first, second, third)] == [0, 0, 0]
    assert finished(first) <= started(second) and finished(second) <= started(third)
    assert third["Config"]["Labels"]["app.kubernetes.io/part-of"] == "e2e-chain"
    assert third["Config"]["Labels"]["suite"] == "e2e"


ARTIFACTS = '''
train make {
  image  = "IMAGE"
  script = """
    set -eu
    test "$(id -u):$(id -g)" = 65532:65532
    echo 41 > /out/raw/value
    mkdir -p /out/raw/sub
  """
  output raw at "/out/raw"
}
eval use {
  image  = "IMAGE"
  script = """
    set -eu
    if touch /in/raw/x 2>/dev/null; then echo "the input is writable"; exit 1; fi
    echo "use read $(cat /in/raw/value)"
  """
  input make.raw at "/in/raw"
}
'''


def test_an_output_is_written_by_the_hardened_user_and_read_only_in_its_reader(project):
    """The output volume is new and root's: `aipc-volumes` gives it to the volume group
    first, as for a written volume, so uid 65532 writes it; twice (the volume stays)."""
    project.compile(ARTIFACTS)
    for _ in range(2):
        up = project.compose("up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "use read 41" in up.stdout
    assert project.one("aipc-volumes")["State"]["ExitCode"] == 0


FAILING = '''
data first  { image = "IMAGE"  command = ["true"] }
data middle { image = "IMAGE"  after = [first]   command = ["sh", "-c", "echo middle fails; exit 3"] }
data last   { image = "IMAGE"  after = [middle]  command = ["sh", "-c", "echo last ran"] }
'''


def test_a_failing_stage_fails_the_run_and_its_dependant_never_starts(project):
    project.compile(FAILING)
    up = project.compose("up")
    assert up.returncode != 0
    assert "last ran" not in up.stdout
    assert project.one("first")["State"]["ExitCode"] == 0
    assert project.one("middle")["State"]["ExitCode"] == 3
    assert all(never_started(c) for c in project.containers("last"))


RETRIED = '''
volume state { size = 16Mi }
data flaky {
  image   = "IMAGE"
  retries = 2
  script  = """
    if [ ! -e /state/tried ]; then touch /state/tried; echo "first attempt fails"; exit 1; fi
    sleep 1
    echo "second attempt works" > /state/done
  """
  mount state at "/state"
}
data next {
  image   = "IMAGE"
  after   = [flaky]
  command = ["sh", "-c", "cat /state/done && echo next ran"]
  mount state at "/state" readonly
}
'''


def test_retries_run_a_failed_stage_again_before_its_dependant(project):
    project.compile(RETRIED)
    up = project.compose("up")
    assert up.returncode == 0, up.stdout + up.stderr
    flaky = project.one("flaky")
    assert flaky["RestartCount"] == 1 and flaky["State"]["ExitCode"] == 0
    assert project.one("next")["State"]["ExitCode"] == 0
    assert "second attempt works" in up.stdout and "next ran" in up.stdout


SERVING = '''
pipeline "e2e-serving" { }
param port: int = 8080
param front_port: int = 9090
volume site { size = 16Mi }

data publish {
  image  = "IMAGE"
  script = "echo ready > /www/ready"
  mount site at "/www"
}

serve web {
  image    = "IMAGE"
  after    = [publish]
  command  = ["httpd", "-f", "-p", "${port}", "-h", "/www"]
  mount site at "/www" readonly
  port     = "${port}"
  replicas = 2
  health   = "/ready"
}

serve front {
  image   = "IMAGE"
  after   = [web]
  # reaches `web` at its address: the network alias and its container port here
  script  = """
    mkdir -p /tmp/www
    wget -q -O /tmp/www/upstream ${web.url}/ready
    exec httpd -f -p ${front_port} -h /tmp/www
  """
  port    = "${front_port}"
}
'''


def http_get(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # straight to 127.0.0.1
    with opener.open(url, timeout=10) as response:
        return response.read().decode()


def test_a_service_becomes_healthy_after_its_batch_dependency(project):
    port = free_port(3)
    project.compile(SERVING, "-p", f"port={port}", "-p", f"front_port={port + 2}",
                    "--compose-publish-address", "127.0.0.1")
    up = project.compose("up", "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    publish = project.one("publish")
    web = project.containers("web")
    assert publish["State"]["ExitCode"] == 0
    assert len(web) == 2
    for replica in web:
        # `front` waits for `web` to be healthy, so `up` returned only once it was.
        assert replica["State"]["Health"]["Status"] == "healthy"
        assert finished(publish) <= started(replica)
    assert project.one("front")["State"]["Running"]
    assert http_get(f"http://127.0.0.1:{port}/ready") == "ready\n"
    assert http_get(f"http://127.0.0.1:{port + 1}/ready") == "ready\n"  # the second replica's host port
    assert eventually(lambda: http_get(f"http://127.0.0.1:{port + 2}/upstream")) == "ready\n"


def eventually(probe, seconds: float = 20):
    """The probe's result once it stops failing (a service may take a moment to listen)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return probe()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


GPU = '''
train gpu_stage { image = "IMAGE"  command = ["true"]  resources { gpu = 1 } }
eval after_gpu  { image = "IMAGE"  after = [gpu_stage]  command = ["echo", "after the GPU stage"] }
'''


def test_a_gpu_stage_without_a_gpu_fails_with_dockers_device_error(project):
    project.compile(GPU)
    up = project.compose("up", timeout=60)
    assert up.returncode != 0
    assert 'could not select device driver "nvidia" with capabilities: [[gpu]]' in up.stderr
    assert "after the GPU stage" not in up.stdout
    assert all(never_started(c) for c in project.containers("after_gpu"))


def moment_of(found: list[dict], action: str, attribute: str, value: str) -> list[int]:
    return [event["timeNano"] for event in found
            if event["Action"] == action and event["Actor"]["Attributes"].get(attribute) == value]


# Three services that all listen on port 8000 in their containers, each published on
# its own host port through `expose`: they share one host.
SAME_PORT = '''
param base: int = 18000
serve one   { image = "IMAGE"  script = "mkdir /tmp/w; echo one > /tmp/w/who; exec httpd -f -p 8000 -h /tmp/w"
              port = 8000  expose = "${base}"  health { http = "/who"  interval = 1s } }
serve two   { image = "IMAGE"  script = "mkdir /tmp/w; echo two > /tmp/w/who; exec httpd -f -p 8000 -h /tmp/w"
              port = 8000  expose = 28000  health { http = "/who"  interval = 1s } }
serve three { image = "IMAGE"  script = "mkdir /tmp/w; echo three > /tmp/w/who; exec httpd -f -p 8000 -h /tmp/w"
              port = 8000  expose = 28001  health { tcp = true  interval = 1s } }
'''


def same_port(first: int) -> str:
    return SAME_PORT.replace("expose = 28000", f"expose = {first + 1}").replace("expose = 28001",
                                                                               f"expose = {first + 2}")


def test_three_services_on_one_container_port_run_side_by_side_through_expose(project):
    first = free_port(3)
    text = project.compile(same_port(first), "-p", f"base={first}")
    assert text.count(":8000\n") == 3 and "B102" not in text
    up = project.compose("up", "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    assert [eventually(lambda n=n: http_get(f"http://127.0.0.1:{first + n}/who")) for n in range(3)] == [
        "one\n", "two\n", "three\n"]
    # each one's health check (http, http, tcp) passes in its container
    for name in ("one", "two", "three"):
        assert until(lambda n=name: project.one(n)["State"]["Health"]["Status"] == "healthy"), \
            project.one(name)["State"]["Health"]


def until(condition, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


# A batch stage after a serve stage starts once the service is healthy. The service
# takes a few seconds to get ready; the client's one attempt (no retry) only works
# once it is, and the engine's events say the client started after `healthy`.
AFTER_SERVE = '''
pipeline "e2e-after-serve" { }
serve db {
  image  = "IMAGE"
  script = "mkdir /tmp/w; echo pong > /tmp/w/ping; sleep 3; touch /tmp/ready; exec httpd -f -p 7000 -h /tmp/w"
  port   = 7000
  health { command = ["test", "-e", "/tmp/ready"]  interval = 1s  start = 1m }
}
serve web {
  image  = "IMAGE"
  script = "mkdir /tmp/w; echo up > /tmp/w/health; sleep 3; exec httpd -f -p 7001 -h /tmp/w"
  port   = 7001
  health { http = "/health"  interval = 1s }
}
data client {
  image  = "IMAGE"
  after  = [db, web]
  script = "wget -q -O - ${db.url}/ping && wget -q -O - http://${web.host}:${web.port}/health && echo client done"
}
'''


def after_serve(first: int) -> str:
    return AFTER_SERVE.replace("port   = 7000", f"port   = 7000  expose = {first}") \
        .replace("port   = 7001", f"port   = 7001  expose = {first + 1}")


def test_a_batch_stage_after_services_starts_once_they_are_healthy(project):
    first = free_port(2)
    text = project.compile(after_serve(first))
    assert text.count("condition: service_healthy") == 2
    with engine_events(f"com.docker.compose.project={project.name}", IMAGE) as found:
        up = project.compose("up", "--detach")
        assert up.returncode == 0, up.stdout + up.stderr
        client = eventually_exited(project, "client")
    logs = project.compose("logs", "--no-color", "client").stdout
    assert client["State"]["ExitCode"] == 0, logs
    assert "pong" in logs and "up" in logs and "client done" in logs
    started = moment_of(found, "start", "com.docker.compose.service", "client")
    for service in ("db", "web"):
        healthy = moment_of(found, "health_status: healthy", "com.docker.compose.service", service)
        assert healthy and started and min(healthy) < min(started), (service, found)


def eventually_exited(project: Project, service: str, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        container = project.one(service)
        if container["State"]["Status"] == "exited" or time.monotonic() > deadline:
            return container
        time.sleep(0.5)


GPU_BOX = '''
train a    { image = "IMAGE"  command = ["true"]  resources { gpu = 2 } }
train b    { image = "IMAGE"  command = ["true"]  resources { gpu = 1 } }
data  cpu  { image = "IMAGE"  command = ["true"] }
'''


def test_gpus_n_gives_the_engine_each_services_own_device_ids(project):
    """docker-compose 1.29 hands `device_ids` to the engine as the containers' device
    requests (created, not started: this engine has no GPU driver; no `after` either,
    as `up --no-start` would wait for a dependency to complete)."""
    project.compile(GPU_BOX, "--gpus", "3")
    create = project.compose("up", "--no-start")
    assert create.returncode == 0, create.stderr
    requests = {service: project.one(service)["HostConfig"]["DeviceRequests"] for service in ("a", "b", "cpu")}
    assert requests["cpu"] is None
    assert requests["a"] == [{"Driver": "nvidia", "Count": 0, "DeviceIDs": ["0", "1"], "Capabilities": [["gpu"]],
                              "Options": {}}]
    assert requests["b"][0]["DeviceIDs"] == ["2"]  # a and b may run at the same time


# LANGUAGE.md's sweep, made to run: a 2 x 3 matrix, two instances at a time; each
# `score` instance checks that it reads the value its own `model` instance wrote.
SWEEP = '''
pipeline "e2e-sweep" { }
volume results { size = 16Mi  access = rwx }
train model {
  image  = "IMAGE"
  matrix { lr = [1e-4, 3e-4]  seed = [1, 2, 3] }
  max_parallel = 2
  script = """
    set -eu
    sleep 2
    mkdir -p /results/${stage.name}
    echo "lr=${matrix.lr} seed=${matrix.seed}" > /results/${stage.name}/value
  """
  mount results at "/results"
}
eval score {
  image  = "IMAGE"
  matrix = model
  after  = [model]
  script = """
    set -eu
    value="$(cat /results/model-${matrix.lr}-${matrix.seed}/value)"
    test "$value" = "lr=${matrix.lr} seed=${matrix.seed}"
    echo "${stage.name} read $value"
  """
  mount results at "/results" readonly
}
'''
SWEEP_COORDINATES = [(lr, seed) for lr in ("1e-4", "3e-4") for seed in (1, 2, 3)]


def most_at_once(spans) -> int:
    """The most of the (start, end) spans that overlap at one instant (an end and a
    start at the same instant do not)."""
    running = most = 0
    for _, change in sorted((t, change) for start, end in spans for t, change in ((start, 1), (end, -1))):
        running += change
        most = max(most, running)
    return most


def test_a_sweep_runs_six_instances_two_at_a_time_and_pairs_them(project):
    project.compile(SWEEP)
    up = project.compose("up")
    assert up.returncode == 0, up.stdout + up.stderr
    models = [project.one(f"model-{lr}-{seed}") for lr, seed in SWEEP_COORDINATES]
    assert [c["State"]["ExitCode"] for c in models] == [0] * 6
    assert most_at_once([(started(c), finished(c)) for c in models]) == 2
    assert json.loads(models[4]["Config"]["Labels"]["aipc.dev/matrix-coordinates"]) == {"lr": 0.0003, "seed": 2}
    for lr, seed in SWEEP_COORDINATES:
        score = project.one(f"score-{lr}-{seed}")
        assert score["State"]["ExitCode"] == 0
        assert started(score) >= finished(project.one(f"model-{lr}-{seed}"))
        assert f"score-{lr}-{seed} read lr={lr} seed={seed}" in up.stdout


WINDOW_FAILURE = '''
data step {
  image  = "IMAGE"
  matrix { n = [1, 2, 3, 4, 5] }
  max_parallel = 2
  script = "sleep 1; if [ ${matrix.n} = 2 ]; then exit 4; fi; echo step ${matrix.n} done"
}
'''


def test_a_failed_instance_stops_its_chain_and_the_other_chain_goes_on(project):
    """max_parallel = 2 makes chains 1 -> 3 -> 5 and 2 -> 4 on docker-compose."""
    project.compile(WINDOW_FAILURE)
    up = project.compose("up")
    assert up.returncode != 0
    assert project.one("step-2")["State"]["ExitCode"] == 4
    assert all(never_started(c) for c in project.containers("step-4"))
    assert [project.one(f"step-{n}")["State"]["ExitCode"] for n in (1, 3, 5)] == [0, 0, 0]
    assert started(project.one("step-5")) >= finished(project.one("step-3"))


# A 3-node rendezvous (issue 16): node 0 listens on MASTER_PORT for the other
# nodes, which connect to MASTER_ADDR and say their rank; `fail` makes one node
# exit non-zero before it connects. Shared with the `aipc run` test.
RENDEZVOUS = '''
data group {
  image  = "IMAGE"
  nodes  = 3
  script = """
    echo "node $NODE_RANK of $NNODES ($PET_NNODES), world $WORLD_SIZE, master $MASTER_ADDR:$MASTER_PORT"
    if [ "$NODE_RANK" = "FAIL" ]; then echo "node $NODE_RANK fails"; exit 5; fi
    if [ "$NODE_RANK" = 0 ]; then
      heard=0
      while [ $heard -lt 2 ]; do
        timeout 20 nc -l -p "$MASTER_PORT" || { echo "node 0 gave up"; exit 7; }
        heard=$((heard + 1))
      done
      echo "node 0 heard every node"
    else
      tries=0
      until echo "hello from node $PET_NODE_RANK" | nc "$PET_MASTER_ADDR" "$PET_MASTER_PORT"; do
        tries=$((tries + 1)); [ $tries -lt 200 ] || exit 8; sleep 0.1
      done
    fi
    echo "node $NODE_RANK done"
  """
}
eval after { image = "IMAGE"  after = [group]  command = ["echo", "after every node"] }
'''


def test_a_three_node_group_meets_at_node_0_and_its_dependant_waits_for_all(project):
    text = project.compile(RENDEZVOUS.replace("FAIL", "none"))
    assert text.count("- MASTER_ADDR=pipeline-group-0.pipeline-group") == 3  # node 0, named as on Kubernetes
    up = project.compose("up")
    assert up.returncode == 0, up.stdout + up.stderr
    for rank in range(3):
        assert f"node {rank} of 3 (3), world 3, master " in up.stdout
        assert f"node {rank} done" in up.stdout
    assert "hello from node 1" in up.stdout and "hello from node 2" in up.stdout
    assert "node 0 heard every node" in up.stdout
    nodes = [project.one(f"group-node-{rank}") for rank in range(3)]
    assert [c["State"]["ExitCode"] for c in nodes] == [0, 0, 0]
    after = project.one("after")
    assert after["State"]["ExitCode"] == 0 and started(after) >= max(finished(c) for c in nodes)


def test_a_node_that_fails_fails_the_group_and_its_dependant_never_starts(project):
    project.compile(RENDEZVOUS.replace("FAIL", "2"))
    up = project.compose("up")
    assert up.returncode != 0
    assert "after every node" not in up.stdout
    assert project.one("group-node-2")["State"]["ExitCode"] == 5
    assert all(never_started(c) for c in project.containers("after"))
