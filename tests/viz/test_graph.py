"""aipc graph: DOT and Mermaid text, SVG and PNG through Graphviz, and its errors."""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET

import pytest

from aipc import cli
from aipc.viz.graph import mermaid_text, to_dot, to_mermaid
from tests.helpers import EXAMPLES, compile_example, compile_ok

SVG = "{http://www.w3.org/2000/svg}"

# A pipeline whose user text would break either language if it were not escaped.
AWKWARD = r'''
pipeline "awkward" {}
volume lake { size = 1Gi  class = "fast-ssd" }
volume notes { host = "./my \"notes\" #2" }
volume out  { claim = "pvc-1" }
data end { image = "e:1"  mount lake at "/lake/#1 <b>x</b>"  mount notes at "/notes" readonly }
train o_model {
  image = "e:1"
  after = [end]
  mount lake at "/lake" readonly
  mount out at "/out/a\\N\"q`*_x_"
  resources { gpu = 2  gpu_vendor = intel  gpu_model = "Intel_Arc.A770" }
}
serve x_api { image = "e:1"  after = [o_model]  port = 80  replicas = 2  resources { gpu = 1 } }
'''


def graph(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["graph", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_dot_for_each_example(path, capsys, text_snapshot):
    code, out, err = graph(capsys, str(path), "--format", "dot")
    assert code == 0, err
    assert out == text_snapshot


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_mermaid_for_each_example(path, capsys, text_snapshot):
    code, out, err = graph(capsys, str(path), "--format", "mermaid")
    assert code == 0, err
    assert out == text_snapshot


def test_output_is_the_same_on_every_run():
    pipeline = compile_example(EXAMPLES[0])
    assert to_dot(pipeline) == to_dot(compile_example(EXAMPLES[0]))
    assert to_mermaid(pipeline) == to_mermaid(compile_example(EXAMPLES[0]))


def test_dot_shows_kinds_gpus_and_mount_directions():
    dot = to_dot(compile_example(next(p for p in EXAMPLES if p.stem == "fraud-detection")))
    assert '"stage:model" [label="model\\ntrain\\n4 GPU nvidia\\nNVIDIA-A100-SXM4-80GB", shape=box' in dot
    assert 'shape=parallelogram' in dot and 'shape=hexagon' in dot and 'style="rounded,filled"' in dot
    # a writer points at its volume, solid; a readonly reader is pointed at, dashed
    assert '"stage:ingest" -> "volume:raw" [label="/data/raw", color="#4b5563", fontcolor="#4b5563"];' in dot
    assert '"volume:raw" -> "stage:featurize" [label="/data/raw", color="#4b5563", fontcolor="#4b5563", ' \
           'style=dashed];' in dot
    assert '"stage:evaluate" -> "stage:api" [penwidth=1.6];' in dot
    assert '"stage:api" [label="api\\nserve :8080 x3\\n1 GPU nvidia per replica"' in dot


def test_mermaid_escapes_user_text_and_avoids_reserved_ids():
    mermaid = to_mermaid(compile_ok(AWKWARD))
    lines = mermaid.splitlines()
    assert lines[0] == "flowchart LR"
    # `end` would close a subgraph and `o`/`x` after an arrow change its head: ids are prefixed
    assert "  s_end ==> s_o_model" in lines and "  s_o_model ==> s_x_api" in lines
    model = next(line for line in lines if line.startswith("  s_o_model["))
    assert model == '  s_o_model["o_model<br>train<br>2 GPU intel<br>Intel_Arc.A770"]'
    assert '  s_end -->|"/lake/#35;1 #60;b#62;x#60;/b#62;"| v_lake' in lines
    assert '  s_o_model -->|"/out/a\\N#quot;q#96;#42;#95;x#95;"| v_out' in lines
    assert '  v_lake[("lake<br>1Gi rwo fast-ssd")]' in lines
    assert '  v_notes[("notes<br>host ./my #quot;notes#quot; #35;2")]' in lines
    assert "  style s_o_model stroke:#0071c5,stroke-width:3px" in lines
    # Every label is one quoted string: no raw quote, `<` or markdown marker inside it
    for line in lines:
        for label in re.findall(r'"([^"]*)"', line):
            assert not re.search(r'[<>`*]', label.replace("<br>", "")), line
        assert line.count('"') % 2 == 0, line


def test_mermaid_keeps_underscores_inside_words_only():
    assert mermaid_text("two_tower") == "two_tower"
    assert mermaid_text("_x_ a_") == "#95;x#95; a#95;"
    assert mermaid_text('say "#1"') == "say #quot;#35;1#quot;"


def test_mermaid_fenced_for_markdown(tmp_path, capsys):
    target = tmp_path / "pipeline.md"
    code, out, err = graph(capsys, str(EXAMPLES[0]), "-o", str(target))
    assert code == 0, err
    text = target.read_text()
    assert text.startswith("```mermaid\nflowchart LR\n") and text.endswith("\n```\n")
    assert out == "" and f"wrote {target}" in err


def test_awkward_text_survives_graphviz(graphviz_dot, tmp_path, capsys):
    source = tmp_path / "awkward.aip"
    source.write_text(AWKWARD)
    code, out, err = graph(capsys, str(source), "--format", "svg")
    assert code == 0, err
    texts = ["".join(t.itertext()) for t in ET.fromstring(out).iter(f"{SVG}text")]
    assert "Intel_Arc.A770" in texts
    assert '/out/a\\N"q`*_x_' in texts  # a backslash stays a backslash, not DOT's \N
    assert "end" in texts and 'host ./my "notes" #2' in texts


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_svg_rendered_by_graphviz(path, graphviz_dot, capsys):
    code, out, err = graph(capsys, str(path), "--format", "svg")
    assert code == 0, err
    root = ET.fromstring(out)
    assert root.tag == f"{SVG}svg"
    titles = {"".join(t.itertext()) for t in root.iter(f"{SVG}title")}
    pipeline = compile_example(path)
    for stage in pipeline.stages:
        assert f"stage:{stage.group}" in titles  # a matrix stage is one node
    for volume in pipeline.volumes:
        assert f"volume:{volume.name}" in titles
    for stage in pipeline.stages:
        for dependency in stage.after:
            assert f"stage:{pipeline.stage(dependency).group}->stage:{stage.group}" in titles
    if any(m.readonly for s in pipeline.stages for m in s.mounts):
        assert "stroke-dasharray" in out


def test_png_written_to_a_file_by_extension(graphviz_dot, tmp_path, capsys):
    target = tmp_path / "fraud.png"
    code, _, err = graph(capsys, str(EXAMPLES[0]), "-o", str(target))
    assert code == 0, err
    assert target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_png_is_not_written_to_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = graph(capsys, str(EXAMPLES[0]), "--format", "png")
    assert code == 2
    assert "PNG is binary" in err and "-o" in err
    assert out == ""


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_missing_graphviz_is_a_clear_error(fmt, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without `dot`
    target = tmp_path / f"out.{fmt}"
    code, out, err = graph(capsys, str(EXAMPLES[0]), "--format", fmt, "-o", str(target))
    assert code == 1
    assert "needs Graphviz's `dot` program, which is not on PATH" in err
    assert "install Graphviz" in err and "--format dot" in err
    assert "Traceback" not in err and not target.exists()


def test_failing_graphviz_is_reported(tmp_path, capsys, monkeypatch):
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\necho 'Error: syntax error in line 1' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    code, _, err = graph(capsys, str(EXAMPLES[0]), "--format", "svg")
    assert code == 1
    assert "failed: Error: syntax error in line 1" in err


def test_errors_in_the_input_exit_1_without_output(tmp_path, capsys):
    source = tmp_path / "bad.aip"
    source.write_text('data a { image = "e:1"  after = [b] }\n')
    code, out, err = graph(capsys, str(source))
    assert code == 1 and out == ""
    assert "error[E" in err and "unknown stage" in err


def test_missing_file_and_bad_param(capsys):
    code, out, err = graph(capsys, "no/such/file.aip")
    assert code == 1 and "no such file" in err
    code, _, err = graph(capsys, str(EXAMPLES[0]), "-p", "novalue")
    assert code == 2 and "NAME=VALUE" in err


def test_params_change_the_drawing(capsys):
    llm = next(p for p in EXAMPLES if p.stem == "llm-finetune")
    code, out, _ = graph(capsys, str(llm), "-p", "gpus=2")
    assert code == 0
    assert "finetune\\ntrain\\n2 GPU nvidia" in out


def test_unwritable_output(tmp_path, capsys):
    code, _, err = graph(capsys, str(EXAMPLES[0]), "-o", str(tmp_path / "missing" / "g.dot"))
    assert code == 1 and "cannot write" in err


def test_a_matrix_stage_is_one_node_and_pairing_one_edge():
    pipeline = compile_ok(next(p for p in EXAMPLES if p.stem == "sweep").read_text())
    dot = to_dot(pipeline)
    assert '"stage:model" [label="model\\ntrain\\n5 instances of lr x seed, 2 at a time\\n1 GPU nvidia"' in dot
    assert '"stage:model" -> "stage:score" [penwidth=1.6, label="one to one"];' in dot
    assert '"stage:score" -> "stage:pick_best" [penwidth=1.6];' in dot
    assert "model-1e-4-1" not in dot and dot.count("->") == 2
    mermaid = to_mermaid(pipeline)
    assert 's_model ==>|"one to one"| s_score' in mermaid and "s_score ==> s_pick_best" in mermaid
    assert "model-1e-4-1" not in mermaid


def test_a_multi_node_stage_shows_its_nodes_and_gpus_per_node():
    from aipc.viz.graph import stage_lines

    (stage,) = compile_ok('train t { image = "t:1"  nodes = 4  resources { gpu = 8 } }').stages
    assert stage_lines(stage) == ["t", "train x4", "8 GPU nvidia per node"]
