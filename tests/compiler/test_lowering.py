"""What the IR holds: resolved, normalised, ordered."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aipc.compiler import check_source, gpus, ir
from aipc.compiler.sources import read_text
from tests.helpers import EXAMPLES, ROOT, codes_of, compile_ok, plain


def language_page_programs() -> list[str]:
    return re.findall(r"```aip\n(.*?)```", (ROOT / "docs" / "LANGUAGE.md").read_text(), re.S)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_checks_clean(path: Path):
    checked = check_source(path.read_text(), str(path))
    assert checked.diagnostics == []
    assert checked.ir is not None and checked.ir.stages


def test_the_language_page_example_is_an_example():
    program, *_ = language_page_programs()  # kept verbatim in examples/, so every backend compiles it
    assert (ROOT / "examples" / "fraud-detection.aip").read_text() == program


def test_the_language_page_sweep_is_the_sweep_example():
    (sweep,) = [program for program in language_page_programs() if "matrix" in program]
    assert (ROOT / "examples" / "sweep.aip").read_text() == sweep


@pytest.mark.parametrize("index", range(1, len(language_page_programs())))
def test_every_other_program_of_the_language_page_checks_clean(index):
    # as if written next to the examples: the templates' program imports examples/lib/ml.aip
    checked = check_source(language_page_programs()[index], f"page-{index}.aip",
                           read=lambda path: read_text(str(ROOT / "examples" / path)))
    assert checked.diagnostics == [] and checked.ir is not None


def test_the_readme_tour_checks_clean():
    program = re.findall(r"```aip\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[0]
    checked = check_source(program, "tour.aip")
    assert checked.diagnostics == [] and checked.ir is not None  # no unused declaration either (W101)
    # Its first comment names one step per stage: `# Nightly fraud model: ingest -> train -> serve`.
    steps = program.splitlines()[0].split(":", 1)[1].split("->")
    assert len(steps) == len(checked.ir.stages)


def test_every_program_of_the_readme_checks_clean():
    programs = re.findall(r"```aip\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(programs) >= 2  # the tour, and v1's scheduling program
    for program in programs:
        checked = check_source(program, "readme.aip")
        assert checked.diagnostics == [] and checked.ir is not None


def test_fraud_detection_lowers_as_the_language_page_says():
    pipeline = compile_ok((ROOT / "examples" / "fraud-detection.aip").read_text(), path="fraud.aip")
    assert pipeline.name == "fraud-detection"
    assert pipeline.namespace == "ml-prod"
    assert pipeline.labels == (("cost_center", "4711"), ("team", "risk"))
    assert [s.name for s in pipeline.stages] == ["ingest", "featurize", "model", "evaluate", "api"]
    assert [s.level for s in pipeline.stages] == [0, 1, 2, 3, 4]
    ingest = pipeline.stage("ingest")
    assert plain(ingest.command[4]) == "2024-12-22"
    assert ingest.retries == 2 and ingest.timeout == 1800
    assert [k for s in ingest.secrets for k in s.keys] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    model = pipeline.stage("model")
    assert plain(model.command) == ("python", "train.py", "--epochs", "10", "--lr", "3e-4", "--amp=true")
    assert model.resources == ir.Resources(
        cpu=ir.Range(8000, 8000), memory=ir.Range(64 * 2**30, 64 * 2**30), gpu=4,
        gpu_model="NVIDIA-A100-SXM4-80GB", shm=16 * 2**30,
        gpu_nodes=gpus.gpu_nodes("NVIDIA-A100-SXM4-80GB", ir.GpuVendor.NVIDIA))
    assert model.timeout == 12 * 3600
    assert [(m.volume.name, m.path, m.readonly) for m in model.mounts] == [
        ("features", "/data/features", True), ("models", "/models", False)]
    api = pipeline.stage("api")
    assert (api.kind, api.port, api.replicas, plain(api.health.path)) == (ir.StageKind.SERVE, 8080, 3, "/healthz")
    assert (api.health.kind, api.health.port, api.health.start, api.health.interval) == (
        ir.HealthKind.HTTP, 8080, ir.HEALTH_START, ir.HEALTH_INTERVAL)
    assert (api.expose, api.service_port, api.ports, api.port_name) == (None, 8080, (), "http")
    raw = next(v for v in pipeline.volumes if v.name == "raw")
    assert (raw.kind, raw.size, raw.access, raw.storage_class) == (
        ir.VolumeKind.SIZED, 200 * 2**30, ir.Access.RWX, "fast-ssd")


def test_strings_know_their_literal_parts_and_parameters():
    text = (ROOT / "examples" / "fraud-detection.aip").read_text()
    command = compile_ok(text).stage("model").command
    assert command[3].parts == (ir.ParamRef("epochs", "10"),)
    assert command[6].parts == ("--amp=", ir.ParamRef("use_amp", "true"))
    assert command[0].parts == ("python",) and command[0].literal == "python"
    assert text[command[6].span.start:command[6].span.end] == '"--amp=${use_amp}"'
    builtins = compile_ok('pipeline "p" { }\ndata a { image = "e:1"  script = "${pipeline.name}/${stage.name}" }')
    assert builtins.stages[0].script.parts == ("p/a",)  # built-ins are fixed when compiling


def test_overrides_change_values_and_are_marked():
    pipeline = compile_ok((ROOT / "examples" / "fraud-detection.aip").read_text(), {"epochs": "20", "lr": "1e-3"})
    assert pipeline.stage("model").command[3].parts == (ir.ParamRef("epochs", "20"),)
    assert plain(pipeline.stage("model").command[5]) == "1e-3"
    params = {p.name: p for p in pipeline.params}
    assert params["epochs"].overridden and params["epochs"].value == 20
    assert not params["run_date"].overridden


def test_pipeline_name_defaults_to_the_file_stem():
    assert compile_ok('data a { image = "e:1" }', path="pipelines/My_Pipeline.v2.aip").name == "my_pipeline-v2"


def test_header_image_and_registry():
    pipeline = compile_ok('''
pipeline "p" { registry = "registry.example.com/team/"  image = "python:3.11-slim" }
data a { }
data b { image = "ghcr.io/org/tool:1.0" }
data c { image = "localhost:5000/tool:1.0" }
data d { image = "org/tool:2.0" }
''')
    images = {s.name: plain(s.image) for s in pipeline.stages}
    assert images == {
        "a": "registry.example.com/team/python:3.11-slim",
        "b": "ghcr.io/org/tool:1.0",
        "c": "localhost:5000/tool:1.0",
        "d": "registry.example.com/team/org/tool:2.0",
    }


def test_topological_order_breaks_ties_by_name():
    pipeline = compile_ok('''
data z { image = "e:1" }
data b { image = "e:1"  after = [z] }
data a { image = "e:1"  after = [z] }
data m { image = "e:1"  after = [a, b] }
''')
    assert [s.name for s in pipeline.stages] == ["z", "a", "b", "m"]
    assert {s.name: s.level for s in pipeline.stages} == {"z": 0, "a": 1, "b": 1, "m": 2}
    assert pipeline.stage("m").after == ("a", "b")


def test_resources_map_form_is_accepted():
    stage = compile_ok('train t { image = "t:1"  resources = { cpu = 2, memory = 4Gi } }').stages[0]
    assert stage.resources.cpu == ir.Range(2000, 2000)


def test_after_accepts_a_single_name_and_quoted_names():
    pipeline = compile_ok('data a { image = "e:1" }\ndata b { image = "e:1" after = a }\n'
                          'data c { image = "e:1" after = ["a", b] }')
    assert pipeline.stage("b").after == ("a",) and pipeline.stage("c").after == ("a", "b")


def test_numbers_in_env_and_command_are_taken_as_written():
    stage = compile_ok('data a { image = "e:1"  command = ["run", 3, 0.5]  env = { N = 4, ON = true } }').stages[0]
    assert plain(stage.command) == ("run", "3", "0.5")
    assert plain(stage.env) == (("N", "4"), ("ON", "true"))


def test_serve_after_serve_is_allowed():
    pipeline = compile_ok('serve a { image = "e:1"  port = 80 }\nserve b { image = "e:1"  port = 81  after = [a] }')
    assert pipeline.stage("b").after == ("a",)


def test_host_and_claim_volumes():
    pipeline = compile_ok('volume h { host = "./data" }\nvolume c { claim = "team-data"  access = rwx }')
    volumes = {v.name: v for v in pipeline.volumes}
    assert volumes["h"].kind is ir.VolumeKind.HOST
    assert (volumes["c"].kind, volumes["c"].claim, volumes["c"].access) == (ir.VolumeKind.CLAIM, "team-data",
                                                                            ir.Access.RWX)


@pytest.mark.parametrize("text, code", [
    ('volume v { host = "./x"  claim = "pvc" }', "E204"),
    ('volume v { host = "./x"  size = 1Gi }', "E204"),
    ('volume v { claim = "pvc"  class = "fast" }', "E204"),
    ('volume v { size = 0 }', "E209"),
    ('volume v { size = 1Gi  class = "Fast SSD" }', "E111"),
    ('secret s { keys = [] }', "E203"),
    ('secret s { keys = [AWS_KEY, "OTHER"] }\ndata a { image = "e:1"  secrets = [s] }', None),
    ('serve a { image = "e:1"  port = 80  health = "healthz" }', "E205"),
    ('data a { image = "e:1"  workdir = "app" }', "E205"),
    ('data a { image = ""  }', "E202"),
    ('data a { image = "e:1"  env = { "A-B" = "1" } }', "E214"),
    ('data a { image = "e:1"  labels = { "app.kubernetes.io/name" = "x" } }', "E213"),
    ('data a { image = "e:1"  resources { cpu = 0.0001 } }', "E201"),
    ('data a { image = "e:1"  resources { cpu = 0 } }', "E209"),
    ('data a { image = "e:1"  resources { memory = 512 } }', "E201"),
    ('data a { image = "e:1"  timeout = 0s }', "E209"),
    ('data a { image = "e:1"  resources { gpu = 1  memory = 8Gi  shm = 1Gi }  mount v at "/dev/shm" }\nvolume v { size = 1Gi }', "E206"),
    ('data a { image = "e:1"  script = "${stage.name}" }', None),
    ('pipeline "p" { description = "${stage.name}" }', "E105"),
    ('data a { image = "e:1"  mount v at "/x" }\nvolume v { size = 1Gi  bogus = 1 }', "E106"),
    ('data a { image = "e:1"  other { } }', "E106"),
    ('data a { image = "e:1"  resources { image = "x" } }', "E106"),
    ('param p: string = "${q}"', "E006"),
    ('param p = [1, 2]', "E210"),
    ('data a { image = "e:1"  resources { } resources { } }', "E108"),
    ('data a { image = "e:1"  command = [] }', "E202"),
    ('data a_ { image = "e:1" }', "E111"),
    ('volume v_ { size = 1Gi }', "E111"),
    ('train t { image = "e:1"  resources { gpu = 1  memory = 8Gi  gpu_model = "A100 (80GB)" } }', "E213"),
    ('train t { image = "e:1"  resources { gpu = 1  memory = 8Gi  gpu_model = "NVIDIA A100 80GB" } }', None),
    ('data a { image = "e:1"  script = """\n  """ }', "E202"),
])
def test_checks(text, code):
    codes = codes_of(text)
    assert codes == ([code] if code else [])


def test_errors_in_several_declarations_are_all_reported():
    codes = codes_of('''
volume v { size = 10GB }
secret s { keys = ["a-b"] }
data a { image = "e:1"  after = [nope]  mount v at "rel" }
serve b { image = "e:1" }
''')
    assert sorted(codes) == ["E102", "E201", "E203", "E205", "E214"]


def test_a_repeated_error_still_marks_each_stage_invalid():
    # both stages inherit the empty default image: one diagnostic, two broken stages
    checked = check_source('pipeline "p" { image = "" }\ndata a { command = ["x"] }\ndata b { command = ["y"] }',
                           "t.aip")
    assert checked.ir is None
    assert [d.code for d in checked.diagnostics] == ["E202"]


def test_every_stage_attribute_and_block_of_the_schema_has_its_lowering():
    """An attribute added to schema.STAGE needs an entry in lower's table (else its
    stages would stop with an internal error)."""
    from aipc.compiler import lower, schema

    assert set(lower.LOWER_STAGE_ATTRIBUTE) == set(schema.STAGE)
    assert set(lower.LOWER_STAGE_BLOCK) == set(schema.STAGE_BLOCKS)
    assert all(callable(function) for function in lower.LOWER_STAGE_ATTRIBUTE.values())


def test_the_language_page_multi_node_program_is_the_multinode_example():
    (program,) = [program for program in language_page_programs() if "nodes   =" in program]
    assert (ROOT / "examples" / "multinode.aip").read_text() == program


def test_the_ir_records_where_a_parameter_value_is_compiled_in():
    """A parameter inside a stage's string stays a reference (a ParamRef each
    target renders); anywhere else its value is fixed, and ir.Param.fixed_at says
    where, so a target that takes values at submission knows it cannot."""
    text = '''pipeline "p" { namespace = "ns-${env}"  labels = { run = "${env}" } }
param env: string = "dev"
param gpus: int = 2
param mem: string = "1Gi..2Gi"
param path: string = "/data"
param tag: string = "1.0"
volume v { size = 1Gi  class = "${env}" }
train t {
  image   = "e:${tag}"
  command = ["run", "${gpus}"]
  mount v at "${path}"
  resources { gpu = "${gpus}"  memory = "${mem}" }
}
'''
    params = {p.name: p for p in compile_ok(text).params}
    where = {name: [(u.declaration, u.name, u.attribute, text[u.span.start:u.span.end]) for u in p.fixed_at]
             for name, p in params.items()}
    assert where == {
        "env": [("pipeline", "p", "namespace", "${env}"), ("pipeline", "p", "labels", "${env}"),
                ("volume", "v", "class", "${env}")],
        "gpus": [("stage", "t", "gpu", "${gpus}")],  # not the command: that one is a ParamRef
        "mem": [("stage", "t", "memory", "${mem}")],
        "path": [("stage", "t", "mount", "${path}")],
        "tag": [],
    }
