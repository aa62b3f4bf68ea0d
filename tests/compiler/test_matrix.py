"""Sweeps (issue 18): a matrix stage lowered once per instance, named, paired,
limited, and checked like any stage (LANGUAGE.md v1, "Sweeps")."""

from __future__ import annotations

import itertools
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aipc.backends import get_backend
from aipc.backends.writer import to_yaml
from aipc.compiler import check_source, ir
from aipc.compiler.schema import MAX_INSTANCES
from tests.dsl.test_v1_syntax import CONTRACT
from tests.helpers import ROOT, codes_of, compile_ok, plain

SWEEP = (ROOT / "examples" / "sweep.aip").read_text()  # LANGUAGE.md's program, as `aipc fmt` lays it out
DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")


def names(pipeline: ir.Pipeline, group: str) -> list[str]:
    return [stage.name for stage in pipeline.stages if stage.group == group]


def diagnostics(text: str, params: dict | None = None) -> list[tuple[str, str]]:
    return [(d.code, d.message) for d in check_source(text, "test.aip", params or {}).diagnostics]


# ------------------------------------------------------------ the language page's program


def test_the_contract_s_program_as_written_compiles_to_the_example_s_output():
    as_written = check_source(CONTRACT["sweeps"], "sweep.aip")  # verbatim, its layout and comments
    # Its GPU stage sets no `memory`: the contract's own rule warns about it (W261)
    # and the example sets it; otherwise they are the same program.
    assert [d.code for d in as_written.diagnostics] == ["W261"] and as_written.ir is not None
    as_written = check_source(CONTRACT["sweeps"].replace("resources { gpu = 1 }", "resources { gpu = 1  memory = 16Gi }"),
                              "sweep.aip")
    assert as_written.diagnostics == [] and as_written.ir is not None
    example = compile_ok(SWEEP, path="sweep.aip")
    for target in ("compose", "k8s", "argo"):
        backend = get_backend(target)
        assert to_yaml(list(backend.emit(as_written.ir).documents)) == to_yaml(list(backend.emit(example).documents))


def test_the_sweep_has_the_instances_of_the_product_less_the_exclusion():
    pipeline = compile_ok(SWEEP, path="sweep.aip")
    assert names(pipeline, "model") == ["model-1e-4-1", "model-1e-4-2", "model-3e-4-1", "model-3e-4-2",
                                        "model-3e-4-3"]  # lr = 1e-4, seed = 3 is excluded
    assert names(pipeline, "score") == ["score-1e-4-1", "score-1e-4-2", "score-3e-4-1", "score-3e-4-2",
                                        "score-3e-4-3"]
    assert names(pipeline, "pick_best") == ["pick_best"]
    (model, score) = pipeline.matrices
    assert (model.stage, model.axes, model.max_parallel, model.pairs) == ("model", ("lr", "seed"), 2, ())
    assert (score.stage, score.axes, score.max_parallel, score.pairs) == ("score", ("lr", "seed"), None, ("model",))
    assert model.instances == tuple(names(pipeline, "model"))


def test_each_instance_gets_its_values_in_its_argv():
    pipeline = compile_ok(SWEEP, path="sweep.aip")
    for lr, seed in [("1e-4", "1"), ("1e-4", "2"), ("3e-4", "1"), ("3e-4", "2"), ("3e-4", "3")]:
        assert plain(pipeline.stage(f"model-{lr}-{seed}").command) == (
            "python", "train.py", "--lr", lr, "--seed", seed)
        assert plain(pipeline.stage(f"score-{lr}-{seed}").command) == (
            "python", "eval.py", "--lr", lr, "--seed", seed)
        assert pipeline.stage(f"model-{lr}-{seed}").resources.gpu == 1


def test_each_score_instance_waits_for_exactly_its_model_instance_and_pick_best_for_all():
    pipeline = compile_ok(SWEEP, path="sweep.aip")
    for model, score in zip(names(pipeline, "model"), names(pipeline, "score")):
        assert pipeline.stage(score).after == (model,)
        assert pipeline.stage(score).instance.coordinates == pipeline.stage(model).instance.coordinates
    assert pipeline.stage("pick_best").after == tuple(names(pipeline, "score"))
    assert [pipeline.stage(n).level for n in ("model-1e-4-1", "score-1e-4-1", "pick_best")] == [0, 1, 2]


