"""`aipc run` schedules GPUs on one machine, for real on the Docker engine. This
engine has no GPU (nor the NVIDIA runtime), so the stages get their devices the way
a machine whose default runtime is the NVIDIA container runtime reads them
(`--gpu-request env`: NVIDIA_VISIBLE_DEVICES), which busybox containers run with;
each prints the devices it was given and the host's uptime when it starts and ends,
so the test sees which stages overlapped and on which devices. The device-request
form is checked on created containers (they cannot start here)."""

from __future__ import annotations

import io
import itertools
import tarfile
import uuid

import docker
import pytest

from aipc.backends.docker import container_specs
from aipc.diagnostics import Diagnostics
from aipc.runner.docker_driver import container_options
from aipc.runner.selection import RunNames
from tests.helpers import compile_ok
from tests.runner.test_docker_run import Pipeline, aipc, lines_of, pipeline  # noqa: F401 - the fixture

pytestmark = pytest.mark.docker

STAGE = """
train {name} {{
  script = "echo start $(cut -d' ' -f1 /proc/uptime) $NVIDIA_VISIBLE_DEVICES; sleep {seconds}; echo end $(cut -d' ' -f1 /proc/uptime)"
  resources {{ gpu = {gpus} }}
}}
"""


def intervals(out: str, names) -> dict[str, tuple[float, float, set[str]]]:
    """Each stage's (start, end, devices), from what it printed."""
    found = {}
    for name in names:
        start, end = lines_of(out, name)
        _, started, *devices = start.split()
        found[name] = (float(started), float(end.split()[1]), set(devices[0].split(",")) if devices else set())
    return found


def test_gpu_stages_wait_for_free_gpus_and_never_share_one(pipeline, capsys):  # noqa: F811
    names = ["t0", "t1", "t2", "t3"]
    pipeline.write("".join(STAGE.format(name=name, seconds=2, gpus=2) for name in names)
                   + 'data cpu { script = "echo devices=$NVIDIA_VISIBLE_DEVICES" }\n')
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain", "--jobs", "8",
                          "--gpus", "4", "--gpu-request", "env")
    assert code == 0, out + err
    runs = intervals(out, names)
    assert all(len(devices) == 2 and devices <= {"0", "1", "2", "3"} for _, _, devices in runs.values())
    overlaps = [(a, b) for a, b in itertools.combinations(names, 2)
                if runs[a][0] < runs[b][1] and runs[b][0] < runs[a][1]]
    assert overlaps, "two GPU stages should have run side by side"
    for first, second in overlaps:
        assert runs[first][2].isdisjoint(runs[second][2]), (first, second, runs)
    for name in names:  # never more than two at once: 4 GPUs, 2 each
        start = runs[name][0]
        assert sum(1 for other in runs.values() if other[0] <= start < other[1]) <= 2
    assert "t2: waiting for GPUs (needs 2 of the 4)" in out
    assert lines_of(out, "cpu") == ["devices=void"]  # a CPU stage sees no GPU
    assert "4 GPUs (--gpus)" in out
    assert pipeline.containers() == []


def test_a_stage_needing_more_gpus_than_the_machine_has_starts_nothing(pipeline, capsys):  # noqa: F811
    pipeline.write(STAGE.format(name="big", seconds=0, gpus=3) + 'data first { script = "echo hi" }\n')
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain", "--gpus", "2",
                          "--gpu-request", "env")
    assert code == 1
    assert "the machine has 2 GPUs (--gpus), and `big` needs 3" in err
    assert "hi" not in out and pipeline.containers() == []


