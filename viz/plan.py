"""The execution plan: what runs together, and what it costs in GPUs, CPU and memory.

Levels
    A stage's level is the length of the longest chain of dependencies before
    it (``Stage.level`` in the IR): stages without ``after`` are level 0, and a
    stage is one level after the latest of its dependencies. No stage of a
    level depends on another stage of the same level, so each level's stages
    can run together once the earlier levels are done. A level is not a
    barrier, though: ``aipc run`` and ``aipc apply`` start a stage as soon as
    its own dependencies have finished, so a stage may overlap stages of other
    levels when one branch of the graph is quicker than another (see *worst
    case* below).

Serve stages
    A serve stage starts at its level and keeps running: its resources count
    in its own level and in every later level (as ``serving``). A serve stage
    needs its resources once per replica.

Multi-node stages
    A stage with ``nodes = N`` needs its resources N times, once per node.

Totals
    Per level, the sum of requests and of limits of every stage running in it.
    A stage that sets no ``cpu`` (or ``memory``) reserves nothing and has no
    limit; it is not counted, and the level lists it as ``unset``. GPUs are
    counted per vendor: they are not interchangeable.

Peak GPU demand
    The largest GPU total of any level (the first such level on a tie).

Worst case
    The most GPUs that stages could hold at the same instant with no barrier
    between levels: the heaviest set of stages of which no one must finish
    before another starts (a maximum-weight antichain of "finishes before"),
    computed exactly with a minimum cut. It is at least the level peak and is
    reported when it is larger.

Writes
    The volumes mounted without ``readonly`` by a stage running in the level.

Matrix stages
    Each instance of a matrix stage is a stage of the plan (all of them at the
    same level), but the table shows a matrix stage as one row with its
    number of instances and axes (``--instances`` lists them). Under
    ``max_parallel = N`` only N instances run at once, so a level's totals count
    its N heaviest; the worst case sees the instances run in N chains, each
    after the one N places before it, as docker-compose runs them and as
    ``aipc run`` and ``aipc apply`` start them.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass

from aipc.backends.devices import Assignment, Shortfall, assign_devices, heaviest_overlap
from aipc.compiler import ir
from aipc.compiler.units import format_bytes, format_cpu
from aipc.viz.graph import replica_text


@dataclass(frozen=True, slots=True)
class Demand:
    """What a set of running stages asks for, requests and limits apart."""

    gpus: tuple[tuple[ir.GpuVendor, int], ...] = ()  # per vendor, in the vendor enum's order
    cpu_request: int = 0  # millicores
    cpu_limit: int = 0
    memory_request: int = 0  # bytes
    memory_limit: int = 0
    cpu_unset: tuple[str, ...] = ()  # stages that set no cpu
    memory_unset: tuple[str, ...] = ()
    stages: int = 0  # how many stages it adds up

    @property
    def gpu_total(self) -> int:
        return sum(count for _, count in self.gpus)


@dataclass(frozen=True, slots=True)
class Level:
    index: int
    stages: tuple[ir.Stage, ...]  # the stages that start at this level
    serving: tuple[ir.Stage, ...]  # serve stages started earlier, still running
    demand: Demand
    writes: tuple[str, ...]  # volume names and outputs (`model.weights`), sorted

    @property
    def running(self) -> tuple[ir.Stage, ...]:
        return self.stages + self.serving


@dataclass(frozen=True, slots=True)
class GpuPeak:
    gpus: int
    level: int | None  # None for the worst case, which spans levels
    stages: tuple[str, ...]
    by_vendor: tuple[tuple[ir.GpuVendor, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    pipeline: str
    levels: tuple[Level, ...]
    peak: GpuPeak
    worst_case: GpuPeak
    matrices: tuple[ir.Matrix, ...] = ()
    devices: Assignment | Shortfall | None = None  # on one machine of `--gpus N` GPUs


def replicas(stage: ir.Stage) -> int:
    """How many times a stage's resources count: a serve stage's replicas, a
    multi-node stage's nodes (each its own pod or container), else once."""
    return stage.replicas if stage.kind is ir.StageKind.SERVE else stage.node_count


def stage_gpus(stage: ir.Stage) -> int:
    return stage.resources.gpu * replicas(stage)


