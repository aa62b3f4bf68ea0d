"""The dependency graph: cycles, order, and volume races.

Edges run in execution order, from a dependency to the stage that waits for
it. Reachability questions ("is the writer upstream of the reader?") use one
bitset of ancestors per stage, built in a single pass over the topological
order, so the checks stay linear in practice even for thousands of stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import networkx as nx

from aipc import codes
from aipc.diagnostics import Diagnostics, Label, Span


@dataclass(frozen=True, slots=True)
class Use:
    """One stage's mount of one volume."""

    stage: str
    readonly: bool
    span: Span
    group: str | None = None  # for an instance, its matrix stage (whose mount it is)


@dataclass(frozen=True, slots=True)
class Node:
    """What the graph needs to know of a stage."""

    name: str
    batch: bool
    after: tuple[tuple[str, Span], ...]  # dependencies as written, with their spans
    span: Span


def dependency_graph(nodes: Mapping[str, Node]) -> nx.DiGraph:
    graph = nx.DiGraph()
    for name in sorted(nodes):
        graph.add_node(name, batch=nodes[name].batch)
    for name in sorted(nodes):
        for dependency, span in nodes[name].after:
            if dependency in nodes and not graph.has_edge(dependency, name):
                graph.add_edge(dependency, name, span=span)
    return graph


def check_cycles(graph: nx.DiGraph, sink: Diagnostics) -> bool:
    """Report one cycle per strongly connected component; True when there is none."""
    acyclic = True
    components = [c for c in nx.strongly_connected_components(graph)
                  if len(c) > 1 or graph.has_edge(next(iter(c)), next(iter(c)))]
    for component in sorted(components, key=min):
        acyclic = False
        cycle = _cycle_through(graph, component)
        # Print it following `after`: each stage waits for the next one.
        names = [cycle[0]] + list(reversed(cycle[1:])) + [cycle[0]]
        edges = [(names[i + 1], names[i]) for i in range(len(names) - 1)]  # (dependency, stage)
        spans = [graph.edges[edge]["span"] for edge in edges]
        sink.error(
            codes.DEPENDENCY_CYCLE, spans[0],
            "dependency cycle: " + " -> ".join(names),
            label=f"`{names[0]}` waits for `{names[1]}`",
            related=[Label(span, f"`{stage}` waits for `{dependency}`")
                     for (dependency, stage), span in zip(edges[1:], spans[1:])],
            help="each stage waits for the next one; remove one of these `after` entries",
        )
    return acyclic


def _cycle_through(graph: nx.DiGraph, component: set[str]) -> list[str]:
    """A simple cycle in execution order, starting at the component's smallest name."""
    start = min(component)
    if graph.has_edge(start, start):
        return [start]
    sub = graph.subgraph(component)
    path = nx.shortest_path(sub, start, _closest_predecessor(sub, start))
    return path


def _closest_predecessor(sub: nx.DiGraph, start: str) -> str:
    lengths = nx.single_source_shortest_path_length(sub, start)
    return min(sub.predecessors(start), key=lambda p: (lengths.get(p, len(sub)), p))


def execution_order(graph: nx.DiGraph) -> list[str]:
    """Topological order, ties broken by name."""
    return list(nx.lexicographical_topological_sort(graph))


def levels(graph: nx.DiGraph, order: list[str]) -> dict[str, int]:
    """The length of the longest chain of dependencies before each stage."""
    level: dict[str, int] = {}
    for name in order:
        level[name] = max((level[p] + 1 for p in graph.predecessors(name)), default=0)
    return level


class Reachability:
    """Ancestor sets as integers used as bitsets, indexed by topological position."""

    def __init__(self, graph: nx.DiGraph, order: list[str]) -> None:
        self.graph = graph
        self.index = {name: i for i, name in enumerate(order)}
        self.ancestors: dict[str, int] = {}
        for name in order:
            bits = 0
            for parent in graph.predecessors(name):
                bits |= self.ancestors[parent] | (1 << self.index[parent])
            self.ancestors[name] = bits

    def upstream(self, first: str, second: str) -> bool:
        """Whether ``first`` is a (transitive) dependency of ``second``."""
        return bool(self.ancestors[second] >> self.index[first] & 1)

    def finishes_before(self, first: str, second: str) -> bool:
        """Whether ``first`` is done before ``second`` starts (a service is never done)."""
        return self.graph.nodes[first]["batch"] and self.upstream(first, second)

    def mask(self, names: Iterable[str]) -> int:
        bits = 0
        for name in names:
            bits |= 1 << self.index[name]
        return bits


