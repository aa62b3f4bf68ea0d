"""`output NAME at "/path"` and `input STAGE.OUTPUT at "/path"` in the IR: the
contract's program as written, the dependency an input implies, read-only inputs,
a matrix's outputs paired instance to instance or fanned in (one subdirectory per
instance), the header's `artifacts { }`, and what is refused."""

from __future__ import annotations

from aipc import codes
from aipc.compiler import check_source, ir
from tests.dsl.test_v1_syntax import CONTRACT


def lowered(text: str) -> ir.Pipeline:
    checked = check_source(text, "t.aip")
    assert not [d for d in checked.diagnostics if d.severity.value == "error"], checked.diagnostics
    return checked.ir


def errors(text: str) -> list[tuple[str, str]]:
    checked = check_source(text, "t.aip")
    return [(d.code, text[d.span.start:d.span.end]) for d in checked.diagnostics if d.severity.value == "error"]


def test_the_contract_program_lowers_as_written():
    pipeline = lowered(CONTRACT["artifacts"])
    assert pipeline.artifacts == ir.ArtifactStore(100 * 2**30, ir.Access.RWX, "standard-rwx",
                                                  pipeline.artifacts.span)
    model, evaluate = pipeline.stages
    assert [(o.name, o.path) for o in model.outputs] == [("model", "/out/model"), ("metrics", "/out/metrics")]
    assert evaluate.after == ("model",)  # implied by its inputs
    assert [(m.key, m.path, m.read_only) for m in evaluate.artifact_mounts()] == [
        ("model.model", "/in/model", True), ("model.metrics", "/in/metrics", True)]
    assert [(m.key, m.sub_path, m.read_only) for m in model.artifact_mounts()] == [
        ("model.model", "model/model", False), ("model.metrics", "model/metrics", False)]
    assert [m.key for m in pipeline.outputs()] == ["model.model", "model.metrics"]


SWEEP = '''\
train model {
  image  = "t:1"
  matrix { lr = [1e-4, 3e-4]  seed = [1, 2] }
  output weights at "/out/w"
}
eval score {
  image  = "t:1"
  matrix = model
  input  model.weights at "/in/w"
  output report at "/out/r/"
}
eval pick_best {
  image = "t:1"
  input score.report at "/in/reports"
}
'''


def test_a_paired_input_reads_the_instance_of_equal_coordinates():
    pipeline = lowered(SWEEP)
    score = pipeline.stage("score-3e-4-2")
    assert score.after == ("model-3e-4-2",)
    assert [(m.key, m.path, m.read_only) for m in score.artifact_mounts()] == [
        ("score-3e-4-2.report", "/out/r", False), ("model-3e-4-2.weights", "/in/w", True)]


def test_a_fan_in_holds_one_subdirectory_per_instance():
    pick = lowered(SWEEP).stage("pick_best")
    assert pick.after == ("score-1e-4-1", "score-1e-4-2", "score-3e-4-1", "score-3e-4-2")
    (put,) = pick.inputs
    assert put.fan_in and put.sources == pick.after
    assert [(m.key, m.path) for m in pick.artifact_mounts()] == [
        (f"{name}.report", f"/in/reports/{name}") for name in pick.after]
    assert all(m.read_only for m in pick.artifact_mounts())


def test_an_input_is_an_ordering_like_after():
    text = '''\
eval b { image = "t:1"  input a.x at "/in" }
data a { image = "t:1"  output x at "/out" }
'''
    assert [s.name for s in lowered(text).stages] == ["a", "b"]


def test_a_serve_stage_may_read_an_input():
    text = '''\
train model { image = "t:1"  output weights at "/out/w" }
serve api { image = "t:1"  port = 80  input model.weights at "/models" }
'''
    api = lowered(text).stage("api")
    assert api.after == ("model",) and api.artifact_mounts()[0].read_only


def test_what_is_refused():
    text = '''\
volume scratch { size = 1Gi }
train model {
  image = "t:1"
  output model   at "/out/model"
  output model   at "/out/m2"
  output logs    at "logs"
  mount scratch at "/out"
}
serve api { image = "a:1"  port = 80  output x at "/x" }
eval e {
  image = "t:1"
  input model.modle at "/in/model"
  input api.logs at "/in/logs"
  input nope.x at "/in/x"
  input model.model at "/in/model2"
  input model.model at "/in/model2"
  input e.y at "/in/y"
  output y at "/out/y"
}
'''
    assert errors(text) == [
        (codes.NESTED_OUTPUT.id, '"/out/model"'),
        (codes.DUPLICATE_ATTRIBUTE.id, "model"),
        (codes.RELATIVE_PATH.id, '"logs"'),
        (codes.ATTRIBUTE_NOT_FOR_KIND.id, "output"),
        (codes.UNKNOWN_OUTPUT.id, "modle"),
        (codes.INPUT_FROM_SERVICE.id, "api"),
        (codes.UNKNOWN_STAGE.id, "nope"),
        (codes.DUPLICATE_MOUNT_PATH.id, '"/in/model2"'),
        (codes.DEPENDENCY_CYCLE.id, "e"),
    ]


def test_an_output_around_another_mount_is_refused():
    text = 'volume v { size = 1Gi }\ntrain m { image = "t:1"  output o at "/out"  mount v at "/out/v" }\n'
    assert errors(text) == [(codes.NESTED_OUTPUT.id, '"/out"')]
    assert errors('train m { image = "t:1"  output o at "/" }\n') == [(codes.NESTED_OUTPUT.id, '"/"')]


def test_the_artifacts_block_needs_a_size_and_takes_no_rox():
    assert errors('pipeline "p" { artifacts { class = "fast" } }\ndata a { image = "t:1" }\n') == [
        (codes.MISSING_ATTRIBUTE.id, "artifacts")]
    assert errors('pipeline "p" { artifacts { size = 1Gi  access = rox } }\ndata a { image = "t:1" }\n') == [
        (codes.INVALID_CHOICE.id, "rox")]
    assert lowered('pipeline "p" { artifacts { size = 1Gi } }\ndata a { image = "t:1" }\n').artifacts.access \
        is ir.Access.RWO
