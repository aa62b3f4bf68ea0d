"""The fast paths build exactly what the plain ones build.

The scanner (its own scan of the grammar's terminals), the parser's fast path
(its own loop over lark's LALR table), ``model.construct`` and the YAML
writer's fast path exist for speed only; these tests hold each to its
reference: lark's lexer and parser, pydantic's ``model_construct``, PyYAML.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark.exceptions import UnexpectedCharacters

from aipc.backends import TARGETS, get_backend, writer
from aipc.compiler.check import check_source
from aipc.compiler.sources import read_text
from aipc.diagnostics import Diagnostics
from aipc.dsl import builder, fastpath, parser, scanner
from aipc.dsl import model as m
from aipc.dsl.recovery import MAX_SYNTAX_ERRORS
from tests.helpers import EXAMPLES, ROOT
from tests.hostile.programs import YAML_LOOKALIKES, grammar_programs, valid_programs

sys.path.insert(0, str(ROOT / "benchmarks"))
from generate import pipeline as benchmark_pipeline  # noqa: E402



def fuzz(examples: int):
    """A fixed seed (the same examples on every run) and a bounded number of them."""
    return settings(derandomize=True, deadline=None, max_examples=examples,
                    suppress_health_check=list(HealthCheck))


TEXTS = [path.read_text() for path in EXAMPLES] + [benchmark_pipeline(30)]


def lark_tokens(text: str) -> tuple[list[tuple], bool]:
    """lark's own tokens as (type, text, start, end), and whether it stopped at a character."""
    out = []
    try:
        for token in builder.lark_parser().lex(text):
            out.append((token.type, str(token), token.start_pos, token.end_pos))
    except UnexpectedCharacters:
        return out, True
    return out, False


def fast_tokens(text: str) -> tuple[list[tuple], bool]:
    """The scanner's tokens up to the first it makes of text lark cannot read, and whether there is one."""
    out = []
    for token in scanner.scan(text):
        if token.type in scanner.PROBLEMS:
            return out, True
        out.append((token.type, str(token), token.start_pos, token.end_pos))
    return out, False


def both_parses(text: str):
    """(declarations, diagnostics) from lark's parser and from the fast path."""
    results = []
    for run in (lambda: builder.lark_parser().parse(text, start="start"),
                lambda: fastpath.fast_parse(fastpath.build_fast_path(), text)):
        sink = Diagnostics("t.aip")
        token = builder.building_sink.set(sink)
        try:
            try:
                declarations = run()
            except Exception:  # lark raises on a syntax error; the fast path returns None
                declarations = None
        finally:
            builder.building_sink.reset(token)
        results.append((declarations, [(d.code, d.span, d.message) for d in sink]))
    return results


def test_the_fast_path_is_available():
    """Built from lark's internals: a lark release that changes them must be noticed."""
    assert fastpath.build_fast_path() is not None


def test_the_switch_turns_the_fast_path_off(monkeypatch):
    monkeypatch.setenv(fastpath.SWITCH, "1")
    fast = parser.parse(TEXTS[-1], "t.aip")
    monkeypatch.setenv(fastpath.SWITCH, "0")
    assert fastpath.fast_path() is None
    monkeypatch.setattr(fastpath, "fast_parse", lambda *args: pytest.fail("the fast path ran"))
    slow = parser.parse(TEXTS[-1], "t.aip")
    assert slow.program == fast.program and list(slow.diagnostics) == list(fast.diagnostics)


def test_a_bug_in_a_callback_is_not_taken_for_a_syntax_error():
    """The fast path gives up on a token no table action takes, and on nothing else:
    an exception from the model builder propagates (an internal error), it does not
    send the file to the error recovery."""
    def broken(children):
        raise KeyError("a bug in the model builder")

    fast = fastpath.build_fast_path()
    table = [{symbol: (action if isinstance(action, int) or action[1] != "param_decl" else (*action[:2], broken))
              for symbol, action in row.items()} for row in fast.table]
    assert fastpath.fast_parse(fast._replace(table=table), "volume v { size = 1Gi }") is not None  # not called
    with pytest.raises(KeyError, match="a bug in the model builder"):
        fastpath.fast_parse(fast._replace(table=table), "param x = 1")


