"""Properties: the printer and the parser agree, and no input breaks the checker."""

from __future__ import annotations

import signal

from hypothesis import HealthCheck, given, settings, strategies as st

from aipc.compiler import check_source
from aipc.diagnostics import Span
from aipc.dsl import model as m
from aipc.dsl.builder import number_value
from aipc.dsl.parser import parse
from aipc.dsl.vocabulary import DECLARATION_KEYWORDS
from aipc.dsl.printer import print_program
from tests.helpers import EXAMPLES, strip_spans

NOWHERE = Span(0, 0)
KEYWORDS = set(DECLARATION_KEYWORDS) | {"mount", "at", "readonly"}
LOWER = "abcdefghijklmnopqrstuvwxyz"
names = st.builds(lambda first, rest: first + rest, st.sampled_from(LOWER),
                  st.text(alphabet=LOWER + "0123456789_", max_size=8))
attribute_names = names.filter(lambda n: n not in KEYWORDS)


def node(cls, **fields):
    return cls.model_construct(span=NOWHERE, **fields)


@st.composite
def strings(draw):
    pieces = draw(st.lists(st.one_of(
        st.text(min_size=1, max_size=12),
        st.sampled_from(["\n", "  ", '"', "\\", "$", "${", "$$", "{", "}", '"""', "\t"]),
        st.one_of(names, st.sampled_from(["pipeline.name", "stage.name", "HOME", "_x1"])).map(
            lambda name: node(m.Interpolation, name=name, name_span=NOWHERE)),
    ), max_size=6))
    parts: list = []
    for piece in pieces:
        if isinstance(piece, str) and parts and isinstance(parts[-1], str):
            parts[-1] += piece
        else:
            parts.append(piece)
    return node(m.Str, parts=tuple(parts))


@st.composite
def numbers(draw):
    sign = draw(st.sampled_from(["", "-", "+"]))
    digits = draw(st.sampled_from(["0", "7", "42", "3.5", ".5", "3e-4", "1E6", "2.50"]))
    unit = draw(st.sampled_from(["", "", "Gi", "Mi", "m", "k", "h30m", "d", "e", "GB", "x1y"]))
    text = sign + digits + unit
    value, unit = number_value(text)
    return node(m.Number, text=text, value=value, unit=unit)


words = names.map(lambda n: node(m.Word, value=n))
scalars = st.one_of(strings(), numbers(), words)


def values():
    return st.recursive(
        st.one_of(scalars, st.tuples(scalars, scalars).map(lambda p: node(m.RangeValue, low=p[0], high=p[1]))),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4).map(lambda items: node(m.ListValue, items=tuple(items))),
            st.lists(st.tuples(st.one_of(names, st.text(max_size=8)), inner), max_size=4).map(
                lambda entries: node(m.MapValue, entries=tuple(
                    node(m.Entry, key=k, key_span=NOWHERE, value=v) for k, v in entries))),
        ),
        max_leaves=8,
    )


attributes = st.builds(lambda n, v: node(m.Attribute, name=n, name_span=NOWHERE, value=v), attribute_names, values())
mounts = st.builds(lambda v, p, r: node(m.Mount, volume=node(m.Name, value=v), path=p, readonly=r),
                   names, strings(), st.booleans())
items = st.recursive(
    st.one_of(attributes, mounts),
    lambda inner: st.builds(lambda n, i: node(m.Block, name=n, name_span=NOWHERE, items=tuple(i)),
                            attribute_names, st.lists(inner, max_size=3)),
    max_leaves=6,
)
item_lists = st.lists(items, max_size=5).map(tuple)

declarations = st.one_of(
    st.builds(lambda n, i: node(m.PipelineDecl, name=n, name_span=NOWHERE, items=i), st.text(max_size=10), item_lists),
    st.builds(lambda n, t, d: node(m.ParamDecl, name=node(m.Name, value=n),
                                   type=node(m.Name, value=t) if t else None, default=d),
              names, st.one_of(st.none(), names), values()),
    st.builds(lambda n, i: node(m.VolumeDecl, name=node(m.Name, value=n), items=i), names, item_lists),
    st.builds(lambda n, i: node(m.SecretDecl, name=node(m.Name, value=n), items=i), names, item_lists),
    st.builds(lambda k, n, i: node(m.StageDecl, kind=k, kind_span=NOWHERE, name=node(m.Name, value=n), items=i),
              st.sampled_from(["data", "train", "eval", "serve"]), names, item_lists),
)
programs = st.lists(declarations, max_size=5).map(
    lambda ds: m.Program.model_construct(path="gen.aip", declarations=tuple(ds), broken=()))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs)
def test_printed_programs_parse_to_the_same_model(program):
    text = print_program(program)
    parsed = parse(text, "gen.aip")
    assert list(parsed.diagnostics) == [], text
    assert strip_spans(parsed.program.model_dump()) == strip_spans(program.model_dump()), text


def test_examples_survive_the_round_trip():
    for path in EXAMPLES:
        program = parse(path.read_text(), str(path)).program
        again = parse(print_program(program), str(path))
        assert list(again.diagnostics) == []
        assert strip_spans(again.program.model_dump()) == strip_spans(program.model_dump())


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
