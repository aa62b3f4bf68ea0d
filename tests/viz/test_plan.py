"""aipc plan: levels, per-level totals, serve stages carried, the GPU peak and worst case."""

from __future__ import annotations

import itertools
import json

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from aipc import cli
from aipc.compiler import ir
from aipc.viz.plan import plan_pipeline, render_rich, render_text, to_json, worst_case_gpus
from tests.helpers import EXAMPLES, compile_example, compile_ok

GiB = 2**30


def example(stem: str) -> ir.Pipeline:
    return compile_example(next(p for p in EXAMPLES if p.stem == stem))


def plan_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["plan", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_table_for_each_example(path, capsys, text_snapshot):
    code, out, err = plan_cli(capsys, str(path))
    assert code == 0, err
    assert out == text_snapshot


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_json_for_each_example(path, capsys, json_snapshot):
    code, out, err = plan_cli(capsys, str(path), "--format", "json")
    assert code == 0, err
    json.loads(out)
    assert out == json_snapshot


def test_fraud_detection_peak_and_serve_replicas():
    plan = plan_pipeline(example("fraud-detection"))
    assert [[s.name for s in level.stages] for level in plan.levels] == [
        ["ingest"], ["featurize"], ["model"], ["evaluate"], ["api"]]
    assert (plan.peak.gpus, plan.peak.level, plan.peak.stages) == (4, 2, ("model",))
    api = plan.levels[4].demand
    assert api.gpu_total == 3  # 1 GPU x 3 replicas
    assert (api.cpu_request, api.memory_request) == (3000, 6 * GiB)
    featurize = plan.levels[1].demand
    assert (featurize.cpu_request, featurize.cpu_limit) == (1000, 4000)
    assert (featurize.memory_request, featurize.memory_limit) == (8 * GiB, 16 * GiB)
    assert plan.levels[3].demand.cpu_unset == ("evaluate",)
    assert [level.writes for level in plan.levels] == [("raw",), ("features",), ("models",), (), ()]


def test_recommender_groups_the_diamond_and_carries_services():
    plan = plan_pipeline(example("recommender"))
    assert [s.name for s in plan.levels[1].stages] == ["item_features", "user_features"]
    assert plan.levels[1].writes == ("features",)
    assert plan.levels[1].demand.memory_limit == 96 * GiB
    last = plan.levels[-1]
    assert [s.name for s in last.stages] == ["ranker"] and [s.name for s in last.serving] == ["candidates"]
    # ranker 1..2 cpu x 3 replicas + candidates 2 cpu x 2 replicas, still running
    assert (last.demand.cpu_request, last.demand.cpu_limit) == (7000, 10000)
    assert (last.demand.memory_request, last.demand.memory_limit) == (22 * GiB, 28 * GiB)
    assert "candidates (serving)" in render_text(plan)


SERVE_EARLY = '''
data prep { image = "e:1"  resources { cpu = 1  memory = 1Gi } }
serve api { image = "e:1"  after = [prep]  port = 80  replicas = 2  resources { gpu = 1  cpu = 1 } }
data a { image = "e:1"  after = [prep]  mount out at "/o" }
train b { image = "e:1"  after = [a]  resources { gpu = 4  gpu_vendor = amd  memory = 2Gi } }
volume out { size = 1Gi }
'''


def test_a_serve_stage_counts_in_every_later_level():
    plan = plan_pipeline(compile_ok(SERVE_EARLY))
    assert [([s.name for s in lv.stages], [s.name for s in lv.serving]) for lv in plan.levels] == [
        (["prep"], []), (["a", "api"], []), (["b"], ["api"])]
    assert plan.levels[2].demand.gpus == ((ir.GpuVendor.NVIDIA, 2), (ir.GpuVendor.AMD, 4))
    assert (plan.peak.gpus, plan.peak.level) == (6, 2)
    text = render_text(plan)
    assert "peak GPU demand: 6 GPUs (2 nvidia, 4 amd) at level 2 (b, api)" in text
    assert "serve stages keep running once started" in text
    # a sets no cpu: its level total leaves it out and says so
    assert "2 *" in text.splitlines()[5]  # api: 1 cpu x 2 replicas
    # The footnote is a legend, one mark a line: what `*` and `-` mean, and which stages they leave out.
    notes = text.split("serve stages keep running once started: they count in every later level (serving).\n")[1]
    assert notes == (
        "*  a total that leaves out stages which set no cpu or memory\n"
        "-  none; as a CPU or memory total: no stage of the level sets one\n"
        "   not set: a (cpu and memory), api (memory), b (cpu); on Kubernetes such stages get a default\n"
        "   request and limit (`aipc compile -t k8s` shows it)\n")


OVERLAP = '''
train long { image = "e:1"  resources { gpu = 4 } }
data quick { image = "e:1" }
train next { image = "e:1"  after = [quick]  resources { gpu = 4 } }
'''


def test_worst_case_when_levels_overlap():
    plan = plan_pipeline(compile_ok(OVERLAP))
    assert [[s.name for s in level.stages] for level in plan.levels] == [["long", "quick"], ["next"]]
    assert plan.peak.gpus == 4
    assert (plan.worst_case.gpus, plan.worst_case.stages) == (8, ("long", "next"))
    text = render_text(plan)
    assert "worst case: 8 nvidia GPUs at once if long, next overlap" in text
    data = json.loads(to_json(plan))
    assert data["worst_case_gpu"] == {"gpus": 8, "by_vendor": {"nvidia": 8}, "stages": ["long", "next"]}
    assert data["peak_gpu"]["level"] == 0


def test_no_gpus():
    plan = plan_pipeline(example("laptop"))
    assert plan.peak.gpus == 0 and plan.worst_case.gpus == 0
    assert "peak GPU demand: none" in render_text(plan)
    assert json.loads(to_json(plan))["peak_gpu"] == {"gpus": 0, "level": None, "by_vendor": {}, "stages": []}


def test_rich_table_on_a_terminal():
    console = Console(record=True, width=120, force_terminal=True)
    render_rich(plan_pipeline(example("recommender")), console)
    text = console.export_text()
    assert "candidates (serving)" in text and "64Gi / 96Gi" in text
    assert "peak GPU demand: 2 nvidia GPUs at level 2 (two_tower)" in text


def test_params_change_the_plan(capsys):
    path = next(p for p in EXAMPLES if p.stem == "llm-finetune")
    code, out, _ = plan_cli(capsys, str(path), "-p", "gpus=4", "--format", "json")
    assert code == 0
    assert json.loads(out)["peak_gpu"]["gpus"] == 4


def test_errors_exit_1(tmp_path, capsys):
    source = tmp_path / "bad.aip"
    source.write_text('data a { image = "e:1"  after = [a] }\n')
    code, out, err = plan_cli(capsys, str(source))
    assert code == 1 and out == "" and "dependency cycle" in err
    assert plan_cli(capsys, str(tmp_path / "missing.aip"))[0] == 1


# ------------------------------------------------------------------ the worst case, checked by brute force


@st.composite
def pipelines(draw) -> ir.Pipeline:
    count = draw(st.integers(1, 7))
    stages: list[ir.Stage] = []
    for index in range(count):
        serve = draw(st.booleans()) if index else False
        candidates = [s.name for s in stages if serve or s.is_batch]
        after = tuple(sorted(draw(st.sets(st.sampled_from(candidates), max_size=3)) if candidates else ()))
        stages.append(ir.Stage(
            name=f"s{index}", kind=ir.StageKind.SERVE if serve else ir.StageKind.TRAIN, image="e:1",
            after=after, replicas=draw(st.integers(1, 3)) if serve else 1,
            resources=ir.Resources(gpu=draw(st.integers(0, 8))),
        ))
    return ir.Pipeline(name="p", file="p.aip", stages=tuple(stages))


def brute_force_worst_case(pipeline: ir.Pipeline) -> int:
    graph = nx.DiGraph()
    graph.add_nodes_from(s.name for s in pipeline.stages)
    graph.add_edges_from((d, s.name) for s in pipeline.stages for d in s.after)
    stages = {s.name: s for s in pipeline.stages}

    def sequential(x: str, y: str) -> bool:
        return (stages[x].is_batch and x in nx.ancestors(graph, y)) or \
            (stages[y].is_batch and y in nx.ancestors(graph, x))

    best = 0
    for size in range(1, len(stages) + 1):
        for group in itertools.combinations(stages, size):
            if not any(sequential(x, y) for x, y in itertools.combinations(group, 2)):
                best = max(best, sum(stages[n].resources.gpu * stages[n].replicas for n in group))
    return best


@settings(max_examples=150, deadline=None)
@given(pipelines())
def test_worst_case_is_the_heaviest_set_that_can_overlap(pipeline):
    worst = worst_case_gpus(pipeline)
    assert worst.gpus == brute_force_worst_case(pipeline)
    chosen = {s.name: s for s in pipeline.stages if s.name in worst.stages}
    assert sum(s.resources.gpu * s.replicas for s in chosen.values()) == worst.gpus


def test_gpus_shows_the_devices_of_each_stage_on_one_machine(capsys, tmp_path):
    path = next(p for p in EXAMPLES if p.stem == "gpu-cluster")
    code, out, err = plan_cli(capsys, str(path), "--gpus", "8")
    assert code == 0, err
    lines = out.splitlines()
    start = lines.index("on one machine with 8 GPUs, the devices of each GPU stage (stages that may run at the "
                        "same time never share one):")
    assert lines[start + 1].split() == ["pretrain", "0,1,2,3,4,5,6,7"]
    assert [line.split()[0] for line in lines[start + 1:]] == ["pretrain", "humaneval", "completions"]
    code, out, err = plan_cli(capsys, str(path), "--gpus", "8", "--format", "json")
    devices = json.loads(out)["gpu_devices"]
    assert devices["gpus"] == 8 and devices["stages"]["pretrain"] == [[str(n) for n in range(8)]]
    source = tmp_path / "replicas.aip"
    source.write_text('serve api { image = "x:1"  port = 80  replicas = 2  resources { gpu = 2 } }\n')
    code, out, err = plan_cli(capsys, str(source), "--gpus", "4")
    assert "  api  replica 1: 0,1; replica 2: 2,3" in out


def test_gpus_fewer_than_needed_is_an_error_naming_the_stages(capsys, tmp_path):
    source = tmp_path / "box.aip"
    source.write_text('train a { image = "x:1"  resources { gpu = 4 } }\n'
                      'train b { image = "x:1"  resources { gpu = 4 } }\n')
    code, out, err = plan_cli(capsys, str(source), "--gpus", "6")
    assert code == 1
    assert "error[B150]: stages that may run at the same time need 8 GPUs, more than the 6 of this machine: " \
           "`a` and `b` at level 0" in err
    assert "level" in out  # the plan itself is still shown
    code, out, err = plan_cli(capsys, str(source), "--gpus", "6", "--format", "json")
    assert code == 1 and json.loads(out)["gpu_devices"] == {"gpus": 6, "needed": 8, "overlapping": ["a", "b"]}
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["plan", str(source), "--gpus", "0"])
    assert exit_info.value.code == 2 and "--gpus: must be at least 1" in capsys.readouterr().err


