"""The language server on outputs and inputs: the header's `artifacts { }` block
offered in the header, its attributes and choices completed, hovered from the
schema; after `input STAGE.`, the outputs of STAGE."""

from __future__ import annotations

from aipc.lsp.analysis import build_index, hover
from aipc.lsp.incremental import IncrementalParser
from tests.lsp.test_features import complete_at

HEADER = 'pipeline "churn" {\n  '


def test_the_header_offers_the_artifacts_block_and_its_attributes():
    labels, result = complete_at(HEADER + "|")
    assert "artifacts" in labels and "namespace" in labels
    (item,) = [c for c in result.items if c.label == "artifacts"]
    assert item.insert == "artifacts { "
    labels, _ = complete_at(HEADER + "artifacts { |")
    assert set(labels) == {"size", "access", "class"}
    labels, _ = complete_at(HEADER + "artifacts { size = 1Gi  access = |")
    assert set(labels) == {"rwo", "rwx"}
    labels, _ = complete_at("train t {\n  |")
    assert "artifacts" not in labels  # a header block only


def test_hover_on_the_block_and_its_attributes():
    text = HEADER + "artifacts { size = 100Gi  access = rwx }\n}\n"
    document = IncrementalParser("t.aip").parse(text)
    index = build_index(document)
    block, _ = hover(document, index, text.index("artifacts") + 1)
    assert block.startswith("`artifacts { size, access, class }`") and "outputs" in block
    size, _ = hover(document, index, text.index("size") + 1)
    assert "every stage's outputs" in size


def test_an_input_offers_the_outputs_of_its_stage():
    text = 'train model {\n  image = "t:1"\n  output weights at "/out/w"\n  output metrics at "/out/m"\n}\n'
    labels, result = complete_at(text + "eval e {\n  input model.|")
    assert labels == ["weights", "metrics"]
    assert result.items[0].detail == "output of model at /out/w"
    labels, _ = complete_at(text + "eval e {\n  input nope.|")
    assert labels == []
