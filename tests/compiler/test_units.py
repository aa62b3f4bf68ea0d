from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from aipc.compiler import units
from aipc.compiler.units import Kind, UnitError


@pytest.mark.parametrize("value, text", [
    (16 * 2**30, "16Gi"), (512 * 2**20, "512Mi"), (1536 * 2**20, "1536Mi"), (10**9, "1G"),
    (1500 * 10**6, "1500M"), (1023, "1023"), (0, "0"), (2**40, "1Ti"),
])
def test_format_bytes_canonical(value, text):
    assert units.format_bytes(value) == text


@pytest.mark.parametrize("value, text", [(2000, "2"), (500, "500m"), (1250, "1250m")])
def test_format_cpu(value, text):
    assert units.format_cpu(value) == text


@pytest.mark.parametrize("value, text", [(5400, "1h30m"), (45, "45s"), (172800, "2d"), (0, "0s")])
def test_format_duration(value, text):
    assert units.format_duration(value) == text


@given(st.integers(min_value=0, max_value=2**60))
def test_bytes_round_trip(value):
    text = units.format_bytes(value)
    # a count of bytes no unit divides is written bare, which Kubernetes reads as bytes
    assert (int(text) if text.isdigit() else units.parse(Kind.BYTES, text)) == value


@given(st.integers(min_value=1, max_value=10**7))
def test_duration_round_trip(value):
    assert units.parse(Kind.DURATION, units.format_duration(value)) == value


@pytest.mark.parametrize("kind, text, hint", [
    (Kind.BYTES, "16GB", "`16G`"), (Kind.BYTES, "16gb", "`16G`"), (Kind.BYTES, "4", "4Gi"),
    (Kind.BYTES, "1h", "size"), (Kind.CPU, "2Gi", "millicores"), (Kind.DURATION, "90", "90s"),
    (Kind.DURATION, "100ms", "second"), (Kind.DURATION, "5min", "`m`"), (Kind.DURATION, "2Gi", "duration"),
])
def test_unit_errors_say_what_to_write(kind, text, hint):
    with pytest.raises(UnitError) as error:
        units.parse(kind, text)
    assert hint in (error.value.help or "")
