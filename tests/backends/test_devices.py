"""GPU device ids on one machine (backends/devices.py), on generated pipelines:
stages that may overlap never share a device, the machine's GPUs suffice exactly
when the heaviest overlapping set fits, and more demand is an error naming the
stages and their levels."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from aipc.backends.devices import Assignment, Shortfall, assign_devices, device_demand, gpus_per_container
from aipc.compiler import ir
from tests.helpers import compile_ok

VENDORS = (ir.GpuVendor.NVIDIA, ir.GpuVendor.NVIDIA, ir.GpuVendor.AMD, ir.GpuVendor.INTEL)


@st.composite
def pipelines(draw) -> ir.Pipeline:
    """A DAG of batch and serve stages (a batch stage may follow a service, as in v1),
    with GPUs of any vendor, and each stage's level."""
    count = draw(st.integers(1, 8))
    stages: list[ir.Stage] = []
    levels: dict[str, int] = {}
    for index in range(count):
        serve = draw(st.booleans()) if index else False
        names = [s.name for s in stages]
        after = tuple(sorted(draw(st.sets(st.sampled_from(names), max_size=3)) if names else ()))
        name = f"s{index}"
        levels[name] = max((levels[d] + 1 for d in after), default=0)
        stages.append(ir.Stage(
            name=name, kind=ir.StageKind.SERVE if serve else ir.StageKind.TRAIN, image="e:1",
            after=after, replicas=draw(st.integers(1, 3)) if serve else 1, level=levels[name],
            resources=ir.Resources(gpu=draw(st.integers(0, 4)), gpu_vendor=draw(st.sampled_from(VENDORS))),
        ))
    return ir.Pipeline(name="p", file="p.aip", stages=tuple(stages))


def may_overlap(pipeline: ir.Pipeline):
    """Whether two stages may run at the same instant: neither is a batch stage the
    other waits for (directly or not). Computed here from scratch."""
    graph = nx.DiGraph()
    graph.add_nodes_from(s.name for s in pipeline.stages)
    graph.add_edges_from((d, s.name) for s in pipeline.stages for d in s.after)
    batch = {s.name: s.is_batch for s in pipeline.stages}

    def overlap(x: str, y: str) -> bool:
        return not ((batch[x] and x in nx.ancestors(graph, y)) or (batch[y] and y in nx.ancestors(graph, x)))
    return overlap


def heaviest_by_brute_force(pipeline: ir.Pipeline) -> int:
    overlap = may_overlap(pipeline)
    names = [s.name for s in pipeline.stages if device_demand(s)]
    best = 0
    for size in range(1, len(names) + 1):
        for group in itertools.combinations(names, size):
            if all(overlap(x, y) for x, y in itertools.combinations(group, 2)):
                best = max(best, sum(device_demand(pipeline.stage(n)) for n in group))
    return best


@settings(max_examples=200, deadline=None)
@given(pipelines(), st.integers(0, 3))
def test_stages_that_may_overlap_never_share_a_device(pipeline, spare):
    needed = heaviest_by_brute_force(pipeline)
    count = needed + spare  # exactly enough, or more
    if count == 0:
        return
    assignment = assign_devices(pipeline, count)
    assert isinstance(assignment, Assignment)
    overlap = may_overlap(pipeline)
    for stage in pipeline.stages:
        containers = assignment.devices.get(stage.name, ())
        if not device_demand(stage):
            assert containers == ()
            continue
        assert [len(ids) for ids in containers] == [gpus_per_container(stage)] * len(containers)
        assert len(containers) == (stage.replicas if not stage.is_batch else 1)
        ids = assignment.of(stage.name)
        assert len(set(ids)) == len(ids) == device_demand(stage)  # each container its own
        assert all(0 <= int(device) < count for device in ids)
    for first, second in itertools.combinations(assignment.devices, 2):
        if overlap(first, second):
            assert set(assignment.of(first)).isdisjoint(assignment.of(second)), (first, second)