def demand_of(stages: tuple[ir.Stage, ...]) -> Demand:
    gpus = {vendor: 0 for vendor in ir.GpuVendor}
    cpu_request = cpu_limit = memory_request = memory_limit = 0
    cpu_unset: list[str] = []
    memory_unset: list[str] = []
    for stage in stages:
        count = replicas(stage)
        resources = stage.resources
        gpus[resources.gpu_vendor] += resources.gpu * count
        if resources.cpu is None:
            cpu_unset.append(stage.name)
        else:
            cpu_request += resources.cpu.request * count
            cpu_limit += resources.cpu.limit * count
        if resources.memory is None:
            memory_unset.append(stage.name)
        else:
            memory_request += resources.memory.request * count
            memory_limit += resources.memory.limit * count
    return Demand(tuple((v, n) for v, n in gpus.items() if n), cpu_request, cpu_limit,
                  memory_request, memory_limit, tuple(cpu_unset), tuple(memory_unset), len(stages))


def _weight(stage: ir.Stage) -> tuple[int, int, int]:
    resources = stage.resources
    return (stage_gpus(stage), resources.cpu.limit if resources.cpu else 0,
            resources.memory.limit if resources.memory else 0)


def counted(stages: tuple[ir.Stage, ...]) -> tuple[ir.Stage, ...]:
    """The stages whose demands add up at one instant: all of them, but of a matrix
    stage with ``max_parallel = N`` only N instances, the heaviest (GPUs, then cpu
    and memory limits; the first on a tie)."""
    limited: dict[str, list[ir.Stage]] = {}
    for stage in stages:
        if stage.instance is not None and stage.instance.matrix.max_parallel is not None:
            limited.setdefault(stage.group, []).append(stage)
    if not limited:
        return stages
    left_out: set[str] = set()
    for group in limited.values():
        limit = group[0].instance.matrix.max_parallel
        left_out |= {s.name for s in sorted(group, key=_weight, reverse=True)[limit:]}
    return tuple(stage for stage in stages if stage.name not in left_out)


def plan_pipeline(pipeline: ir.Pipeline, gpus: int | None = None) -> Plan:
    by_level: dict[int, list[ir.Stage]] = {}
    for stage in pipeline.stages:  # topological, ties by name: the order within a level
        by_level.setdefault(stage.level, []).append(stage)
    levels: list[Level] = []
    serving: list[ir.Stage] = []
    for index in sorted(by_level):
        stages = tuple(by_level[index])
        running = stages + tuple(serving)
        writes = sorted({m.volume.name for s in running for m in s.mounts if not m.readonly}
                        | {f"{s.group}.{o.name}" for s in stages for o in s.outputs})  # and its outputs
        levels.append(Level(index, stages, tuple(serving), demand_of(counted(running)), tuple(writes)))
        serving += [s for s in stages if s.kind is ir.StageKind.SERVE]
    peak = GpuPeak(0, None, ())
    for level in levels:
        if level.demand.gpu_total > peak.gpus:
            names = tuple(s.name for s in counted(level.running) if s.resources.gpu)
            peak = GpuPeak(level.demand.gpu_total, level.index, names, level.demand.gpus)
    devices = assign_devices(pipeline, gpus) if gpus is not None else None
    return Plan(pipeline.name, tuple(levels), peak, worst_case_gpus(pipeline), pipeline.matrices, devices)


def worst_case_gpus(pipeline: ir.Pipeline) -> GpuPeak:
    """The heaviest set of GPU stages that may all run at one instant (see
    :mod:`aipc.backends.devices`, which assigns GPUs on one machine from the same
    analysis)."""
    overlap = heaviest_overlap(pipeline, stage_gpus)
    return GpuPeak(overlap.total, None, tuple(s.name for s in overlap.stages), demand_of(overlap.stages).gpus)


# ------------------------------------------------------------------ rendering


def gpu_text(gpus: tuple[tuple[ir.GpuVendor, int], ...]) -> str:
    return ", ".join(f"{count} {vendor.value}" for vendor, count in gpus) or "-"


def _pair(request: int, limit: int, unset: tuple[str, ...], running: int, fmt) -> str:
    if len(unset) == running:
        return "-"
    text = fmt(request) if request == limit else f"{fmt(request)} / {fmt(limit)}"
    return text + (" *" if unset else "")


