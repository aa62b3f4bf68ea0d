"""Byte-level mutations of the examples: whatever the bytes, `check_source` and
every backend return (diagnostics, or documents that read back as written),
never raise (fixed seed, bounded number of examples)."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aipc.backends import TARGETS, get_backend
from aipc.backends.writer import to_yaml
from aipc.compiler.check import check_source, source_text
from tests.helpers import EXAMPLES

ORIGINALS = [path.read_bytes() for path in EXAMPLES]
INTERESTING = [b"{", b"}", b"[", b"]", b'"', b'"""', b"\\", b"\x00", b"\xff", b"\xc3", b"\xef\xbb\xbf", b"\r\n",
               b"\r", b"${", b"$${", b"${x", b"..", b"=", b",", b"#", b"//", b"\n", b"\t", b"-", b"'", b":",
               b"after = [", b"mount", b"readonly", b"data ", b"serve ", b"1..0", b"9" * 30, b"1e999", b"-1",
               "\u00e9\u2603".encode(), b"a: b", b"---", b"{{ }}", b"!!python/object"]

operations = st.tuples(
    st.sampled_from(["flip", "delete", "insert", "duplicate", "splice"]),
    st.integers(min_value=0, max_value=1 << 20),
    st.integers(min_value=1, max_value=64),
    st.one_of(st.sampled_from(INTERESTING), st.binary(min_size=1, max_size=6)),
)


def mutate(data: bytearray, operation, other: bytes) -> None:
    kind, position, length, payload = operation
    position %= len(data) + 1
    if kind == "flip" and data:
        data[position % len(data)] ^= payload[0] or 1
    elif kind == "delete":
        del data[position : position + length]
    elif kind == "insert":
        data[position:position] = payload
    elif kind == "duplicate":
        data[position:position] = data[position : position + length]
    else:
        start = (position * 7) % (len(other) + 1)
        data[position : position + length] = other[start : start + length]


@settings(derandomize=True, deadline=None, max_examples=250, suppress_health_check=list(HealthCheck))
@given(st.integers(0, len(ORIGINALS) - 1), st.integers(0, len(ORIGINALS) - 1), st.lists(operations, max_size=8))
def test_mutated_examples_never_break_the_checker_or_a_backend(which, donor, mutations):
    data = bytearray(ORIGINALS[which])
    for operation in mutations:
        mutate(data, operation, ORIGINALS[donor])
    checked = check_source(bytes(data), "mutant.aip", {})
    assert checked.ir is not None or any(d.is_error for d in checked.diagnostics)
    text, _ = source_text(bytes(data), "mutant.aip")
    for diagnostic in checked.diagnostics:
        if diagnostic.span is not None:
            assert 0 <= diagnostic.span.start <= diagnostic.span.end <= len(text) + 1
    if checked.ir is not None:
        for target in TARGETS:
            emitted = get_backend(target).emit(checked.ir)
            assert list(yaml.safe_load_all(to_yaml(emitted.documents))) == list(emitted.documents)