def test_an_instance_knows_its_group_position_and_exact_coordinates():
    pipeline = compile_ok(SWEEP, path="sweep.aip")
    stage = pipeline.stage("model-3e-4-2")
    assert stage.group == "model" and stage.instance.index == 3
    assert stage.instance.coordinates == (("lr", ir.AxisValue("3e-4", 3e-4)), ("seed", ir.AxisValue("2", 2)))
    assert json.loads(stage.instance.coordinates_json()) == {"lr": 0.0003, "seed": 2}
    assert (ir.MATRIX_LABEL, "model") in stage.labels
    assert pipeline.stage("pick_best").instance is None and pipeline.stage("pick_best").group == "pick_best"


def test_max_parallel_chains_each_instance_to_the_one_n_places_before():
    pipeline = compile_ok(SWEEP, path="sweep.aip")
    windows = [pipeline.stage(n).instance.window_predecessor for n in names(pipeline, "model")]
    assert windows == [None, None, "model-1e-4-1", "model-1e-4-2", "model-3e-4-1"]
    assert all(pipeline.stage(n).instance.window_predecessor is None for n in names(pipeline, "score"))


# ------------------------------------------------------------ values in instances


def test_stage_name_is_the_instance_name_and_axes_reach_every_string():
    pipeline = compile_ok('''
volume out { size = 1Gi  access = rwx }
data prep {
  image   = "etl:${matrix.tag}"
  matrix  { tag = ["1.0", "2.0"] }
  env     = { NAME = "${stage.name}", TAG = "v${matrix.tag}" }
  workdir = "/w/${matrix.tag}"
  labels  = { tag = "${matrix.tag}" }
  mount out at "/out/${stage.name}"
}''')
    stage = pipeline.stage("prep-1-0")
    assert plain(stage.image) == "etl:1.0" and plain(stage.workdir) == "/w/1.0"
    assert dict(plain(stage.env)) == {"NAME": "prep-1-0", "TAG": "v1.0"}
    assert ("tag", "1.0") in stage.labels
    assert stage.mounts[0].path == "/out/prep-1-0"
    assert plain(pipeline.stage("prep-2-0").image) == "etl:2.0"


def test_a_sole_axis_value_stands_for_numbers_quantities_and_durations():
    pipeline = compile_ok('''
train fit {
  image   = "t:1"
  matrix  { gpus = [1, 2]  mem = [16Gi, "8Gi..32Gi"]  deadline = [1h30m] }
  timeout = "${matrix.deadline}"
  retries = "${matrix.gpus}"
  resources { gpu = "${matrix.gpus}"  memory = "${matrix.mem}"  cpu = "${matrix.gpus}" }
}''')
    big = pipeline.stage("fit-2-8gi--32gi-1h30m").resources
    assert (big.gpu, big.memory, big.cpu) == (2, ir.Range(8 * 2**30, 32 * 2**30), ir.Range(2000, 2000))
    small = pipeline.stage("fit-1-16gi-1h30m")
    assert (small.resources.gpu, small.resources.memory, small.timeout, small.retries) == (
        1, ir.Range(16 * 2**30, 16 * 2**30), 5400, 1)


def test_a_value_is_checked_per_instance_and_the_error_names_the_instance():
    text = '''
train fit {
  image  = "t:1"
  matrix { gpus = [1, 0.5, -1] }
  resources { gpu = "${matrix.gpus}"  memory = 8Gi }
}'''
    assert diagnostics(text) == [
        ("E208", "in instance `fit--1`, `matrix.gpus` is `-1`: `gpu` cannot be negative"),
        ("E208", "in instance `fit-0-5`, `matrix.gpus` is `0.5`: `gpu` must be a whole number of GPUs, found `0.5`"),
    ]
    (first, _) = check_source(text, "t.aip").diagnostics
    assert text[first.span.start:first.span.end] == '"${matrix.gpus}"'


def test_an_error_that_does_not_depend_on_the_instance_is_reported_once():
    found = diagnostics('''
train fit {
  image   = "t:1"
  matrix  { x = [1, 2, 3] }
  command = ["${nope}", "${matrix.x}"]
  retries = "${matrix.y}"
}''')
    assert [code for code, _ in found] == ["E105", "E130"]


def test_an_axis_outside_a_matrix_stage_and_an_unknown_axis_are_errors():
    assert codes_of('data a { image = "t:1"  command = ["${matrix.x}"] }') == ["E130"]
    found = diagnostics('data a { image = "t:1"  matrix { rate = [1] }  command = ["${matrix.rte}"] }')
    assert found[0][0] == "E130" and "unknown matrix axis `rte`" in found[0][1]
    (d,) = check_source('data a { image = "t:1"  matrix { rate = [1] }  command = ["${matrix.rte}"] }',
                        "t.aip").diagnostics
    assert d.help == "did you mean `rate`?"


