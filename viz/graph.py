"""The pipeline as a picture: Graphviz DOT and Mermaid text from the IR.

Both renderers draw the same graph:

- one node per stage, its shape and colour telling the kind (data, train,
  eval, serve), its label the name, the kind, a serve stage's port and
  replicas, a multi-node stage's nodes (``train x4``), and the GPUs it asks
  for (count, vendor, model; per node or replica) — a GPU stage also
  gets a thick border in its vendor's colour;
- one node per volume (a cylinder) with its size, access mode and class;
- a solid arrow from each dependency to the stage that waits for it, labelled
  with the outputs of the dependency that the stage reads (``input``);
- a mount edge per ``mount``: a stage that may write a volume points at it
  (solid), a volume mounted ``readonly`` points at its reader (dashed), each
  labelled with the mount path.

A matrix stage is one node for all of its instances, labelled with their
number, axes and ``max_parallel``; an edge between two matrix stages whose
instances pair one to one says so (``one to one``).

Output is deterministic: stages in the IR's topological order, volumes by
name, edges in the order of their stages and mounts. User text (mount paths,
GPU models, storage classes) is escaped for each language.
"""

from __future__ import annotations

from dataclasses import dataclass

from aipc.compiler import ir
from aipc.compiler.units import format_bytes


@dataclass(frozen=True, slots=True)
class KindStyle:
    dot_shape: str
    dot_style: str
    fill: str
    stroke: str
    mermaid_open: str  # Mermaid's node shape brackets around the quoted label
    mermaid_close: str


KIND_STYLES: dict[ir.StageKind, KindStyle] = {
    ir.StageKind.DATA: KindStyle("parallelogram", "filled", "#dbeafe", "#1d4ed8", "[/", "/]"),
    ir.StageKind.TRAIN: KindStyle("box", "filled", "#ffedd5", "#c2410c", "[", "]"),
    ir.StageKind.EVAL: KindStyle("hexagon", "filled", "#ede9fe", "#6d28d9", "{{", "}}"),
    ir.StageKind.SERVE: KindStyle("box", "rounded,filled", "#dcfce7", "#15803d", "([", "])"),
}
VOLUME_FILL, VOLUME_STROKE = "#f3f4f6", "#4b5563"
GPU_COLORS = {ir.GpuVendor.NVIDIA: "#76b900", ir.GpuVendor.AMD: "#ed1c24", ir.GpuVendor.INTEL: "#0071c5"}
FONT = "Helvetica"
PAIRED = "one to one"  # the label of an edge between matrix stages whose instances pair


# ------------------------------------------------------------------ what is drawn


def replica_text(stage: ir.Stage) -> str | None:
    """``x3``, or ``x2..10`` for an autoscaled service; None for one replica."""
    if stage.autoscale is not None:
        return f"x{stage.autoscale.minimum}..{stage.autoscale.maximum}"
    return f"x{stage.replicas}" if stage.kind is ir.StageKind.SERVE and stage.replicas > 1 else None


def drawn_stages(pipeline: ir.Pipeline) -> list[ir.Stage]:
    """The stages drawn: each stage, and a matrix stage's first instance for all of them."""
    return [stage for stage in pipeline.stages
            if stage.instance is None or stage.instance.index == 0]


def stage_lines(stage: ir.Stage) -> list[str]:
    """The lines of a stage's label: name, kind, service details, a matrix stage's
    instances, GPUs."""
    lines = [stage.group]
    kind = stage.kind.value
    if stage.kind is ir.StageKind.SERVE:
        kind += f" :{stage.port}" if stage.port else ""
        if replica_text(stage):
            kind += f" {replica_text(stage)}"
    elif stage.nodes is not None:
        kind += f" x{stage.nodes}"
    lines.append(kind)
    if stage.instance is not None:
        matrix = stage.instance.matrix
        count = len(matrix.instances)
        lines.append(f"{count} instance{'s' if count != 1 else ''} of {' x '.join(matrix.axes)}"
                     + (f", {matrix.max_parallel} at a time" if matrix.max_parallel is not None else ""))
    resources = stage.resources
    if resources.gpu:
        gpu = f"{resources.gpu} GPU {resources.gpu_vendor.value}"
        if replica_text(stage):
            gpu += " per replica"
        elif stage.nodes is not None and stage.nodes > 1:
            gpu += " per node"
        lines.append(gpu)
        if resources.gpu_model:
            lines.append(resources.gpu_model)
    return lines


def volume_lines(volume: ir.Volume, mounted: bool = True) -> list[str]:
    if volume.kind is ir.VolumeKind.HOST:
        detail = f"host {volume.host_path}"
    elif volume.kind is ir.VolumeKind.CLAIM:
        detail = f"claim {volume.claim}"
    else:
        detail = f"{format_bytes(volume.size or 0)} {volume.access.value}"
        if volume.storage_class:
            detail += f" {volume.storage_class}"
    return [volume.name, detail] + ([] if mounted else ["not mounted"])


