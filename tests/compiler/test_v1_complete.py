"""The whole v1 language compiles: every program of the contract, on every target,
with no E009 (kept registered, reported by nothing); a reference value where v1
gives it no meaning is a type error; the resolver declares and uses v1's names."""

from __future__ import annotations

import pytest

from aipc import codes
from aipc.backends import TARGETS, get_backend
from aipc.compiler import check_source
from aipc.compiler.resolve import symbol_table
from aipc.compiler.sources import Unreadable
from aipc.diagnostics import Source
from aipc.dsl.parser import parse
from tests.dsl.test_v1_syntax import CONTRACT

VALID = '''\
volume models { size = 1Gi }
secret hf { keys = ["token"] }
data prep { image = "i:1" }
'''
# What the contract's fragments leave to the pipeline: the library `templates`
# imports and the volume its templates mount, a stage from the template of another.
LIBRARY = 'template h100_trainer: train { image = "i:1"  resources { gpu = 8  memory = 900Gi  shm = 128Gi } }\n'
DECLARED = {"templates": "volume models { size = 100Gi  access = rwx }\n",
            "template_from_template": 'train run from trainer { command = ["python", "train.py"] }\n'}


def found(text: str) -> list[tuple[str, int, int, str]]:
    """(code, line, column, the text at the span) of every diagnostic."""
    source = Source("t.aip", text)
    return [(d.code, *source.position(d.span.start), text[d.span.start:d.span.end])
            for d in check_source(text, "t.aip").diagnostics]


def read(path: str) -> str:
    if path != "lib/gpu.aip":
        raise Unreadable(f"cannot read `{path}`: no such file", "check the path")
    return LIBRARY


COMPILED = sorted(CONTRACT)


@pytest.mark.parametrize("name", COMPILED)
def test_every_v1_program_of_the_contract_compiles_on_every_target(name):
    text = CONTRACT[name] + DECLARED.get(name, "")
    checked = check_source(text, "p.aip", read=read)
    assert checked.ir is not None, [d.message for d in checked.diagnostics]
    for target in TARGETS:
        emitted = get_backend(target).emit(checked.ir)
        diagnostics = [*checked.diagnostics, *emitted.diagnostics]
        assert emitted.documents and not [d for d in diagnostics if d.is_error], \
            (target, [d.message for d in diagnostics if d.is_error])
        assert codes.NOT_IMPLEMENTED.id not in {d.code for d in diagnostics}


def test_outputs_inputs_and_a_secret_key_in_env_compile_together():
    text = '''\
secret hf { keys = ["token"] }
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
    assert found(text) == []
    score = check_source(text, "t.aip").ir.stage("score")
    assert [(name, key.secret, key.key) for name, key in score.secret_env] == [("HF_TOKEN", "hf", "token")]
    assert [(a.key, a.path, a.read_only) for a in score.artifact_mounts()] == [("model.metrics", "/in/metrics", True)]


def test_a_reference_value_is_a_secret_key_in_env_and_a_type_error_where_v1_gives_it_no_meaning():
    text = VALID + '''\
data a {
  image = hf.token
  env = { "bad name" = hf.token, OK = "1" }
  labels = { team = hf.token }
}
'''
    assert found(text) == [
        ("E202", 5, 11, "hf.token"),
        ("E214", 6, 11, '"bad name"'),
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