def cpu_text(level: Level) -> str:
    d = level.demand
    return _pair(d.cpu_request, d.cpu_limit, d.cpu_unset, d.stages, format_cpu)


def memory_text(level: Level) -> str:
    d = level.demand
    return _pair(d.memory_request, d.memory_limit, d.memory_unset, d.stages, format_bytes)


def stage_text(stage: ir.Stage, serving: bool = False) -> str:
    if serving:
        return f"{stage.name} (serving)"
    if replica_text(stage):
        return f"{stage.name} (serve {replica_text(stage)})"
    if stage.nodes is not None:
        return f"{stage.name} ({stage.kind.value} x{stage.nodes} nodes)"
    return f"{stage.name} ({stage.kind.value})"


def matrix_text(matrix: ir.Matrix, stage: ir.Stage, count: int, serving: bool = False) -> str:
    """A matrix stage as one row: ``model (train, 5 instances of lr x seed, 2 at a time)``."""
    what = "serving" if serving else (f"serve {replica_text(stage)}" if replica_text(stage)
                                      else f"{stage.kind.value} x{stage.nodes} nodes" if stage.nodes is not None
                                      else stage.kind.value)
    total = len(matrix.instances)
    shown = f"{count} of {total}" if count != total else str(total)
    limit = f", {matrix.max_parallel} at a time" if matrix.max_parallel is not None else ""
    return f"{matrix.stage} ({what}, {shown} instance{'s' if total != 1 else ''} of {' x '.join(matrix.axes)}{limit})"


def stage_texts(stages: tuple[ir.Stage, ...], serving: bool = False, instances: bool = False) -> list[str]:
    """One line per stage, or per matrix stage unless ``instances``."""
    if instances:
        return [stage_text(s, serving) for s in stages]
    counts: dict[str, int] = {}
    for stage in stages:
        counts[stage.group] = counts.get(stage.group, 0) + 1
    out, shown = [], set()
    for stage in stages:
        if stage.instance is None:
            out.append(stage_text(stage, serving))
        elif stage.group not in shown:
            shown.add(stage.group)
            out.append(matrix_text(stage.instance.matrix, stage, counts[stage.group], serving))
    return out


def names_text(names: tuple[str, ...], plan: Plan, instances: bool = False) -> str:
    """Stage names for a note, a matrix stage's instances as ``model (2 of 5 instances)``."""
    if instances or not plan.matrices:
        return ", ".join(names)
    group = {name: matrix for matrix in plan.matrices for name in matrix.instances}
    counts: dict[str, int] = {}
    for name in names:
        if name in group:
            counts[group[name].stage] = counts.get(group[name].stage, 0) + 1
    out: list[str] = []
    for name in names:
        matrix = group.get(name)
        if matrix is None:
            out.append(name)
        elif matrix.stage in counts:
            count, total = counts.pop(matrix.stage), len(matrix.instances)
            out.append(f"{matrix.stage} ({count} of {total} instances)" if count != total
                       else f"{matrix.stage} (all {total} instances)")
    return ", ".join(out)


NOTE_WIDTH = 100
HEADERS = ("level", "stages", "GPU", "CPU", "memory", "writes")


def rows(plan: Plan, instances: bool = False) -> list[tuple[str, ...]]:
    """One row per level; multi-line cells are joined with newlines."""
    out = []
    for level in plan.levels:
        names = (stage_texts(level.stages, instances=instances)
                 + stage_texts(level.serving, serving=True, instances=instances))
        out.append((str(level.index), "\n".join(names), gpu_text(level.demand.gpus), cpu_text(level),
                    memory_text(level), "\n".join(level.writes) or "-"))
    return out


def title(plan: Plan) -> str:
    instances = sum(len(matrix.instances) for matrix in plan.matrices)
    stages = sum(len(level.stages) for level in plan.levels) - instances + len(plan.matrices)
    swept = (f" ({len(plan.matrices)} matrix stage{'s' if len(plan.matrices) != 1 else ''}, "
             f"{instances} instance{'s' if instances != 1 else ''})") if plan.matrices else ""
    return (f"{plan.pipeline}: {stages} stage{'s' if stages != 1 else ''}{swept} in "
            f"{len(plan.levels)} level{'s' if len(plan.levels) != 1 else ''}")