# ------------------------------------------------------------ matrix stages (issue 18)

SWEEP = next(p for p in EXAMPLES if p.stem == "sweep")


def test_a_matrix_stage_is_one_row_with_its_instances_and_axes(capsys):
    code, out, _ = plan_cli(capsys, str(SWEEP))
    assert code == 0
    assert out.startswith("sweep: 3 stages (2 matrix stages, 10 instances) in 3 levels\n")
    assert "model (train, 5 instances of lr x seed, 2 at a time)" in out
    assert "score (eval, 5 instances of lr x seed)" in out
    assert "model-1e-4-1" not in out
    assert "peak GPU demand: 2 nvidia GPUs at level 0 (model (2 of 5 instances))" in out
    code, out, _ = plan_cli(capsys, str(SWEEP), "--instances")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[4:9]] == [
        "0", "model-1e-4-2", "model-3e-4-1", "model-3e-4-2", "model-3e-4-3"]
    assert "peak GPU demand: 2 nvidia GPUs at level 0 (model-1e-4-1, model-1e-4-2)" in out


def test_a_level_counts_only_max_parallel_instances_of_a_matrix_stage():
    text = '''
pipeline "p" { image = "e:1" }
train fit { matrix { gpus = [1, 4, 2] }  max_parallel = %s  resources { gpu = "${matrix.gpus}"  cpu = 1 } }
'''
    limited = plan_pipeline(compile_ok(text % "2"))
    assert (limited.peak.gpus, limited.peak.stages) == (6, ("fit-2", "fit-4"))  # the two heaviest
    assert limited.levels[0].demand.cpu_request == 2000
    unlimited = plan_pipeline(compile_ok(text.replace("max_parallel = %s", "")))
    assert unlimited.peak.gpus == 7 and unlimited.levels[0].demand.cpu_request == 3000