def test_without_the_fast_path_the_error_limit_holds(monkeypatch):
    """One lexing loop applies the limit: `@ ` a hundred thousand times is 1,001
    diagnostics, quickly, with or without the fast path (not 100,000 in 28 s)."""
    text = "@ " * 100_000
    found = []
    for switch in ("1", "0"):
        monkeypatch.setenv(fastpath.SWITCH, switch)
        started = time.perf_counter()
        found.append([(d.code, d.span, d.message) for d in check_source(text, "x.aip").diagnostics])
        assert time.perf_counter() - started < 5
    assert found[0] == found[1] and len(found[0]) == MAX_SYNTAX_ERRORS + 1


def test_the_test_command_runs_the_diagnostics_and_hostile_tests_without_the_fast_path():
    script = (ROOT / "scripts" / "test.sh").read_text()
    # on the same pytest-xdist workers as the main pass
    assert f'{fastpath.SWITCH}=0 .venv/bin/python -m pytest "${{parallel[@]}}"' in script
    assert script.rstrip().endswith("tests/diagnostics tests/hostile")


@pytest.mark.parametrize("text", TEXTS, ids=[p.stem for p in EXAMPLES] + ["benchmark"])
def test_tokens_and_model_match_lark_on_examples(text):
    assert fast_tokens(text) == lark_tokens(text)
    (lark_model, lark_problems), (fast_model, fast_problems) = both_parses(text)
    assert fast_model is not None
    assert fast_model == lark_model and repr(fast_model) == repr(lark_model)
    assert fast_problems == lark_problems


@fuzz(300)
@given(st.text(alphabet=st.sampled_from(list('{}[]=,.."\'$#/\n\t abcdxyz01Gim-:_+;\\\ufeff\u00e9')), max_size=120))
def test_tokens_match_lark_on_any_text(text):
    assert fast_tokens(text) == lark_tokens(text)


@fuzz(60)
@given(grammar_programs())
def test_model_matches_lark_on_programs_from_the_grammar(text):
    (lark_model, lark_problems), (fast_model, fast_problems) = both_parses(text)
    assert fast_model is not None, text  # the grammar derived it: no syntax error
    assert fast_model == lark_model and repr(fast_model) == repr(lark_model)
    assert fast_problems == lark_problems


def nodes(value):
    if isinstance(value, m.BaseModel):
        yield value
        for field in type(value).model_fields:
            yield from nodes(getattr(value, field))
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from nodes(item)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_construct_builds_what_model_construct_builds(path):
    kinds = set()
    for node in nodes(parser.parse(path.read_text(), str(path)).program):
        kinds.add(type(node))
        reference = type(node).model_construct(**node.__dict__)
        assert list(node.__dict__) == list(type(node).model_fields)  # every field, in order
        assert node == reference and repr(node) == repr(reference)
        assert node.model_fields_set == reference.model_fields_set
        assert node.model_dump() == reference.model_dump()
    assert len(kinds) >= 12


def test_constructed_nodes_copy_like_pydantic_ones():
    program = parser.parse(EXAMPLES[0].read_text(), "x.aip").program
    stage = next(d for d in program.declarations if isinstance(d, m.StageDecl))
    copied = stage.model_copy(update={"kind": "eval"})
    assert copied.kind == "eval" and stage.kind != "eval"
    assert stage.model_fields_set == set(type(stage).model_fields)  # the shared set was not changed


# ---------------------------------------------------------------------- YAML


def emitted(text: str):
    # as if next to the examples: the files they import are found
    checked = check_source(text, "t.aip", read=lambda path: read_text(str(ROOT / "examples" / path)))
    assert checked.ir is not None, [d.message for d in checked.diagnostics]
    for target in TARGETS:
        documents = list(get_backend(target).emit(checked.ir).documents)
        if documents:
            yield target, documents


@pytest.mark.parametrize("text", TEXTS, ids=[p.stem for p in EXAMPLES] + ["benchmark"])
def test_writer_fast_path_writes_what_pyyaml_writes(text):
    for target, documents in emitted(text):
        fast = writer._fast_yaml(documents)
        assert fast is not None, target  # what backends build is written by the fast path
        assert fast == writer._pyyaml(documents), target


