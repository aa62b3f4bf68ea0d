"""GPUs on one machine: which stages may hold GPUs at the same time, and the
device ids each gets so that no two of those share one.

What may overlap
    A stage finishes before another starts when it is a batch stage the other
    waits for, directly or through others, or, under a matrix's ``max_parallel``,
    the instance its window waits for (:func:`finishes_before`; a serve stage
    never finishes). Any two stages of which neither finishes before the other
    may run at the same time: ``aipc run`` and docker-compose start a stage as
    soon as its own dependencies are done, whatever the level.

How many GPUs that takes
    The most GPUs held at one instant is the heaviest set of stages that may all
    overlap (a maximum-weight antichain of "finishes before"), which a maximum
    flow finds exactly (weighted Dilworth): a unit of flow from ``x`` to ``y``
    is a GPU that ``x`` hands on to ``y`` once it has finished, so the GPUs
    needed are the total demand minus the flow, and the flow itself is an
    assignment that needs no more than that (:func:`assign_devices`).
    ``aipc plan`` reports the same number as its worst case.

Devices are numbered ``"0"`` to ``"N-1"``, the indices Docker's device requests
and ``NVIDIA_VISIBLE_DEVICES`` take. A stage made of several containers (the
replicas of a serve stage) gets devices of its own for each container.

The interface others build on
    :func:`containers` (how many containers run a stage at once) and
    :func:`gpus_per_container` are the only places that say how a stage's GPUs
    are split; :func:`device_demand` is their product. :func:`assign_devices`
    (compose's ``--gpus N``, ``aipc plan --gpus N``) and the runner's GPU pool
    (``aipc run``, runner/scheduler.py ``GpuPool``) both hand out one tuple of
    device ids per container, in container order (``Assignment.devices``, the
    scheduler's ``Devices``). A stage that runs as N containers of another kind
    (the nodes of a multi-node stage) needs only :func:`containers` to count
    them: the assignment, the pool and the one-container-per-tuple outputs follow.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Callable, Iterable

import networkx as nx
from networkx.algorithms.flow import edmonds_karp

from aipc import codes
from aipc.compiler import ir
from aipc.diagnostics import Diagnostics, Label

Weight = Callable[[ir.Stage], int]


def containers(stage: ir.Stage) -> int:
    """How many containers run the stage at once: a serve stage's replicas, a
    multi-node stage's nodes (each with GPUs of its own), else one."""
    return stage.replicas if stage.kind is ir.StageKind.SERVE else stage.node_count


def gpus_per_container(stage: ir.Stage) -> int:
    """The GPUs one container of the stage gets as device ids: NVIDIA and AMD GPUs
    (Intel GPUs are the host's render nodes, not counted; see backends/docker.py)."""
    resources = stage.resources
    return resources.gpu if resources.gpu_vendor is not ir.GpuVendor.INTEL else 0


def device_demand(stage: ir.Stage) -> int:
    return containers(stage) * gpus_per_container(stage)


def waits_for(pipeline: ir.Pipeline) -> dict[str, tuple[str, ...]]:
    """For each stage, what it starts after: its ``after``, and under ``max_parallel``
    the instance its window waits for."""
    out = {}
    for stage in pipeline.stages:
        window = stage.instance.window_predecessor if stage.instance is not None else None
        out[stage.name] = stage.after + ((window,) if window is not None else ())
    return out


def in_dependency_order(pipeline: ir.Pipeline) -> list[ir.Stage]:
    """The stages as listed, except that none comes before what it waits for: a window
    may wait for an instance listed after it (axis values are swept in the order
    written, instances are listed by name). Of the stages that are ready, the one
    listed first comes first, so a listing already in order is kept as it is."""
    index = {stage.name: number for number, stage in enumerate(pipeline.stages)}
    waits = {name: set(names) for name, names in waits_for(pipeline).items()}
    dependants: dict[str, list[str]] = {name: [] for name in waits}
    for name, names in waits.items():
        for dependency in names:
            dependants[dependency].append(name)
    ready = [index[name] for name, names in waits.items() if not names]
    heapq.heapify(ready)
    order = []
    while ready:
        stage = pipeline.stages[heapq.heappop(ready)]
        order.append(stage)
        for dependant in dependants[stage.name]:
            waits[dependant].discard(stage.name)
            if not waits[dependant]:
                heapq.heappush(ready, index[dependant])
    return order


def finishes_before(pipeline: ir.Pipeline) -> dict[str, set[str]]:
    """For each stage, the stages that must have finished before it starts: its
    batch ancestors (a serve stage never finishes, so it never counts), and under
    ``max_parallel`` the instance its window waits for, with its own."""
    waits = waits_for(pipeline)
    before: dict[str, set[str]] = {}
    for stage in in_dependency_order(pipeline):
        names: set[str] = set()
        for dependency in waits[stage.name]:
            names |= before[dependency]
            if pipeline.stage(dependency).is_batch:
                names.add(dependency)
        before[stage.name] = names
    return before


@dataclass(frozen=True)
class Overlap:
    """The heaviest set of stages that may run at one instant, and the flow that
    hands GPUs on between stages that follow each other."""

    total: int  # what ``stages`` hold together
    stages: tuple[ir.Stage, ...]  # in pipeline order
    handed: dict[str, list[tuple[str, int]]]  # stage -> [(earlier stage, GPUs it hands on)]