def test_the_worst_case_sees_instances_run_in_max_parallel_chains():
    plan = plan_pipeline(compile_ok('''
pipeline "p" { image = "e:1" }
train fit  { matrix { x = [1, 2, 3, 4] }  max_parallel = 2  resources { gpu = 1 } }
data prep  { }
train late { after = [prep]  resources { gpu = 4 } }'''))
    assert plan.peak.gpus == 4  # level 1: late alone; level 0: two instances of fit
    assert plan.worst_case.gpus == 6  # late and two instances of fit, never all four
    assert "worst case: 6 nvidia GPUs at once if fit (2 of 4 instances), late overlap" in render_text(plan)


def test_json_lists_instances_and_each_matrix_stage():
    data = json.loads(to_json(plan_pipeline(compile_ok(SWEEP.read_text(), path="sweep.aip"))))
    assert data["levels"][0]["stages"] == ["model-1e-4-1", "model-1e-4-2", "model-3e-4-1", "model-3e-4-2",
                                           "model-3e-4-3"]
    assert data["matrices"][0] == {"stage": "model", "axes": ["lr", "seed"], "max_parallel": 2,
                                   "instances": data["levels"][0]["stages"]}
    assert data["matrices"][1]["stage"] == "score" and data["matrices"][1]["max_parallel"] is None


def test_a_multi_node_stage_counts_once_per_node():
    text = 'train t { image = "t:1"  nodes = 4  resources { gpu = 8  cpu = 2  memory = 16Gi } }'
    plan = plan_pipeline(compile_ok(text))
    (level,) = plan.levels
    assert level.demand.gpus == ((ir.GpuVendor.NVIDIA, 32),)
    assert (level.demand.cpu_request, level.demand.memory_request) == (8000, 64 * 2**30)
    assert (plan.peak.gpus, plan.worst_case.gpus) == (32, 32)
    rendered = render_text(plan)
    assert "t (train x4 nodes)" in rendered and "a multi-node stage once per node" in rendered
