"""Offsets and LSP positions: UTF-16 by default, emoji, tabs, CRLF and BOM."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from lsprotocol import types

from aipc.codes import UNKNOWN_STAGE
from aipc.diagnostics import Diagnostics, Label, Span
from aipc.lsp.convert import UTF8, UTF16, UTF32, LineIndex, diagnostic, units_of

EMOJI = "\U0001F680"  # outside the Basic Multilingual Plane: two UTF-16 units


def pos(line: int, character: int) -> types.Position:
    return types.Position(line=line, character=character)


def test_emoji_take_two_utf16_units_and_tabs_one():
    text = f'data x {{\n\tenv = {{ A = "{EMOJI}{EMOJI}" }} after = [nope]\n}}\n'
    index = LineIndex(text)
    offset = text.index("nope")
    assert offset - text.index("\t") == 29  # characters into the line
    assert index.position(offset) == pos(1, 31)
    assert index.offset(pos(1, 31)) == offset


def test_other_encodings_count_their_own_units():
    text = f"a{EMOJI}é\tb"
    assert LineIndex(text, UTF8).position(len(text) - 1) == pos(0, 1 + 4 + 2 + 1)
    assert LineIndex(text, UTF32).position(len(text) - 1) == pos(0, 4)
    assert LineIndex(text, UTF16).position(len(text) - 1) == pos(0, 5)
    assert units_of(text, UTF8) == len(text.encode("utf-8"))
    assert units_of(text, UTF16) == len(text.encode("utf-16-le")) // 2


def test_positions_outside_the_text_are_clamped():
    index = LineIndex("ab\ncd")
    assert index.offset(pos(0, 99)) == 2
    assert index.offset(pos(7, 0)) == 5
    assert index.position(99) == pos(1, 2)
    # a column inside a surrogate pair means the character it splits
    assert LineIndex(f"{EMOJI}x").offset(pos(0, 1)) == 0


def test_a_bom_shifts_the_first_line_only():
    index = LineIndex("ab\ncd", bom=True)
    assert index.position(1) == pos(0, 2)
    assert index.position(4) == pos(1, 1)
    assert index.offset(pos(0, 2)) == 1


@given(st.text(alphabet=st.sampled_from(["a", "\t", "\n", "é", EMOJI, "中", " "]), max_size=40))
def test_offsets_survive_a_round_trip(text):
    for encoding in (UTF8, UTF16, UTF32):
        index = LineIndex(text, encoding)
        for offset in range(len(text) + 1):
            assert index.offset(index.position(offset)) == offset


def test_diagnostics_carry_help_related_spans_code_and_severity():
    text = f'# {EMOJI}\ndata a {{ after = [b] }}\n'
    sink = Diagnostics("t.aip")
    at = text.index("b]")
    sink.error(UNKNOWN_STAGE, Span(at, at + 1), "unknown stage `b`", help="did you mean `a`?",
               related=[Label(Span(text.index("a {"), text.index("a {") + 1), "declared here")])
    (item,) = sink.items
    converted = diagnostic(item, LineIndex(text), "file:///t.aip")
    assert converted.range == types.Range(start=pos(1, 18), end=pos(1, 19))
    assert converted.message == "unknown stage `b`\nhelp: did you mean `a`?"
    assert converted.code == "E102" and converted.source == "aipc"
    assert converted.severity == types.DiagnosticSeverity.Error
    (related,) = converted.related_information
    assert related.location.range.start == pos(1, 5) and related.message == "declared here"
