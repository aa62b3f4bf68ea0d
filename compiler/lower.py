"""Lowering: the checked surface model becomes the frozen IR.

Each declaration is read against its table in :mod:`aipc.compiler.schema`;
values become typed through :class:`aipc.compiler.values.Evaluator`; the
dependency graph orders the stages. Every problem is reported into the sink
and lowering carries on, so one run shows every independent error; the IR is
returned only when there is none.
"""

from __future__ import annotations

import bisect
import dataclasses
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Callable, Mapping

from aipc import codes
from aipc.compiler import gpus
from aipc.compiler import graph as dag
from aipc.compiler import ir, safety
from aipc.compiler.matrix import Expansion, Sweep, check_pairing, has_matrix, read_sweeps
from aipc.compiler.params import bind_params
from aipc.compiler.resolve import Symbols, collect_declarations
from aipc.compiler.security import SecurityKeys, merge_security, read_security
from aipc.compiler.schema import (
    ARTIFACTS, AUTOSCALE, HEADER, HEADER_BLOCKS, HEALTH, HEALTH_CHECKS, RESOURCES, SCHEDULE, SECRET, SECURITY,
    STAGE, STAGE_BLOCKS, STATEMENTS, VOLUME, AttributeSpec, Type, block_kinds,
)
from aipc.compiler.services import Services
from aipc.compiler.units import abbreviate
from aipc.compiler.values import ENV_NAME, INVALID, Evaluator, Text, did_you_mean
from aipc.diagnostics import Diagnostics, Label, Span, Use
from aipc.dsl import model as m

MAX_OBJECT_NAME = ir.MAX_OBJECT_NAME
PIPELINE_NAME = re.compile(r"[a-z](?:[a-z0-9_-]*[a-z0-9])?")
DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?")
LABEL_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_WHERE = {"header": "the `pipeline` header", "volume": "a volume", "secret": "a secret",
          "resources": "`resources`", "health": "`health`", "schedule": "`schedule`", "autoscale": "`autoscale`",
          "security": "`security`", "artifacts": "`artifacts`"}
PORT_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")  # IANA_SVC_NAME, with the rules below


# ------------------------------------------------------------------ reading blocks


@dataclass
class _Block:
    """A block's items, sorted out: attributes by name (first wins), mounts, nested blocks."""

    attributes: dict[str, m.Attribute] = field(default_factory=dict)
    mounts: list[m.Mount] = field(default_factory=list)
    blocks: dict[str, tuple[Span, list]] = field(default_factory=dict)
    outputs: list[m.Output] = field(default_factory=list)
    inputs: list[m.Input] = field(default_factory=list)


def _read_block(items, table: Mapping[str, AttributeSpec], sink: Diagnostics, where: str,
                stage_kind: str | None = None) -> _Block:
    block = _Block()
    blocks = STAGE_BLOCKS if stage_kind is not None else HEADER_BLOCKS if where == "header" else {}
    for item in items:
        if isinstance(item, (m.Output, m.Input)):
            keyword = item.item
            if stage_kind is None:
                sink.error(codes.UNKNOWN_ATTRIBUTE, item.span, f"`{keyword}` is not allowed in {_WHERE[where]}",
                           help=f"`{keyword}` statements belong in a stage")
            elif keyword == "output" and stage_kind not in STATEMENTS["output"].kinds:
                sink.error(codes.ATTRIBUTE_NOT_FOR_KIND, _keyword(item.span, keyword),
                           f"`output` is only for batch stages (data, train, eval), not `{stage_kind}` stages",
                           label=f"not allowed on a `{stage_kind}` stage",
                           help="a serve stage runs until stopped, so its files are never complete: write them in "
                           "a batch stage, or mount a volume (`mount VOLUME at \"/path\"`)")
            elif keyword == "output":
                block.outputs.append(item)
            else:
                block.inputs.append(item)
            continue
        if isinstance(item, m.Mount):
            if stage_kind is None:
                sink.error(codes.UNKNOWN_ATTRIBUTE, item.span, f"`mount` is not allowed in {_WHERE[where]}",
                           help="mounts belong in a stage: `mount VOLUME at \"/path\"`")
            else:
                block.mounts.append(item)
            continue
        if isinstance(item, m.Block) or (
            isinstance(item, m.Attribute) and item.name in blocks and isinstance(item.value, m.MapValue)
        ):
            _read_nested(item, block, sink, where, stage_kind, blocks)
            continue
        spec = table.get(item.name)
        if spec is None:
            _unknown_attribute(item, table, sink, where, stage_kind)
            continue
        if stage_kind is not None and stage_kind not in spec.kinds:
            _not_for_kind(item, spec.kinds, stage_kind, sink)
            continue
        if item.name in block.attributes:
            sink.error(codes.DUPLICATE_ATTRIBUTE, item.name_span, f"`{item.name}` is set twice",
                       label="set again here",
                       related=[Label(block.attributes[item.name].name_span, "first set here")],
                       help="remove one of them")
            continue
        block.attributes[item.name] = item
    return block


_NOT_FOR_KIND_HELP = {"nodes": "a serve stage runs more copies with `replicas = N`; `nodes` is for a batch "
                               "stage whose containers work as one group, such as distributed training"}


def _not_for_kind(item, kinds, stage_kind: str, sink: Diagnostics) -> None:
    why = _NOT_FOR_KIND_HELP.get(item.name) or (
        "a serve stage runs until stopped" if "serve" not in kinds
        else "a batch stage runs to completion and serves nothing")
    sink.error(codes.ATTRIBUTE_NOT_FOR_KIND, item.name_span,
               f"`{item.name}` is only for {_kinds_text(kinds)}, not `{stage_kind}` stages",
               label=f"not allowed on a `{stage_kind}` stage", help=why)


def _read_nested(item, block: _Block, sink: Diagnostics, where: str, stage_kind: str | None,
                 blocks: Mapping[str, Mapping[str, AttributeSpec]]) -> None:
    if item.name not in blocks:
        owner = "a stage" if stage_kind is not None else "the `pipeline` header"
        sink.error(codes.UNKNOWN_ATTRIBUTE, item.name_span, f"unknown block `{item.name}` in {_WHERE.get(where, where)}",
                   help=did_you_mean(item.name, list(blocks)) or (
                       f"the blocks of {owner} are " + ", ".join(f"`{name} {{ ... }}`" for name in blocks) if blocks
                       else None))
        return
    kinds = block_kinds(item.name)  # a block named like an attribute (`health`) has its kinds
    if stage_kind is not None and stage_kind not in kinds:
        _not_for_kind(item, kinds, stage_kind, sink)
        return
    if item.name in block.blocks:
        sink.error(codes.DUPLICATE_ATTRIBUTE, item.name_span, f"`{item.name}` is set twice",
                   label="set again here", related=[Label(block.blocks[item.name][0], "first set here")],
                   help="merge the two blocks")
        return
    if isinstance(item, m.Block):
        inner = list(item.items)
    else:  # `resources = { cpu = 2, memory = 4Gi }`
        inner = [m.Attribute.model_construct(span=e.span, name=e.key, name_span=e.key_span, value=e.value)
                 for e in item.value.entries]
    block.blocks[item.name] = (item.name_span, inner)


def _kinds_text(kinds) -> str:
    return "serve stages" if kinds == frozenset({"serve"}) else "batch stages (data, train, eval)"


def _unknown_attribute(item: m.Attribute, table, sink: Diagnostics, where: str, stage_kind: str | None) -> None:
    name = item.name
    owner = next((block for block, table in STAGE_BLOCKS.items() if name in table), None)
    if owner is not None and ((stage_kind is not None and where == "stage") or
                              (where == "header" and owner in HEADER_BLOCKS)):
        sink.error(codes.UNKNOWN_ATTRIBUTE, item.name_span, f"`{name}` belongs inside `{owner} {{ }}`",
                   label=f"not a {'stage' if where == 'stage' else 'header'} attribute",
                   help=f"write `{owner} {{ {name} = ... }}`")
        return
    if where == "resources" and name in STAGE:
        sink.error(codes.UNKNOWN_ATTRIBUTE, item.name_span, f"`{name}` is a stage attribute, not a resource",
                   help=f"move `{name}` out of `resources {{ }}`")
        return
    candidates = list(table) + (list(STAGE_BLOCKS) + ["mount"] if where == "stage" else [])
    place = f"a `{stage_kind}` stage" if where == "stage" else _WHERE[where]
    sink.error(codes.UNKNOWN_ATTRIBUTE, item.name_span, f"unknown attribute `{name}` in {place}",
               label="unknown", help=did_you_mean(name, candidates)
               or "known attributes: " + ", ".join(f"`{n}`" for n in candidates))


def _keyword(span: Span, keyword: str) -> Span:
    """The span of the keyword a construct's span starts with."""
    return Span(span.start, span.start + len(keyword))


# ----------------------------------------------------------------------- checks


def _check_labels(pairs: list[tuple[str, Text, m.Entry]], sink: Diagnostics,
                  own: bool = True) -> tuple[tuple[str, str], ...]:
    """Label keys and values, checked; ``own``: labels aipc puts on its objects (not
    node labels to match), where the standard keys are taken."""
    out = []
    for key, text, entry in pairs:
        if own and key in ir.RESERVED_LABELS:
            sink.error(codes.INVALID_LABEL, entry.key_span, f"the label `{key}` is set by aipc",
                       help="aipc sets the app.kubernetes.io/ name, part-of, component and managed-by labels itself "
                       f"(and `{ir.MATRIX_LABEL}` on the instances of a matrix stage); choose another key")
            continue
        if not _label_key(key):
            sink.error(codes.INVALID_LABEL, entry.key_span, f"`{key}` is not a valid label key",
                       help="a key is an optional DNS prefix and `/`, then up to 63 letters, digits, `-`, `_` or `.`")
            continue
        if not _label_value(text.value):
            suggestion = re.sub(r"[^A-Za-z0-9_.-]+", "-", text.value).strip("-_.")[:63]
            sink.error(codes.INVALID_LABEL, entry.value.span, f"`{text.value}` is not a valid label value",
                       help="label values are up to 63 letters, digits, `-`, `_` or `.`, "
                       f"starting and ending with a letter or digit: `\"{suggestion}\"`")
            continue
        out.append((key, text.value))
    return tuple(sorted(out))


