"""Incremental parsing gives `aipc check`'s diagnostics, re-parsing only what changed."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aipc.compiler.check import check_parsed, check_source
from aipc.diagnostics import Diagnostic
from aipc.lsp.incremental import IncrementalParser, chunk_starts
from tests.helpers import EXAMPLES

SOURCES = [path.read_text() for path in EXAMPLES]


def incremental(parser: IncrementalParser, text: str):
    document = parser.parse(text)
    checked = check_parsed(document.parse_result, parser.path)
    found = sorted((document.real_diagnostic(d) for d in checked.diagnostics), key=Diagnostic.sort_key)
    return document, found


def test_chunks_start_at_declarations_outside_strings_and_comments():
    text = 'param a = 1\n# data x {\ndata b {\n  script = """\ndata c {\n"""\n}\n  volume v {}\nvolume w {}\n'
    assert chunk_starts(text) == [0, text.index("data b"), text.index("volume w")]


def test_an_edit_reparses_only_its_declaration():
    parser = IncrementalParser("fraud.aip")
    text = next(p for p in EXAMPLES if p.stem == "fraud-detection").read_text()
    before = parser.parse(text)
    edited = text.replace("retries = 2", "retries = 20")
    after = parser.parse(edited)
    changed = [new for old, new in zip(before.chunks, after.chunks) if old.parsed is not new.parsed]
    assert len(changed) == 1 and "retries = 20" in changed[0].text
    assert after.exact


def test_diagnostics_move_with_text_inserted_above():
    parser = IncrementalParser("t.aip")
    text = 'data a { image = "i:1" }\n\ndata b { image = "i:1" after = [zz] }\n'
    _, first = incremental(parser, text)
    moved = "# a comment\n# two\n" + text
    _, second = incremental(parser, moved)
    assert second == check_source(moved, "t.aip").diagnostics
    assert second[0].span.start == first[0].span.start + len("# a comment\n# two\n")


def test_a_syntax_error_is_parsed_with_the_next_declaration_as_the_whole_file_is():
    text = 'volume v { size = 1Gi\ndata a {\n  image = "i:1"\n}\ndata b { image = "i:1" }\n'
    document, found = incremental(IncrementalParser("t.aip"), text)
    assert document.exact
    assert found == check_source(text, "t.aip").diagnostics
    assert "the next declaration starts before its `}`" in found[0].message
    assert len(document.chunks) == 2  # the broken volume with `data a`, then `data b`


def test_an_unclosed_triple_quote_is_left_to_a_whole_file_check():
    text = 'data a {\n  script = """\n  run\n}\ndata b {\n  script = """x"""\n}\n'
    document, _ = incremental(IncrementalParser("t.aip"), text)
    assert not document.exact


def test_copies_of_one_declaration_are_told_apart():
    stage = 'data a { image = "i:1" after = [zz] }\n'
    text = stage + stage + stage
    _, found = incremental(IncrementalParser("t.aip"), text)
    assert found == check_source(text, "t.aip").diagnostics
    # the copies are duplicates, each reported at its own name
    assert [d.span.start for d in found if d.code == "E101"] == [5 + len(stage), 5 + 2 * len(stage)]


EDITS = st.sampled_from(["", "{", "}", "]", "[", '"', '"""', "=", " = ", "x", "\n", "#", ",", "..",
                         "\ndata q {", "\nserve", "after = [zz]", "mount nope at \"/x\"", "1h", "Gi", "\U0001F642"])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(SOURCES))), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 12), EDITS),
                                                      min_size=1, max_size=4))
def test_successive_edits_give_the_whole_file_diagnostics(which, edits):
    parser = IncrementalParser("example.aip")
    text = SOURCES[which]
    incremental(parser, text)
    for where, length, new in edits:
        start = int(where * len(text))
        text = text[:start] + new + text[start + length:]
        document, found = incremental(parser, text)
        if document.exact:
            assert found == check_source(text, "example.aip").diagnostics
        else:  # only an unclosed triple quote can reach past its chunk; the server checks the whole file
            assert '"""' in text


def test_a_cancelled_parse_keeps_what_it_parsed_for_the_next_version():
    """The server gives up a stale parse between chunks; the chunks parsed so far
    are not lost: the next version parses only what is new to it."""
    from aipc.lsp.incremental import Cancelled

    text = "".join(f'data s{i} {{ image = "e:1" }}\n' for i in range(40))
    parser = IncrementalParser("t.aip")
    asked = []

    def cancelled() -> bool:
        asked.append(True)
        return len(asked) > 25  # after 25 chunks

    with pytest.raises(Cancelled):
        parser.parse(text, cancelled)
    calls = []
    original = parser._parse_chunk
    parser._parse_chunk = lambda piece: calls.append(piece) or original(piece)
    edited = text.replace('data s39 { image = "e:1" }', 'data s39 { image = "e:2" }')
    document = parser.parse(edited)
    assert len(calls) == 40 - 25 and calls[-1].startswith("data s39")
    assert [d.name.value for d in document.program.declarations] == [f"s{i}" for i in range(40)]
    assert document.exact
