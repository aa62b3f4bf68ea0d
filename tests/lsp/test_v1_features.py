"""The language server on the v1 forms: completion offers their keywords and names
where they fit, hover explains each keyword, the outline shows imports and templates."""

from __future__ import annotations

import pytest

from aipc.lsp.analysis import build_index, hover, outline
from aipc.lsp.incremental import IncrementalParser
from aipc.lsp.server import COMPLETION_KINDS, SYMBOL_KINDS
from tests.lsp.test_features import complete_at

BASE = '''\
import "lib/gpu.aip" as gpu
import "lib/cpu.aip"
volume models { size = 1Gi }
secret hf { keys = ["token"] }
template trainer: train {
  image = "i:1"
  mount models at "/models"
}
train model from trainer {
  output metrics at "/out/metrics"
}
eval evaluate {
  image = "i:1"
  input model.metrics at "/in/metrics"
  env = { TOKEN = hf.token }
}
'''
STATEMENTS = {"mount", "output", "input"}


@pytest.mark.parametrize("typed, expected", [
    ("train x from |", {"trainer", "gpu", "cpu"}),
    ("template t: train from |", {"trainer", "gpu", "cpu"}),
    ("template t: |", {"data", "train", "eval", "serve"}),
    ("train x |", {"from"}),
    ("eval e {\n  input |", {"model", "evaluate"}),
    ("eval e {\n  input model.|", {"metrics"}),  # the outputs of `model`
    ("eval e {\n  input evaluate.|", set()),
    ("eval e {\n  input model.metrics |", {"at"}),
    ("train t {\n  output metrics |", {"at"}),
    ('train t {\n  output metrics at "/m" |', None),
])
def test_completion_in_the_v1_forms(typed, expected):
    labels, _ = complete_at(BASE + typed)
    if expected is None:  # a new item: `readonly` is for mounts only
        assert "readonly" not in labels and STATEMENTS <= set(labels)
    else:
        assert set(labels) == expected


def test_the_new_keywords_are_offered_where_they_fit():
    labels, _ = complete_at(BASE + "|")
    assert labels[-2:] == ["import", "template"]
    labels, _ = complete_at('import "lib/x.aip" |')
    assert labels[0] == "as" and "template" in labels  # `as`, or the next declaration
    labels, _ = complete_at('import "lib/x.aip" as x\n|')
    assert "template" in labels and "as" not in labels
    for body in ("train t {\n  |", "train t from trainer {\n  |", "template t: eval {\n  |"):
        labels, _ = complete_at(BASE + body)
        assert STATEMENTS <= set(labels) and "image" in labels, body
    labels, result = complete_at(BASE + "serve s {\n  |")
    assert "input" in labels and "output" not in labels  # outputs are for batch stages
    (item,) = [c for c in result.items if c.label == "input"]
    assert item.detail == 'input STAGE.OUTPUT at "/path"' and item.insert == "input "


def hover_at(needle: str, shift: int = 0) -> str:
    document = IncrementalParser("t.aip").parse(BASE)
    answer = hover(document, build_index(document), BASE.index(needle) + shift)
    assert answer is not None, needle
    return answer[0]


def test_hover_explains_each_new_keyword_and_names_what_references_point_at():
    assert hover_at("import").startswith('`import "PATH" [as NAME]`')
    assert hover_at("as gpu").startswith('`import "PATH" as NAME`')
    assert hover_at("template trainer").startswith("`template NAME: KIND [from BASE] { ... }`")
    assert hover_at("from trainer").startswith("`KIND NAME from TEMPLATE { ... }`")
    assert hover_at("output metrics").startswith('`output NAME at "/path"`')
    assert hover_at("input model").startswith('`input STAGE.OUTPUT at "/path"`')
    assert hover_at("from trainer", 6).startswith("**train template** `trainer`")
    assert hover_at("input model", 7).startswith("**train stage** `model`")
    assert hover_at("hf.token").startswith("**secret** `hf`")
    assert hover_at("as gpu", 4).startswith("**import** `gpu`")
    # inside a template's body, attributes are a stage's
    assert hover_at("image = \"i:1\"\n  mount").startswith("**`image`**: a string")


def test_the_outline_shows_imports_templates_and_statements():
    document = IncrementalParser("t.aip").parse(BASE)
    symbols = outline(document, build_index(document))
    assert [(s.kind, s.name, s.detail) for s in symbols][:2] == [
        ("import", "gpu", "import lib/gpu.aip"), ("import", "cpu", "import lib/cpu.aip")]
    (template,) = [s for s in symbols if s.kind == "template"]
    assert (template.name, template.detail) == ("trainer", "train template")
    items = {s.name: [(c.kind, c.name) for c in s.children] for s in symbols}
    assert items["model"] == [("output", "output metrics")]
    assert ("input", "input model.metrics") in items["evaluate"]
    kinds = {s.kind for s in symbols} | {c.kind for s in symbols for c in s.children}
    assert {"import", "template", "output", "input"} <= kinds <= set(SYMBOL_KINDS)  # each has an LSP kind
    _, result = complete_at(BASE + "train x from |")
    assert {c.kind for c in result.items} == {"template", "import"} <= set(COMPLETION_KINDS)