def _label_key(key: str) -> bool:
    """A qualified name: an optional DNS subdomain and `/`, then a name of up to 63 characters."""
    prefix, _, name = key.rpartition("/")
    if not LABEL_NAME.fullmatch(name) or len(name) > 63:
        return False
    if prefix:
        return DNS_SUBDOMAIN.fullmatch(prefix) is not None and len(prefix) <= 253
    return "/" not in key


def port_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a Kubernetes port name (an IANA service name,
    k8s.io/apimachinery validation.IsValidPortName), or None."""
    if len(name) > 15:
        return f"{len(name)} characters, at most 15"
    if not PORT_NAME.fullmatch(name):
        return "lower-case letters, digits and `-` only, not starting or ending with `-`"
    if "--" in name:
        return "`--` is not allowed"
    if not any(c.isalpha() for c in name):
        return "it needs at least one letter"
    return None


def _label_value(text: str) -> bool:
    return len(text) <= 63 and LABEL_VALUE.fullmatch(text) is not None


def _check_env_name(name: str, span: Span, sink: Diagnostics) -> bool:
    if ENV_NAME.fullmatch(name):
        return True
    suggestion = re.sub(r"[^A-Za-z0-9_]", "_", name).upper()
    if suggestion[:1].isdigit():
        suggestion = "_" + suggestion
    sink.error(codes.INVALID_ENV_NAME, span, f"`{name}` is not a valid environment variable name",
               help=f"use letters, digits and `_`, not starting with a digit: `{suggestion}`")
    return False


_TOLERATION = re.compile(r"(?P<key>[^=:]*)(?:=(?P<value>[^:]*))?(?::(?P<effect>.*))?", re.S)


def _toleration(text: str, span: Span, sink: Diagnostics) -> ir.Toleration | object:
    """``KEY``, ``KEY=VALUE``, ``KEY:EFFECT`` or ``KEY=VALUE:EFFECT`` (kubectl's taint syntax)."""
    match = _TOLERATION.fullmatch(text)
    assert match is not None  # every group is optional
    key, value, effect = match.group("key"), match.group("value"), match.group("effect")
    forms = "write `KEY`, `KEY=VALUE`, `KEY:EFFECT` or `KEY=VALUE:EFFECT`"
    if not _label_key(key):
        what = "has no key" if not key else f"has the key `{key}`, which is not a valid label key"
        sink.error(codes.INVALID_TOLERATION, span, f"the toleration `{text}` {what}", help=forms)
        return INVALID
    if value is not None and (not value or not _label_value(value)):
        sink.error(codes.INVALID_TOLERATION, span,
                   f"the toleration `{text}` has " + (f"the value `{value}`, which is not a valid label value"
                                                       if value else "an empty value"),
                   help=f"write `{key}` to tolerate the taint `{key}` with any value" if not value else
                   "a value is up to 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit")
        return INVALID
    if effect is not None and effect not in ir.TAINT_EFFECTS:
        same = [e for e in ir.TAINT_EFFECTS if e.casefold() == effect.casefold()]
        suggestion = f"did you mean `{same[0]}`?" if same else did_you_mean(effect, ir.TAINT_EFFECTS)
        sink.error(codes.INVALID_TOLERATION, span, f"`{effect}` is not a taint effect",
                   label="in this toleration",
                   help=(suggestion + " " if suggestion else "") + "the effects are `NoSchedule`, "
                   "`PreferNoSchedule` and `NoExecute`; leave it out to tolerate every effect")
        return INVALID
    return ir.Toleration(key, value, effect)


def _has_registry_host(image: str) -> bool:
    first, slash, _ = image.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def _image_tag(image: str) -> str | None:
    if "@" in image:
        return "@digest"
    last = image.rsplit("/", 1)[-1]
    return last.partition(":")[2] or None


# ------------------------------------------------------------------------ lowering


@dataclass
class _Header:
    name: str
    description: str | None = None
    namespace: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    registry: str | None = None
    image: Text | None = None
    image_span: Span | None = None
    pull_secrets: tuple[str, ...] = ()
    pull_secrets_span: Span = Span(0, 0)
    security: SecurityKeys = field(default_factory=dict)  # defaults for every stage's `security`
    artifacts: ir.ArtifactStore | None = None
    gpu_labels: ir.GpuLabels | None = None
    schedule: dict[str, tuple[object, Span]] = field(default_factory=dict)  # key -> (value, where written)


class _Lowering:
    def __init__(self, program: m.Program, overrides: Mapping[str, str], sink: Diagnostics,
                 uses: Mapping[str, Use] | None = None, unresolved: frozenset[str] = frozenset()) -> None:
        self.program = program
        self.sink = sink
        self.uses = uses or {}  # stages started from templates: the templates' text, checked as theirs
        self.unresolved = unresolved  # stages whose templates are not all known
        self.symbols: Symbols = collect_declarations(program, sink)
        self.header = _Header(self._pipeline_name())
        self.params = bind_params(self.symbols, overrides, sink)
        self.evaluator = Evaluator(sink, self.params, self.symbols.known("param"), self.header.name)
        self.host_risks: dict[str, tuple[str, Span]] = {}  # host volume -> (what it exposes, its `host` value)
        self.evaluator.services = self._services()
        # Names the stages refer to, by kind; every reference to a declaration marks it here
        # (params through the evaluator), and what is left unmarked is W101.
        self.used: dict[str, set[str]] = {"volume": set(), "secret": set()}
        # Each stage's outputs by name, read before any stage is lowered (an input may name
        # a stage declared after it); the first of a name counts.
        self.outputs: dict[str, dict[str, m.Output]] = {
            name: {item.name.value: item for item in reversed(declaration.items) if isinstance(item, m.Output)}
            for name, declaration in self.symbols.stages.items()}

    def use(self, kind: str, name: str) -> None:
        """A reference to the declaration ``name`` of ``kind`` (volume, secret)."""
        self.used[kind].add(name)

    # the pipeline ---------------------------------------------------------------

    def _pipeline_name(self) -> str:
        header = self.symbols.header
        if header is None:
            return ir.clean_name(PurePath(self.program.path).stem)
        if not PIPELINE_NAME.fullmatch(header.name):
            self.sink.error(codes.INVALID_OBJECT_NAME, header.name_span,
                            f"`{header.name}` is not a valid pipeline name",
                            label="becomes Kubernetes names and labels",
                            help=f'lowercase letters, digits, `-` and `_`, starting with a letter: "{ir.clean_name(header.name)}"')
            return ir.clean_name(header.name)
        return header.name

    def _services(self) -> Services:
        """The serve stages' addresses, read before any stage is lowered (a stage may
        name one declared after it). Their ports are evaluated here without a word:
        what is wrong with them is reported when their stage is lowered."""
        quiet = Evaluator(Diagnostics(self.program.path), self.params, self.symbols.known("param"), self.header.name)
        ports: dict[str, tuple[int, int]] = {}
        for name, declaration in self.symbols.stages.items():
            if declaration.kind != "serve":
                continue
            values = {}
            for item in declaration.items:
                if isinstance(item, m.Attribute) and item.name in ("port", "expose") and item.name not in values:
                    values[item.name] = quiet.quantity(STAGE[item.name], item.value, name)
            port = values.get("port", INVALID)
            expose = values.get("expose", port)
            if port is not INVALID and expose is not INVALID:
                ports[name] = (port, expose)
        others = {name: what for kind, what in (("secret", "secret"), ("volume", "volume"), ("param", "parameter"))
                  for name in self.symbols.known(kind)}
        return Services(
            pipeline=self.header.name,
            kinds={name: d.kind for name, d in self.symbols.stages.items()}
            | {name: "broken" for name in self.symbols.broken.get("stage", ()) if name not in self.symbols.stages},
            ports=ports, spans={name: d.name.span for name, d in self.symbols.stages.items()}, others=others,
            swept=frozenset(name for name, d in self.symbols.stages.items() if has_matrix(d)),
        )

    def lower_header(self) -> None:
        header = self.symbols.header
        if header is None:
            return
        block = _read_block(header.items, HEADER, self.sink, "header")
        values = self._strings(block, HEADER, None)
        if "description" in values:
            self.header.description = values["description"].value
        if "registry" in values:
            registry = values["registry"].value.rstrip("/")
            problem = safety.registry_problem(registry)
            if problem is not None:
                self.sink.error(codes.INVALID_IMAGE, block.attributes["registry"].value.span,
                                f"`registry`: {problem.message}", label="no registry accepts this",
                                help=problem.help)
            else:
                self.header.registry = registry
        if "image" in values:
            self.header.image = values["image"]
            self.header.image_span = block.attributes["image"].value.span
        if "namespace" in values:
            namespace = values["namespace"].value
            if not DNS_LABEL.fullmatch(namespace) or len(namespace) > 63:
                self.sink.error(codes.INVALID_OBJECT_NAME, block.attributes["namespace"].value.span,
                                f"`{namespace}` is not a valid namespace",
                                help="a namespace is up to 63 lowercase letters, digits and `-`, "
                                f'starting and ending with a letter or digit: "{ir.clean_name(namespace).replace("_", "-")}"')
            else:
                self.header.namespace = namespace
        if "labels" in block.attributes:
            pairs = self.evaluator.string_map(HEADER["labels"], block.attributes["labels"].value, None)
            if pairs is not INVALID:
                self.header.labels = _check_labels(pairs, self.sink)
        if "gpu_labels" in block.attributes:
            choice = self.evaluator.choice(HEADER["gpu_labels"], block.attributes["gpu_labels"].value)
            if choice is not INVALID:
                self.header.gpu_labels = ir.GpuLabels(choice)
        if "schedule" in block.blocks:
            self.header.schedule = self.lower_schedule(block.blocks["schedule"][1], None, None)
        if "pull_secrets" in block.attributes:
            self._pull_secrets(block.attributes["pull_secrets"])
        if "security" in block.blocks:
            self.header.security = self.lower_security(block.blocks["security"][1], None)
        if "artifacts" in block.blocks:
            self.header.artifacts = self._artifacts(*block.blocks["artifacts"])

    def _artifacts(self, span: Span, items) -> ir.ArtifactStore | None:
        """``artifacts { size, class, access }``: the claim of every output on Kubernetes and Argo."""
        errors = self.sink.error_count()
        block = _read_block(items, ARTIFACTS, self.sink, "artifacts")
        attributes = block.attributes
        strings = self._strings(block, ARTIFACTS, None)
        if "size" not in attributes:
            self.sink.error(codes.MISSING_ATTRIBUTE, span, "`artifacts` has no `size`", label="needs a size",
                            help="add the size of the claim that holds every output: `size = 100Gi`")
            return None
        size = self.evaluator.quantity(ARTIFACTS["size"], attributes["size"].value, None)
        access = ir.Access.RWO
        if "access" in attributes:
            choice = self.evaluator.choice(ARTIFACTS["access"], attributes["access"].value)
            access = ir.Access(choice) if choice else access
        storage_class = strings["class"].value if "class" in strings else None
        if storage_class is not None and not DNS_SUBDOMAIN.fullmatch(storage_class):
            self.sink.error(codes.INVALID_OBJECT_NAME, attributes["class"].value.span,
                            f"`{storage_class}` is not a valid Kubernetes name",
                            help="lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit")
        if self.sink.error_count() > errors or size is INVALID:
            return None
        return ir.ArtifactStore(size, access, storage_class, span)

    # scheduling (a stage's block, or the header's defaults) ---------------------------

    def lower_schedule(self, items, stage: str | None, kind: str | None) -> dict[str, tuple[object, Span]]:
        """The keys of a `schedule` block, checked: ``{key: (value, span of the attribute)}``."""
        block = _read_block(items, SCHEDULE, self.sink, "schedule")
        out: dict[str, tuple[object, Span]] = {}
        for name, attribute in block.attributes.items():
            spec = SCHEDULE[name]
            if kind is not None and kind not in spec.kinds:
                self.sink.error(codes.ATTRIBUTE_NOT_FOR_KIND, attribute.name_span,
                                f"`{name}` is only for {_kinds_text(spec.kinds)}, not `{kind}` stages",
                                label=f"not allowed on a `{kind}` stage",
                                help="Kueue queues workloads that run to completion; a service's pods are not "
                                "queued (a `queue` in the header applies to the batch stages only)")
                continue
            if name == "node":
                pairs = self.evaluator.string_map(spec, attribute.value, stage)
                value = INVALID if pairs is INVALID else _check_labels(pairs, self.sink, own=False)
            elif name == "tolerate":
                items_ = self.evaluator.string_list(spec, attribute.value, stage)
                value = INVALID if items_ is INVALID else self._tolerations(items_)
            else:  # priority, queue: object names (a PriorityClass, a LocalQueue and a label value)
                text = self.evaluator.string(spec, attribute.value, stage)
                value = INVALID if text is INVALID else self._scheduling_name(name, text.value, attribute.value.span)
            if value is not INVALID:
                out[name] = (value, attribute.span)
        return out

    def _tolerations(self, items: list[tuple[Text, Span]]) -> tuple[ir.Toleration, ...] | object:
        out = []
        for text, span in items:
            toleration = _toleration(text.value, span, self.sink)
            if toleration is INVALID:
                return INVALID
            out.append(toleration)
        return tuple(out)

    def _scheduling_name(self, name: str, text: str, span: Span) -> str | object:
        longest = 63 if name == "queue" else 253  # a queue name is also a label value
        if DNS_SUBDOMAIN.fullmatch(text) and len(text) <= longest:
            return text
        what = "a Kueue LocalQueue" if name == "queue" else "a PriorityClass"
        self.sink.error(codes.INVALID_OBJECT_NAME, span, f"`{text}` is not a valid name of {what}",
                        help=f"at most {longest} lowercase letters, digits, `-` and `.`, starting and ending "
                        "with a letter or digit")
        return INVALID

    def _pull_secrets(self, attribute: m.Attribute) -> None:
        """Names of Kubernetes Secrets (of type kubernetes.io/dockerconfigjson), each once."""
        items = self.evaluator.string_list(HEADER["pull_secrets"], attribute.value, None, words=True)
        if items is INVALID:
            return
        names: list[str] = []
        for text, span in items:
            name = text.value
            if not DNS_SUBDOMAIN.fullmatch(name) or len(name) > 253:
                self.sink.error(codes.INVALID_OBJECT_NAME, span, f"`{name}` is not a valid Secret name",
                                help="the name of a Kubernetes Secret: lowercase letters, digits, `-` and `.`, "
                                "starting and ending with a letter or digit")
            elif name not in names:
                names.append(name)
        self.header.pull_secrets = tuple(names)
        self.header.pull_secrets_span = attribute.span

    def lower_security(self, items, stage: str | None, declared: str | None = None) -> SecurityKeys:
        """The keys of a `security` block (a stage's, or the header's defaults)."""
        block = _read_block(items, SECURITY, self.sink, "security")
        return read_security(block.attributes, self.evaluator, self.sink, stage, declared)

    def _strings(self, block: _Block, table, stage: str | None) -> dict[str, Text]:
        """Every STRING/PATH attribute of a block, evaluated."""
        out = {}
        for name, attribute in block.attributes.items():
            spec = table[name]
            if spec.type in (Type.STRING, Type.PATH):
                text = self.evaluator.string(spec, attribute.value, stage)
                if text is not INVALID:
                    out[name] = text
        return out

    # volumes and secrets --------------------------------------------------------------

    def lower_volume(self, declaration: m.VolumeDecl) -> ir.Volume | None:
        name = declaration.name.value
        errors = self.sink.error_count()
        block = _read_block(declaration.items, VOLUME, self.sink, "volume")
        attributes = block.attributes
        strings = self._strings(block, VOLUME, None)
        access = ir.Access.RWO
        if "access" in attributes:
            choice = self.evaluator.choice(VOLUME["access"], attributes["access"].value)
            access = ir.Access(choice) if choice else access
        size = None
        if "size" in attributes:
            size = self.evaluator.quantity(VOLUME["size"], attributes["size"].value, None)
        modes = [n for n in ("host", "claim") if n in attributes]
        if len(modes) == 2:
            self._conflict(attributes["claim"], attributes["host"],
                           "a volume is either a `host` path or an existing `claim`, not both")
            return None
        if modes:
            mode = modes[0]
            for other in ("size", "class") + (("access",) if mode == "host" else ()):
                if other in attributes:
                    why = ("a host path has no size, access mode or storage class" if mode == "host"
                           else "an existing claim already has its size and storage class")
                    self._conflict(attributes[other], attributes[mode], f"`{other}` cannot be used with `{mode}`: {why}")
        elif "size" not in attributes:
            self.missing("volume", name, "size", declaration.name.span, f"volume `{name}` has no `size`",
                         label="needs a size",
                         help="add `size = 10Gi`, or use `host = \"./path\"` or `claim = \"existing-pvc\"`")
        for attribute in ("class", "claim"):
            if attribute in strings and not DNS_SUBDOMAIN.fullmatch(strings[attribute].value):
                self.sink.error(codes.INVALID_OBJECT_NAME, attributes[attribute].value.span,
                                f"`{strings[attribute].value}` is not a valid Kubernetes name",
                                help="lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit")
        if "host" in strings and not strings["host"].value.strip():
            self.sink.error(codes.WRONG_TYPE, attributes["host"].value.span, "`host` is an empty path",
                            help='write a path such as "./data" or "/mnt/datasets"')
        if self.sink.error_count() > errors:
            return None
        if "host" in attributes:
            risk = safety.host_path_risk(strings["host"].value)
            if risk is not None:
                self.host_risks[name] = (risk, attributes["host"].value.span)
            return ir.Volume(name, ir.VolumeKind.HOST, host_path=strings["host"].value, span=declaration.span)
        if "claim" in attributes:
            return ir.Volume(name, ir.VolumeKind.CLAIM, access=access, claim=strings["claim"].value,
                             span=declaration.span)
        storage_class = strings["class"].value if "class" in strings else None
        return ir.Volume(name, ir.VolumeKind.SIZED, access=access, size=size, storage_class=storage_class,
                         span=declaration.span)

    def lower_secret(self, declaration: m.SecretDecl) -> ir.Secret | None:
        name = declaration.name.value
        block = _read_block(declaration.items, SECRET, self.sink, "secret")
        if "keys" not in block.attributes:
            self.missing("secret", name, "keys", declaration.name.span, f"secret `{name}` has no `keys`",
                         help='add `keys = ["API_TOKEN"]`: each key becomes an environment variable')
            return None
        attribute = block.attributes["keys"]
        items = self.evaluator.string_list(SECRET["keys"], attribute.value, None, words=True)
        if items is INVALID:
            return None
        if not items:
            self.sink.error(codes.MISSING_ATTRIBUTE, attribute.value.span, f"secret `{name}` has no keys",
                            help='list at least one key: `keys = ["API_TOKEN"]`')
            return None
        keys: list[str] = []
        valid = True
        for text, span in items:
            valid = _check_env_name(text.value, span, self.sink) and valid
            if text.value not in keys:
                keys.append(text.value)
        return ir.Secret(name, tuple(keys), declaration.span) if valid else None

    def secret_key_span(self, secret: str, key: str) -> Span | None:
        """Where ``key`` is written in the `keys` of secret ``secret``."""
        declaration = self.symbols.secrets.get(secret)
        for item in declaration.items if declaration is not None else ():
            if isinstance(item, m.Attribute) and item.name == "keys" and isinstance(item.value, m.ListValue):
                for value in item.value.items:
                    written = value.literal if isinstance(value, m.Str) and value.is_literal else \
                        value.value if isinstance(value, m.Word) else None
                    if written == key:
                        return value.span
        return None

    def missing(self, kind: str, name: str, attribute: str, span: Span, message: str, **details) -> None:
        """A required attribute is not there. When a syntax error lost its value the
        syntax error says so already, and so does the error about a stage's template
        that cannot be used (which may have set it); the construct is invalid all the same."""
        if self.symbols.written(kind, name, attribute) or (kind == "stage" and name in self.unresolved):
            self.sink.count_reported_error()
        else:
            self.sink.error(codes.MISSING_ATTRIBUTE, span, message, **details)

    def _conflict(self, second, first, message: str) -> None:
        if second.span.start < first.span.start:
            first, second = second, first
        self.sink.error(codes.CONFLICTING_ATTRIBUTES, second.name_span if hasattr(second, "name_span") else second.span,
                        message, label="conflicts", related=[Label(
                            first.name_span if hasattr(first, "name_span") else first.span, "with this")],
                        help="keep one of them")

    # stages ---------------------------------------------------------------------

    def lower_stage(self, declaration: m.StageDecl, volumes, secrets, sweep: Sweep | None) -> list["_LoweredStage"]:
        """The stage, or each instance of a matrix stage (once, unnamed, when its matrix is invalid)."""
        use = self.uses.get(declaration.name.value)
        if use is None:
            return self._lower_instances(declaration, volumes, secrets, sweep)
        with self.sink.used_by(use):  # what is wrong in a template's text, for this stage
            return self._lower_instances(declaration, volumes, secrets, sweep)

    def _lower_instances(self, declaration: m.StageDecl, volumes, secrets, sweep: Sweep | None) -> list["_LoweredStage"]:
        if sweep is None:
            return [_StageLowering(self, declaration, volumes, secrets).run()]
        out = []
        for index in range(len(sweep.names) if sweep.valid else 1):
            scope = sweep.scope(index)
            with self.evaluator.scoped(scope):
                out.append(_StageLowering(self, declaration, volumes, secrets, scope.instance).run())
        return out

    def run(self) -> ir.Pipeline | None:
        sink = self.sink
        self.lower_header()
        volumes = {n: self.lower_volume(d) for n, d in self.symbols.volumes.items()}
        secrets = {n: self.lower_secret(d) for n, d in self.symbols.secrets.items()}
        sweeps = read_sweeps(self.symbols, self.header.name, sink, self.evaluator, self.uses)
        lowered = {n: self.lower_stage(d, volumes, secrets, sweeps.get(n)) for n, d in self.symbols.stages.items()}
        # Stages as declared: cycles, waits on services and pairing are about declarations.
        nodes = {n: units[0].node if n not in sweeps else dataclasses.replace(units[0].node, name=n)
                 for n, units in lowered.items()}
        graph = dag.dependency_graph(nodes)
        acyclic = dag.check_cycles(graph, sink)
        self._check_object_names(volumes, sweeps)
        check_pairing(nodes, sweeps, sink)
        if not acyclic:
            return None
        expansion = Expansion(lowered, sweeps) if sweeps else None
        if expansion is not None:  # instances are the stages from here on
            lowered, graph = expansion.units, dag.dependency_graph(expansion.nodes)
        else:
            lowered = {n: units[0] for n, units in lowered.items()}
        order = dag.execution_order(graph)
        reach = dag.Reachability(graph, order)
        self._check_volume_use(reach, volumes, lowered, expansion.serial if expansion is not None else {})
        if sink.has_errors:
            return None
        if not order and not self.symbols.templates:  # templates and no stage: a library, for `import`
            self._no_stages()
        self._check_unused()
        level = dag.levels(graph, order)
        if expansion is not None:
            stages = tuple(expansion.stage(n, level[n]) for n in order)
        else:
            stages = tuple(dataclasses.replace(lowered[n].stage, level=level[n]) for n in order)
        header = self.header
        return ir.Pipeline(
            name=header.name, file=self.program.path, description=header.description,
            namespace=header.namespace, labels=header.labels,
            params=self._params_with_fixed_uses(stages),
            volumes=tuple(volumes[n] for n in sorted(volumes)),
            secrets=tuple(secrets[n] for n in sorted(secrets)),
            stages=stages, gpu_labels=header.gpu_labels,
            pull_secrets=header.pull_secrets, pull_secrets_span=header.pull_secrets_span,
            matrices=expansion.matrices(stages) if expansion is not None else (),
            artifacts=header.artifacts,
            span=self.symbols.header.span if self.symbols.header else Span(0, 0),
        )

    def _no_stages(self) -> None:
        header = self.symbols.header
        self.sink.warning(codes.NO_STAGES, header.name_span if header is not None else None,
                          f"the pipeline `{self.header.name}` has no stages: it compiles to nothing that runs",
                          label="declares no stage",
                          help='declare one, e.g. `data prepare { image = "python:3.11-slim" }`')

    def _params_with_fixed_uses(self, stages: tuple[ir.Stage, ...]) -> tuple[ir.Param, ...]:
        """The parameters, each with the places its value was compiled in as a plain
        value: every `${...}` substituted outside the stages' Texts (a quantity, a
        mount path, a label, a volume's class...)."""
        params = [self.params[n] for n in sorted(self.params)]
        uses = self.evaluator.param_uses
        if not uses:
            return tuple(params)
        kept = sorted((text.span.start, text.span.end) for stage in stages for text in ir.texts_of(stage))
        starts = [start for start, _ in kept]
        fixed: dict[str, list[ir.ParamUse]] = {}
        for name, span in sorted(set(uses), key=lambda use: use[1]):
            index = bisect.bisect_right(starts, span.start) - 1
            if index >= 0 and span.end <= kept[index][1]:
                continue  # inside a stage's Text: a reference each target renders
            fixed.setdefault(name, []).append(self._param_use(span))
        return tuple(dataclasses.replace(p, fixed_at=tuple(fixed[p.name])) if p.name in fixed else p
                     for p in params)

    def _param_use(self, span: Span) -> ir.ParamUse:
        """Which declaration and attribute the text at ``span`` belongs to."""
        symbols = self.symbols
        declarations = [("stage", d) for d in symbols.stages.values()]
        declarations += [("volume", d) for d in symbols.volumes.values()]
        declarations += [("secret", d) for d in symbols.secrets.values()]
        for kind, declaration in declarations:
            if declaration.span.start <= span.start and span.end <= declaration.span.end:
                return ir.ParamUse(kind, declaration.name.value, _attribute_around(declaration.items, span), span)
        header = symbols.header
        attribute = _attribute_around(header.items, span) if header is not None else ""
        return ir.ParamUse("pipeline", self.header.name, attribute, span)

    def _check_unused(self) -> None:
        """W101 for each volume, secret and parameter nothing refers to. Only for a file
        without errors: with them, a use may sit in what did not parse or check."""
        unused = [("volume", "no stage mounts it", "mount it in a stage (`mount {name} at \"/path\"`) or remove it",
                   self.symbols.volumes, self.used["volume"]),
                  ("secret", "no stage lists it in `secrets`", "list it in a stage (`secrets = [{name}]`) or remove it",
                   self.symbols.secrets, self.used["secret"]),
                  ("parameter", "no value refers to it", "use it in a value (`\"${{{name}}}\"`) or remove it",
                   self.symbols.params, self.evaluator.used_params)]
        for what, why, help, declared, used in unused:
            for name, declaration in declared.items():
                if name not in used:
                    self.sink.warning(codes.UNUSED_DECLARATION, declaration.name.span,
                                      f"the {what} `{name}` is declared but never used: {why}",
                                      label="never used", help=help.format(name=name))

    def _check_volume_use(self, reach: dag.Reachability, volumes, lowered, serial: Mapping[str, str]) -> None:
        uses: dict[str, list[dag.Use]] = {}
        for name in sorted(lowered):
            for volume_name, use in lowered[name].uses:
                uses.setdefault(volume_name, []).append(use)
        for name in sorted(uses):
            volume = volumes.get(name)
            if volume is None:
                continue
            single_writer = volume.kind is not ir.VolumeKind.HOST and volume.access is ir.Access.RWO
            dag.check_volume_use(reach, name, self.symbols.volumes[name].name.span, uses[name],
                                 single_writer, self.sink, serial)

    def _check_object_names(self, volumes, sweeps: Mapping[str, Sweep]) -> None:
        pipeline = ir.dns_label(self.header.name)
        for what, table in (("stage", self.symbols.stages), ("volume", self.symbols.volumes),
                            ("secret", self.symbols.secrets)):
            for declaration in table.values():
                name = declaration.name.value
                if name.endswith("_"):
                    self.sink.error(codes.INVALID_OBJECT_NAME, declaration.name.span,
                                    f"the {what} name `{name}` ends with `_`",
                                    label="becomes a Kubernetes name, which must end with a letter or digit",
                                    help=f"write `{name.rstrip('_')}`")
        # A matrix stage's objects are its instances, whose names are checked as they are given.
        declarations = [("stage", d) for n, d in self.symbols.stages.items() if n not in sweeps]
        declarations += [("volume", d) for n, d in self.symbols.volumes.items()
                         if volumes.get(n) is None or volumes[n].kind is ir.VolumeKind.SIZED]
        for what, declaration in declarations:
            full = f"{pipeline}-{ir.dns_label(declaration.name.value)}"
            if len(full) > MAX_OBJECT_NAME:
                self.sink.error(
                    codes.NAME_TOO_LONG, declaration.name.span,
                    f"the {what} `{declaration.name.value}` becomes `{full}`, "
                    f"{len(full)} characters; Kubernetes allows {MAX_OBJECT_NAME}",
                    label=f"{len(full) - MAX_OBJECT_NAME} characters too many",
                    help="shorten the stage or volume name, or the pipeline name",
                )


@dataclass
class _LoweredStage:
    """A stage's part in the graph checks, and its IR when it has no errors."""

    node: dag.Node
    uses: list[tuple[str, dag.Use]]
    stage: ir.Stage | None


class _StageLowering:
    """One stage: its attributes, resources and mounts, checked and typed.

    Each attribute of ``schema.STAGE`` and each block of ``schema.STAGE_BLOCKS``
    is lowered by the method :data:`LOWER_STAGE_ATTRIBUTE` or
    :data:`LOWER_STAGE_BLOCK` names for it; the checks between attributes
    (``command`` with ``script``, a default ``image``, a missing ``port``) are in
    :meth:`run`.
    """

    def __init__(self, lowering: _Lowering, declaration: m.StageDecl, volumes, secrets,
                 instance: str | None = None) -> None:
        self.lowering = lowering
        self.sink = lowering.sink
        self.evaluator = lowering.evaluator
        self.declaration = declaration
        self.declared = declaration.name.value  # messages name the stage as written
        self.group = declaration.name.value if instance is not None else None
        self.name = instance or declaration.name.value  # an instance's own name: `${stage.name}`, the IR's
        self.kind = declaration.kind
        self.volumes = volumes
        self.secrets = secrets
        self.fields: dict = {"resources": ir.Resources()}
        self.security: SecurityKeys = {}  # the stage's own `security` keys
        self.spans: list[tuple[str, Span]] = []
        self.after: list[tuple[str, Span]] = []
        self.env_keys: dict[str, Span] = {}
        self.schedule: dict[str, tuple[object, Span]] = {}  # the stage's own `schedule` keys
        self.autoscale: dict[str, tuple[object, Span]] = {}  # the `autoscale` block's keys
        self.replica_range: tuple[int, int, Span] | None = None  # `replicas = MIN..MAX`

    def _set(self, field_name: str, value) -> None:
        if value is not INVALID:
            self.fields[field_name] = value

    def run(self) -> _LoweredStage:
        errors = self.sink.error_count()
        block = _read_block(self.declaration.items, STAGE, self.sink, "stage", self.kind)
        attributes = block.attributes
        self.spans += [(name, attribute.span) for name, attribute in attributes.items()]
        programs = [name for name in PROGRAMS if name in attributes]
        for other in programs[1:]:
            self.lowering._conflict(attributes[other], attributes[programs[0]],
                                    f"`{programs[0]}` and `{other}` cannot be used together")
        if len(programs) > 1:
            attributes = {name: a for name, a in attributes.items() if name not in PROGRAMS}
        if "image" not in attributes:
            self._default_image()
        for name in [name for name in block.blocks if name in attributes]:  # `health = "/x"` and `health { }`
            self.sink.error(codes.DUPLICATE_ATTRIBUTE, block.blocks[name][0], f"`{name}` is set twice",
                            label="set again here", related=[Label(attributes[name].name_span, "first set here")],
                            help="keep the attribute or the block")
            del block.blocks[name]
        for name, attribute in attributes.items():
            LOWER_STAGE_ATTRIBUTE[name](self, STAGE[name], attribute.value)
        for name, (span, items) in block.blocks.items():
            self.spans.append((name, span))
            LOWER_STAGE_BLOCK[name](self, items)
        self.fields["security"] = merge_security(self.lowering.header.security, self.security)
        self._check_gpu_memory()
        self._check_env(attributes.get("env"))
        self.fields["schedule"] = self._merged_schedule()
        self._check_autoscaling(block.blocks["autoscale"][0] if "autoscale" in block.blocks else None)
        self.paths: dict[str, Span] = {}
        mounts, uses = self._mounts(block.mounts)
        self._check_nodes(self.env_keys, mounts)
        self._outputs(block.outputs)
        self._inputs(block.inputs)
        self._check_covered()
        if self.kind == "serve" and "port" not in attributes:
            self.lowering.missing("stage", self.declared, "port", self.declaration.name.span,
                                  f"serve stage `{self.declared}` has no `port`",
                                  label="needs a port", help="add the port the service listens on: `port = 8080`")
        elif self.kind == "serve":
            self._check_ports(attributes)
        node = dag.Node(self.name, self.kind != "serve", tuple(self.after), self.declaration.name.span)
        if self.sink.error_count() > errors:
            return _LoweredStage(node, uses, None)
        stage = ir.Stage(
            name=self.name, kind=ir.StageKind(self.kind), mounts=mounts,
            after=tuple(sorted({name for name, _ in self.after})),
            span=self.declaration.span, spans=tuple(sorted(self.spans, key=lambda s: s[1].start)),
            **self.fields,
        )
        return _LoweredStage(node, uses, stage)

    # attributes -----------------------------------------------------------------

    def _default_image(self) -> None:
        header = self.lowering.header
        if header.image is None:
            self.lowering.missing("stage", self.declared, "image", self.declaration.name.span,
                                  f"stage `{self.declared}` has no `image`", label="needs an image",
                                  help='add `image = "python:3.11-slim"`, or set a default `image` in the '
                                  '`pipeline` header')
            return
        self._set_image(header.image, header.image_span)

    def _image(self, spec, value) -> None:
        text = self.evaluator.string(spec, value, self.name)  # no service address: an image names none
        if text is not INVALID:
            self._set_image(text, value.span)

    def _set_image(self, text: Text, span: Span) -> None:
        registry = self.lowering.header.registry
        image, parts = text.value, text.template
        if not image.strip():
            self.sink.error(codes.WRONG_TYPE, span, "`image` is empty", help='write an image such as "python:3.11-slim"')
            return
        problem = safety.image_reference_problem(image)
        if problem is not None:
            self.sink.error(codes.INVALID_IMAGE, span, f"`{abbreviate(image, 80)}` is not an image reference: "
                            f"{problem.message}", label="no registry accepts this", help=problem.help)
            return
        if registry and not _has_registry_host(image):
            image = f"{registry}/{image}"
            if parts is not None and parts[0].__class__ is str:
                parts = (f"{registry}/{parts[0]}", *parts[1:])
            elif parts is not None:
                parts = (f"{registry}/", *parts)
        self.fields["image"] = _text(Text(image, parts), span)
        tag = _image_tag(image)
        if tag is None or tag == "latest":
            self.sink.warning(codes.UNPINNED_IMAGE, span,
                              f"image `{image}` is not pinned: {'no tag means `latest`' if tag is None else '`latest` moves'}",
                              label="unpinned", help="pin a version tag (`:1.4.2`) or a digest (`@sha256:...`)")

    def _command(self, spec, value) -> None:
        argv = self._argv(spec, value, empty_help="leave `command` out to run the image's own entrypoint")
        if argv is not INVALID:
            self.fields["command"] = argv

    def _args(self, spec, value) -> None:
        argv = self._argv(spec, value, empty_help="leave `args` out to run the image's own command")
        if argv is not INVALID:
            self.fields["args"] = argv

    def _pull(self, spec, value) -> None:
        choice = self.evaluator.choice(spec, value)
        if choice is not INVALID:
            self.fields["pull"] = ir.PullPolicy(choice)

    def _script(self, spec, value) -> None:
        text = self.evaluator.string(spec, value, self.name, addresses=True)
        if text is not INVALID and not text.value.strip():
            self.sink.error(codes.WRONG_TYPE, value.span, "`script` is empty",
                            help="leave `script` out to run the image's own entrypoint")
        elif text is not INVALID:
            self.fields["script"] = _text(text, value.span)

    def _workdir(self, spec, value) -> None:
        text = self.evaluator.string(spec, value, self.name, addresses=True)
        if text is not INVALID:
            self.fields["workdir"] = _text(text, value.span)

    def _health(self, spec, value) -> None:
        text = self.evaluator.string(spec, value, self.name, addresses=True)
        if text is not INVALID:
            self.fields["health"] = ir.Health(ir.HealthKind.HTTP, path=_text(text, value.span), span=value.span)

    def _env(self, spec, value) -> None:
        if isinstance(value, m.MapValue) and any(isinstance(e.value, m.Reference) for e in value.entries):
            strings, keys = [], []
            seen: dict[str, m.Entry] = {}
            for entry in value.entries:
                first = seen.setdefault(entry.key, entry)
                if first is not entry and m.Reference in (type(first.value), type(entry.value)):
                    self.sink.error(codes.DUPLICATE_ATTRIBUTE, entry.key_span, f"`{entry.key}` is set twice in `env`",
                                    label="set again here", related=[Label(first.key_span, "first set here")],
                                    help="keep one of them")
                    continue
                (keys if isinstance(entry.value, m.Reference) else strings).append(entry)
            secret_env = [(entry.key, self._secret_key(entry.value)) for entry in keys
                          if _check_env_name(entry.key, entry.key_span, self.sink)]
            if all(key is not INVALID for _, key in secret_env):
                self.fields["secret_env"] = tuple(secret_env)
            value = value.model_copy(update={"entries": tuple(strings)})
        pairs = self.evaluator.string_map(spec, value, self.name, addresses=True)
        if pairs is not INVALID:
            self.env_keys = {key: entry.key_span for key, _, entry in pairs}
            self.fields["env"] = tuple(
                (key, _text(text, entry.value.span)) for key, text, entry in pairs
                if _check_env_name(key, entry.key_span, self.sink)
            )

    def _secret_key(self, reference: m.Reference) -> ir.SecretKey | object:
        """``hf.token``: the key ``token`` of the secret ``hf``."""
        (secret, key) = reference.parts
        symbols = self.lowering.symbols
        if secret.value not in symbols.known("secret"):
            stage = symbols.stages.get(secret.value)
            help = (f'a service address is written in a string: `"${{{reference.dotted}}}"`' if stage is not None
                    else did_you_mean(secret.value, symbols.secrets)
                    or f'declare it: `secret {secret.value} {{ keys = ["{key.value}"] }}`')
            self.sink.error(codes.UNKNOWN_SECRET, secret.span, f"unknown secret `{secret.value}`",
                            label="not a declared secret", help=help)
            return INVALID
        self.lowering.use("secret", secret.value)
        declared = self.secrets.get(secret.value)
        if declared is None:  # its declaration is broken, and reported
            self.sink.count_reported_error()
            return INVALID
        if key.value not in declared.keys:
            self.sink.error(codes.UNKNOWN_SECRET_KEY, key.span, f"the secret `{secret.value}` has no key `{key.value}`",
                            label="not one of its keys", related=[Label(symbols.secrets[secret.value].name.span,
                                                                        f"`{secret.value}` is declared here")],
                            help=did_you_mean(key.value, declared.keys)
                            or "its keys are " + ", ".join(f"`{k}`" for k in declared.keys))
            return INVALID
        return ir.SecretKey(secret.value, key.value, reference.span)
    def _check_env(self, attribute: m.Attribute | None) -> None:
        """An `env` key that is also a key of a listed secret replaces it (E402); a
        literal value under a credential's name is a credential in plain text (W402)."""
        if attribute is None or not isinstance(attribute.value, m.MapValue):
            return
        owners = {key: secret for secret in self.fields.get("secrets", ()) for key in secret.keys}
        for entry in attribute.value.entries:
            secret = owners.get(entry.key)
            if secret is not None:
                where = self.lowering.secret_key_span(secret.name, entry.key)
                self.sink.error(codes.ENV_REPLACES_SECRET, entry.key_span,
                                f"`{entry.key}` in `env` replaces the key `{entry.key}` of secret `{secret.name}`, "
                                "which this stage lists: the plain value would win on every target",
                                label="replaces the secret's value",
                                related=[Label(where, f"a key of secret `{secret.name}`")] if where else [],
                                help=f"rename the variable, or drop `{entry.key}` from secret `{secret.name}`")
            elif safety.credential_name(entry.key) and safety.credential_value(_literal(entry.value)):
                name = entry.key.lower() if IDENTIFIER_START.match(entry.key) else "credentials"
                self.sink.warning(
                    codes.CREDENTIAL_IN_ENV, entry.value.span,
                    f"`{entry.key}` looks like a credential, and its value is written here in plain text",
                    label="ends up in every compiled output",
                    help=f'declare a secret with this key (`secret {name} {{ keys = ["{entry.key}"] }}`) '
                    "and list it in `secrets`: its value then comes from the environment or the cluster")

    def _labels(self, spec, value) -> None:
        pairs = self.evaluator.string_map(spec, value, self.name)
        if pairs is not INVALID:
            self.fields["labels"] = _check_labels(pairs, self.sink)

    def _secrets(self, spec, value) -> None:
        names = self.evaluator.name_list(spec, value)
        if names is INVALID:
            return
        symbols = self.lowering.symbols
        out: list[ir.Secret] = []
        for name, span in names:
            if name not in symbols.known("secret"):
                self.sink.error(codes.UNKNOWN_SECRET, span, f"unknown secret `{name}`", label="not declared",
                                help=did_you_mean(name, symbols.secrets)
                                or f'declare it: `secret {name} {{ keys = ["..."] }}`')
                continue
            self.lowering.use("secret", name)
            if self.secrets.get(name) is not None and self.secrets[name] not in out:
                out.append(self.secrets[name])
        self.fields["secrets"] = tuple(out)

    def _after(self, spec, value) -> None:
        names = self.evaluator.name_list(spec, value)
        if names is INVALID:
            return
        symbols = self.lowering.symbols
        for name, span in names:
            if name not in symbols.known("stage"):
                self.sink.error(codes.UNKNOWN_STAGE, span, f"unknown stage `{name}`", label="not declared",
                                help=did_you_mean(name, symbols.stages)
                                or "`after` lists stages declared in this file")
            elif name in symbols.stages:
                self.after.append((name, span))

    def _retries(self, spec, value) -> None:
        self._set("retries", self.evaluator.quantity(spec, value, self.name))

    def _timeout(self, spec, value) -> None:
        self._set("timeout", self.evaluator.quantity(spec, value, self.name))

    def _port(self, spec, value) -> None:
        self._set("port", self.evaluator.quantity(spec, value, self.name))

    def _replicas(self, spec, value) -> None:
        if not self._is_range(value):
            self._set("replicas", self.evaluator.quantity(spec, value, self.name))
            return
        # MIN..MAX: autoscaled; MIN may be 0 (with a custom metric, see _check_autoscaling)
        scaled = self.evaluator.quantity(dataclasses.replace(spec, minimum=0, ranges=True), value, self.name)
        if scaled is INVALID:
            return
        if scaled.limit < 1:
            self.sink.error(codes.OUT_OF_RANGE, value.span, "`replicas` must reach at least 1, found 0..0",
                            help="write a range such as `replicas = 1..4`, or leave the stage out")
            return
        self.replica_range = (scaled.request, scaled.limit, value.span)
        self.fields["replicas"] = max(scaled.request, 1)

    def _is_range(self, value) -> bool:
        """``LOW..HIGH``, or a quoted ``${param}`` whose value is one."""
        if isinstance(value, m.RangeValue):
            return True
        interpolation = value.sole_interpolation if isinstance(value, m.Str) else None
        param = self.evaluator.params.get(interpolation.name) if interpolation is not None else None
        return param is not None and ".." in param.text

    # scheduling ------------------------------------------------------------------------

    def _schedule(self, items) -> None:
        self.schedule = self.lowering.lower_schedule(items, self.name, self.kind)

    def _merged_schedule(self) -> ir.Schedule:
        """The header's `schedule` under the stage's own, key by key (a key's value,
        such as the map of `node`, is replaced whole); a queue only for batch stages."""
        merged = {key: value for key, value in self.lowering.header.schedule.items()
                  if key != "queue" or self.kind != "serve"}
        merged.update(self.schedule)
        if not merged:
            return ir.Schedule()
        value = {key: written for key, (written, _) in merged.items()}
        return ir.Schedule(node=value.get("node", ()), tolerate=value.get("tolerate", ()),
                           priority=value.get("priority"), queue=value.get("queue"),
                           spans=tuple((key, merged[key][1]) for key in SCHEDULE if key in merged))

    def _autoscale_block(self, items) -> None:
        block = _read_block(items, AUTOSCALE, self.sink, "autoscale")
        for name, attribute in block.attributes.items():
            spec = AUTOSCALE[name]
            if spec.type is Type.STRING:
                text = self.evaluator.string(spec, attribute.value, self.name)
                value = INVALID if text is INVALID else text.value
                if value is not INVALID and not value.strip():
                    self.sink.error(codes.WRONG_TYPE, attribute.value.span, "`metric` is empty",
                                    help='name the metric: `metric = "requests_per_second"`')
                    value = INVALID
            else:
                value = self.evaluator.quantity(spec, attribute.value, self.name)
            self.autoscale[name] = (value, attribute.span)  # INVALID when reported: nothing more is said

    def _check_autoscaling(self, block_span: Span | None) -> None:
        """`replicas = MIN..MAX` with its `autoscale` block, or the CPU default."""
        if self.replica_range is None:
            if block_span is not None:
                self.sink.error(codes.AUTOSCALING, block_span, "`autoscale` needs a replica range",
                                label="scales between what?",
                                help="write the range it scales in: `replicas = 2..10`")
            return
        low, high, span = self.replica_range
        written = self.autoscale
        if any(value is INVALID for value, _ in written.values()):
            return
        if "metric" in written and "cpu" in written:
            self.sink.error(codes.CONFLICTING_ATTRIBUTES, written["cpu"][1],
                            "`autoscale` scales on `cpu` or on a `metric`, not both",
                            related=[Label(written["metric"][1], "with this")], help="keep one of them")
            return
        for present, missing in (("metric", "target"), ("target", "metric")):
            if present in written and missing not in written:
                self.sink.error(codes.MISSING_ATTRIBUTE, written[present][1],
                                f"`{present}` needs `{missing}` in `autoscale`",
                                help='scale on a custom metric with both: `autoscale { metric = '
                                '"requests_per_second"  target = 100 }`')
                return
        metric = written.get("metric", (None,))[0]
        cpu = None if metric is not None else written.get("cpu", (ir.DEFAULT_CPU_UTILIZATION, span))[0]
        if metric is None and low == 0:
            self.sink.error(codes.AUTOSCALING, written["cpu"][1] if "cpu" in written else span,
                            f"`{self.name}` scales from 0 replicas on CPU use, which no running pod reports",
                            label="from 0", help='scale on a custom metric of the service: `autoscale { metric = '
                            '"requests_waiting"  target = 10 }`, or start from 1: `replicas = '
                            f'1..{high}`')
            return
        resources = self.fields["resources"]
        if metric is None and resources.gpu > 0:
            where = written["cpu"][1] if "cpu" in written else span
            self.sink.warning(codes.GPU_SERVICE_SCALED_ON_CPU, where,
                              f"GPU service `{self.name}` autoscales on CPU use",
                              label=f"{cpu}% CPU" + ("" if "cpu" in written else " (the default)"),
                              help="a model server works on its GPU while its CPU idles: scale on a metric "
                              'of the server, e.g. `autoscale { metric = "num_requests_waiting"  target = 5 }`')
        self.fields["autoscale"] = ir.Autoscale(low, high, cpu=cpu, metric=metric,
                                                target=written.get("target", (None,))[0], span=span)

    def _nodes(self, spec, value) -> None:
        self._set("nodes", self.evaluator.quantity(spec, value, self.name))

    def _check_nodes(self, env_keys: Mapping[str, Span], mounts: tuple[ir.Mount, ...]) -> None:
        """A multi-node stage's own variables are aipc's (E270); an `rwo` volume it
        writes is attached to one machine at a time, and its nodes may be on several (W270)."""
        nodes = self.fields.get("nodes")
        if nodes is None:
            return
        for name, span in env_keys.items():
            if name in ir.NODE_VARIABLES:
                self.sink.error(codes.NODE_VARIABLE_SET, span,
                                f"`{name}` is set by `nodes` on every node of `{self.declared}`",
                                label="set by aipc", related=[Label(self.span_of("nodes"), "makes the stage a group")],
                                help="leave it out: aipc gives each node the group's values; to change torchrun's "
                                "own settings, pass its flags in `command` (a flag wins over `PET_*`)")
        if nodes < 2:
            return
        for mount in mounts:
            volume = mount.volume
            if not mount.read_only and volume.access is ir.Access.RWO and volume.kind is not ir.VolumeKind.HOST:
                self.sink.warning(codes.MULTINODE_RWO_VOLUME, mount.span,
                                  f"the {nodes} nodes of `{self.declared}` write `{volume.name}`, a single-node "
                                  "(rwo) volume, but may run on different machines",
                                  label="mounted writable on every node",
                                  related=[Label(volume.span, "declared rwo here")],
                                  help=f"declare `{volume.name}` with `access = rwx`, mount it `readonly`, or let "
                                  "one node write results to a volume of its own")

    def _cache(self, spec, value) -> None:
        self._set("cache", self.evaluator.boolean(spec, value, self.name))

    # security ------------------------------------------------------------------------

    def _security(self, items) -> None:
        self.security = self.lowering.lower_security(items, self.name, self.declared)

    def _check_gpu_memory(self) -> None:
        """GPUs without `memory` get the default limit, far too small for a GPU workload."""
        resources = self.fields["resources"]
        written = any(name == "memory" for name, _ in self.spans)  # a wrong one is reported as such
        if resources.gpu > 0 and resources.memory is None and not written:
            limit = ir.format_bytes(ir.DEFAULT_MEMORY.limit)
            self.sink.warning(codes.GPU_WITHOUT_MEMORY, self.span_of("gpu"),
                              f"`{self.declared}` asks for GPUs but sets no `memory`: it gets the default limit, {limit}",
                              label=f"no `memory`: limited to {limit}",
                              help="set `memory` in `resources`, e.g. `memory = 32Gi`: loading a model, host "
                              "buffers and data loaders need far more")

    def span_of(self, attribute: str) -> Span:
        return next((span for name, span in self.spans if name == attribute), self.declaration.name.span)

    def _swept(self, spec, value) -> None:
        """`matrix`, `exclude` and `max_parallel` are read once for all the instances
        (compiler/matrix.py), before any is lowered."""

    def _swept_block(self, items) -> None:
        """`matrix { ... }`: read once, as `_swept` says."""

    # ports and health ----------------------------------------------------------------

    def _expose(self, spec, value) -> None:
        self._set("expose", self.evaluator.quantity(spec, value, self.name))

    def _ports(self, spec, value) -> None:
        """``ports = { NAME = PORT, ... }``: Kubernetes port names (``_`` becomes ``-``)."""
        if not isinstance(value, m.MapValue):
            self.evaluator.quantity(spec, value, self.name)  # says what was expected
            return
        out: list[ir.NamedPort] = []
        seen: dict[str, m.Entry] = {}
        for entry in value.entries:
            number = self.evaluator.quantity(spec, entry.value, self.name)
            name = entry.key.replace("_", "-")
            if name in seen:
                self.sink.error(codes.DUPLICATE_ATTRIBUTE, entry.key_span, f"the port `{name}` is named twice",
                                label="named again here", related=[Label(seen[name].key_span, "first named here")],
                                help="give each port its own name (`_` and `-` are the same in port names)")
                continue
            seen[name] = entry
            problem = port_name_problem(name)
            if problem is not None:
                self.sink.error(codes.INVALID_PORT_NAME, entry.key_span, f"`{entry.key}` is not a valid port name: "
                                f"{problem}", label="becomes a Kubernetes port name",
                                help="at most 15 lower-case letters, digits and `-`, with a letter, e.g. `metrics`")
                continue
            if number is not INVALID:
                out.append(ir.NamedPort(name, number))
        self.port_keys = seen
        self.fields["ports"] = tuple(out)

    def _health_block(self, items) -> None:
        block = _read_block(items, HEALTH, self.sink, "health")
        attributes = block.attributes
        checks = [name for name in HEALTH_CHECKS if name in attributes]
        span = dict(self.spans)["health"]
        self.spans += [(f"health.{name}", attribute.span) for name, attribute in attributes.items()]
        if not checks:
            self.sink.error(codes.MISSING_ATTRIBUTE, span, "`health` says how to check the service: it needs "
                            "one of `http`, `tcp` or `command`", label="no check",
                            help='add `http = "/health"`, `tcp = true` or `command = ["..."]`')
            return
        for other in checks[1:]:
            self.lowering._conflict(attributes[other], attributes[checks[0]],
                                    f"`{checks[0]}` and `{other}` are two health checks; a service has one")
        if "port" in attributes and checks[0] == "command":
            self.lowering._conflict(attributes["port"], attributes["command"],
                                    "`port` says where `http` or `tcp` checks; `command` runs in the container")
        values: dict = {}
        for name, attribute in attributes.items():
            spec = HEALTH[name]
            if name == "http":
                text = self.evaluator.string(spec, attribute.value, self.name, addresses=True)
                values["path"] = _text(text, attribute.value.span) if text is not INVALID else INVALID
            elif name == "command":
                values["command"] = self._argv(spec, attribute.value)
            elif name == "tcp":
                values["tcp"] = self.evaluator.boolean(spec, attribute.value, self.name)
                if values["tcp"] is False:
                    self.sink.error(codes.INVALID_CHOICE, attribute.value.span, "`tcp = false` checks nothing",
                                    label="expected `true`", help="write `tcp = true`, or use `http` or `command`")
            elif name == "port":
                values["port"] = self._health_port(spec, attribute.value)
            else:
                values[name] = self.evaluator.quantity(spec, attribute.value, self.name)
        if any(value is INVALID for value in values.values()) or len(checks) > 1:
            return
        values.pop("tcp", None)
        self.fields["health"] = ir.Health(ir.HealthKind(checks[0]), span=span, **values)

    def _argv(self, spec, value, empty_help: str | None = None) -> tuple[ir.Text, ...] | Any:
        """A list of strings that is a program and its arguments (service addresses
        allowed); an empty one is an error, with ``empty_help`` (by default: write one)."""
        items = self.evaluator.string_list(spec, value, self.name, addresses=True)
        if items == []:
            self.sink.error(codes.WRONG_TYPE, value.span, f"`{spec.name}` is empty",
                            help=empty_help or f"write the program to run: `{spec.example}`")
            return INVALID
        return INVALID if items is INVALID else tuple(_text(text, span) for text, span in items)

    def _health_port(self, spec, value) -> int | Any:
        """A port number, or the name of one of ``ports``."""
        name = value.value if isinstance(value, m.Word) else value.literal if (
            isinstance(value, m.Str) and value.is_literal) else None
        if name is None:
            return self.evaluator.quantity(spec, value, self.name)
        ports = {port.name: port.port for port in self.fields.get("ports", ())}
        found = ports.get(name.replace("_", "-"))
        if found is None:
            written = [key for key in getattr(self, "port_keys", {})]
            self.sink.error(codes.UNKNOWN_PORT_NAME, value.span, f"`{name}` is not one of the stage's `ports`",
                            label="no port of this name", help=did_you_mean(name, written)
                            or ("write the port's number, or name one of: " + ", ".join(f"`{k}`" for k in written)
                                if written else "write the port's number, or add it to `ports = { NAME = PORT }`"))
            return INVALID
        return found

    def _check_ports(self, attributes) -> None:
        """Distinct container ports and Service ports; names clear of ``port``'s; the
        health check's port, by default ``port``."""
        port = self.fields.get("port")
        if port is None:
            return
        health = self.fields.get("health")
        main_name = (ir.OTHER_MAIN_PORT_NAME if health is not None and health.kind is not ir.HealthKind.HTTP
                     else ir.MAIN_PORT_NAME)
        expose = self.fields.get("expose", port)
        keys = getattr(self, "port_keys", {})
        for named in self.fields.get("ports", ()):
            key = keys[named.name].key_span
            if named.name == main_name:
                self.sink.error(codes.INVALID_PORT_NAME, key, f"`{named.name}` is the name of `port`",
                                label="taken", related=[Label(attributes["port"].name_span, f"named `{main_name}`")],
                                help="choose another name for this port")
            elif named.port == port:
                self.sink.error(codes.PORT_CONFLICT, key, f"port {port} is `port` already",
                                label="listed twice", related=[Label(attributes["port"].value.span, "here")],
                                help="list each port once: `port` is named `" + main_name + "`")
            elif named.port == expose:
                self.sink.error(codes.PORT_CONFLICT, key,
                                f"port {named.port} is also `expose`, the Service port of `port`",
                                label="two Service ports numbered alike",
                                related=[Label(attributes["expose"].value.span, "exposed here")],
                                help="expose `port` on another number, or move this port")
        numbers: dict[int, str] = {}
        for named in self.fields.get("ports", ()):
            if named.port in numbers:
                self.sink.error(codes.PORT_CONFLICT, keys[named.name].key_span,
                                f"port {named.port} is named twice (`{numbers[named.port]}` and `{named.name}`)",
                                label="listed twice", help="list each port once")
            numbers.setdefault(named.port, named.name)
        if health is not None and health.kind is not ir.HealthKind.COMMAND and health.port is None:
            self.fields["health"] = dataclasses.replace(health, port=port)

    # resources and mounts -----------------------------------------------------------

    def _resources(self, items) -> None:
        block = _read_block(items, RESOURCES, self.sink, "resources")
        values: dict = {}
        for name, attribute in block.attributes.items():
            spec = RESOURCES[name]
            self.spans.append((name, attribute.span))
            if spec.type is Type.CHOICE:
                choice = self.evaluator.choice(spec, attribute.value)
                if choice is not INVALID:
                    values[name] = ir.GpuVendor(choice)
            elif spec.type is Type.STRING:
                text = self.evaluator.string(spec, attribute.value, self.name)
                if text is not INVALID and name == "gpu_model" and gpus.lookup(text.value) is None \
                        and gpus.looks_portable(text.value):
                    self._unknown_gpu_model(text.value, attribute.value.span)
                elif text is not INVALID and name == "gpu_model" and not _label_value("-".join(text.value.split())):
                    self.sink.error(codes.INVALID_LABEL, attribute.value.span,
                                    f"`{text.value}` cannot be a GPU model: it is matched against a node label",
                                    help="write the product as the node label shows it, e.g. "
                                    '"NVIDIA-A100-SXM4-80GB" (letters, digits, `-`, `_`, `.`; at most 63)')
                elif text is not INVALID:
                    values[name] = text.value
            else:
                value = self.evaluator.quantity(spec, attribute.value, self.name)
                if value is not INVALID:
                    values[name] = value
        if "gpu_model" in values:
            self._gpu_model(values, block)
        self.fields["resources"] = ir.Resources(**values)

    def _gpu_model(self, values: dict, block: _Block) -> None:
        """A portable model names its vendor; what the model selects on each convention."""
        model = gpus.lookup(values["gpu_model"])
        if model is not None and "gpu_vendor" in block.attributes and values.get("gpu_vendor") not in (None, model.vendor):
            self.lowering._conflict(block.attributes["gpu_vendor"], block.attributes["gpu_model"],
                                    f"`{model.name}` is an {model.vendor.value.upper()} GPU, not "
                                    f"{values['gpu_vendor'].value}")
            return
        if model is not None:
            values["gpu_vendor"] = model.vendor
        values["gpu_nodes"] = gpus.gpu_nodes(values["gpu_model"], values.get("gpu_vendor", ir.GpuVendor.NVIDIA))

    def _unknown_gpu_model(self, text: str, span: Span) -> None:
        names = gpus.closest_names(text)
        meant = " or ".join(f"`{name}`" for name in names)
        self.sink.error(codes.UNKNOWN_GPU_MODEL, span, f"`{text}` is not a portable GPU model",
                        label="no node carries this label",
                        help=(f"did you mean {meant}? " if names else "")
                        + "the portable models are " + ", ".join(gpus.PORTABLE_NAMES)
                        + "; a node label value is used as written (e.g. `NVIDIA-H100-80GB-HBM3`)")

    def _mounts(self, mounts: list[m.Mount]) -> tuple[tuple[ir.Mount, ...], list[tuple[str, dag.Use]]]:
        out: list[ir.Mount] = []
        uses: list[tuple[str, dag.Use]] = []
        seen = self.paths
        if self.fields["resources"].shm is not None:
            seen["/dev/shm"] = dict(self.spans)["shm"]
        symbols = self.lowering.symbols
        for mount in mounts:
            volume_name = mount.volume.value
            if volume_name not in symbols.known("volume"):
                self.sink.error(codes.UNKNOWN_VOLUME, mount.volume.span, f"unknown volume `{volume_name}`",
                                label="not declared", help=did_you_mean(volume_name, symbols.volumes)
                                or f"declare it: `volume {volume_name} {{ size = 10Gi }}`")
                continue
            self.lowering.use("volume", volume_name)
            text = self.evaluator.interpolate(mount.path, self.name)
            if text is INVALID:
                continue
            path = text.value
            if not path.startswith("/"):
                self.sink.error(codes.RELATIVE_PATH, mount.path.span, f"mount path `{path}` is not absolute",
                                label="does not start with `/`", help=f'write "/{path.lstrip("./")}"')
                continue
            normal = "/" + posixpath.normpath(path).lstrip("/")
            reserved = safety.container_path_problem(normal)
            if reserved is not None:
                self.sink.error(codes.RESERVED_MOUNT_PATH, mount.path.span,
                                f"`{volume_name}` cannot be mounted at `{normal}`: {reserved}",
                                label="owned by the container runtime",
                                help="mount it at a path of its own, such as \"/data\"")
                continue
            if normal in seen:
                first = "`shm` owns /dev/shm" if normal == "/dev/shm" else "first mounted here"
                self.sink.error(codes.DUPLICATE_MOUNT_PATH, mount.path.span,
                                f"two mounts at `{normal}` in stage `{self.declared}`",
                                label="mounted again here", related=[Label(seen[normal], first)],
                                help="give each mount its own path")
                continue
            seen[normal] = mount.path.span
            risk = self.lowering.host_risks.get(volume_name)
            if risk is not None:
                self.sink.warning(codes.DANGEROUS_HOST_PATH, mount.span,
                                  f"stage `{self.declared}` mounts the host volume `{volume_name}`: {risk[0]}",
                                  label="the container gets hold of the host",
                                  related=[Label(risk[1], "the host path")],
                                  help="mount only the directory the stage needs")
            uses.append((volume_name, dag.Use(self.name, mount.readonly, mount.span, self.group)))
            volume = self.volumes.get(volume_name)
            if volume is not None:
                out.append(ir.Mount(volume, normal, mount.readonly, mount.span))
        return tuple(out), uses


    # outputs and inputs ----------------------------------------------------------------

    def _path(self, string: m.Str, what: str) -> str | None:
        """A statement's path, absolute and normalised, claimed in the stage's paths (None when
        it is invalid or taken: said)."""
        text = self.evaluator.interpolate(string, self.name)
        if text is INVALID:
            return None
        path = text.value
        if not path.startswith("/"):
            self.sink.error(codes.RELATIVE_PATH, string.span, f"{what} path `{path}` is not absolute",
                            label="does not start with `/`", help=f'write "/{path.lstrip("./")}"')
            return None
        normal = "/" + posixpath.normpath(path).lstrip("/")
        if normal in self.paths:
            first = "`shm` owns /dev/shm" if normal == "/dev/shm" else "first mounted here"
            self.sink.error(codes.DUPLICATE_MOUNT_PATH, string.span,
                            f"two mounts at `{normal}` in stage `{self.declared}`",
                            label="mounted again here", related=[Label(self.paths[normal], first)],
                            help="give each mount, output and input its own path")
            return None
        self.paths[normal] = string.span
        return normal

    def _outputs(self, items: list[m.Output]) -> None:
        out: dict[str, ir.Output] = {}
        first: dict[str, m.Output] = {}
        for item in items:
            name = item.name.value
            if name in first:
                self.sink.error(codes.DUPLICATE_ATTRIBUTE, item.name.span, f"the output `{name}` is declared twice",
                                label="declared again here", related=[Label(first[name].name.span, "first here")],
                                help="give each output its own name")
                continue
            first[name] = item
            path = self._path(item.path, "output")
            if path is not None:
                out[name] = ir.Output(name, path, item.span)
        self.output_spans = {name: first[name].path.span for name in out}
        self.fields["outputs"] = tuple(out.values())

    def _inputs(self, items: list[m.Input]) -> None:
        out: list[ir.Input] = []
        for item in items:
            source = self._input_source(item)
            path = self._path(item.path, "input")
            if source is not None and path is not None:
                stage, output = source
                out.append(ir.Input(stage, output, path, (stage,), False, item.span))
        self.fields["inputs"] = tuple(out)

    def _input_source(self, item: m.Input) -> tuple[str, str] | None:
        """``STAGE.OUTPUT``, checked: a batch stage other than this one, and one of its outputs.
        The stage is a dependency (it must complete first)."""
        parts = item.source.parts
        if len(parts) != 2:
            self.sink.error(codes.UNKNOWN_OUTPUT, item.source.span, f"`{item.source.dotted}` names no output",
                            label="expected STAGE.OUTPUT", help='write `input STAGE.OUTPUT at "/path"`')
            return None
        stage, output = parts
        symbols = self.lowering.symbols
        declaration = symbols.stages.get(stage.value)
        if declaration is None:
            if stage.value in symbols.known("stage"):
                self.sink.count_reported_error()
                return None
            self.sink.error(codes.UNKNOWN_STAGE, stage.span, f"unknown stage `{stage.value}`", label="not declared",
                            help=did_you_mean(stage.value, symbols.stages)
                            or "`input` reads an output of a stage declared in this file")
            return None
        if declaration.kind == "serve":
            self.sink.error(codes.INPUT_FROM_SERVICE, stage.span,
                            f"`{stage.value}` is a serve stage: it has no outputs to read",
                            label="a serve stage", related=[Label(declaration.name.span, "declared here")],
                            help="read the output of a batch stage, or reach the service through its address "
                            f"(`${{{stage.value}.url}}`)")
            return None
        if stage.value == self.declared:
            self.sink.error(codes.DEPENDENCY_CYCLE, stage.span, f"stage `{self.declared}` reads its own output",
                            label="an input comes from a stage that completed before",
                            help=f"use the path of `output {output.value}` itself")
            return None
        outputs = self.lowering.outputs.get(stage.value, {})
        if output.value not in outputs:
            self.sink.error(codes.UNKNOWN_OUTPUT, output.span,
                            f"stage `{stage.value}` has no output `{output.value}`", label="no such output",
                            related=[Label(declaration.name.span, f"`{stage.value}` is declared here")],
                            help=did_you_mean(output.value, outputs) or (
                                "its outputs are " + ", ".join(f"`{name}`" for name in outputs) if outputs else
                                f'declare it in `{stage.value}`: `output {output.value} at "/path"`'))
            return None
        self.after.append((stage.value, item.source.span))
        return stage.value, output.value

    def _check_covered(self) -> None:
        """An output is a directory of its own: no other mount, output or input inside it
        or around it (what one writes would land in, or hide, the other)."""
        for output in self.fields.get("outputs", ()):
            if output.path == "/":
                self.sink.error(codes.NESTED_OUTPUT, self.output_spans[output.name],
                                f"the output `{output.name}` at `/` would hide the image's whole file system",
                                label="the root directory", help='give the output a directory of its own: "/out"')
                continue
            for path, span in self.paths.items():
                if path == output.path:
                    continue
                inner, outer = (path, output.path) if path.startswith(output.path + "/") else (output.path, path)
                if not inner.startswith(outer + "/"):
                    continue
                self.sink.error(codes.NESTED_OUTPUT, self.output_spans[output.name],
                                f"the output `{output.name}` at `{output.path}` "
                                + (f"holds another mount, at `{path}`" if inner == path
                                   else f"lies inside another mount, at `{path}`"),
                                label="overlaps another mount", related=[Label(span, "mounted here")],
                                help="give the output a directory of its own, apart from every other mount")


# How each stage attribute and block of the schema is lowered: one entry per
# name in schema.STAGE and schema.STAGE_BLOCKS (a test holds the keys equal).
LOWER_STAGE_ATTRIBUTE: dict[str, Callable[[_StageLowering, AttributeSpec, m.Value], None]] = {
    "image": _StageLowering._image,
    "pull": _StageLowering._pull,
    "command": _StageLowering._command,
    "args": _StageLowering._args,
    "script": _StageLowering._script,
    "workdir": _StageLowering._workdir,
    "env": _StageLowering._env,
    "secrets": _StageLowering._secrets,
    "after": _StageLowering._after,
    "labels": _StageLowering._labels,
    "retries": _StageLowering._retries,
    "timeout": _StageLowering._timeout,
    "port": _StageLowering._port,
    "expose": _StageLowering._expose,
    "ports": _StageLowering._ports,
    "replicas": _StageLowering._replicas,
    "nodes": _StageLowering._nodes,
    "health": _StageLowering._health,
    "cache": _StageLowering._cache,
    "matrix": _StageLowering._swept,
    "exclude": _StageLowering._swept,
    "max_parallel": _StageLowering._swept,
}
LOWER_STAGE_BLOCK: dict[str, Callable[[_StageLowering, list], None]] = {
    "resources": _StageLowering._resources,
    "health": _StageLowering._health_block,
    "matrix": _StageLowering._swept_block,
    "schedule": _StageLowering._schedule,
    "autoscale": _StageLowering._autoscale_block,
    "security": _StageLowering._security,
}
PROGRAMS = ("command", "args", "script")  # what runs: at most one of them


IDENTIFIER_START = re.compile(r"[A-Za-z]")


def _literal(value) -> str:
    """A map value written as plain text (a literal string or a number), else ""."""
    if isinstance(value, m.Str):
        return value.literal if value.is_literal else ""
    return value.text if isinstance(value, m.Number) else ""


def _attribute_around(items, span: Span) -> str:
    """The name of the innermost attribute or block among ``items`` that holds
    ``span``, or the statement's keyword (`mount`, `output`...)."""
    for item in items:
        if item.span.start <= span.start and span.end <= item.span.end:
            if isinstance(item, m.Block):
                return _attribute_around(item.items, span) or item.name
            return item.name if isinstance(item, m.Attribute) else item.item
    return ""


def _text(text: Text, span: Span) -> ir.Text:
    """A checked string as the IR holds it: its parts (literal text and parameter references)."""
    return ir.Text(text.template if text.template is not None else (text.value,), span)


def lower(program: m.Program, overrides: Mapping[str, str], sink: Diagnostics,
          uses: Mapping[str, Use] | None = None, unresolved: frozenset[str] = frozenset()) -> ir.Pipeline | None:
    """The IR of a parsed program (its stages' templates expanded, see
    :mod:`aipc.compiler.templates`, which gives ``uses`` and ``unresolved``), or None
    when it has errors (all reported to ``sink``)."""
    return _Lowering(program, overrides, sink, uses, unresolved).run()


def lower_detached_stage(declaration: m.StageDecl, sink: Diagnostics) -> None:
    """Check one stage's body with no pipeline around it: no header, parameters,
    volumes, secrets or other stages (a template's body on its own; the caller
    leaves the names it uses to the stages that use it)."""
    program = m.construct(m.Program, path=sink.file, declarations=(declaration,), broken=(), incomplete=())
    lowering = _Lowering(program, {}, sink)
    sweeps = read_sweeps(lowering.symbols, lowering.header.name, sink, lowering.evaluator)
    lowering.lower_stage(declaration, {}, {}, sweeps.get(declaration.name.value))
