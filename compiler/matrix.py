"""Sweeps: each matrix stage's axes, exclusions and instances, and their names.

LANGUAGE.md v1, "Sweeps". A stage with ``matrix { AXIS = [VALUES] ... }`` runs
once per combination of the values: the cartesian product, axes in the order
written, less every combination that matches all the keys of one map of
``exclude``. A stage with ``matrix = STAGE`` sweeps STAGE's axes and exclusions
(following STAGE's own ``matrix = ...``), so both have the same instances in
the same order, and ``after = [STAGE]`` pairs them one to one.

:func:`read_sweeps` reads every matrix stage of a program before the stages are
lowered (a ``matrix = STAGE`` needs STAGE's axes); the lowering then lowers a
matrix stage once per instance, with that instance's values in
:attr:`Evaluator.matrix` (``${matrix.AXIS}``), and maps ``after`` onto instances
(:mod:`aipc.compiler.lower`).

Instance names: the stage name and the instance's values joined by ``-``, in
lower case, every character outside ``[a-z0-9]`` replaced by ``-``
(``model-3e-4-2``). Where that name ends with ``-`` (not a DNS label), makes an
object name ``<pipeline>-<instance>`` longer than Kubernetes' 63 characters,
or is also another instance's or stage's name, the instance is named by the
stage and a short hash of its coordinates instead (``model-5f2c01ab``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Iterable, Mapping

from aipc import codes
from aipc.compiler import graph as dag
from aipc.compiler import ir
from aipc.compiler.resolve import Symbols
from aipc.compiler.schema import MAX_INSTANCES, STAGE
from aipc.compiler.values import INVALID, Evaluator, MatrixScope, describe, did_you_mean, source_text
from aipc.diagnostics import Diagnostics, Label, Span, Use
from aipc.dsl import model as m

MATRIX, EXCLUDE, MAX_PARALLEL = "matrix", "exclude", "max_parallel"
# Combinations enumerated at most, to count what `exclude` leaves of them; a
# product beyond this is reported at once (no exclusion brings it near 1000).
MAX_COMBINATIONS = 100_000
HASH_LENGTH = 8


@dataclass(frozen=True, slots=True)
class Axis:
    name: str
    values: tuple[ir.AxisValue, ...]


@dataclass
class Sweep:
    """A matrix stage, read: the axes it sweeps (its own or, along ``matrix =
    STAGE``, those of ``root``), each instance's values in axis order, and the
    instances' names. ``valid`` is False when its matrix has an error (already
    reported): the stage is then lowered once, and has no instances."""

    stage: str
    root: str  # the stage whose `matrix { }` block it sweeps
    span: Span  # where `matrix` is written
    valid: bool = True
    axes: tuple[Axis, ...] = ()
    coordinates: tuple[tuple[ir.AxisValue, ...], ...] = ()
    names: tuple[str, ...] = ()
    max_parallel: int | None = None
    max_parallel_span: Span | None = None

    def scope(self, index: int) -> MatrixScope:
        """What ``${matrix.AXIS}`` and ``${stage.name}`` are in instance ``index``."""
        if not self.valid:
            return MatrixScope(self.stage, None)
        values = self.coordinates[index]
        return MatrixScope(self.names[index], {axis.name: values[k] for k, axis in enumerate(self.axes)})

    def instance_coordinates(self, index: int) -> tuple[tuple[str, ir.AxisValue], ...]:
        return tuple(zip([axis.name for axis in self.axes], self.coordinates[index]))


@dataclass
class _Written:
    """What a stage writes about its matrix: the first of each form, as ``_read_block`` keeps them."""

    block: m.Block | m.Attribute | None = None  # `matrix { }`, or `matrix = { ... }`
    word: m.Attribute | None = None  # `matrix = STAGE`
    exclude: m.Attribute | None = None
    max_parallel: m.Attribute | None = None
    extra: list = field(default_factory=list)


def _written(declaration: m.StageDecl) -> _Written:
    written = _Written()
    for item in declaration.items:
        if not isinstance(item, (m.Attribute, m.Block)) or item.name not in (MATRIX, EXCLUDE, MAX_PARALLEL):
            continue  # statements (`mount`, `output`, `input`) and the other attributes
        if item.name == MATRIX and (isinstance(item, m.Block) or isinstance(item.value, m.MapValue)):
            written.block = written.block or item
        elif isinstance(item, m.Block):
            continue  # `exclude { }`: an unknown block, which the stage's lowering reports
        elif item.name == MATRIX:
            written.word = written.word or item
        elif item.name == EXCLUDE:
            written.exclude = written.exclude or item
        else:
            written.max_parallel = written.max_parallel or item
    return written


def has_matrix(declaration: m.StageDecl) -> bool:
    """Whether a stage is written as a matrix stage (its matrix may still be invalid)."""
    written = _written(declaration)
    return written.block is not None or written.word is not None


# ------------------------------------------------------------------- values


def axis_value(value) -> ir.AxisValue | None:
    """A scalar as an axis value, or None: a number (typed; a quantity keeps its
    text), a bool, a bare word or a string without ``${...}``."""
    if isinstance(value, m.Number):
        if value.unit is None and (not isinstance(value.value, float) or math.isfinite(value.value)):
            return ir.AxisValue(value.text, value.value)
        return ir.AxisValue(value.text, value.text)
    if isinstance(value, m.Word):
        if value.value in ("true", "false"):
            return ir.AxisValue(value.value, value.value == "true")
        return ir.AxisValue(value.value, value.value)
    if isinstance(value, m.Str) and value.is_literal:
        return ir.AxisValue(value.literal, value.literal)
    return None


def _same(value: ir.AxisValue):
    """What makes two values the same one: numbers by value (`1` and `1.0`), the rest by text."""
    typed = value.value
    if isinstance(typed, bool):
        return ("bool", typed)
    if isinstance(typed, (int, float)):
        return ("number", typed)
    return ("text", typed)


def _values_text(values: Iterable[ir.AxisValue]) -> str:
    return ", ".join(f"`{value.text}`" for value in values)


# ------------------------------------------------------------------- reading


class _Reader:
    def __init__(self, symbols: Symbols, sink: Diagnostics, evaluator: Evaluator | None,
                 uses: Mapping[str, Use]) -> None:
        self.symbols = symbols
        self.sink = sink
        self.evaluator = evaluator
        self.uses = uses
        self.written = {name: _written(d) for name, d in symbols.stages.items()}

    def _for(self, name: str):
        """Within: what is reported is about the stage ``name``; a problem in the text of a
        template it starts from gets "used here" at the stage (see ``Diagnostics.used_by``)."""
        use = self.uses.get(name)
        return self.sink.used_by(use) if use is not None else contextlib.nullcontext()

    def read(self) -> dict[str, Sweep]:
        sweeps: dict[str, Sweep] = {}
        for name, declaration in self.symbols.stages.items():
            with self._for(name):
                self._read_own(name, declaration, sweeps)
        for name, declaration in self.symbols.stages.items():
            written = self.written[name]
            if written.word is not None and written.block is None:
                with self._for(name):
                    sweeps[name] = self._copied(declaration, written, sweeps)
        for name, sweep in sweeps.items():
            with self._for(name):
                self._max_parallel(self.symbols.stages[name], self.written[name], sweep)
        return sweeps

    def _read_own(self, name: str, declaration: m.StageDecl, sweeps: dict[str, Sweep]) -> None:
        written = self.written[name]
        if written.block is not None:
            sweeps[name] = self._own(declaration, written)
        elif written.word is None:
            for item in (written.exclude, written.max_parallel):
                if item is not None:
                    self.sink.error(codes.INVALID_MATRIX, item.name_span,
                                    f"`{item.name}` belongs to a matrix stage, and `{name}` has no `matrix`",
                                    label="no matrix to apply it to",
                                    help="add `matrix { AXIS = [VALUES] }` to the stage, or remove this")

    # `matrix { AXIS = [VALUES] }` ----------------------------------------------------

    def _own(self, declaration: m.StageDecl, written: _Written) -> Sweep:
        name = declaration.name.value
        block = written.block
        sweep = Sweep(name, name, block.name_span)
        if written.word is not None:
            self.sink.error(codes.CONFLICTING_ATTRIBUTES, written.word.name_span,
                            f"`{name}` has its own `matrix {{ }}` and `matrix = ...`",
                            label="conflicts", related=[Label(block.name_span, "with this")],
                            help="keep one: axes of its own, or `matrix = STAGE` to sweep another stage's")
        errors = self.sink.error_count()
        axes, names = self._axes(name, block)
        exclusions = self._exclusions(name, written.exclude, axes, names) if written.exclude is not None else []
        if self.sink.error_count() > errors:
            sweep.valid = False
            return sweep
        if not axes:
            self.sink.error(codes.INVALID_MATRIX, block.name_span, f"the matrix of `{name}` has no axes",
                            label="no axes", help="write `matrix { AXIS = [VALUES] }`, or remove it")
            sweep.valid = False
            return sweep
        coordinates = self._combinations(name, block.name_span, axes, exclusions)
        if coordinates is None:
            sweep.valid = False
            return sweep
        sweep.axes = tuple(axes)
        sweep.coordinates = coordinates
        return sweep

    def _axes(self, stage: str, block) -> tuple[list[Axis], list[str]]:
        """The valid axes, and the names of all that are written."""
        if isinstance(block, m.Block):
            items = [(item, getattr(item, "name", None), getattr(item, "name_span", item.span)) for item in block.items]
        else:  # `matrix = { lr = [...] }`
            items = [(entry, entry.key, entry.key_span) for entry in block.value.entries]
        axes: list[Axis] = []
        seen: dict[str, Span] = {}
        for item, name, name_span in items:
            if not isinstance(item, (m.Attribute, m.Entry)):
                self.sink.error(codes.UNKNOWN_ATTRIBUTE, item.span, "a matrix holds axes, nothing else",
                                help="write each axis as `NAME = [VALUES]`")
                continue
            if name in seen:
                self.sink.error(codes.DUPLICATE_ATTRIBUTE, name_span, f"the axis `{name}` is set twice",
                                label="set again here", related=[Label(seen[name], "first set here")],
                                help="list all its values once: `NAME = [a, b, c]`")
                continue
            seen[name] = name_span
            axis = self._axis(stage, name, name_span, item.value)
            if axis is not None:
                axes.append(axis)
        return axes, list(seen)

    def _axis(self, stage: str, name: str, name_span: Span, value) -> Axis | None:
        if not isinstance(value, m.ListValue):
            written = source_text(value) if not isinstance(value, (m.ListValue, m.MapValue, m.RangeValue)) else "..."
            self.sink.error(codes.INVALID_MATRIX, value.span, f"the axis `{name}` is a list of values, found "
                            f"{describe(value)}", help=f"write `{name} = [{written}]`")
            return None
        if not value.items:
            self.sink.error(codes.INVALID_MATRIX, value.span, f"the axis `{name}` of `{stage}` has no values",
                            label="empty", help=f"list at least one value (`{name} = [1]`), or remove the axis")
            return None
        values: list[ir.AxisValue] = []
        first: dict[object, Span] = {}
        ok = True
        for item in value.items:
            converted = axis_value(item)
            if converted is None:
                why = ("a matrix is fixed when compiling, so its values cannot use `${...}`"
                       if isinstance(item, m.Str) else "values are numbers, strings, bools or quantities")
                self.sink.error(codes.INVALID_MATRIX, item.span,
                                f"the axis `{name}` holds {describe(item)}", label="not a value", help=why)
                ok = False
                continue
            key = _same(converted)
            if key in first:
                self.sink.error(codes.INVALID_MATRIX, item.span,
                                f"`{converted.text}` is listed twice in the axis `{name}`",
                                label="listed again here", related=[Label(first[key], "first listed here")],
                                help="remove one: two equal values make two identical instances")
                ok = False
                continue
            first[key] = item.span
            values.append(converted)
        return Axis(name, tuple(values)) if ok else None

    def _exclusions(self, stage: str, attribute: m.Attribute, axes: list[Axis], written: list[str]
                    ) -> list[dict[int, int]]:
        """Each map of `exclude` that can match, as {axis index: value index}; a map that
        names an unknown axis or value is a warning and matches nothing (an axis that is
        written but invalid is reported already)."""
        value = attribute.value
        example = "exclude = [{ lr = 1e-4, seed = 3 }]"
        if not isinstance(value, m.ListValue) or not all(isinstance(i, m.MapValue) for i in value.items):
            found = value if not isinstance(value, m.ListValue) else next(
                i for i in value.items if not isinstance(i, m.MapValue))
            self.sink.error(codes.INVALID_MATRIX, found.span, f"`exclude` is a list of maps, found {describe(found)}",
                            help=f"for example `{example}`")
            return []
        by_name = {axis.name: (position, axis) for position, axis in enumerate(axes)}
        out: list[dict[int, int]] = []
        for map_value in value.items:
            match: dict[int, int] | None = {}
            seen: dict[str, Span] = {}
            for entry in map_value.entries:
                if entry.key in seen:
                    self.sink.error(codes.DUPLICATE_ATTRIBUTE, entry.key_span,
                                    f"`{entry.key}` is set twice in one map of `exclude`",
                                    related=[Label(seen[entry.key], "first set here")])
                    match = None
                    continue
                seen[entry.key] = entry.key_span
                converted = axis_value(entry.value)
                if converted is None:
                    self.sink.error(codes.INVALID_MATRIX, entry.value.span,
                                    f"`exclude` compares `{entry.key}` with {describe(entry.value)}",
                                    help="write one value of the axis, as the matrix lists it")
                    match = None
                    continue
                if entry.key not in by_name and entry.key in written:
                    match = None
                    continue
                if entry.key not in by_name:
                    self.sink.warning(codes.EXCLUDE_MATCHES_NOTHING, entry.key_span,
                                      f"`{entry.key}` is not an axis of `{stage}`: this map of `exclude` "
                                      "matches no instance", label="not an axis",
                                      help=did_you_mean(entry.key, written)
                                      or "the axes are " + ", ".join(f"`{a}`" for a in written))
                    match = None
                    continue
                position, axis = by_name[entry.key]
                wanted = _same(converted)
                index = next((i for i, v in enumerate(axis.values) if _same(v) == wanted), None)
                if index is None:
                    self.sink.warning(codes.EXCLUDE_MATCHES_NOTHING, entry.value.span,
                                      f"`{entry.key}` has no value `{converted.text}`: this map of `exclude` "
                                      "matches no instance", label="not a value of the axis",
                                      help=f"the values of `{entry.key}` are {_values_text(axis.values)}")
                    match = None
                    continue
                if match is not None:
                    match[position] = index
            if match is not None:
                out.append(match)
        return out

    def _combinations(self, stage: str, span: Span, axes: list[Axis], exclusions: list[dict[int, int]]
                      ) -> tuple[tuple[ir.AxisValue, ...], ...] | None:
        total = math.prod(len(axis.values) for axis in axes)
        shape = " x ".join(str(len(axis.values)) for axis in axes)
        if total > MAX_COMBINATIONS or (total > MAX_INSTANCES and not exclusions):
            self.sink.error(codes.TOO_MANY_INSTANCES, span,
                            f"`{stage}` would have {total} instances ({shape}); at most {MAX_INSTANCES} are allowed",
                            label="too many combinations",
                            help="sweep fewer values, exclude combinations, or split the sweep into several stages")
            return None
        kept = [combination for combination in itertools.product(*(range(len(a.values)) for a in axes))
                if not any(all(combination[p] == v for p, v in rule.items()) for rule in exclusions)]
        if len(kept) > MAX_INSTANCES:
            self.sink.error(codes.TOO_MANY_INSTANCES, span,
                            f"`{stage}` would have {len(kept)} instances ({shape}, less {total - len(kept)} "
                            f"excluded); at most {MAX_INSTANCES} are allowed", label="too many combinations",
                            help="sweep fewer values, exclude combinations, or split the sweep into several stages")
            return None
        if not kept:
            self.sink.error(codes.INVALID_MATRIX, span, f"`exclude` leaves `{stage}` no instance",
                            label="every combination is excluded", help="exclude fewer combinations")
            return None
        return tuple(tuple(axes[p].values[v] for p, v in enumerate(combination)) for combination in kept)

    # `matrix = STAGE` ------------------------------------------------------------

    def _copied(self, declaration: m.StageDecl, written: _Written, sweeps: dict[str, Sweep]) -> Sweep:
        name = declaration.name.value
        word = written.word
        sweep = Sweep(name, name, word.name_span, valid=False)
        if written.exclude is not None:
            target = word.value.value if isinstance(word.value, m.Word) else "its matrix"
            self.sink.error(codes.INVALID_MATRIX, written.exclude.name_span,
                            f"`{name}` sweeps the matrix of `{target}`, with its `exclude`",
                            label="a stage with `matrix = STAGE` has no `exclude` of its own",
                            help=f"move it to `{target}`, or give `{name}` a `matrix {{ }}` of its own")
        chain = [name]
        current = word
        while True:
            target = self._target(chain[-1], current)
            if target is None:
                return sweep
            if target in chain:
                loop = chain[chain.index(target):] + [target]
                self.sink.error(codes.MATRIX_PAIRING, word.value.span,
                                "`matrix = STAGE` goes round in a loop: " + " -> ".join(loop),
                                label="no stage of the loop has axes of its own",
                                help="give one of them a `matrix { AXIS = [VALUES] }`")
                return sweep
            chain.append(target)
            target_written = self.written[target]
            if target_written.block is not None:
                root = sweeps[target]
                break
            current = target_written.word
        if not root.valid:
            self.sink.count_reported_error()
            return sweep
        sweep.root, sweep.valid = root.root, True
        sweep.axes, sweep.coordinates = root.axes, root.coordinates
        return sweep

    def _target(self, stage: str, word: m.Attribute) -> str | None:
        """The stage a `matrix = STAGE` names, if it is a matrix stage (else reported)."""
        value = word.value
        if not isinstance(value, m.Word):
            self.sink.error(codes.WRONG_TYPE, value.span, f"`matrix` is a stage name or a block, found {describe(value)}",
                            help="write `matrix = STAGE`, or `matrix { AXIS = [VALUES] }`")
            return None
        target = value.value
        if target not in self.symbols.known("stage"):
            self.sink.error(codes.UNKNOWN_STAGE, value.span, f"unknown stage `{target}`", label="not declared",
                            help=did_you_mean(target, self.symbols.stages)
                            or "`matrix = STAGE` names a matrix stage declared in this file")
            return None
        if target not in self.symbols.stages:  # it did not parse: its error is reported
            self.sink.count_reported_error()
            return None
        written = self.written[target]
        if written.block is None and written.word is None:
            self.sink.error(codes.MATRIX_PAIRING, value.span, f"`{target}` is not a matrix stage",
                            label="has no axes to sweep",
                            related=[Label(self.symbols.stages[target].name.span, f"`{target}` has no `matrix`")],
                            help=f"give `{target}` a `matrix {{ AXIS = [VALUES] }}`, or `{stage}` one of its own")
            return None
        return target

    def _max_parallel(self, declaration: m.StageDecl, written: _Written, sweep: Sweep) -> None:
        attribute = written.max_parallel
        if attribute is None or self.evaluator is None or declaration.kind not in STAGE[MAX_PARALLEL].kinds:
            return  # on a serve stage: reported as not for its kind
        value = self.evaluator.quantity(STAGE[MAX_PARALLEL], attribute.value, None)
        if value is not INVALID:
            sweep.max_parallel, sweep.max_parallel_span = value, attribute.span


# ------------------------------------------------------------------- names


def readable_name(stage: str, values: Iterable[ir.AxisValue]) -> str:
    """``model-3e-4-2``: the stage and its values joined by `-`, lower case, each
    character outside ``[a-z0-9]`` replaced by `-`."""
    joined = "-".join([stage, *(value.text for value in values)]).lower()
    return "".join(c if "a" <= c <= "z" or "0" <= c <= "9" else "-" for c in joined)


def hashed_name(stage: str, axes: tuple[Axis, ...], values: tuple[ir.AxisValue, ...], length: int) -> str:
    """``model-5f2c01ab``: the stage and a hash of its coordinates (axis, type and text of each value)."""
    exact = json.dumps([[axis.name, type(value.value).__name__, value.text] for axis, value in zip(axes, values)],
                       ensure_ascii=False)
    return f"{ir.dns_label(stage)}-{hashlib.sha256(exact.encode('utf-8')).hexdigest()[:length]}"


def name_instances(sweeps: Mapping[str, Sweep], stages: Mapping[str, m.StageDecl], pipeline: str,
                   sink: Diagnostics) -> None:
    """Give every instance of every valid sweep its name (see the module's docstring);
    a matrix stage whose hashed names are still too long is reported (E110)."""
    room = ir.MAX_OBJECT_NAME - len(ir.dns_label(pipeline)) - 1
    plain = {ir.dns_label(name) for name in stages if name not in sweeps or not sweeps[name].valid}
    order = sorted(name for name, sweep in sweeps.items() if sweep.valid)
    readable = {name: [readable_name(name, values) for values in sweeps[name].coordinates] for name in order}
    uses = Counter(itertools.chain.from_iterable(readable.values()))
    keep = {name: [not text.endswith("-") and len(text) <= room and uses[text] == 1 and text not in plain
                   for text in readable[name]] for name in order}
    taken = plain | {text for name in order for text, kept in zip(readable[name], keep[name]) if kept}
    for name in order:
        sweep = sweeps[name]
        names = []
        for text, kept, values in zip(readable[name], keep[name], sweep.coordinates):
            if not kept:
                length = HASH_LENGTH
                text = hashed_name(name, sweep.axes, values, length)
                while text in taken:
                    length += 4
                    text = hashed_name(name, sweep.axes, values, length)
                taken.add(text)
            names.append(text)
        sweep.names = tuple(names)
        longest = max(names, key=len)
        if len(longest) > room:
            full = f"{ir.dns_label(pipeline)}-{longest}"
            sink.error(codes.NAME_TOO_LONG, stages[name].name.span,
                       f"the instances of `{name}` become objects such as `{full}`, {len(full)} characters; "
                       f"Kubernetes allows {ir.MAX_OBJECT_NAME}",
                       label=f"{len(full) - ir.MAX_OBJECT_NAME} characters too many",
                       help="shorten the stage name or the pipeline name")
            sweep.valid = False


def read_sweeps(symbols: Symbols, pipeline: str, sink: Diagnostics, evaluator: Evaluator | None = None,
                uses: Mapping[str, Use] | None = None) -> dict[str, Sweep]:
    """Every stage with a matrix, read, checked and its instances named, by stage
    name; an invalid one has ``valid`` False. With an ``evaluator``, each stage's
    ``max_parallel`` too. ``uses``: the templates each stage started from (see
    :mod:`aipc.compiler.templates`), whose text a problem may be in."""
    sweeps = _Reader(symbols, sink, evaluator, uses or {}).read()
    name_instances(sweeps, symbols.stages, pipeline, sink)
    return sweeps


# ------------------------------------------------------------------- for the language server


def instance_names(program: m.Program) -> dict[str, tuple[str, ...]]:
    """The instance names of each valid matrix stage of a program (the language
    server's hover); problems are not reported."""
    from aipc.compiler.resolve import collect_declarations

    header = next((d for d in program.declarations if isinstance(d, m.PipelineDecl)), None)
    pipeline = ir.clean_name(header.name if header is not None else PurePath(program.path).stem)
    sink = Diagnostics(program.path)
    sweeps = read_sweeps(collect_declarations(program, sink), pipeline, sink)
    return {name: sweep.names for name, sweep in sweeps.items() if sweep.valid}


def axis_names(stages: Mapping[str, m.StageDecl], name: str) -> list[str]:
    """The axes a stage sweeps, as written so far (its own, or along `matrix = STAGE`):
    what completes ``${matrix.``."""
    seen: set[str] = set()
    while name in stages and name not in seen:
        seen.add(name)
        written = _written(stages[name])
        if written.block is not None:
            if isinstance(written.block, m.Block):
                return [item.name for item in written.block.items if isinstance(item, m.Attribute)]
            return [entry.key for entry in written.block.value.entries]
        if written.word is None or not isinstance(written.word.value, m.Word):
            return []
        name = written.word.value.value
    return []


# ------------------------------------------------------------------- instances in the graph


def check_pairing(nodes: Mapping[str, dag.Node], sweeps: Mapping[str, Sweep], sink: Diagnostics) -> None:
    """Between matrix stages, `after` pairs instances by coordinates: both must sweep
    one matrix (one's own `matrix { }`, reached along `matrix = STAGE`)."""
    for name in sorted(sweeps):
        sweep = sweeps[name]
        if not sweep.valid or name not in nodes:
            continue
        for dependency, span in nodes[name].after:
            target = sweeps.get(dependency)
            if target is None or not target.valid or target.root == sweep.root:
                continue
            sink.error(codes.MATRIX_PAIRING, span,
                       f"matrix stage `{name}` waits for matrix stage `{dependency}`, which sweeps another matrix",
                       label="between matrix stages, instances pair by coordinates",
                       related=[Label(target.span, f"`{dependency}` sweeps its matrix here"),
                                Label(sweep.span, f"`{name}` sweeps its own here")],
                       help=f"write `matrix = {dependency}` in `{name}` to run one instance per instance of "
                       f"`{dependency}`, each after its own; a stage without a matrix waits for every instance")


class Expansion:
    """Matrix stages as their instances, which are the stages of the graph from here
    on: each instance's ``after`` mapped onto instances, to the instance of equal
    coordinates of a stage of the same matrix (paired), to every instance of any
    other matrix stage (fan-in). ``units`` are the lowered instances (and the other
    stages) by name; ``serial`` the instances of matrix stages that run one at a time."""

    def __init__(self, lowered: Mapping[str, list], sweeps: Mapping[str, Sweep]) -> None:
        valid = {name: sweep for name, sweep in sweeps.items() if sweep.valid}
        self.valid = valid
        self.units: dict[str, object] = {}
        self.nodes: dict[str, dag.Node] = {}
        self.instances: dict[str, ir.Instance] = {}
        self.serial: dict[str, str] = {}
        groups: dict[str, ir.Matrix] = {}
        for name, sweep in valid.items():
            pairs = sorted({d for d, _ in lowered[name][0].node.after if d in valid and valid[d].root == sweep.root})
            groups[name] = ir.Matrix(name, tuple(axis.name for axis in sweep.axes), sweep.names, sweep.max_parallel,
                                     tuple(pairs), sweep.span)
        for name, units in lowered.items():
            sweep = valid.get(name)
            for index, unit in enumerate(units):
                own = sweep.names[index] if sweep is not None else name
                after: list[tuple[str, Span]] = []
                for dependency, span in unit.node.after:
                    target = valid.get(dependency)
                    if target is None:
                        after.append((dependency, span))
                    elif sweep is not None and target.root == sweep.root:
                        after.append((target.names[index], span))
                    else:
                        after += [(instance, span) for instance in target.names]
                self.units[own] = unit
                self.nodes[own] = dag.Node(own, unit.node.batch, tuple(after), unit.node.span)
                if sweep is not None:
                    self.instances[own] = ir.Instance(groups[name], index, sweep.instance_coordinates(index))
                    if sweep.max_parallel == 1:
                        self.serial[own] = name

    def stage(self, name: str, level: int) -> ir.Stage:
        """The IR of a stage or an instance, with its place in the graph."""
        after = tuple(sorted({dependency for dependency, _ in self.nodes[name].after}))
        stage = self.units[name].stage
        instance = self.instances.get(name)
        inputs = tuple(self._placed(put, instance) for put in stage.inputs)
        if instance is None:
            return dataclasses.replace(stage, after=after, level=level, inputs=inputs)
        labels = tuple(sorted((*stage.labels, (ir.MATRIX_LABEL, instance.matrix.stage))))
        return dataclasses.replace(stage, after=after, level=level, labels=labels, instance=instance, inputs=inputs)

    def _placed(self, put: ir.Input, instance: ir.Instance | None) -> ir.Input:
        """An input from a matrix stage, as ``after`` is: from the instance of equal
        coordinates (paired), else from every instance (fan-in, one subdirectory each)."""
        target = self.valid.get(put.stage)
        if target is None:
            return put
        if instance is not None and self.valid[instance.matrix.stage].root == target.root:
            return dataclasses.replace(put, sources=(target.names[instance.index],))
        return dataclasses.replace(put, sources=target.names, fan_in=True)

    @staticmethod
    def matrices(stages: Iterable[ir.Stage]) -> tuple[ir.Matrix, ...]:
        """The groups, in the order of their first instance."""
        out: dict[str, ir.Matrix] = {}
        for stage in stages:
            if stage.instance is not None:
                out.setdefault(stage.instance.matrix.stage, stage.instance.matrix)
        return tuple(out.values())