def mounted_volumes(pipeline: ir.Pipeline) -> set[str]:
    return {mount.volume.name for stage in pipeline.stages for mount in stage.mounts}


@dataclass(frozen=True, slots=True)
class MountEdge:
    stage: str
    volume: str
    path: str
    readonly: bool


def mount_edges(pipeline: ir.Pipeline) -> list[MountEdge]:
    """One edge per mount, a matrix stage's once (its instances mount alike, at
    paths that may differ by their values: the first instance's is shown)."""
    return [MountEdge(stage.group, mount.volume.name, mount.path, mount.readonly)
            for stage in drawn_stages(pipeline) for mount in stage.mounts]


def dependency_edges(pipeline: ir.Pipeline) -> list[tuple[str, str]]:
    """(dependency, stage) by the names as written: the edges between instances of
    two matrix stages, or to every instance of one, are one edge."""
    edges: dict[tuple[str, str], None] = {}
    for stage in pipeline.stages:
        for dependency in stage.after:
            edges[(pipeline.stage(dependency).group, stage.group)] = None
    return list(edges)


def edge_lines(pipeline: ir.Pipeline) -> dict[tuple[str, str], list[str]]:
    """The label of each dependency edge that says something: ``one to one`` between
    paired matrix stages, and the outputs read along it."""
    lines: dict[tuple[str, str], list[str]] = {}
    for dependency, stage in dependency_edges(pipeline):
        if paired(pipeline, dependency, stage):
            lines[(dependency, stage)] = [PAIRED]
    for stage in drawn_stages(pipeline):
        for put in stage.inputs:
            label = lines.setdefault((put.stage, stage.group), [])
            if put.output not in label:
                label.append(put.output)
    return lines


def paired(pipeline: ir.Pipeline, dependency: str, stage: str) -> bool:
    """Whether the instances of matrix stage ``stage`` wait one to one for those of ``dependency``."""
    return any(matrix.stage == stage and dependency in matrix.pairs for matrix in pipeline.matrices)


# ------------------------------------------------------------------ Graphviz DOT


