"""Properties: the formatter and the parser agree, and no input breaks the checker."""

from __future__ import annotations

import signal

from hypothesis import HealthCheck, given, settings, strategies as st

from aipc.compiler import check_source
from aipc.dsl.format import format_text, without_spans
from aipc.dsl.parser import parse
from tests.hostile.programs import grammar_programs


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grammar_programs())
def test_formatted_programs_parse_to_the_same_model(text):
    """Any program the grammar derives, every construct and comments included:
    the formatter's text parses to the same model, and formats to itself."""
    result = format_text(text, "gen.aip")
    assert result.text is not None, [d.message for d in result.diagnostics]
    again = parse(result.text, "gen.aip")
    assert without_spans(again.program) == without_spans(parse(text, "gen.aip").program), result.text
    assert format_text(result.text, "gen.aip").text == result.text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(data):
    checked = check_source(data, "fuzz.aip", {})
    assert checked.ir is not None or checked.diagnostics


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('{}[]=,.."\'$#/\n abc01Gim-:')) | st.characters(), max_size=300))
def test_arbitrary_text_never_raises(text):
    checked = check_source(text, "fuzz.aip", {"x": "1"})
    for diagnostic in checked.diagnostics:
        if diagnostic.span is not None:
            assert 0 <= diagnostic.span.start <= diagnostic.span.end <= len(text) + 1


SOUP = ["data", "serve", "volume", "param", "x", "image", "=", "{", "}", "[", "]", ",", "..", ":", "\n",
        '"s"', '"""\n t\n"""', "1Gi", "mount", "at", "readonly", "resources", "# c\n", "'", "-", "@"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SOUP), max_size=60))
def test_recovery_ends_on_any_token_soup(words):
    text = " ".join(words)
    signal.signal(signal.SIGALRM, _too_slow)
    signal.alarm(10)  # the recovery must end: each repair moves on or gives up
    try:
        check_source(text, "soup.aip", {})
    finally:
        signal.alarm(0)


def _too_slow(*_):
    raise AssertionError("check_source did not end within 10 s")
