"""Templates and imports on the command line: a library checked alone, diagnostics
that name the imported file, `aipc fmt` on templates and imports, and `aipc plan`
and `aipc graph` unchanged by writing a pipeline with templates."""

from __future__ import annotations

import json

from aipc import cli
from tests.helpers import ROOT

LIBRARY = '''\
# GPU training for the team.
template gpu_trainer: train {
  image = "ghcr.io/acme/trainer:2.1"
  resources { gpu = 2  memory = 64Gi  gpu_model = "H100-80GB" }
  mount models at "/models"
  env = { EPOCHS = "${epochs}" }
}
'''
PIPELINE = '''\
import "lib/gpu.aip" as gpu
param epochs: int = 3
volume models { size = 10Gi }
data prep { image = "python:3.11-slim"  command = ["prep"] }
train model from gpu.gpu_trainer { after = [prep]  command = ["train"] }
'''
BY_HAND = '''\
param epochs: int = 3
volume models { size = 10Gi }
data prep { image = "python:3.11-slim"  command = ["prep"] }
train model {
  image = "ghcr.io/acme/trainer:2.1"
  resources { gpu = 2  memory = 64Gi  gpu_model = "H100-80GB" }
  mount models at "/models"
  env = { EPOCHS = "${epochs}" }
  after = [prep]
  command = ["train"]
}
'''


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path, files: dict[str, str]):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)


def test_a_library_checks_alone_as_far_as_it_can(tmp_path, capsys):
    write(tmp_path, {"lib/gpu.aip": LIBRARY})
    code, out, _ = run(capsys, "check", str(tmp_path / "lib/gpu.aip"), str(ROOT / "examples/lib/ml.aip"))
    assert code == 0
    assert out.splitlines() == [f"{tmp_path}/lib/gpu.aip: ok (a library of 1 template)",
                                f"{ROOT}/examples/lib/ml.aip: ok (a library of 3 templates)"]


def test_a_library_s_own_error_fails_its_check_and_every_pipeline_s(tmp_path, capsys):
    write(tmp_path, {"lib/gpu.aip": LIBRARY.replace("gpu = 2", "gpu = 2.5"), "p.aip": PIPELINE})
    code, out, _ = run(capsys, "check", "--format", "json", str(tmp_path / "lib/gpu.aip"), str(tmp_path / "p.aip"))
    assert code == 1
    assert [(d["file"], d["code"], d["line"]) for d in json.loads(out)] == [
        (f"{tmp_path}/lib/gpu.aip", "E208", 4), (f"{tmp_path}/lib/gpu.aip", "E208", 4)]


def test_compile_names_the_imported_file_of_a_warning_and_shows_its_line(tmp_path, capsys):
    write(tmp_path, {"lib/gpu.aip": LIBRARY, "p.aip": PIPELINE})
    code, out, err = run(capsys, "compile", str(tmp_path / "p.aip"), "-t", "compose")
    assert code == 0 and "services:" in out
    assert f"--> {tmp_path}/lib/gpu.aip:4:39" in err
    assert '4 |   resources { gpu = 2  memory = 64Gi  gpu_model = "H100-80GB" }' in err


def test_an_unknown_parameter_in_a_library_points_at_it_and_at_the_stage(tmp_path, capsys):
    write(tmp_path, {"lib/gpu.aip": LIBRARY, "p.aip": PIPELINE.replace("param epochs: int = 3\n", "")})
    code, out, _ = run(capsys, "check", str(tmp_path / "p.aip"))
    assert code == 1
    assert f"--> {tmp_path}/lib/gpu.aip:6:21" in out and f"::: {tmp_path}/p.aip:4:18" in out
    assert "used here" in out


def test_fmt_formats_templates_and_imports(tmp_path, capsys):
    messy = 'import   "lib/gpu.aip"as gpu\ntemplate  t :train from gpu.gpu_trainer{retries=1 env={A="1"}}\n'
    write(tmp_path, {"p.aip": messy})
    code, _, _ = run(capsys, "fmt", str(tmp_path / "p.aip"))
    assert code == 0
    assert (tmp_path / "p.aip").read_text() == (
        'import "lib/gpu.aip" as gpu\n\ntemplate t: train from gpu.gpu_trainer { retries = 1  env = { A = "1" } }\n')
    code, _, _ = run(capsys, "fmt", "--check", str(ROOT / "examples/lib/ml.aip"))
    assert code == 0


def test_plan_and_graph_are_unchanged_by_templates(tmp_path, capsys):
    write(tmp_path, {"lib/gpu.aip": LIBRARY, "p.aip": PIPELINE, "q/p.aip": BY_HAND})
    outputs = []
    for path in (tmp_path / "p.aip", tmp_path / "q/p.aip"):
        _, plan, _ = run(capsys, "plan", str(path), "--format", "json")
        _, dot, _ = run(capsys, "graph", str(path), "--format", "dot")
        _, mermaid, _ = run(capsys, "graph", str(path), "--format", "mermaid")
        outputs.append((plan, dot, mermaid))
    assert outputs[0] == outputs[1] and "model" in outputs[0][1]