def dot_string(text: str) -> str:
    """A DOT double-quoted string; backslashes are escaped so that user text never
    becomes one of DOT's label escapes (``\\N``, ``\\l``...)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot_label(lines: list[str]) -> str:
    """Lines joined with DOT's centred line break. ``&`` is escaped too: Graphviz
    decodes HTML entities in labels, and ``&amp;`` in a GPU model must stay as written."""
    escaped = [line.replace("&", "&amp;").replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
               for line in lines]
    return '"' + "\\n".join(escaped) + '"'


def _dot_attributes(pairs: list[tuple[str, str]]) -> str:
    return "[" + ", ".join(f"{key}={value}" for key, value in pairs) + "]"


def to_dot(pipeline: ir.Pipeline) -> str:
    """The pipeline as a Graphviz ``digraph``, laid out left to right."""
    out = [
        f"digraph {dot_string(pipeline.name)} {{",
        f"  graph [rankdir=LR, fontname={dot_string(FONT)}, label={dot_string(pipeline.name)}, "
        "labelloc=t, nodesep=0.4, ranksep=0.6];",
        f"  node [fontname={dot_string(FONT)}, fontsize=11, penwidth=1.2];",
        f"  edge [fontname={dot_string(FONT)}, fontsize=9];",
        "",
        "  // stages: data = parallelogram, train = box, eval = hexagon, serve = rounded box",
    ]
    for stage in drawn_stages(pipeline):
        style = KIND_STYLES[stage.kind]
        attributes = [("label", dot_label(stage_lines(stage))), ("shape", style.dot_shape),
                      ("style", dot_string(style.dot_style)), ("fillcolor", dot_string(style.fill)),
                      ("color", dot_string(style.stroke))]
        if stage.resources.gpu:
            attributes[-1] = ("color", dot_string(GPU_COLORS[stage.resources.gpu_vendor]))
            attributes.append(("penwidth", "3"))
        if stage.instance is not None:
            attributes.append(("peripheries", "2"))  # a stack of instances
        out.append(f"  {dot_string('stage:' + stage.group)} {_dot_attributes(attributes)};")
    if pipeline.volumes:
        out += ["", "  // volumes"]
    mounted = mounted_volumes(pipeline)
    for volume in pipeline.volumes:
        used = volume.name in mounted
        attributes = [("label", dot_label(volume_lines(volume, used))), ("shape", "cylinder"),
                      ("style", dot_string("filled" if used else "filled,dashed")), ("fillcolor", dot_string(VOLUME_FILL)),
                      ("color", dot_string(VOLUME_STROKE))]
        out.append(f"  {dot_string('volume:' + volume.name)} {_dot_attributes(attributes)};")
    dependencies = dependency_edges(pipeline)
    if dependencies:
        out += ["", "  // dependencies: each stage waits for the stages pointing at it"]
    labels = edge_lines(pipeline)
    for dependency, stage in dependencies:
        lines = labels.get((dependency, stage))
        label = f", label={dot_label(lines)}" if lines else ""
        out.append(f"  {dot_string('stage:' + dependency)} -> {dot_string('stage:' + stage)} [penwidth=1.6{label}];")
    mounts = mount_edges(pipeline)
    if mounts:
        out += ["", "  // mounts: a writer points at its volume (solid), a readonly reader is pointed at (dashed)"]
    for edge in mounts:
        stage, volume = dot_string("stage:" + edge.stage), dot_string("volume:" + edge.volume)
        common = [("label", dot_label([edge.path])), ("color", dot_string(VOLUME_STROKE)),
                  ("fontcolor", dot_string(VOLUME_STROKE))]
        if edge.readonly:
            out.append(f"  {volume} -> {stage} {_dot_attributes([*common, ('style', 'dashed')])};")
        else:
            out.append(f"  {stage} -> {volume} {_dot_attributes(common)};")
    out.append("}")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ Mermaid


_MERMAID_ENTITIES = {
    "#": "#35;", '"': "#quot;", "&": "#38;", "<": "#60;", ">": "#62;",
    # GitHub reads node text as Markdown: keep these from becoming code, emphasis or maths
    "`": "#96;", "*": "#42;", "~": "#126;", "$": "#36;",
}


def mermaid_text(text: str) -> str:
    """Text for inside a Mermaid quoted label: ``#`` (it starts Mermaid's entity
    codes), the characters that would close the quote or become HTML, and the
    Markdown markers, as entity codes. An ``_`` inside a word (``two_tower``)
    stays: it cannot start emphasis; any other ``_`` is escaped too."""
    text = text.replace("\n", " ")
    out = []
    for index, character in enumerate(text):
        if character == "_":
            inside = 0 < index < len(text) - 1 and text[index - 1].isalnum() and text[index + 1].isalnum()
            out.append("_" if inside else "#95;")
        else:
            out.append(_MERMAID_ENTITIES.get(character, character))
    return "".join(out)


def mermaid_label(lines: list[str]) -> str:
    return '"' + "<br>".join(mermaid_text(line) for line in lines) + '"'


def stage_id(name: str) -> str:
    # Prefixed: a bare `end` breaks a flowchart, and an id starting with `o` or
    # `x` right after `--` turns the arrow into a circle or a cross.
    return f"s_{name}"


def volume_id(name: str) -> str:
    return f"v_{name}"


def to_mermaid(pipeline: ir.Pipeline, fenced: bool = False) -> str:
    """The pipeline as a Mermaid ``flowchart`` (GitHub renders it inside a
    ```` ```mermaid ```` fence; ``fenced`` adds the fence)."""
    out = ["flowchart LR", f"  %% {pipeline.name}: stages, volumes, dependencies and mounts"]
    for stage in drawn_stages(pipeline):
        style = KIND_STYLES[stage.kind]
        out.append(f"  {stage_id(stage.group)}{style.mermaid_open}{mermaid_label(stage_lines(stage))}"
                   f"{style.mermaid_close}")
    mounted = mounted_volumes(pipeline)
    for volume in pipeline.volumes:
        out.append(f"  {volume_id(volume.name)}[({mermaid_label(volume_lines(volume, volume.name in mounted))})]")
    labels = edge_lines(pipeline)
    for dependency, stage in dependency_edges(pipeline):
        lines = labels.get((dependency, stage))
        label = f"|{mermaid_label(lines)}|" if lines else ""
        out.append(f"  {stage_id(dependency)} ==>{label} {stage_id(stage)}")
    for edge in mount_edges(pipeline):
        label = '|"' + mermaid_text(edge.path) + '"|'
        if edge.readonly:
            out.append(f"  {volume_id(edge.volume)} -.->{label} {stage_id(edge.stage)}")
        else:
            out.append(f"  {stage_id(edge.stage)} -->{label} {volume_id(edge.volume)}")
    for kind, style in KIND_STYLES.items():
        out.append(f"  classDef {kind.value} fill:{style.fill},stroke:{style.stroke},color:#111827")
    out.append(f"  classDef volume fill:{VOLUME_FILL},stroke:{VOLUME_STROKE},color:#111827")
    for kind in KIND_STYLES:
        members = [stage_id(s.group) for s in drawn_stages(pipeline) if s.kind is kind]
        if members:
            out.append(f"  class {','.join(members)} {kind.value}")
    if pipeline.volumes:
        out.append(f"  class {','.join(volume_id(v.name) for v in pipeline.volumes)} volume")
    for stage in drawn_stages(pipeline):
        if stage.resources.gpu:
            out.append(f"  style {stage_id(stage.group)} stroke:{GPU_COLORS[stage.resources.gpu_vendor]},"
                       "stroke-width:3px")
    text = "\n".join(out) + "\n"
    return f"```mermaid\n{text}```\n" if fenced else text
