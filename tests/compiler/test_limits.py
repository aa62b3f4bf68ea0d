"""Numbers beyond what the targets store are errors at the value (issue 12).

`memory = 1e4400Gi` or a 4,400-digit `retries` used to pass `aipc check` and
crash `compile` and `plan` (exit 3). Every number attribute now has a largest
value (`compiler/units.py` says which target field each comes from), `int` and
`float` parameters hold what a 64-bit integer and a double hold, and no command
crashes on a number however it is written.
"""

from __future__ import annotations

import re
import time
from decimal import Decimal
from pathlib import Path

import pytest

from aipc import cli
from aipc.compiler import check_source, units
from aipc.compiler.schema import HEALTH, RESOURCES, STAGE, VOLUME, AttributeSpec
from aipc.diagnostics import Source

CASES = Path(__file__).resolve().parent.parent / "diagnostics" / "cases"
LIMIT_CASES = sorted(CASES.glob("limit_*.aip"))
COMMANDS = (["check"], ["compile", "-t", "compose"], ["compile", "-t", "k8s"], ["compile", "-t", "argo"], ["plan"])
HUGE = "9" * 4400  # beyond the 4,300 digits Python's int() reads from text

NUMBERS = {name: spec for table in (VOLUME, STAGE, RESOURCES) for name, spec in table.items()
           if spec.type.quantity is not None}
NUMBERS |= {f"health.{name}": spec for name, spec in HEALTH.items() if spec.type.quantity is not None}


def program(name: str, literal: str) -> str:
    """A program where the number attribute ``name`` is ``literal``, on a line of its own after the first."""
    if name in VOLUME:
        return f'data a {{ image = "x:1" mount v at "/v" }}\nvolume v {{ {name} = {literal} }}'
    if name in RESOURCES:
        return f'data a {{ image = "x:1"\n  resources {{ {name} = {literal} }} }}'
    if name == "port":
        return f'serve a {{ image = "x:1"\n  port = {literal} }}'
    if name == "ports":
        return f'serve a {{ image = "x:1"  port = 80\n  ports = {{ m = {literal} }} }}'
    if name.startswith("health."):
        return f'serve a {{ image = "x:1"  port = 80\n  health {{ tcp = true  {name[7:]} = {literal} }} }}'
    if NUMBERS[name].kinds == {"serve"}:
        return f'serve a {{ image = "x:1"  port = 80\n  {name} = {literal} }}'
    if name == "max_parallel":  # it limits a matrix stage's instances
        return f'data a {{ image = "x:1"  matrix {{ x = [1, 2] }}\n  {name} = {literal} }}'
    return f'data a {{ image = "x:1"\n  {name} = {literal} }}'


def written(spec: AttributeSpec, value: int) -> str:
    """``value`` (in the attribute's base unit) as a literal of the language."""
    kind = spec.type.quantity
    if kind is units.Kind.BYTES:
        return f"{Decimal(value) / 1000}k"  # exact: a size needs a unit, and k takes decimals
    if kind is units.Kind.CPU:
        return f"{value}m"
    if kind is units.Kind.DURATION:
        return f"{value}s"
    return str(value)


def run(capsys, tmp_path: Path, text: str, *args: str) -> tuple[int, str]:
    path = tmp_path / "t.aip"
    path.write_text(text)
    code = cli.main([*args, str(path)])
    out, err = capsys.readouterr()
    return code, (out + err) if args[0] == "check" else err  # `check` reports on stdout


def test_every_number_attribute_has_a_minimum_and_a_maximum():
    assert set(NUMBERS) == {"size", "retries", "timeout", "port", "expose", "ports", "replicas", "cpu", "memory",
                            "gpu", "shm", "disk", "health.port", "health.start", "health.interval",
                            "health.timeout", "health.failures", "max_parallel", "nodes"}
    for name, spec in NUMBERS.items():
        assert spec.minimum is not None and spec.maximum is not None, name
        assert spec.maximum <= units.INT64_MAX, name


