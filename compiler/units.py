"""Quantities: bytes, cpu and durations. The attribute decides the kind.

Parsing turns a number and its unit into an exact integer in the base unit
(bytes, millicores, seconds) using decimal arithmetic; formatting writes the
canonical form every target accepts (``16Gi``, ``500m``, ``1h30m``: the
functions live in :mod:`aipc.compiler.ir`).
"""

from __future__ import annotations

import enum
import re
from decimal import ROUND_CEILING, Decimal

# The canonical forms live with the IR, whose quantities they write (backends
# import only the IR); parsing reads the same units.
from aipc.compiler.ir import BINARY_UNITS, DECIMAL_UNITS, format_bytes, format_cpu, format_duration


class Kind(enum.Enum):
    BYTES = "bytes"
    CPU = "cpu"
    DURATION = "duration"
    COUNT = "count"  # a plain integer (gpu, port, replicas, retries)

    @property
    def noun(self) -> str:
        return {
            Kind.BYTES: "a byte quantity",
            Kind.CPU: "a cpu quantity",
            Kind.DURATION: "a duration",
            Kind.COUNT: "a whole number",
        }[self]


BYTE_UNITS = {**BINARY_UNITS, **DECIMAL_UNITS}
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

_SIMPLE = re.compile(r"([+-]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?)([A-Za-z]*)")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([A-Za-z]+)")


class UnitError(Exception):
    """A quantity that does not fit; ``help`` says what to write instead."""

    def __init__(self, message: str, help: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.help = help


def parse(kind: Kind, text: str) -> int:
    """Parse ``text`` (a number with an optional unit) as ``kind``; raises UnitError."""
    text = text.strip()
    if kind is Kind.DURATION:
        return parse_duration(text)
    match = _SIMPLE.fullmatch(text)
    if match is None:
        raise UnitError(f"`{text}` is not {kind.noun}", _EXAMPLES[kind])
    number, unit = Decimal(match.group(1)), match.group(2)
    if kind is Kind.BYTES:
        return _bytes(number, unit, text)
    if kind is Kind.CPU:
        return _cpu(number, unit, text)
    if unit:
        raise UnitError(f"`{text}` has a unit, but this is a plain count", f"write `{match.group(1)}`")
    if number != number.to_integral_value():
        raise UnitError(f"`{text}` is not a whole number")
    return int(number)


_EXAMPLES = {
    Kind.BYTES: "write a size such as `512Mi`, `16Gi` or `200G`",
    Kind.CPU: "write cores (`2`, `0.5`) or millicores (`500m`)",
    Kind.DURATION: "write a duration such as `30s`, `45m`, `12h`, `2d` or `1h30m`",
    Kind.COUNT: "write a whole number such as `1` or `8`",
}


def _bytes(number: Decimal, unit: str, text: str) -> int:
    if not unit:
        if number == 0:
            return 0
        raise UnitError(
            f"`{text}` has no unit",
            f"sizes need a unit: `{text}Mi`, `{text}Gi` (powers of 1024) or `{text}M`, `{text}G` (powers of 1000)",
        )
    if unit not in BYTE_UNITS:
        raise UnitError(f"`{unit}` is not a unit of bytes", _byte_hint(unit, text))
    value = (number * BYTE_UNITS[unit]).to_integral_value(rounding=ROUND_CEILING)
    return int(value)


def _byte_hint(unit: str, text: str) -> str:
    number = text[: len(text) - len(unit)]
    upper = unit.upper().rstrip("B")
    if unit.upper().endswith("IB") or unit.upper().endswith("I"):
        binary = upper.rstrip("I")[:1] + "i"
        if binary in BINARY_UNITS:
            return f"write `{number}{binary}`"
    if upper[:1] in ("K", "M", "G", "T", "P"):
        decimal = "k" if upper[0] == "K" else upper[0]
        return f"write `{number}{decimal}` (powers of 1000) or `{number}{upper[0]}i` (powers of 1024)"
    if unit in DURATION_UNITS or unit == "m":
        return "this attribute is a size; byte units are Ki Mi Gi Ti Pi and k M G T P"
    return "byte units are Ki Mi Gi Ti Pi (powers of 1024) and k M G T P (powers of 1000)"


def _cpu(number: Decimal, unit: str, text: str) -> int:
    if unit == "m":
        millicores = number
    elif unit == "":
        millicores = number * 1000
    else:
        raise UnitError(f"`{unit}` is not a cpu unit", "write cores (`2`, `0.5`) or millicores (`500m`)")
    if millicores != millicores.to_integral_value():
        raise UnitError(f"`{text}` is finer than a millicore", "cpu has a precision of `1m` (0.001 cores)")
    return int(millicores)


def parse_duration(text: str) -> int:
    body = text[1:] if text[:1] == "+" else text
    if body.startswith("-"):
        raise UnitError(f"`{text}` is negative", "durations are positive")
    if re.fullmatch(r"\d+(\.\d+)?", body):
        raise UnitError(f"`{text}` has no unit", f"write `{body}s`, `{body}m` or `{body}h`")
    position, total = 0, Decimal(0)
    for match in _DURATION_PART.finditer(body):
        if match.start() != position:
            break
        number, unit = match.groups()
        if unit not in DURATION_UNITS:
            raise UnitError(f"`{unit}` is not a unit of time", _duration_hint(unit))
        total += Decimal(number) * DURATION_UNITS[unit]
        position = match.end()
    if position != len(body) or not body:
        raise UnitError(f"`{text}` is not a duration", _EXAMPLES[Kind.DURATION])
    if total != total.to_integral_value():
        raise UnitError(f"`{text}` is not a whole number of seconds")
    return int(total)


def _duration_hint(unit: str) -> str:
    if unit in BYTE_UNITS or unit.upper().rstrip("B") in ("K", "M", "G", "T", "P", "KI", "MI", "GI", "TI"):
        return "this attribute is a duration; units are s, m, h and d"
    if unit in ("ms", "us", "ns"):
        return "durations have a precision of one second"
    if unit in ("min", "mins", "minutes"):
        return "write `m` for minutes"
    if unit in ("hr", "hrs", "hours"):
        return "write `h` for hours"
    if unit in ("sec", "secs", "seconds"):
        return "write `s` for seconds"
    return "duration units are s, m, h and d, combinable as `1h30m`"


def is_number_like(text: str) -> bool:
    """Whether ``text`` starts as a number does (so a problem is its unit, not its type)."""
    return re.match(r"\s*[+-]?(\d|\.\d)", text) is not None


# ------------------------------------------------------------------ formatting


def format_value(kind: Kind, value: int) -> str:
    if kind is Kind.BYTES:
        return format_bytes(value)
    if kind is Kind.CPU:
        return format_cpu(value)
    if kind is Kind.DURATION:
        return format_duration(value)
    return str(value)