def gpu_count_text(gpus: int, by_vendor: tuple[tuple[ir.GpuVendor, int], ...]) -> str:
    if len(by_vendor) == 1:
        return f"{gpus} {by_vendor[0][0].value} GPU{'s' if gpus != 1 else ''}"
    return f"{gpus} GPUs ({gpu_text(by_vendor)})"


def note_lines(plan: Plan, instances: bool = False) -> list[str]:
    peak = plan.peak
    if peak.gpus:
        lines = [f"peak GPU demand: {gpu_count_text(peak.gpus, peak.by_vendor)} at level {peak.level} "
                 f"({names_text(peak.stages, plan, instances)})"]
    else:
        lines = ["peak GPU demand: none (no stage asks for a GPU)"]
    worst = plan.worst_case
    if worst.gpus > peak.gpus:
        lines.append(f"worst case: {gpu_count_text(worst.gpus, worst.by_vendor)} at once if "
                     + names_text(worst.stages, plan, instances) + " overlap: a stage starts as soon as its own "
                     "dependencies finish, so stages of different levels can run together")
    if any(matrix.max_parallel is not None for matrix in plan.matrices):
        lines.append("a matrix stage with max_parallel counts only as many instances as may run at once.")
    groups = any(stage.nodes is not None for level in plan.levels for stage in level.stages)
    lines.append("CPU and memory: request / limit (one value when equal), summed over the stages "
                 "running in the level; a serve stage counts once per replica"
                 + (", an autoscaled one (x MIN..MAX) for its minimum" if _autoscaled(plan) else "")
                 + (", a multi-node stage once per node" if groups else "") + ".")
    if any(level.serving for level in plan.levels):
        lines.append("serve stages keep running once started: they count in every later level (serving).")
    return lines


def device_lines(plan: Plan) -> list[str]:
    """The GPUs each stage gets on one machine (`--gpus N`), one line per stage."""
    devices = plan.devices
    if devices is None:
        return []
    if isinstance(devices, Shortfall):
        return [f"on one machine with {devices.count} GPU{'s' if devices.count != 1 else ''}: {devices.message}"]
    if not devices.devices:
        return [f"on one machine with {devices.count} GPUs: no stage asks for a GPU it could be given"]
    width = max(len(name) for name in devices.devices)
    lines = [f"on one machine with {devices.count} GPU{'s' if devices.count != 1 else ''}, the devices of each "
             "GPU stage (stages that may run at the same time never share one):"]
    for name, containers in devices.devices.items():
        if len(containers) == 1:
            text = ",".join(containers[0])
        else:
            text = "; ".join(f"replica {number}: {','.join(ids)}" for number, ids in enumerate(containers, 1))
        lines.append(f"  {name.ljust(width)}  {text}")
    return lines


def _autoscaled(plan: Plan) -> bool:
    return any(stage.autoscale is not None for level in plan.levels for stage in level.stages)


def legend(plan: Plan, instances: bool = False) -> list[tuple[str, str]]:
    """What `*` and `-` in the CPU and memory columns mean, as (mark, text), only for
    the marks the table shows."""
    unset = _unset_stages(plan, instances)
    cells = [text for level in plan.levels for text in (cpu_text(level), memory_text(level))]
    entries = []
    if any(text.endswith(" *") for text in cells):
        entries.append(("*", "a total that leaves out stages which set no cpu or memory"))
    if "-" in cells:
        entries.append(("-", "none; as a CPU or memory total: no stage of the level sets one"))
    if unset:
        entries.append(("", "not set: " + ", ".join(unset) + "; on Kubernetes such stages get a default "
                            "request and limit (`aipc compile -t k8s` shows it)"))
    return entries


def _unset_stages(plan: Plan, instances: bool = False) -> list[str]:
    """Each stage (a matrix stage once, unless ``instances``) that sets no cpu or memory."""
    name_of = {s.name: (s.name if instances else s.group) for level in plan.levels for s in level.stages}
    missing: dict[str, set[str]] = {}
    for level in plan.levels:
        for name in level.demand.cpu_unset:
            missing.setdefault(name_of[name], set()).add("cpu")
        for name in level.demand.memory_unset:
            missing.setdefault(name_of[name], set()).add("memory")
    order = list(dict.fromkeys(name_of[s.name] for level in plan.levels for s in level.stages))
    return [name + " (" + " and ".join(r for r in ("cpu", "memory") if r in missing[name]) + ")"
            for name in order if name in missing]