def test_the_device_request_names_the_assigned_gpus(busybox_image, tmp_path):
    source = (f'pipeline "gpureq" {{ image = "{busybox_image}" }}\n'
              'train t { command = ["true"]  resources { gpu = 2 } }\n')
    program = compile_ok(source, path=str(tmp_path / "p.aip"))
    stage = program.stage("t")
    spec = container_specs(program, [stage], Diagnostics("p.aip"), "`aipc run`")["t"]
    names = RunNames.new(program, str(tmp_path / "p.aip"))
    client = docker.from_env()
    for request, expected in (("device", [{"Driver": "nvidia", "Count": 0, "DeviceIDs": ["1", "3"],
                                           "Capabilities": [["gpu"]], "Options": {}}]), ("env", None)):
        options = container_options(stage, spec, names, 1, environ={}, base_dir=str(tmp_path), network=None,
                                    devices=("1", "3"), gpu_request=request)
        container = client.containers.create(**options)
        try:
            container.reload()
            assert container.attrs["HostConfig"]["DeviceRequests"] == expected
            environment = container.attrs["Config"]["Env"]
            assert ("NVIDIA_VISIBLE_DEVICES=1,3" in environment) == (request == "env")
        finally:
            container.remove(force=True)


# `nvidia-smi -L` as the NVIDIA container runtime would let it answer in a container
# given every GPU (NVIDIA_VISIBLE_DEVICES=all): three GPUs, listed as it lists them.
FAKE_NVIDIA_SMI = """#!/bin/sh
[ "$1" = -L ] && [ "$NVIDIA_VISIBLE_DEVICES" = all ] || { echo "No devices were found"; exit 6; }
for n in 0 1 2; do echo "GPU $n: NVIDIA H100 80GB HBM3 (UUID: GPU-0000000$n-aaaa-bbbb-cccc-dddddddddddd)"; done
"""


@pytest.fixture(scope="module")
def nvidia_smi_image(busybox_image):
    """The busybox image with that `nvidia-smi` in /bin, removed after the tests; its
    tag is this fixture's own (another test run on the same engine makes and removes its own)."""
    client = docker.from_env()
    tag = f"aipc-test/fake-nvidia-smi:{uuid.uuid4().hex[:8]}"
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        data = FAKE_NVIDIA_SMI.encode()
        info = tarfile.TarInfo("nvidia-smi")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    container = client.containers.create(busybox_image, command=["true"])
    try:
        container.put_archive("/bin", archive.getvalue())
        container.commit(*tag.split(":"))
    finally:
        container.remove(force=True)
    yield tag
    client.images.remove(tag, force=True)


def test_run_counts_the_engines_gpus_with_nvidia_smi(nvidia_smi_image, tmp_path, capsys):
    """Without --gpus, `aipc run --gpu-request env` asks nvidia-smi in a container
    given every GPU, and schedules the three it lists: two stages of two GPUs
    cannot run together."""
    program = Pipeline(tmp_path, nvidia_smi_image)
    program.write("".join(STAGE.format(name=name, seconds=1, gpus=2) for name in ("t0", "t1")))
    try:
        code, out, err = aipc(capsys, "run", str(program.path), "--progress", "plain", "--jobs", "4",
                              "--gpu-request", "env")
        assert code == 0, out + err
        assert "3 GPUs (found with nvidia-smi)" in out
        runs = intervals(out, ["t0", "t1"])
        assert all(len(devices) == 2 and devices <= {"0", "1", "2"} for _, _, devices in runs.values())
        first, second = sorted(runs.values())
        assert second[0] >= first[1]  # the second waited for the first's GPUs
        assert "waiting for GPUs (needs 2 of the 3)" in out
    finally:
        assert program.containers() == []


def test_the_nodes_of_a_group_get_gpus_of_their_own(pipeline, capsys):  # noqa: F811
    pipeline.write('train group {\n  nodes = 2\n  resources { gpu = 2 }\n'
                   '  script = "echo rank $NODE_RANK of $WORLD_SIZE per node $NPROC_PER_NODE sees $NVIDIA_VISIBLE_DEVICES"\n}\n')
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain", "--gpus", "4",
                          "--gpu-request", "env")
    assert code == 0, out + err
    seen = {}
    for rank in range(2):
        (line,) = lines_of(out, f"group#node-{rank}")
        words = line.split()
        assert words[:6] == ["rank", str(rank), "of", "4", "per", "node"] and words[6] == "2"
        seen[rank] = set(words[-1].split(","))
    assert len(seen[0]) == len(seen[1]) == 2 and seen[0].isdisjoint(seen[1])
    assert seen[0] | seen[1] == {"0", "1", "2", "3"}