@pytest.mark.parametrize("name", sorted(NUMBERS))
def test_the_maximum_is_accepted_and_one_more_is_an_error_at_the_value(name):
    spec = NUMBERS[name]
    assert check_source(program(name, written(spec, spec.maximum)), "t.aip").ir is not None
    text = program(name, written(spec, spec.maximum + 1))
    checked = check_source(text, "t.aip")
    (error,) = checked.diagnostics
    assert error.code == "E209" and f"`{name.removeprefix('health.')}` must be" in error.message
    assert text[error.span.start:error.span.end] == written(spec, spec.maximum + 1)
    assert Source("t.aip", text).position(error.span.start)[0] == 2


@pytest.mark.parametrize("name", sorted(NUMBERS))
@pytest.mark.parametrize("literal", [HUGE, f"-{HUGE}", "1e4400", "1e99999999999999999999", f"{HUGE}.5"])
def test_a_number_of_any_size_is_a_diagnostic(name, literal):
    kind = NUMBERS[name].type.quantity
    unit = {units.Kind.BYTES: "Gi", units.Kind.DURATION: "h"}.get(kind, "")
    codes = [d.code for d in check_source(program(name, literal + unit), "t.aip").diagnostics]
    if literal in (HUGE, "1e4400", "1e99999999999999999999") and (kind is not units.Kind.DURATION or literal == HUGE):
        assert codes == ["E209"]
    else:  # durations have no exponent; a GPU count is not negative (E208); too large comes before whole
        assert len(codes) == 1 and codes[0] in ("E201", "E208", "E209"), codes


@pytest.mark.parametrize("case", LIMIT_CASES, ids=lambda p: p.stem)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c).replace("-t-", "-"))
def test_limit_cases_are_errors_on_every_command(case, command, capsys):
    """Each case file compiles on no target and plans nothing: exit 1 with its
    diagnostics, never an internal error (exit 3)."""
    params = [arg for name, value in re.findall(r"#\s*params:\s*(\S+)=(\S*)", case.read_text())
              for arg in ("-p", f"{name}={value}")]
    code = cli.main([*command, str(case), *params])
    out, err = capsys.readouterr()
    reported = out + err if command == ["check"] else err
    assert code == 1, reported
    assert "internal error" not in reported and re.search(r"E20[19]|E211", reported)
    if command[0] == "compile":
        assert out == ""


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c).replace("-t-", "-"))
@pytest.mark.parametrize("text", [
    f'data a {{ image = "x:1"  retries = {HUGE} }}',
    'data a { image = "x:1"  resources { memory = 1e4400Gi } }',
    f'data a {{ image = "x:1"  resources {{ gpu = {HUGE} }} }}',
    f'data a {{ image = "x:1"  timeout = {HUGE}h }}',
    f'serve a {{ image = "x:1"  port = {HUGE} }}',
    f'param n = {HUGE}\ndata a {{ image = "x:1"  command = ["${{n}}"] }}',
    'param f = 1e4400\ndata a { image = "x:1"  command = ["${f}"] }',
], ids=["retries", "memory", "gpu", "timeout", "port", "int-param", "float-param"])
def test_the_numbers_of_the_issue_are_errors_not_crashes(text, command, capsys, tmp_path):
    code, err = run(capsys, tmp_path, text, *command)
    assert code == 1, err
    assert "internal error" not in err


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c).replace("-t-", "-"))
@pytest.mark.parametrize("override", [f"n={HUGE}", "f=1e4400", "f=-1e4400", "f=1e-400", f"d={HUGE}s",
                                      "r=2147483648"])
def test_overrides_of_any_size_are_errors_not_crashes(override, command, capsys, tmp_path):
    text = ('param n: int = 1\nparam f: float = 0.5\nparam d: duration = 1h\nparam r: int = 1\n'
            'data a { image = "x:1"  command = ["${n}", "${f}"]  timeout = "${d}"  retries = "${r}" }')
    code, err = run(capsys, tmp_path, text, *command, "-p", override)
    assert code == 1, err
    assert "internal error" not in err and ("E211" in err or "E209" in err)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c).replace("-t-", "-"))