@fuzz(40)
@given(valid_programs())
def test_writer_fast_path_on_generated_programs(program):
    for target, documents in emitted(program.text):
        fast = writer._fast_yaml(documents)
        assert fast is None or fast == writer._pyyaml(documents), target


# Strings chosen to sit on every edge of the plain/quoted/literal decision.
_edge_strings = st.one_of(
    st.sampled_from(YAML_LOOKALIKES),
    st.sampled_from(["", " ", "-", "--", "-x", "- x", "?x", "? x", ":x", "x:", "x:y", "x: y", "x :y", "#x", "x#y",
                     "x #y", "@x", "x@y", "`x", "!x", "&x", "*x", "%x", "|", ">", "'", '"', "{x", "[x", "x,y",
                     "...", "...x", "---x", "--x", "=", "==", "<<", "~", "null", "Null", "NULL", "y", "Y", "n",
                     "off", "Off", "1", "-1", "+1", "1.5", "1e5", "1.0e+5", "0b101", "0x1F", "0o17", "017", "1:30",
                     "2001-12-14", "2001-12-14t21:59:43.10-05:00", ".5", ".nan", ".NaN", "+.inf", "a\nb", "a\n",
                     "a\n\n", "\na", " a\nb", "a \nb", "a\n b", "a\nb ", "\t", "x" * 200, "x " * 600,
                     "é", "a\u2028b", "a\x85b", "\x00", "\x7f", "a\rb"]),
    st.text(alphabet=st.sampled_from(list("ab -:#'\"\n{}[],&*!|>%@`?.=+/\\")), max_size=12),
)
_keys = st.one_of(_edge_strings.filter(lambda k: "\n" not in k), st.sampled_from(["x" * 130]))
_documents = st.recursive(
    st.one_of(_edge_strings, st.integers(-5, 10**12), st.booleans(), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_keys, inner, max_size=3)),
    max_leaves=12,
)


@fuzz(400)
@given(st.lists(st.dictionaries(_keys, _documents, min_size=1, max_size=4), min_size=1, max_size=3))
def test_writer_fast_path_on_edge_strings(documents):
    fast = writer._fast_yaml(documents)
    assert fast is None or fast == writer._pyyaml(documents)


def test_writer_fast_path_handles_the_common_edges():
    """The cases backends meet all the time must not fall back to PyYAML."""
    document = {"a": ["-x", "x:y", "{{workflow.parameters.lr}}", "3e-4", "no", "", "x,y", "sh -c 'echo hi'",
                      "line one\nline two\n", "line one\nline two"], "b": {}, "c": [], "d": [[1, 2], {"e": None}]}
    fast = writer._fast_yaml([document, document])
    assert fast is not None and fast == writer._pyyaml([document, document])
    assert list(yaml.safe_load_all(fast)) == [document, document]


def test_writer_output_is_the_same_with_and_without_the_fast_path(monkeypatch):
    documents = list(get_backend("k8s").emit(check_source(TEXTS[-1], "b.aip").ir).documents)
    fast = writer.to_yaml(documents)
    monkeypatch.setattr(writer, "_fast_yaml", lambda documents: None)
    assert writer.to_yaml(documents) == fast


def test_benchmark_generator_shape():
    """benchmarks/generate.py: N/10 chained data stages, then training stages with
    one GPU each, all joined by one evaluation stage; every stage has an image, a
    command, cpu and memory and a mounted volume."""
    pipeline = check_source(benchmark_pipeline(100), "b.aip").ir
    kinds = [stage.kind.value for stage in pipeline.stages]
    assert kinds == ["data"] * 10 + ["train"] * 89 + ["eval"]
    assert all(pipeline.stage(f"prep_{i}").after == ((f"prep_{i - 1}",) if i else ()) for i in range(10))
    trainers = [s for s in pipeline.stages if s.kind.value == "train"]
    assert all(s.after == ("prep_9",) and s.resources.gpu == 1 for s in trainers)
    assert pipeline.stages[-1].after == tuple(sorted(s.name for s in trainers))
    for stage in pipeline.stages:
        assert stage.image and stage.command and stage.mounts
        assert stage.resources.cpu is not None and stage.resources.memory is not None
    assert Path(ROOT / "benchmarks" / "generate.py").exists()