def heaviest_overlap(pipeline: ir.Pipeline, weight: Weight) -> Overlap:
    """The maximum-weight antichain of "finishes before", by a maximum flow.

    With a source edge to ``L(x)`` and a sink edge from ``R(x)`` of capacity
    ``weight(x)``, and an unbounded edge ``L(x) -> R(y)`` whenever ``x`` finishes
    before ``y`` starts, the heaviest antichain weighs the total minus the maximum
    flow, and is the set of stages whose ``L`` is on the source side of the minimum
    cut and whose ``R`` is on the sink side. Edmonds-Karp searches breadth first in
    insertion order, so the flow, and the devices assigned from it, are the same on
    every run.
    """
    weighted = [s for s in pipeline.stages if weight(s)]
    if not weighted:
        return Overlap(0, (), {})
    before = finishes_before(pipeline)
    network = nx.DiGraph()
    network.add_node("source")
    network.add_node("sink")
    for stage in weighted:
        network.add_edge("source", ("L", stage.name), capacity=weight(stage))
        network.add_edge(("R", stage.name), "sink", capacity=weight(stage))
    for later in weighted:
        for earlier in weighted:
            if earlier.name in before[later.name]:
                network.add_edge(("L", earlier.name), ("R", later.name))  # no capacity: unbounded
    residual = edmonds_karp(network, "source", "sink")
    flow = residual.graph["flow_value"]
    # The sink side of the minimum cut: what reaches the sink through edges that are not
    # saturated. Of the minimum cuts, this one has the largest source side, which makes the
    # antichain the earliest stages of the heaviest (the first instances of a window, not the last).
    reaching = {"sink"}
    frontier = ["sink"]
    while frontier:
        node = frontier.pop()
        for predecessor, edges in residual.pred[node].items():
            if predecessor not in reaching and edges["flow"] < edges["capacity"]:
                reaching.add(predecessor)
                frontier.append(predecessor)
    chosen = tuple(s for s in weighted if ("L", s.name) not in reaching and ("R", s.name) in reaching)
    total = sum(weight(s) for s in weighted) - flow
    assert total == sum(weight(s) for s in chosen), "aipc bug: the minimum cut is not an antichain"
    handed: dict[str, list[tuple[str, int]]] = {}
    for later in weighted:
        for earlier in weighted:
            if earlier.name in before[later.name]:
                units = residual[("L", earlier.name)][("R", later.name)]["flow"]
                if units > 0:
                    handed.setdefault(later.name, []).append((earlier.name, units))
    return Overlap(total, chosen, handed)


@dataclass(frozen=True)
class Assignment:
    """The device ids of each GPU stage, one tuple per container (replica)."""

    count: int  # the GPUs of the machine
    devices: dict[str, tuple[tuple[str, ...], ...]]  # in pipeline order

    def of(self, stage: str) -> tuple[str, ...]:
        """Every device of a stage, its containers' in turn."""
        return tuple(device for ids in self.devices.get(stage, ()) for device in ids)


@dataclass(frozen=True)
class Shortfall:
    """Stages that may run at the same time need more GPUs than the machine has."""

    count: int
    needed: int
    stages: tuple[ir.Stage, ...]

    def describe(self) -> str:
        """`a` and `b` at level 1, `c` at level 2"""
        by_level: dict[int, list[str]] = {}
        for stage in self.stages:
            by_level.setdefault(stage.level, []).append(f"`{stage.name}`")
        return ", ".join(f"{_and(names)} at level {level}" for level, names in sorted(by_level.items()))

    @property
    def message(self) -> str:
        machine = f"more than the {self.count} of this machine"
        if len(self.stages) == 1:
            return f"{self.describe()} needs {self.needed} GPUs, {machine}"
        return f"stages that may run at the same time need {self.needed} GPUs, {machine}: {self.describe()}"


def assign_devices(pipeline: ir.Pipeline, count: int,
                   stages: Iterable[ir.Stage] | None = None) -> Assignment | Shortfall:
    """Device ids ``"0"``..``"count-1"`` for every GPU stage (of ``stages``, by
    default all) so that stages that may overlap never share one; or the
    stages that together need more than ``count``."""
    chosen = {stage.name for stage in (pipeline.stages if stages is None else stages)}

    def weight(stage: ir.Stage) -> int:
        return device_demand(stage) if stage.name in chosen else 0

    overlap = heaviest_overlap(pipeline, weight)
    if overlap.total > count:
        return Shortfall(count, overlap.total, overlap.stages)
    held: dict[str, list[str]] = {}  # what each stage may still hand on, once it has finished
    fresh = iter(str(number) for number in range(count))
    devices: dict[str, tuple[tuple[str, ...], ...]] = {}
    for stage in in_dependency_order(pipeline):  # every stage that hands GPUs on is done first
        if not weight(stage):
            continue
        got: list[str] = []
        for earlier, units in overlap.handed.get(stage.name, ()):
            got += held[earlier][:units]
            del held[earlier][:units]
        while len(got) < weight(stage):
            got.append(next(fresh))
        got.sort(key=int)
        held[stage.name] = list(got)
        size = gpus_per_container(stage)
        devices[stage.name] = tuple(tuple(got[i:i + size]) for i in range(0, len(got), size))
    return Assignment(count, devices)


def report_shortfall(shortfall: Shortfall, sink: Diagnostics) -> None:
    """B150 at the first stage's GPUs, naming every stage that may run with it."""
    first, *others = shortfall.stages
    sink.error(codes.TOO_MANY_GPUS, first.span_of("gpu"), shortfall.message,
               label=f"{device_demand(first)} of them here",
               related=[Label(stage.span_of("gpu"), f"{device_demand(stage)} for `{stage.name}`")
                        for stage in others[:5]],
               help="order them with `after`, ask for fewer GPUs, or run the pipeline with `aipc run`, "
               "which starts a stage once its GPUs are free")


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