def test_the_map_form_is_the_block():
    block = compile_ok('data a { image = "t:1"  matrix { x = [1, 2]  y = ["u"] } }')
    written_as_map = compile_ok('data a { image = "t:1"  matrix = { x = [1, 2], y = ["u"] } }')
    assert [s.name for s in block.stages] == [s.name for s in written_as_map.stages] == ["a-1-u", "a-2-u"]


def test_values_are_numbers_strings_bools_or_quantities():
    pipeline = compile_ok('data a { image = "t:1"  matrix { v = [1, 2.5, "s p", true, 4Gi, bare] } }')
    assert [s.name for s in pipeline.stages] == ["a-1", "a-2-5", "a-4gi", "a-bare", "a-s-p", "a-true"]
    typed = [s.instance.coordinates[0][1].value for s in sorted(pipeline.stages, key=lambda s: s.instance.index)]
    assert typed == [1, 2.5, "s p", True, "4Gi", "bare"]


@pytest.mark.parametrize("matrix, code", [
    ("{ x = [] }", "E240"),
    ("{ x = [1, 1.0] }", "E240"),
    ('{ x = ["a", "a"] }', "E240"),
    ("{ x = 1 }", "E240"),
    ("{ x = [[1]] }", "E240"),
    ('{ x = ["${p}"] }', "E240"),
    ("{ }", "E240"),
    ("{ x = [1]  x = [2] }", "E108"),
    ('{ x = [1]  mount v at "/v" }', "E106"),
    ("{ x = [1]  inner { y = 2 } }", "E106"),
])
def test_invalid_axes(matrix, code):
    assert codes_of(f'param p: int = 1\ndata a {{ image = "t:1"  matrix {matrix} }}') == [code]


def test_exclude_and_max_parallel_need_a_matrix():
    assert codes_of('data a { image = "t:1"  exclude = [{ x = 1 }] }') == ["E240"]
    assert codes_of('data a { image = "t:1"  max_parallel = 2 }') == ["E240"]
    assert codes_of('serve a { image = "t:1"  port = 80  matrix { x = [1] }  max_parallel = 2 }') == ["E107"]


def test_exclude_compares_values_as_the_axis_has_them():
    pipeline = compile_ok('data a { image = "t:1"  matrix { lr = [1e-4, 3e-4]  ok = [true, false] }\n'
                          '  exclude = [{ lr = 0.0001, ok = false }, { ok = true, lr = 3e-4 }] }')
    assert [s.name for s in pipeline.stages] == ["a-1e-4-true", "a-3e-4-false"]
    assert codes_of('data a { image = "t:1"  matrix { x = [1] }  exclude = [{ x = 1 }] }') == ["E240"]
    assert codes_of('data a { image = "t:1"  matrix { x = [1] }  exclude = { x = 1 } }') == ["E240"]


def test_at_most_1000_instances():
    values = ", ".join(str(i) for i in range(MAX_INSTANCES))
    assert len(compile_ok(f'data a {{ image = "t:1"  matrix {{ x = [{values}] }} }}').stages) == MAX_INSTANCES
    assert codes_of(f'data a {{ image = "t:1"  matrix {{ x = [{values}, -1] }} }}') == ["E241"]
    huge = ", ".join(str(i) for i in range(100))
    assert codes_of(f'data a {{ image = "t:1"  matrix {{ x = [{huge}]  y = [{huge}]  z = [{huge}] }}\n'
                    '  exclude = [{ x = 1 }] }') == ["E241"]  # not enumerated: 1,000,000 combinations


# ------------------------------------------------------------ names


def test_names_that_collide_or_end_badly_are_hashed_and_all_are_unique():
    pipeline = compile_ok('''
pipeline "p" { image = "t:1" }
data a   { matrix { x = ["b-1", "B_1", "c.", "", 1] } }
data a_b { matrix { y = [1, "ok"] } }
data b_2 { }
data b   { matrix { z = [2, 3] } }''')
    got = [s.name for s in pipeline.stages]
    assert len(set(got)) == len(got)
    assert {"a-1", "a-b-ok", "b-3", "b_2"} <= set(got)  # readable where nothing collides
    hashed = [name for name in got if re.fullmatch(r"[a-z0-9-]+-[0-9a-f]{8}", name) and name not in ("a-b-ok",)]
    assert len(hashed) == 6  # `a-b-1` three times, `a-c-`, `a-`, and `b-2` (the stage b_2's name)
    for name in got:
        assert len(f"p-{ir.dns_label(name)}") <= 63


