"""Parameters: defaults checked against their type, then ``-p NAME=VALUE`` overrides."""

from __future__ import annotations

import math
import re
from typing import Mapping

from aipc import codes
from aipc.compiler import ir, units
from aipc.compiler.resolve import Symbols
from aipc.compiler.schema import PARAM_TYPES
from aipc.compiler.values import describe, did_you_mean
from aipc.diagnostics import Diagnostics
from aipc.dsl import model as m

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


class ParamValueError(Exception):
    pass


def convert(type: ir.ParamType, text: str) -> tuple[object, str]:
    """A value written as text (a ``-p`` override) as ``type``: (value, text to substitute)."""
    text = text.strip() if type is not ir.ParamType.STRING else text
    if type is ir.ParamType.INT:
        if not _INT.fullmatch(text):
            raise ParamValueError(f"`{units.abbreviate(text)}` is not an int")
        sign, digits = "-" if text[0] == "-" else "", text.lstrip("+-").lstrip("0") or "0"
        if len(digits) > 19 or not -units.INT64_MAX - 1 <= (value := int(sign + digits)) <= units.INT64_MAX:
            raise ParamValueError(f"`{units.abbreviate(text)}` does not fit in an int, which has 64 bits")
        return value, str(value)
    if type is ir.ParamType.FLOAT:
        if not _FLOAT.fullmatch(text):
            raise ParamValueError(f"`{units.abbreviate(text)}` is not a float")
        value = float(text)
        if math.isinf(value):
            raise ParamValueError(f"`{units.abbreviate(text)}` is beyond the largest float (about 1.8e308)")
        if value == 0 and any(c in "123456789" for c in text.lower().partition("e")[0]):
            raise ParamValueError(f"`{units.abbreviate(text)}` is closer to zero than a float can be "
                                  "(about 5e-324), so it would be read as 0")
        return value, text
    if type is ir.ParamType.BOOL:
        if text.lower() not in ("true", "false"):
            raise ParamValueError(f"`{text}` is not a bool (write `true` or `false`)")
        return text.lower() == "true", text.lower()
    if type is ir.ParamType.DURATION:
        try:
            return units.parse_duration(text), text
        except units.UnitError as error:
            raise ParamValueError(error.message) from None
    return text, text


def _default_text(type: ir.ParamType, value) -> str:
    """The text of a default as written: what a ``-p`` override of it would say."""
    if isinstance(value, m.Number):
        return value.text
    if isinstance(value, m.Word):
        return value.value
    if isinstance(value, m.Str) and value.is_literal:
        return value.literal
    raise ParamValueError(f"expected {_article(type)}, found {describe(value)}")


def _article(type: ir.ParamType) -> str:
    return ("an " if type is ir.ParamType.INT else "a ") + type.value


def _infer(value) -> str | None:
    if isinstance(value, m.Number):
        if value.unit is None:
            return "int" if _INT.fullmatch(value.text) else "float"
        try:
            units.parse_duration(value.text)
            return "duration"
        except units.UnitError:
            return "string"
    if isinstance(value, m.Word) and value.value in ("true", "false"):
        return "bool"
    if isinstance(value, m.Str):
        return "string"
    return None


def _check_default(type: ir.ParamType, value) -> tuple[object, str]:
    if isinstance(value, m.Str) and not value.is_literal:
        raise ParamValueError("a parameter's default cannot use `${...}`")
    kinds = {
        ir.ParamType.INT: (m.Number,), ir.ParamType.FLOAT: (m.Number,), ir.ParamType.BOOL: (m.Word,),
        ir.ParamType.DURATION: (m.Number, m.Str), ir.ParamType.STRING: (m.Str, m.Number, m.Word),
    }[type]
    if not isinstance(value, kinds):
        raise ParamValueError(f"expected {_article(type)}, found {describe(value)}")
    return convert(type, _default_text(type, value))


def bind_params(symbols: Symbols, overrides: Mapping[str, str], sink: Diagnostics) -> dict[str, ir.Param]:
    """Every valid parameter with its final value; invalid ones are reported and left out."""
    params: dict[str, ir.Param] = {}
    for name, declaration in symbols.params.items():
        type_name = declaration.type.value if declaration.type is not None else _infer(declaration.default)
        if type_name not in PARAM_TYPES:
            span = declaration.type.span if declaration.type is not None else declaration.default.span
            sink.error(codes.INVALID_CHOICE, span, f"`{type_name}` is not a parameter type",
                       label="expected string, int, float, bool or duration",
                       help=did_you_mean(str(type_name), PARAM_TYPES, cutoff=0.4)
                       or "parameter types are string, int, float, bool and duration")
            continue
        type = ir.ParamType(type_name)
        try:
            value, text = _check_default(type, declaration.default)
        except ParamValueError as error:
            code = codes.INVALID_INTERPOLATION if "${" in str(error) else codes.INVALID_PARAM_VALUE
            sink.error(code, declaration.default.span,
                       f"the default of `{name}` does not fit its type: {error}",
                       label=f"expected {_article(type)}", help=_example(type))
            continue
        overridden = name in overrides
        if overridden:
            try:
                value, text = convert(type, overrides[name])
            except ParamValueError as error:
                sink.error(codes.INVALID_PARAM_VALUE, declaration.name.span,
                           f"`-p {name}={overrides[name]}`: {error}",
                           label=f"`{name}` is declared as {_article(type)} here", help=_example(type))
                continue
        params[name] = ir.Param(name, type, value, text, overridden, declaration.span)
    for name in sorted(set(overrides) - symbols.known("param")):
        sink.error(codes.UNKNOWN_PARAM, None, f"`-p {name}=...` sets a parameter that is not declared",
                   help=did_you_mean(name, symbols.known("param"))
                   or f"declare it: `param {name}: string = \"...\"`")
    return params


def _example(type: ir.ParamType) -> str:
    return {
        ir.ParamType.INT: "an int is written like `10` or `-1`",
        ir.ParamType.FLOAT: "a float is written like `0.5` or `3e-4`",
        ir.ParamType.BOOL: "a bool is `true` or `false`",
        ir.ParamType.DURATION: "a duration is written like `30m`, `12h` or `1h30m`",
        ir.ParamType.STRING: 'a string is written in quotes: `"text"`',
    }[type]