def test_the_largest_values_compile_on_every_target_and_plan(command, capsys, tmp_path):
    """At its maximum, every number still reaches every target without a crash."""
    biggest = {name: written(spec, spec.maximum) for name, spec in NUMBERS.items()}
    resources = "  ".join(f"{name} = {biggest[name]}" for name in RESOURCES if name in NUMBERS)
    text = (f"volume v {{ size = {biggest['size']} }}\n"
            f'train model {{ image = "x:1"  retries = {biggest["retries"]}  timeout = {biggest["timeout"]}\n'
            f'  mount v at "/v"\n  resources {{ {resources} }} }}\n'
            f'serve api {{ image = "x:1"  after = [model]  port = {biggest["port"]}  replicas = {biggest["replicas"]}\n'
            f"  resources {{ {resources} }} }}\n")
    code, err = run(capsys, tmp_path, text, *command)
    assert code == 0, err


def test_a_megabyte_number_is_reported_in_bounded_time(capsys, tmp_path):
    """The literal's value is never computed: its size only costs reading it."""
    start = time.monotonic()
    code, err = run(capsys, tmp_path, f'data a {{ image = "x:1"  retries = {"7" * 2**20} }}', "check")
    assert code == 1 and "E209" in err
    assert "(1048576 characters)" in err  # the message shows the number's ends, not a megabyte
    assert time.monotonic() - start < 10


# --------------------------------------------------------------------- units


@pytest.mark.parametrize(("kind", "text", "expected"), [
    # exact beyond the 28 digits of decimal's default context
    (units.Kind.CPU, "1.0000000000000000000000000000001", None),
    (units.Kind.CPU, "1.000000000000000000000000000000", 1000),
    (units.Kind.DURATION, "1.5000000000000000000000000000001m", None),
    (units.Kind.BYTES, "1.0000000000000000000000000000001k", 1001),
    (units.Kind.COUNT, "12345678901234567890.0000000000000000001", None),
    # below the unit: rounded up for sizes (as Kubernetes does), an error where it must be whole
    (units.Kind.BYTES, "1e-9Gi", 2),
    (units.Kind.BYTES, "1e-99999999999999999999Gi", 1),
    (units.Kind.CPU, "1e-9", None),
    (units.Kind.COUNT, "1e-9", None),
    # -0 is 0
    (units.Kind.CPU, "-0", 0),
    (units.Kind.COUNT, "-0", 0),
    (units.Kind.BYTES, "-0Gi", 0),
    (units.Kind.DURATION, "-0s", 0),
    (units.Kind.BYTES, "0e99999999999999999999Gi", 0),
    # exponents and large values still exact
    (units.Kind.COUNT, "1e2", 100),
    (units.Kind.BYTES, "8191Pi", 8191 * 2**50),
    (units.Kind.DURATION, "24855d3h14m7s", units.MAX_SECONDS),
])
def test_parse_is_exact(kind, text, expected):
    if expected is None:
        with pytest.raises(units.UnitError) as raised:
            units.parse(kind, text)
        assert not isinstance(raised.value, units.TooLarge)
    else:
        assert units.parse(kind, text) == expected


@pytest.mark.parametrize(("kind", "text", "negative"), [
    (units.Kind.COUNT, HUGE, False),
    (units.Kind.COUNT, f"-{HUGE}", True),
    (units.Kind.BYTES, "1e4400Gi", False),
    (units.Kind.BYTES, "1e99999999999999999999Gi", False),
    (units.Kind.BYTES, "-1e99999999999999999999Gi", True),
    (units.Kind.CPU, "1e30", False),
    (units.Kind.DURATION, f"{HUGE}h", False),
])
def test_parse_does_not_compute_numbers_beyond_every_bound(kind, text, negative):
    with pytest.raises(units.TooLarge) as raised:
        units.parse(kind, text)
    assert raised.value.negative is negative
    assert len(raised.value.message) < 80


def test_abbreviate_keeps_short_text_and_shortens_long_text():
    assert units.abbreviate("16Gi") == "16Gi"
    assert units.abbreviate("9" * 4400) == "9" * 20 + "..." + "9" * 8 + " (4400 characters)"