def test_a_name_too_long_for_kubernetes_is_hashed():
    pipeline = compile_ok('data c { image = "t:1"  matrix { z = [3, "' + "v" * 70 + '"] } }')
    assert [s.name for s in pipeline.stages][0] == "c-3"
    assert re.fullmatch(r"c-[0-9a-f]{8}", pipeline.stages[1].name)


# ------------------------------------------------------------ pairing and fan-in


def test_pairing_follows_a_chain_of_matrix_references():
    pipeline = compile_ok('''
pipeline "p" { image = "t:1" }
data a { matrix { x = [1, 2, 3] }  exclude = [{ x = 2 }] }
data b { matrix = a  after = [a] }
data c { matrix = b  after = [a, b] }
data d { after = [c] }''')
    assert names(pipeline, "c") == ["c-1", "c-3"]
    assert pipeline.stage("c-3").after == ("a-3", "b-3")
    assert pipeline.stage("d").after == ("c-1", "c-3")
    assert pipeline.matrices[2].pairs == ("a", "b")


def test_a_matrix_stage_after_a_plain_stage_has_each_instance_wait_for_it():
    pipeline = compile_ok('pipeline "p" { image = "t:1" }\ndata prep { }\ndata a { matrix { x = [1, 2] }  after = [prep] }')
    assert [pipeline.stage(n).after for n in names(pipeline, "a")] == [("prep",), ("prep",)]


def test_a_matrix_stage_after_another_matrix_is_an_error():
    text = 'pipeline "p" { image = "t:1" }\ndata a { matrix { x = [1] } }\ndata b { matrix { x = [1] }  after = [a] }'
    assert codes_of(text) == ["E340"]
    assert codes_of('pipeline "p" { image = "t:1" }\ndata a { }\ndata b { matrix = a }') == ["E340"]
    assert codes_of('pipeline "p" { image = "t:1" }\ndata b { matrix = nope }') == ["E102"]
    assert codes_of('pipeline "p" { image = "t:1" }\ndata a { matrix { x = [1] } }\n'
                    'data b { matrix = a  exclude = [{ x = 1 }] }') == ["E240"]


def test_cycles_are_reported_by_stage_names():
    found = diagnostics('pipeline "p" { image = "t:1" }\ndata a { matrix { x = [1, 2] }  after = [b] }\n'
                        'data b { matrix = a  after = [a] }')
    assert found == [("E301", "dependency cycle: a -> b -> a")]


# ------------------------------------------------------------ volumes seen through instances


def test_instances_writing_one_rwo_volume_may_overlap_unless_one_at_a_time():
    text = '''
pipeline "p" { image = "t:1" }
volume v { size = 1Gi }
train fit {
  matrix { x = [1, 2, 3] }
  mount v at "/v"
  %s
}'''
    (warning,) = check_source(text % "", "t.aip").diagnostics
    assert warning.code == "W302" and "`fit-1`, `fit-2` and `fit-3` may write it" in warning.message
    assert "instances of `fit` run one at a time with `max_parallel = 1`" in warning.help
    assert check_source(text % "max_parallel = 1", "t.aip").diagnostics == []
    assert codes_of(text % "max_parallel = 2") == ["W302"]


def test_a_paired_reader_is_warned_once_about_the_other_instances_writing():
    (warning,) = check_source('''
pipeline "p" { image = "t:1" }
volume v { size = 1Gi  access = rwx }
train fit   { matrix { x = [1, 2, 3] }  mount v at "/v" }
eval  score { matrix = fit  after = [fit]  mount v at "/v" readonly }
eval  all   { after = [fit]  mount v at "/v" readonly }''', "t.aip").diagnostics
    assert warning.code == "W301"
    assert warning.message.startswith("instances of `score` read `v`, which `fit-1`, `fit-2` and `fit-3` write")
    assert "waits only for its own instance of `fit`" in warning.help
    assert [label.message for label in warning.related] == ["`fit` writes `v` here"]


# ------------------------------------------------------------ determinism and properties


AXIS_VALUES = st.one_of(
    st.integers(-50, 50).map(str),
    st.sampled_from(["1e-4", "3e-4", "0.5", "16Gi", "500m", "true", "false"]),
    st.text(alphabet="abcXYZ-_. /é", max_size=8).map(lambda t: json.dumps(t, ensure_ascii=False)),
)