def check_volume_use(reach: Reachability, volume: str, span: Span, uses: list[Use],
                     single_writer: bool, sink: Diagnostics, serial: Mapping[str, str] | None = None) -> None:
    """Warn about readers that may run before a writer, and concurrent writers.

    The instances of a matrix stage share their mounts: their readings are reported
    once per mount, naming the stage. ``serial`` maps the instances of matrix stages
    that run one at a time (``max_parallel = 1``) to their stage: they never write
    together.
    """
    writers = sorted({u.stage for u in uses if not u.readonly}, key=reach.index.__getitem__)
    if not writers:
        return
    by_position = {reach.index[w]: w for w in writers}
    writer_mask = reach.mask(writers)
    writer_use = {u.stage: u for u in uses if not u.readonly}
    readings: dict[Span, list[Use]] = {}
    for use in uses:
        if use.readonly and use.stage not in writer_use:
            readings.setdefault(use.span, []).append(use)
    for readers in readings.values():
        not_upstream = 0
        for use in readers:
            not_upstream |= writer_mask & ~reach.ancestors[use.stage]
        if not not_upstream:
            continue
        early = [by_position[i] for i in sorted(by_position) if not_upstream >> i & 1]
        _report_early_read(reach, volume, readers, early, writer_use, writers, sink)
    if not single_writer or len(writers) < 2:
        return
    serial = serial or {}
    concurrent: list[str] = []
    for first, second in zip(writers, writers[1:]):
        if serial.get(first) is not None and serial.get(first) == serial.get(second):
            continue  # instances of one matrix stage that runs them one at a time
        if not reach.finishes_before(first, second):
            for name in (first, second):
                if name not in concurrent:
                    concurrent.append(name)
    if concurrent:
        swept = _unique(writer_use[w].group for w in concurrent if writer_use[w].group is not None)
        sink.warning(
            codes.CONCURRENT_WRITERS, span,
            f"`{volume}` is a single-writer (rwo) volume, but {_names(concurrent, conjunction='and')} "
            "may write it at the same time",
            label="declared here",
            related=_writer_labels(concurrent, writer_use, "writes it"),
            help="order the writers with `after`, mount all but one `readonly`, or declare it `access = rwx`"
            + (f"; instances of {_names(swept)} run one at a time with `max_parallel = 1`" if swept else ""),
        )


def _report_early_read(reach: Reachability, volume: str, readers: list[Use], early: list[str],
                       writer_use: Mapping[str, Use], writers: list[str], sink: Diagnostics) -> None:
    first = readers[0]
    reader = first.group or first.stage
    many = first.group is not None
    declared = _unique(writer_use[w].group or w for w in early)
    # A writer stage some instance of which the reader already waits for: pairing
    # makes each instance wait for its own only.
    waited = [d for d in declared
              if reach.ancestors[first.stage] & reach.mask(w for w in writers if (writer_use[w].group or w) == d)]
    unwaited = [d for d in declared if d not in waited]
    if unwaited:
        help = f"add {_names(unwaited, conjunction='and', limit=3)} to the `after` of `{reader}`"
    else:
        help = (f"each instance of `{reader}` waits only for its own instance of {_names(waited)}: let each "
                f"write a directory of its own on `{volume}` (`${{stage.name}}` names the instance), and read only that")
    sink.warning(
        codes.READ_BEFORE_WRITE, first.span,
        f"{'instances of ' if many else ''}`{reader}` {'read' if many else 'reads'} `{volume}`, which "
        f"{_names(early)} {'writes' if len(early) == 1 else 'write'}, but may run before "
        f"{'it' if len(early) == 1 else 'them'}",
        label="mounted readonly here",
        related=_writer_labels(early, writer_use, f"writes `{volume}` here"),
        help=help,
    )


def _writer_labels(names: list[str], uses: Mapping[str, Use], what: str) -> list[Label]:
    """Where the first three writers mount the volume: once per mount, naming the stage as written."""
    labels: dict[Span, Label] = {}
    for name in names:
        use = uses[name]
        if use.span not in labels and len(labels) < 3:
            labels[use.span] = Label(use.span, f"`{use.group or name}` {what}")
    return list(labels.values())


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _names(names: list[str], conjunction: str = "and", limit: int = 5) -> str:
    quoted = [f"`{n}`" for n in names[:limit]]
    if len(names) > limit:
        return ", ".join(quoted) + f" {conjunction} {len(names) - limit} more"
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + f" {conjunction} " + quoted[-1]