def render_text(plan: Plan, instances: bool = False) -> str:
    """A plain, deterministic table for pipes, files and tests; each instance of a
    matrix stage on its own line with ``instances``."""
    table = [HEADERS, *rows(plan, instances)]
    cells = [[cell.split("\n") for cell in row] for row in table]
    widths = [max(len(line) for row in cells for line in row[i]) for i in range(len(HEADERS))]
    out = [title(plan), ""]
    for number, row in enumerate(cells):
        height = max(len(cell) for cell in row)
        for line in range(height):
            parts = [(cell[line] if line < len(cell) else "").ljust(widths[i]) for i, cell in enumerate(row)]
            out.append("  ".join(parts).rstrip())
        if number == 0:
            out.append("  ".join("-" * width for width in widths))
    out.append("")
    for line in note_lines(plan, instances):
        out += textwrap.wrap(line, width=NOTE_WIDTH, subsequent_indent="  ", break_on_hyphens=False)
    for mark, text in legend(plan, instances):  # `*  text`, its continuation lines under the text
        out += textwrap.wrap(text, width=NOTE_WIDTH, initial_indent=mark.ljust(3), subsequent_indent="   ",
                             break_on_hyphens=False)
    if plan.devices is not None:
        out.append("")
        out += device_lines(plan)
    return "\n".join(out) + "\n"


def render_rich(plan: Plan, console, instances: bool = False) -> None:
    """The same table drawn by rich, for a terminal."""
    from rich.table import Table

    table = Table(title=title(plan), title_justify="left", show_lines=True)
    for header in HEADERS:
        justify = "right" if header in ("level", "GPU", "CPU", "memory") else "left"
        table.add_column(header, justify=justify, no_wrap=header != "stages")
    for row, level in zip(rows(plan, instances), plan.levels):
        style = "bold" if plan.peak.gpus and level.index == plan.peak.level else None
        table.add_row(*row, style=style)
    console.print(table)
    for line in note_lines(plan, instances):
        console.print(line, highlight=False, markup=False)
    for mark, text in legend(plan, instances):
        console.print(mark.ljust(3) + text, highlight=False, markup=False)
    for line in device_lines(plan):
        console.print(line, highlight=False, markup=False)


def to_json(plan: Plan) -> str:
    def peak(p: GpuPeak, **level) -> dict:
        return {"gpus": p.gpus, **level, "by_vendor": {v.value: n for v, n in p.by_vendor},
                "stages": list(p.stages)}

    levels = []
    for level in plan.levels:
        d = level.demand
        levels.append({
            "level": level.index,
            "stages": [s.name for s in level.stages],
            "serving": [s.name for s in level.serving],
            "gpus": {"total": d.gpu_total, **{v.value: n for v, n in d.gpus}},
            "cpu_millicores": {"request": d.cpu_request, "limit": d.cpu_limit, "unset": list(d.cpu_unset)},
            "memory_bytes": {"request": d.memory_request, "limit": d.memory_limit, "unset": list(d.memory_unset)},
            "writes": list(level.writes),
        })
    data = {"pipeline": plan.pipeline, "levels": levels, "peak_gpu": peak(plan.peak, level=plan.peak.level),
            "worst_case_gpu": peak(plan.worst_case)}
    if plan.matrices:  # the stages above are instances; each matrix stage, with its own
        data["matrices"] = [{"stage": m.stage, "axes": list(m.axes), "instances": list(m.instances),
                             "max_parallel": m.max_parallel} for m in plan.matrices]
    if isinstance(plan.devices, Assignment):
        data["gpu_devices"] = {"gpus": plan.devices.count,
                               "stages": {name: [list(ids) for ids in containers]
                                          for name, containers in plan.devices.devices.items()}}
    elif isinstance(plan.devices, Shortfall):
        data["gpu_devices"] = {"gpus": plan.devices.count, "needed": plan.devices.needed,
                               "overlapping": [stage.name for stage in plan.devices.stages]}
    return json.dumps(data, indent=2) + "\n"