@st.composite
def sweeps(draw):
    axes = draw(st.lists(st.sampled_from(["lr", "seed", "opt", "size"]), min_size=1, max_size=3, unique=True))
    values = {axis: draw(st.lists(AXIS_VALUES, min_size=1, max_size=4, unique=True)) for axis in axes}
    exclusions = draw(st.lists(st.dictionaries(st.sampled_from(axes), st.integers(0, 3), min_size=1), max_size=3))
    limit = draw(st.one_of(st.none(), st.integers(1, 5)))
    stage = draw(st.sampled_from(["m", "model", "a_very_long_stage_name_for_a_sweep"]))
    return stage, values, exclusions, limit


def sweep_text(stage: str, values: dict, exclusions: list, limit: int | None) -> str:
    matrix = "  ".join(f"{axis} = [{', '.join(items)}]" for axis, items in values.items())
    excluded = ", ".join("{ " + ", ".join(f"{axis} = {values[axis][i % len(values[axis])]}"
                                          for axis, i in rule.items()) + " }" for rule in exclusions)
    return (f'pipeline "sweep-property-test" {{ image = "t:1" }}\n'
            f'train {stage} {{\n  matrix {{ {matrix} }}\n'
            + (f"  exclude = [{excluded}]\n" if exclusions else "")
            + (f"  max_parallel = {limit}\n" if limit else "")
            + '  command = ["run", "${stage.name}"]\n}\n'
            f'eval after_all {{ after = [{stage}] }}\n')


def _distinct(values: dict) -> bool:
    """Values that are the same one (`1` and `1.0`, or equal numbers) are an error, not a sweep."""
    for items in values.values():
        seen = set()
        for item in items:
            key = float(item) if re.fullmatch(r"-?\d+(\.\d+)?(e-?\d+)?", item) else item
            if key in seen:
                return False
            seen.add(key)
    return True


@settings(max_examples=60, deadline=None)
@given(sweeps())
def test_instances_are_the_product_less_the_exclusions_with_unique_valid_names(sweep):
    stage, values, exclusions, limit = sweep
    if not _distinct(values):
        return
    text = sweep_text(stage, values, exclusions, limit)
    checked = check_source(text, "p.aip")
    axes = list(values)
    rules = [{axis: values[axis][i % len(values[axis])] for axis, i in rule.items()} for rule in exclusions]
    expected = [combination for combination in itertools.product(*values.values())
                if not any(all(dict(zip(axes, combination))[a] == v for a, v in rule.items()) for rule in rules)]
    if not expected:
        assert [d.code for d in checked.diagnostics if d.is_error] == ["E240"]
        return
    assert checked.ir is not None, [d.message for d in checked.diagnostics]
    pipeline = checked.ir
    instances = [s for s in pipeline.stages if s.instance is not None]
    written = [tuple(value.text for _, value in s.instance.coordinates)
               for s in sorted(instances, key=lambda s: s.instance.index)]
    unquoted = [tuple(json.loads(v) if v.startswith('"') else v for v in combination) for combination in expected]
    assert written == unquoted
    got = [s.name for s in instances]
    assert len(set(got)) == len(got) and "after_all" not in got
    for name in got:
        assert DNS_LABEL.fullmatch(name) and len(pipeline.object_name(name)) <= 63
        assert plain(pipeline.stage(name).command) == ("run", name)
    assert pipeline.stage("after_all").after == tuple(sorted(got))
    assert pipeline.matrices[0].max_parallel == limit
    again = check_source(text, "p.aip").ir
    for target in ("compose", "k8s", "argo"):
        backend = get_backend(target)
        assert to_yaml(list(backend.emit(pipeline).documents)) == to_yaml(list(backend.emit(again).documents))


def test_the_address_of_a_matrix_of_services_is_an_error_not_a_missing_command():
    found = diagnostics('''
pipeline "p" { image = "busybox:1.36" }
serve api { matrix { port = [8080, 8081] }  port = "${matrix.port}" }
data client { after = [api]  command = ["wget", "${api.url}"] }''')
    assert [code for code, _ in found] == ["E120"]
    assert found[0][1].startswith("`api` is a matrix stage: each of its instances is a service")
    pipeline = compile_ok('''
pipeline "p" { image = "busybox:1.36" }
serve api { matrix { port = [8080, 8081] }  port = "${matrix.port}" }
data client { after = [api]  command = ["true"] }''')
    assert pipeline.stage("client").after == ("api-8080", "api-8081")  # after serve instances: all healthy
    assert [pipeline.stage(n).port for n in ("api-8080", "api-8081")] == [8080, 8081]