@settings(max_examples=200, deadline=None)
@given(pipelines(), st.integers(1, 3))
def test_more_demand_than_gpus_names_the_stages_and_their_levels(pipeline, short):
    needed = heaviest_by_brute_force(pipeline)
    if needed - short < 1:
        return
    shortfall = assign_devices(pipeline, needed - short)
    assert isinstance(shortfall, Shortfall)
    assert (shortfall.needed, shortfall.count) == (needed, needed - short)
    overlap = may_overlap(pipeline)
    names = [stage.name for stage in shortfall.stages]
    assert all(overlap(x, y) for x, y in itertools.combinations(names, 2))
    assert sum(device_demand(stage) for stage in shortfall.stages) == needed
    for stage in shortfall.stages:
        assert f"`{stage.name}`" in shortfall.message
        assert f"at level {stage.level}" in shortfall.message


def test_a_service_keeps_its_gpus_and_a_finished_stage_hands_them_on():
    def stage(name, gpu, after=(), serve=False, replicas=1):
        return ir.Stage(name, ir.StageKind.SERVE if serve else ir.StageKind.TRAIN, image="e:1", after=after,
                        replicas=replicas, resources=ir.Resources(gpu=gpu))
    pipeline = ir.Pipeline("p", "p.aip", stages=(
        stage("train", 4), stage("api", 1, ("train",), serve=True, replicas=2), stage("eval", 2, ("api",))))
    assignment = assign_devices(pipeline, 4)
    assert assignment.devices["train"] == (("0", "1", "2", "3"),)
    assert len(assignment.devices["api"]) == 2  # a device per replica, from what train handed on
    assert set(assignment.of("eval")).isdisjoint(assignment.of("api"))  # runs while api serves
    assert isinstance(assign_devices(pipeline, 3), Shortfall)


def test_the_assignment_is_the_same_under_every_hash_seed(tmp_path):
    source = tmp_path / "box.aip"
    lines = [f'train t{i} {{ image = "x:1"  resources {{ gpu = {1 + i % 3} }}'
             + (f"  after = [t{i // 2}]" if i else "") + " }" for i in range(12)]
    source.write_text("\n".join(lines) + "\n")
    outputs = set()
    for seed in ("0", "1", "77"):
        result = subprocess.run([sys.executable, "-m", "aipc", "compile", str(source), "-t", "compose", "--gpus",
                                 "16"], capture_output=True, env={**os.environ, "PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr
        outputs.add(result.stdout)
    assert len(outputs) == 1 and b"device_ids" in outputs.pop()


def test_instances_under_max_parallel_hand_their_gpus_on_along_their_chain():
    """docker-compose runs a matrix stage with ``max_parallel = 2`` in two chains, each
    instance after the one two places before it: two GPUs are enough, and an instance
    takes the devices of the one it follows; without the limit all four may overlap."""
    text = 'train fit {{ image = "x:1"  matrix {{ n = [1, 2, 3, 4] }}  {limit}  resources {{ gpu = 1 }} }}'
    pipeline = compile_ok(text.format(limit="max_parallel = 2"))
    assignment = assign_devices(pipeline, 2)
    assert isinstance(assignment, Assignment)
    assert [assignment.of(f"fit-{n}") for n in (1, 2, 3, 4)] == [("0",), ("1",), ("0",), ("1",)]
    shortfall = assign_devices(compile_ok(text.format(limit="")), 2)
    assert isinstance(shortfall, Shortfall) and shortfall.needed == 4


def test_a_window_may_wait_for_an_instance_listed_after_it():
    # Axis values are swept in the order written (3, 1, 2) and instances listed by name
    # (fit-1, fit-2, fit-3): fit-1 waits for fit-3, which is listed after it.
    pipeline = compile_ok('train fit { image = "x:1"  matrix { n = [3, 1, 2] }  max_parallel = 1  nodes = 2\n'
                          '  resources { gpu = 1  memory = 4Gi } }')
    assert [s.name for s in pipeline.stages] == ["fit-1", "fit-2", "fit-3"]
    assignment = assign_devices(pipeline, 2)  # one at a time: the two nodes' GPUs are enough
    assert isinstance(assignment, Assignment)
    assert list(assignment.devices) == ["fit-3", "fit-1", "fit-2"]  # in the order they run
    assert set(assignment.devices.values()) == {(("0",), ("1",))}  # each node a GPU, handed on along the chain
