"""v1 forms this build reads but does not compile: one E009 at each, where it is
written, and no cascade from it; the resolver declares and uses their names."""

from __future__ import annotations

from aipc.compiler import check_source
from aipc.compiler.resolve import symbol_table
from aipc.diagnostics import Source
from aipc.dsl.parser import parse

VALID = '''\
volume models { size = 1Gi }
secret hf { keys = ["token"] }
data prep { image = "i:1" }
'''


def found(text: str) -> list[tuple[str, int, int, str]]:
    """(code, line, column, the text at the span) of every diagnostic."""
    source = Source("t.aip", text)
    return [(d.code, *source.position(d.span.start), text[d.span.start:d.span.end])
            for d in check_source(text, "t.aip").diagnostics]


def test_each_construct_is_reported_once_at_its_keyword():
    text = VALID + '''\
train model {
  image = "i:1"
  output metrics at "/out/metrics"
}
eval score {
  image = "i:1"
  input model.metrics at "/in/metrics"
  env = { HF_TOKEN = hf.token, LEVEL = "info" }
}
'''
    assert found(text) == [("E009", 11, 22, "hf.token")]  # `output` and `input` are compiled
    assert check_source(text, "t.aip").ir is None
    (diagnostic,) = check_source(text, "t.aip").diagnostics
    assert diagnostic.message.endswith("is part of the v1 language and not implemented in this build")
    assert diagnostic.help


def test_a_reference_value_is_e009_in_env_and_a_type_error_where_v1_gives_it_no_meaning():
    text = VALID + '''\
data a {
  image = hf.token
  env = { "bad name" = hf.token, OK = "1" }
  labels = { team = hf.token }
}
'''
    assert found(text) == [
        ("E202", 5, 11, "hf.token"),
        ("E214", 6, 11, '"bad name"'), ("E009", 6, 24, "hf.token"),
        ("E202", 7, 21, "hf.token"),
    ]
    messages = [d.message for d in check_source(text, "t.aip").diagnostics]
    assert messages[0] == "`image` expects a string, found the reference `hf.token`"
    assert "the reference `hf.token`" in messages[2]


def test_statements_outside_a_stage_are_not_allowed():
    text = 'volume v { size = 1Gi  output o at "/o" }\npipeline "p" { input a.b at "/i" }\n'
    assert [(code, text) for code, _, _, text in found(text)] == [
        ("E106", 'output o at "/o"'), ("E106", 'input a.b at "/i"')]


def test_the_symbol_table_declares_and_uses_the_v1_names():
    text = VALID + '''\
import "lib/gpu.aip"
import "lib/cpu.aip" as cpu
template trainer: train from cpu.base { image = "i:1" }
train small from trainer { env = { T = hf.token } }
eval score { image = "i:1"  input prep.features at "/in" }
'''
    table = symbol_table(parse(text, "t.aip").program)
    declared = [(d.kind, d.name, text[d.name_span.start:d.name_span.end]) for d in table.declared]
    assert declared[3:] == [("import", "gpu", '"lib/gpu.aip"'), ("import", "cpu", "cpu"),
                            ("template", "trainer", "trainer"), ("stage", "small", "small"),
                            ("stage", "score", "score")]
    used = [(r.kind, r.name, text[r.span.start:r.span.end]) for r in table.references]
    assert used == [("import", "cpu", "cpu"), ("template", "trainer", "trainer"), ("secret", "hf", "hf"),
                    ("stage", "prep", "prep")]
