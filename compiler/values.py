"""Typed values from surface values: strings with parameters substituted,
quantities in their base unit, choices, lists and maps.

Every method returns the typed value, or :data:`INVALID` after reporting why;
callers carry on with the next attribute so that every error is reported.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import re
from dataclasses import dataclass
from typing import Any, Mapping

from aipc import codes
from aipc.compiler import ir, units
from aipc.compiler.resolve import ADDRESS_BUILTINS
from aipc.compiler.schema import AttributeSpec, Type
from aipc.diagnostics import Diagnostics, Label, Span
from aipc.dsl import model as m


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"

    def __bool__(self) -> bool:
        return False


INVALID: Any = _Invalid()

BUILTINS = ("pipeline.name", "stage.name")
MATRIX_PREFIX = "matrix."  # `${matrix.AXIS}`: the value of an axis in one instance of a matrix stage
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# A suggestion compares the name with every candidate (difflib, in Python): a
# file with thousands of unknown names among thousands of stages would take
# minutes. Within `suggestions_limited()`, one check spends at most this many
# comparisons on suggestions; errors after that get their plain help line.
SUGGESTION_COMPARISONS = 100_000
_comparisons_left: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "aipc_suggestion_comparisons", default=None)


class suggestions_limited:
    """A fresh budget of ``SUGGESTION_COMPARISONS`` for the checks inside."""

    def __enter__(self) -> None:
        self._reset = _comparisons_left.set([SUGGESTION_COMPARISONS])

    def __exit__(self, *exc) -> bool:
        _comparisons_left.reset(self._reset)
        return False


def did_you_mean(name: str, candidates, *, cutoff: float = 0.6) -> str | None:
    """``"did you mean `x`?"`` for the closest candidate, if any is close.

    Short names differ by a larger share when one character changes (`s3`/`s4`),
    so the bar is lower for them.
    """
    budget = _comparisons_left.get()
    if budget is not None:
        if budget[0] < len(candidates):
            return None
        budget[0] -= len(candidates)
    if len(name) <= 3:
        cutoff = min(cutoff, 0.5)
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=cutoff)
    return f"did you mean `{close[0]}`?" if close else None


def describe(value) -> str:
    """What a surface value is, for messages: "a string", "the name `etl`"."""
    if isinstance(value, m.Str):
        return "a string"
    if isinstance(value, m.Number):
        text = units.abbreviate(value.text)
        return f"the quantity `{text}`" if value.unit else f"the number `{text}`"
    if isinstance(value, m.Word):
        if value.value in ("true", "false"):
            return f"the boolean `{value.value}`"
        return f"the name `{value.value}`"
    if isinstance(value, m.ListValue):
        return "a list"
    if isinstance(value, m.MapValue):
        return "a map"
    if isinstance(value, m.RangeValue):
        return "a range"
    if isinstance(value, m.Reference):
        return f"the reference `{value.dotted}`"
    return "a value"


def _alternatives(choices) -> str:
    quoted = [f"`{c}`" for c in choices]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def source_text(value) -> str:
    """A short rendering of a scalar value as it was written."""
    if isinstance(value, m.Number):
        return value.text
    if isinstance(value, m.Word):
        return value.value
    if isinstance(value, m.Str):
        return value.literal
    if isinstance(value, m.Reference):
        return value.dotted
    return "..."


@dataclass(frozen=True, slots=True)
class Text:
    """A string after substitution, and its parts when a parameter went into it."""

    value: str
    template: tuple[ir.Part, ...] | None = None


@dataclass(frozen=True, slots=True)
class MatrixScope:
    """The instance of a matrix stage whose strings are being evaluated: its name
    and its value of each axis. ``axes`` is None when the stage's matrix is
    invalid (already reported): its ``${matrix.AXIS}`` are then not reported again."""

    instance: str
    axes: Mapping[str, ir.AxisValue] | None


class Evaluator:
    def __init__(self, sink: Diagnostics, params: Mapping[str, ir.Param], declared_params,
                 pipeline_name: str) -> None:
        self.sink = sink
        self.params = params
        self.declared_params = frozenset(declared_params)  # including ones whose value is invalid
        self.pipeline_name = pipeline_name
        # Every `${param}` substituted, with its span: the lowering tells from it
        # which parameters a value was fixed into (see lower._Lowering._params_with_fixed_uses).
        self.param_uses: list[tuple[str, Span]] = []
        self.used_params: set[str] = set()  # every parameter a value referred to (unused ones are W101)
        # The serve stages' addresses (aipc.compiler.services.Services), set by lowering
        # before it reads stages; without them `${STAGE.host}` is an unknown name.
        self.services = None
        self.matrix: MatrixScope | None = None  # set while a matrix stage's instance is lowered

    # strings ------------------------------------------------------------------

    def interpolate(self, string: m.Str, stage: str | None, *, addresses: bool = False) -> Text | Any:
        """The string with its references substituted. With ``addresses`` (a string a
        stage hands its container, kept as ``ir.Text``) it may name service addresses
        (``${db.host}``), and is checked for service names spelled by hand."""
        parts = string.parts
        if not parts:
            return Text("")
        if len(parts) == 1 and parts[0].__class__ is str:  # most strings: literal text
            if addresses and self.services is not None:
                self.services.check_spelled(parts[0], string.span, self.sink)
            return Text(parts[0])
        out: list[str] = []
        template: list = []
        written: list[str] = []  # the text as the author spelled it: literals and `${pipeline.name}`
        parameterised = False
        ok = True
        for part in string.parts:
            if isinstance(part, str):
                out.append(part)
                template.append(part)
                written.append(part)
                continue
            value = self._substitute(part, stage, addresses)
            if value is INVALID:
                ok = False
                continue
            written.append(value if part.name == "pipeline.name" else "\0")
            if value.__class__ is ir.ServiceRef:
                out.append(ir.container_address(value))  # what checks of the text see
                template.append(value)
                parameterised = True
                continue
            out.append(value)
            if part.name in self.params:
                template.append(ir.ParamRef(part.name, value))
                parameterised = True
            else:
                template.append(value)
        if not ok:
            return INVALID
        merged: list = []
        for piece in template:
            if isinstance(piece, str) and merged and isinstance(merged[-1], str):
                merged[-1] += piece
            elif piece != "":
                merged.append(piece)
        if addresses and self.services is not None:
            self.services.check_spelled("".join(written), string.span, self.sink)
        return Text("".join(out), tuple(merged) if parameterised else None)

    def _substitute(self, part: m.Interpolation, stage: str | None, addresses: bool = False
                    ) -> str | ir.ServiceRef | Any:
        name = part.name
        if self.services is not None and "." in name and name.partition(".")[0] not in ADDRESS_BUILTINS:
            return self.services.reference(part, self.sink, addresses and stage is not None)
        if name == "pipeline.name":
            return self.pipeline_name
        if name == "stage.name":
            if stage is None:
                self.sink.error(codes.UNKNOWN_PARAM, part.span, "`${stage.name}` is only defined inside a stage")
                return INVALID
            return stage
        if name.startswith(MATRIX_PREFIX):
            return self._axis_value(part, name[len(MATRIX_PREFIX):])
        if name in self.params:
            self.param_uses.append((name, part.span))
            self.used_params.add(name)
            return self.params[name].text
        if name in self.declared_params:
            self.used_params.add(name)
            return INVALID  # its declaration is already reported
        axes = [MATRIX_PREFIX + axis for axis in self.matrix.axes] if self.matrix and self.matrix.axes else []
        help = did_you_mean(name, list(self.declared_params) + list(BUILTINS) + axes)
        if help is None and (name.isupper() or name in ("HOME", "PATH", "PWD")):
            help = f"for a shell variable, write `$${{{name}}}`: `$${{` is a literal `${{`"
        elif help is None:
            help = f"declare it: `param {name}: string = \"...\"`"
        self.sink.error(codes.UNKNOWN_PARAM, part.span, f"unknown parameter `{name}`",
                        label="not declared", help=help)
        return INVALID

    @contextlib.contextmanager
    def scoped(self, matrix: MatrixScope):
        """Evaluate for one instance of a matrix stage: its ``${matrix.AXIS}`` values."""
        self.matrix = matrix
        try:
            yield
        finally:
            self.matrix = None

    def _axis_value(self, part: m.Interpolation, axis: str) -> str | Any:
        scope = self.matrix
        if scope is None:
            self.sink.error(codes.UNKNOWN_AXIS, part.span, f"`${{{part.name}}}` is only defined in a matrix stage",
                            label="no matrix here",
                            help=f"give the stage a `matrix {{ {axis or 'AXIS'} = [...] }}` (or `matrix = STAGE`), "
                            "or use a parameter")
            return INVALID
        if scope.axes is None:
            self.sink.count_reported_error()
            return INVALID
        value = scope.axes.get(axis)
        if value is None:
            self.sink.error(codes.UNKNOWN_AXIS, part.span, f"unknown matrix axis `{axis}`", label="not an axis",
                            help=did_you_mean(axis, list(scope.axes))
                            or "the axes are " + ", ".join(f"`{name}`" for name in scope.axes))
            return INVALID
        return value.text

    def _origin(self, interpolation: m.Interpolation) -> str:
        """What a message about the value a sole ``${...}`` stood for says it came from."""
        name = interpolation.name
        param = self.params.get(name)
        if param is not None:
            return f"parameter `{name}` is `{units.abbreviate(param.text)}`: "
        scope = self.matrix
        if name.startswith(MATRIX_PREFIX) and scope is not None and scope.axes is not None:
            value = scope.axes.get(name[len(MATRIX_PREFIX):])
            if value is not None:
                return f"in instance `{scope.instance}`, `{name}` is `{units.abbreviate(value.text)}`: "
        return ""

    def _sole_text(self, interpolation: m.Interpolation) -> str | None:
        """The text a sole ``${param}`` or ``${matrix.AXIS}`` stands for, if it names one (nothing reported)."""
        name = interpolation.name
        if name in self.params:
            self.param_uses.append((name, interpolation.span))
            self.used_params.add(name)
            return self.params[name].text
        scope = self.matrix
        if name.startswith(MATRIX_PREFIX) and scope is not None and scope.axes is not None:
            value = scope.axes.get(name[len(MATRIX_PREFIX):])
            return value.text if value is not None else None
        return None

    def string(self, spec: AttributeSpec, value, stage: str | None, *, addresses: bool = False) -> Text | Any:
        if not isinstance(value, m.Str):
            return self._wrong_type(spec, value)
        text = self.interpolate(value, stage, addresses=addresses)
        if text is INVALID:
            return INVALID
        if spec.type is Type.PATH and not text.value.startswith("/"):
            self.sink.error(codes.RELATIVE_PATH, value.span, f"`{spec.name}` must be an absolute path",
                            label="does not start with `/`", help=f'write "/{text.value.lstrip("./")}"')
            return INVALID
        return text

    def _wrong_type(self, spec: AttributeSpec, value, expected: str | None = None) -> Any:
        expected = expected or spec.type.value
        help = None
        if isinstance(value, (m.Word, m.Number)) and spec.type in (Type.STRING, Type.PATH):
            help = f'quote it: `{spec.name} = "{source_text(value)}"`'
        elif isinstance(value, m.Str) and spec.type.quantity is not None and value.is_literal:
            help = f"write it without quotes: `{spec.name} = {value.literal}`"
        elif isinstance(value, m.Str) and spec.type.quantity is not None:
            help = "a quoted value must be exactly one `${param}`"
        elif spec.example:
            help = f"for example `{spec.example.splitlines()[0]}`"
        self.sink.error(codes.WRONG_TYPE, value.span,
                        f"`{spec.name}` expects {expected}, found {describe(value)}", help=help)
        return INVALID

    # quantities ---------------------------------------------------------------

    def quantity(self, spec: AttributeSpec, value, stage: str | None) -> ir.Range | int | Any:
        """An INT/BYTES/CPU/DURATION attribute; a ``ir.Range`` when the spec takes ranges."""
        kind = spec.type.quantity
        if isinstance(value, m.RangeValue):
            if not spec.ranges:
                self.sink.error(codes.RANGE_NOT_ALLOWED, value.span,
                                f"`{spec.name}` does not take a range",
                                help="only `cpu` and `memory` take `LOW..HIGH` (request..limit)")
                return INVALID
            low = self._scalar(spec, kind, value.low, stage)
            high = self._scalar(spec, kind, value.high, stage)
            if low is INVALID or high is INVALID:
                return INVALID
            if low > high:
                self.sink.error(
                    codes.RANGE_REVERSED, value.span,
                    f"the low end of `{spec.name}` is above its high end",
                    label=f"{units.format_value(kind, low)} > {units.format_value(kind, high)}",
                    help=f"write `{source_text(value.high)}..{source_text(value.low)}`",
                )
                return INVALID
            return ir.Range(low, high)
        if isinstance(value, m.Str) and value.sole_interpolation is not None:
            interpolation = value.sole_interpolation
            text = self._sole_text(interpolation)
            if text is not None and ".." in text and spec.ranges:
                origin = self._origin(interpolation)
                low_text, _, high_text = text.partition("..")
                low = self._parse(spec, kind, low_text, value.span, origin)
                high = self._parse(spec, kind, high_text, value.span, origin)
                if low is INVALID or high is INVALID:
                    return INVALID
                if low > high:
                    self.sink.error(codes.RANGE_REVERSED, value.span,
                                    f"{origin}its low end is above its high end")
                    return INVALID
                return ir.Range(low, high)
        single = self._scalar(spec, kind, value, stage)
        if single is INVALID:
            return INVALID
        return ir.Range(single, single) if spec.ranges else single

    def _scalar(self, spec: AttributeSpec, kind: units.Kind, value, stage: str | None) -> int | Any:
        if isinstance(value, m.Number):
            return self._parse(spec, kind, value.text, value.span, "")
        if isinstance(value, m.Str) and value.sole_interpolation is not None:
            interpolation = value.sole_interpolation
            text = self._substitute(interpolation, stage)
            if text is INVALID:
                return INVALID
            return self._parse(spec, kind, text, value.span, self._origin(interpolation))
        return self._wrong_type(spec, value)

    def _parse(self, spec: AttributeSpec, kind: units.Kind, text: str, span: Span, origin: str) -> int | Any:
        """``text`` as a quantity of ``kind``; ``origin`` starts messages about a value
        that came from a parameter or an axis ("parameter `gpus` is `0.5`: ")."""
        if spec.name == "gpu":
            return self._gpu_count(spec, text, span, origin)
        try:
            number = units.parse(kind, text)
        except units.TooLarge as error:
            return self._out_of_range(spec, kind, span, origin, f"`{units.abbreviate(text)}`", error.negative)
        except units.UnitError as error:
            code = codes.WRONG_TYPE if not units.is_number_like(text) else codes.WRONG_UNIT
            self.sink.error(code, span, f"{origin}{error.message} for `{spec.name}`",
                            label=f"expected {kind.noun}", help=error.help)
            return INVALID
        return self._bounded(spec, kind, number, span, origin)

    def _gpu_count(self, spec: AttributeSpec, text: str, span: Span, origin: str) -> int | Any:
        try:
            count = units.parse(units.Kind.COUNT, text)
        except units.TooLarge as error:
            if not error.negative:
                return self._out_of_range(spec, units.Kind.COUNT, span, origin, f"`{units.abbreviate(text)}`", False)
            count = -1  # below every bound: a negative count, reported as one
        except units.UnitError:
            self.sink.error(codes.INVALID_GPU_COUNT, span,
                            f"{origin}`gpu` must be a whole number of GPUs, found `{units.abbreviate(text)}`",
                            help="write a count such as `gpu = 1`; GPUs cannot be shared by fractions")
            return INVALID
        if count < 0:
            self.sink.error(codes.INVALID_GPU_COUNT, span, f"{origin}`gpu` cannot be negative",
                            help="write `gpu = 0` (or leave it out) for no GPU")
            return INVALID
        return self._bounded(spec, units.Kind.COUNT, count, span, origin)

    def _bounded(self, spec: AttributeSpec, kind: units.Kind, number: int, span: Span, origin: str) -> int | Any:
        if spec.minimum is not None and number < spec.minimum:
            return self._out_of_range(spec, kind, span, origin, units.format_value(kind, number), True)
        if spec.maximum is not None and number > spec.maximum:
            return self._out_of_range(spec, kind, span, origin, units.format_value(kind, number), False)
        return number

    def _out_of_range(self, spec: AttributeSpec, kind: units.Kind, span: Span, origin: str, found: str,
                      below: bool) -> Any:
        """E209 for a value below the attribute's minimum or above its maximum (what the targets store)."""
        low, high = spec.minimum, spec.maximum
        if kind is units.Kind.COUNT and low is not None and high is not None:
            bounds = f"between {low} and {high}"
        elif below:
            bounds = ("larger" if low is None else "above zero" if low == 1 and kind is not units.Kind.COUNT
                      else f"at least {units.format_value(kind, low)}")
        else:
            largest = "" if high is None else units.format_value(kind, high)
            unit = " bytes" if kind is units.Kind.BYTES and largest.isdigit() else ""
            bounds = f"at most {largest}{unit}" if largest else "smaller"
        self.sink.error(codes.OUT_OF_RANGE, span, f"{origin}`{spec.name}` must be {bounds}, found {found}")
        return INVALID

    # choices, lists, maps -----------------------------------------------------------

    def boolean(self, spec: AttributeSpec, value, stage: str | None) -> bool | Any:
        """``true`` or ``false``, or a string that is exactly one ``${param}`` of type bool."""
        if isinstance(value, m.Word) and value.value in ("true", "false"):
            return value.value == "true"
        if isinstance(value, m.Str) and value.sole_interpolation is not None:
            text = self._substitute(value.sole_interpolation, stage)
            if text is INVALID:
                return INVALID
            if text in ("true", "false"):
                return text == "true"
            self.sink.error(codes.WRONG_TYPE, value.span,
                            f"`{spec.name}` expects a boolean, found `{units.abbreviate(text)}` "
                            f"(parameter `{value.sole_interpolation.name}`)", help="give it `true` or `false`")
            return INVALID
        return self._wrong_type(spec, value, "`true` or `false`")

    def choice(self, spec: AttributeSpec, value) -> str | Any:
        if isinstance(value, m.Word):
            word = value.value
        elif isinstance(value, m.Str) and value.is_literal:
            word = value.literal
        else:
            return self._wrong_type(spec, value, "one of " + ", ".join(f"`{c}`" for c in spec.choices))
        if word not in spec.choices:
            self.sink.error(
                codes.INVALID_CHOICE, value.span, f"`{word}` is not a valid `{spec.name}`",
                label="expected " + _alternatives(spec.choices),
                help=did_you_mean(word.lower(), spec.choices, cutoff=0.4)
                or "choose one of " + ", ".join(f"`{c}`" for c in spec.choices),
            )
            return INVALID
        return word

    def string_list(self, spec: AttributeSpec, value, stage: str | None, *, words: bool = False,
                    addresses: bool = False) -> list[tuple[Text, Span]] | Any:
        """Each item as text; numbers are taken as written, bare words only if ``words``."""
        if not isinstance(value, m.ListValue):
            return self._wrong_type(spec, value)
        out: list[tuple[Text, Span]] = []
        ok = True
        for item in value.items:
            if isinstance(item, m.Str):
                text = self.interpolate(item, stage, addresses=addresses)
            elif isinstance(item, m.Number) and not words:
                text = Text(item.text)
            elif isinstance(item, m.Word) and words:
                text = Text(item.value)
            else:
                self.sink.error(codes.WRONG_TYPE, item.span,
                                f"`{spec.name}` is a list of strings, found {describe(item)}",
                                help=f'quote it: "{source_text(item)}"')
                text = INVALID
            if text is INVALID:
                ok = False
            else:
                out.append((text, item.span))
        return out if ok else INVALID

    def string_map(self, spec: AttributeSpec, value, stage: str | None, *, addresses: bool = False
                   ) -> list[tuple[str, Text, m.Entry]] | Any:
        """Entries in order; numbers and booleans are taken as written."""
        if not isinstance(value, m.MapValue):
            return self._wrong_type(spec, value)
        out = []
        seen: dict[str, m.Entry] = {}
        ok = True
        for entry in value.entries:
            if entry.key in seen:
                self.sink.error(codes.DUPLICATE_ATTRIBUTE, entry.key_span,
                                f"`{entry.key}` is set twice in `{spec.name}`",
                                related=[_first(seen[entry.key].key_span)])
                ok = False
                continue
            seen[entry.key] = entry
            item = entry.value
            if isinstance(item, m.Str):
                text = self.interpolate(item, stage, addresses=addresses)
            elif isinstance(item, m.Number) or (isinstance(item, m.Word) and item.value in ("true", "false")):
                text = Text(source_text(item))
            else:
                self.sink.error(codes.WRONG_TYPE, item.span,
                                f"`{spec.name}` is a map of strings, found {describe(item)} for `{entry.key}`",
                                help=f'quote it: {entry.key} = "{source_text(item)}"')
                text = INVALID
            if text is INVALID:
                ok = False
            else:
                out.append((entry.key, text, entry))
        return out if ok else INVALID

    def name_list(self, spec: AttributeSpec, value) -> list[tuple[str, Span]] | Any:
        """Names, as a list (``after = [a, b]``) or a single name (``after = a``)."""
        items = value.items if isinstance(value, m.ListValue) else (value,)
        if not isinstance(value, (m.ListValue, m.Word)):
            return self._wrong_type(spec, value)
        out: list[tuple[str, Span]] = []
        for item in items:
            if isinstance(item, m.Word):
                out.append((item.value, item.span))
            elif isinstance(item, m.Str) and item.is_literal:
                out.append((item.literal, item.span))
            else:
                self.sink.error(codes.WRONG_TYPE, item.span,
                                f"`{spec.name}` is {spec.type.value}, found {describe(item)}")
                return INVALID
        return out


def _first(span: Span) -> Label:
    return Label(span, "first set here")
