"""Quantities: bytes, cpu and durations. The attribute decides the kind.

Parsing turns a number and its unit into an exact integer in the base unit
(bytes, millicores, seconds) using decimal arithmetic; formatting writes the
canonical form every target accepts (``16Gi``, ``500m``, ``1h30m``: the
functions live in :mod:`aipc.compiler.ir`). The largest values the targets
store are here too: the schema bounds attributes with them, so that a value no
target can hold is an error at the value.
"""

from __future__ import annotations

import enum
import re
from decimal import MAX_EMAX, MIN_EMIN, ROUND_CEILING, Context, Decimal, InvalidOperation

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

# ------------------------------------------------------------------ limits

INT32_MAX = 2**31 - 1
"""Kubernetes' and Argo's int32 fields: a Job's `backoffLimit` and a Deployment's
`replicas` (k8s.io/api batch/v1 and apps/v1 types.go), Argo's `retryStrategy.limit`
and a template's `activeDeadlineSeconds`, both an intstr.IntOrString whose IntVal is
an int32 (argo-workflows pkg/apis/workflow/v1alpha1/workflow_types.go,
k8s.io/apimachinery/pkg/util/intstr)."""

INT64_MAX = 2**63 - 1
"""resource.Quantity: "no quantity may represent a number greater than 2^63-1 in
magnitude" (k8s.io/apimachinery/pkg/api/resource/quantity.go; math.go caps a parsed
quantity at this `maxAllowed`). Docker stores byte counts (Memory, ShmSize) and
device counts as int64 too."""

MAX_BYTES = INT64_MAX
MAX_MILLICORES = INT64_MAX // 10**6
"""Docker's `NanoCpus` (what compose's `cpus` and `aipc run` set) is an int64 of
10^-9 cores (moby api/types/container/hostconfig.go): the tightest cpu bound of the
targets (Kubernetes' `MaxMilliValue` allows 1000 times more)."""
MAX_SECONDS = INT32_MAX
"""Argo's template `activeDeadlineSeconds` is an int32 (about 68 years); a Job's is an int64."""
MAX_COUNT = INT64_MAX
"""A GPU count is a resource.Quantity on Kubernetes and Argo, an int64 `Count` in
Docker's device requests."""

_LARGEST_DIGITS = 30
"""A number with more integer digits than this exceeds every bound above in every
unit, so its value is never computed (a 4,400-digit literal would cost time, and
Python refuses to print it)."""


_SHORT = Context(prec=40, Emin=MIN_EMIN, Emax=MAX_EMAX)
"""Exact for what most quantities are: up to 20 characters times a unit of up to
16 digits (the default context keeps 28 digits, and its exponents stop at 10^6)."""


class UnitError(Exception):
    """A quantity that does not fit; ``help`` says what to write instead."""

    def __init__(self, message: str, help: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.help = help


class TooLarge(UnitError):
    """A number beyond every bound (``negative``: below every bound); its value is not computed."""

    def __init__(self, text: str, negative: bool) -> None:
        super().__init__(f"`{abbreviate(text)}` is too {'small' if negative else 'large'}")
        self.negative = negative


def abbreviate(text: str, limit: int = 40) -> str:
    """``text``, or its start and end around how long it is when it is longer than ``limit``."""
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}...{text[-8:]} ({len(text)} characters)"


def parse(kind: Kind, text: str) -> int:
    """Parse ``text`` (a number with an optional unit) as ``kind``; raises UnitError."""
    text = text.strip()
    if kind is Kind.DURATION:
        return parse_duration(text)
    match = _SIMPLE.fullmatch(text)
    if match is None:
        raise UnitError(f"`{abbreviate(text)}` is not {kind.noun}", _EXAMPLES[kind])
    number_text, unit = match.groups()
    try:
        number = Decimal(number_text)
    except InvalidOperation:  # an exponent beyond what decimal holds
        number = _extreme(number_text, text)
    if kind is Kind.BYTES:
        return _bytes(number, unit, text)
    if kind is Kind.CPU:
        return _cpu(number, unit, text)
    if unit:
        raise UnitError(f"`{abbreviate(text)}` has a unit, but this is a plain count",
                        f"write `{abbreviate(match.group(1))}`")
    count = _scaled(number, 1, text)
    if count != count.to_integral_value():
        raise UnitError(f"`{abbreviate(text)}` is not a whole number")
    return int(count)


def _extreme(number: str, text: str) -> Decimal:
    """A number whose exponent is beyond what `decimal` holds (|e| > 10^18): too
    large for anything, or, if non-zero, as close to zero as makes no difference."""
    mantissa, _, exponent = number.lower().partition("e")
    negative = mantissa.startswith("-")
    if not any(c in "123456789" for c in mantissa):
        return Decimal(0)
    if exponent.startswith("-"):
        return Decimal(f"{'-' if negative else ''}1e-999999999")
    raise TooLarge(text, negative)


def _scaled(number: Decimal, factor: int, text: str) -> Decimal:
    """``number * factor``, exactly: the default context would round to 28 digits,
    and `1.0000000000000000000000000001` cores is not a whole number of millicores."""
    if len(text) <= 20 and -_LARGEST_DIGITS < number.adjusted() < _LARGEST_DIGITS:
        return _SHORT.multiply(number, factor)  # what most quantities are
    if number.is_zero():
        return Decimal(0)
    if number.adjusted() >= _LARGEST_DIGITS:
        raise TooLarge(text, number < 0)
    context = Context(prec=len(number.as_tuple().digits) + 20, Emin=MIN_EMIN, Emax=MAX_EMAX)
    return context.multiply(number, factor)


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
    return int(_scaled(number, BYTE_UNITS[unit], text).to_integral_value(rounding=ROUND_CEILING))


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
    if unit not in ("m", ""):
        raise UnitError(f"`{unit}` is not a cpu unit", "write cores (`2`, `0.5`) or millicores (`500m`)")
    millicores = _scaled(number, 1 if unit == "m" else 1000, text)
    if millicores != millicores.to_integral_value():
        raise UnitError(f"`{abbreviate(text)}` is finer than a millicore", "cpu has a precision of `1m` (0.001 cores)")
    return int(millicores)


def parse_duration(text: str) -> int:
    body = text[1:] if text[:1] in ("+", "-") else text
    if text[:1] == "-" and any(c in "123456789" for c in body):
        raise UnitError(f"`{abbreviate(text)}` is negative", "durations are positive")
    if re.fullmatch(r"\d+(\.\d+)?", body):
        raise UnitError(f"`{text}` has no unit", f"write `{body}s`, `{body}m` or `{body}h`")
    position, parts = 0, []
    for match in _DURATION_PART.finditer(body):
        if match.start() != position:
            break
        number, unit = match.groups()
        if unit not in DURATION_UNITS:
            raise UnitError(f"`{unit}` is not a unit of time", _duration_hint(unit))
        parts.append(_scaled(Decimal(number), DURATION_UNITS[unit], text))
        position = match.end()
    if position != len(body) or not body:
        raise UnitError(f"`{abbreviate(text)}` is not a duration", _EXAMPLES[Kind.DURATION])
    # exactly: each part is below 10^36, with no more decimals than written
    context = _SHORT if len(body) <= 20 else Context(prec=len(body) + 40)
    total = Decimal(0)
    for part in parts:
        total = context.add(total, part)
    if total != total.to_integral_value():
        raise UnitError(f"`{abbreviate(text)}` is not a whole number of seconds")
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
