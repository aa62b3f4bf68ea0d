"""Scheduling on real clusters (LANGUAGE.md v1): the `schedule` block on stages and
in the header, portable GPU models, and autoscaled services, as the checker reads
them into the IR."""

from __future__ import annotations

import pytest

from aipc.compiler import check_source, gpus, ir
from tests.dsl.test_v1_syntax import CONTRACT as V1_PROGRAMS
from tests.helpers import ROOT, codes_of, compile_ok

# LANGUAGE.md, v1, "Scheduling on real clusters", verbatim.
CONTRACT = V1_PROGRAMS["scheduling"]

IMAGE = 'pipeline "p" { image = "x:1" }\n'


def stage_of(source: str, name: str) -> ir.Stage:
    return compile_ok(source).stage(name)


def test_the_contract_program_is_the_language_pages_and_the_readmes():
    for page in ("docs/LANGUAGE.md", "README.md"):
        assert f"```aip\n{CONTRACT}```" in (ROOT / page).read_text()


def test_the_contract_program_checks_clean():
    checked = check_source(CONTRACT, "pretrain.aip")
    assert checked.diagnostics == []
    big, api = checked.ir.stage("big"), checked.ir.stage("api")
    assert big.schedule.node == (("cloud.google.com/gke-spot", "true"),)
    assert big.schedule.tolerate == (ir.Toleration("ondemand"), ir.Toleration("spot", "true", "NoSchedule"))
    assert (big.schedule.priority, big.schedule.queue) == ("batch-high", "team-a")
    assert big.resources.gpu_nodes.portable and big.resources.gpu_vendor is ir.GpuVendor.NVIDIA
    assert api.autoscale == ir.Autoscale(2, 10, cpu=70, span=api.autoscale.span)
    assert api.replicas == 2  # what starts where nothing scales it
    assert api.schedule.priority == "batch-high" and api.schedule.queue is None  # a queue is for batch stages


@pytest.mark.parametrize("written, toleration", [
    ("ondemand", ir.Toleration("ondemand")),
    ("spot=true", ir.Toleration("spot", "true")),
    ("nvidia.com/gpu:NoExecute", ir.Toleration("nvidia.com/gpu", None, "NoExecute")),
    ("spot=true:PreferNoSchedule", ir.Toleration("spot", "true", "PreferNoSchedule")),
])
def test_the_four_written_forms_of_a_toleration(written, toleration):
    stage = stage_of(IMAGE + f'train t {{ schedule {{ tolerate = ["{written}"] }} }}', "t")
    assert stage.schedule.tolerate == (toleration,)
    assert toleration.operator == ("Exists" if toleration.value is None else "Equal")


@pytest.mark.parametrize("written, message", [
    ("spot=true:noschedule", "`noschedule` is not a taint effect"),
    ("spot:Evict", "`Evict` is not a taint effect"),
    ("=true", "has no key"),
    (":NoSchedule", "has no key"),
    ("spot=", "an empty value"),
    ("bad key", "not a valid label key"),
    ("spot=two words", "not a valid label value"),
])
def test_a_malformed_toleration_is_an_error_at_it(written, message):
    source = IMAGE + f'train t {{ schedule {{ tolerate = ["ok", "{written}"] }} }}'
    checked = check_source(source, "t.aip")
    (diagnostic,) = checked.diagnostics
    assert diagnostic.code == "E251" and message in diagnostic.message
    assert source[diagnostic.span.start:diagnostic.span.end] == f'"{written}"'


def test_a_misspelt_effect_gets_the_right_spelling():
    (diagnostic,) = check_source(IMAGE + 'train t { schedule { tolerate = ["k:NoSchedul"] } }', "t.aip").diagnostics
    assert diagnostic.help.startswith("did you mean `NoSchedule`?")


def test_stage_keys_replace_the_headers_key_by_key_and_a_map_whole():
    source = '''
pipeline "p" {
  image = "x:1"
  schedule { node = { pool = "gpu", zone = "a" }  tolerate = ["spot"]  priority = "low"  queue = "team-a" }
}
train own { schedule { node = { pool = "cpu" }  priority = "high" } }
train inherits { }
'''
    pipeline = compile_ok(source)
    own, inherits = pipeline.stage("own").schedule, pipeline.stage("inherits").schedule
    assert own.node == (("pool", "cpu"),)  # not merged with the header's map
    assert (own.tolerate, own.priority, own.queue) == ((ir.Toleration("spot"),), "high", "team-a")
    assert inherits.node == (("pool", "gpu"), ("zone", "a")) and inherits.priority == "low"
    # where each key was written: the stage's own block, or the header
    assert source[own.span_of("priority").start:].startswith('priority = "high"')
    assert source[own.span_of("queue").start:].startswith('queue = "team-a"')


def test_schedule_is_a_block_or_a_map_in_the_header_and_in_stages():
    pipeline = compile_ok('pipeline "p" { image = "x:1"  schedule = { priority = "low" } }\n'
                          'train t { schedule = { queue = "q" } }')
    assert (pipeline.stage("t").schedule.priority, pipeline.stage("t").schedule.queue) == ("low", "q")


def test_a_queue_belongs_to_batch_stages():
    assert codes_of(IMAGE + 'serve s { port = 80  schedule { queue = "q" } }') == ["E107"]


@pytest.mark.parametrize("key, value", [("priority", "Batch High"), ("queue", "a" * 64), ("queue", "team_a")])
def test_priority_and_queue_are_object_names(key, value):
    assert codes_of(IMAGE + f'train t {{ schedule {{ {key} = "{value}" }} }}') == ["E111"]


def test_node_labels_are_checked_as_labels():
    assert codes_of(IMAGE + 'train t { schedule { node = { "bad key" = "x" } } }') == ["E213"]
    assert codes_of(IMAGE + 'train t { schedule { node = { pool = "two words" } } }') == ["E213"]
    # selecting nodes by a standard label is fine: it is not one of aipc's own labels
    compile_ok(IMAGE + 'train t { schedule { node = { "app.kubernetes.io/name" = "gpu-pool" } } }')


def test_unknown_schedule_keys_and_blocks_are_errors():
    assert codes_of(IMAGE + 'train t { schedule { priorty = "x" } }') == ["E106"]
    assert codes_of('pipeline "p" { image = "x:1"  resources { cpu = 1 } }') == ["E106"]
    assert codes_of(IMAGE + 'train t { autoscale { cpu = 50 } }') == ["E107"]


# ------------------------------------------------------------------ GPU models


@pytest.mark.parametrize("written", ["H100-80GB", "h100-80gb", "A100-40GB", "L4", "mi300x"])
def test_portable_names_select_every_convention(written):
    stage = stage_of(IMAGE + f'train t {{ resources {{ gpu = 1  gpu_model = "{written}" }} }}', "t")
    nodes = stage.resources.gpu_nodes
    assert nodes.portable and stage.resources.gpu_model == written
    assert nodes == gpus.gpu_nodes(written, stage.resources.gpu_vendor)


def test_a_portable_model_names_its_vendor():
    stage = stage_of(IMAGE + 'train t { resources { gpu = 1  gpu_model = "MI300X" } }', "t")
    assert stage.resources.gpu_vendor is ir.GpuVendor.AMD
    assert stage_of(IMAGE + 'train t { resources { gpu = 1  gpu_vendor = amd  gpu_model = "MI300X" } }',
                    "t").resources.gpu_vendor is ir.GpuVendor.AMD
    assert codes_of(IMAGE + 'train t { resources { gpu = 1  gpu_vendor = nvidia  gpu_model = "MI300X" } }') \
        == ["E204"]


@pytest.mark.parametrize("written, suggested", [
    ("H100", ["H100-80GB"]), ("A100", ["A100-40GB", "A100-80GB"]), ("a100-40G", ["A100-40GB", "A100-80GB"]),
    ("L40", ["L40S", "L4"]), ("RTX4090", []), ("MI250X", ["MI300X"]),
])
def test_text_shaped_like_a_model_name_is_an_unknown_model(written, suggested):
    (diagnostic,) = check_source(IMAGE + f'train t {{ resources {{ gpu = 1  gpu_model = "{written}" }} }}',
                                 "t.aip").diagnostics
    assert diagnostic.code == "E250"
    for name in suggested:
        assert f"`{name}`" in diagnostic.help.split("?")[0]
    assert "H100-80GB, H200, B200" in diagnostic.help  # the known ones, always


@pytest.mark.parametrize("written, value", [
    ("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-SXM4-80GB"), ("Tesla T4", "Tesla-T4"),
    ("A100-SXM4-40GB", "A100-SXM4-40GB"),  # a product name of drivers before R470
    ("NVIDIA H100 80GB HBM3", "NVIDIA-H100-80GB-HBM3"),
])
def test_v0_label_values_keep_working(written, value):
    stage = stage_of(IMAGE + f'train t {{ resources {{ gpu = 1  gpu_model = "{written}" }} }}', "t")
    nodes = stage.resources.gpu_nodes
    assert not nodes.portable
    assert nodes.requirements(ir.GpuLabels.GFD) == (ir.NodeRequirement("nvidia.com/gpu.product", (value,)),)


def test_amd_and_intel_label_values_use_their_labellers_spelling():
    amd = stage_of(IMAGE + 'train t { resources { gpu = 1  gpu_vendor = amd  gpu_model = "AMD Instinct MI250X" } }', "t")
    assert amd.resources.gpu_nodes.requirements(ir.GpuLabels.GFD) == (
        ir.NodeRequirement("amd.com/gpu.product-name", ("AMD_Instinct_MI250X",)),)
    intel = stage_of(IMAGE + 'train t { resources { gpu = 1  gpu_vendor = intel  gpu_model = "Arc A770" } }', "t")
    assert intel.resources.gpu_nodes.requirements(ir.GpuLabels.GFD) == (
        ir.NodeRequirement("gpu.intel.com/product", ("Arc_A770",)),)


def test_the_header_chooses_the_label_convention():
    assert compile_ok('pipeline "p" { image = "x:1"  gpu_labels = gke }').gpu_labels is ir.GpuLabels.GKE
    assert compile_ok(IMAGE).gpu_labels is None
    assert codes_of('pipeline "p" { image = "x:1"  gpu_labels = aws }') == ["E210"]


# ------------------------------------------------------------------ autoscaling

class _Serve:
    def format(self, body: str) -> str:
        return IMAGE + "serve api { port = 8080  " + body + " }"


SERVE = _Serve()


def autoscale_of(body: str) -> ir.Autoscale | None:
    return stage_of(SERVE.format(body=body), "api").autoscale


def test_a_replica_range_autoscales_on_80_percent_cpu_by_default():
    assert autoscale_of("replicas = 2..10") == ir.Autoscale(2, 10, cpu=80, span=autoscale_of("replicas = 2..10").span)
    assert autoscale_of("replicas = 3") is None


def test_a_custom_metric_and_its_target():
    scaled = autoscale_of('replicas = 1..8  autoscale { metric = "requests_waiting"  target = 10 }')
    assert (scaled.cpu, scaled.metric, scaled.target) == (None, "requests_waiting", 10)


def test_zero_to_n_needs_a_custom_metric():
    scaled = autoscale_of('replicas = 0..4  autoscale { metric = "requests_waiting"  target = 1 }')
    assert (scaled.minimum, scaled.maximum) == (0, 4)
    assert stage_of(SERVE.format(body='replicas = 0..4  autoscale { metric = "q"  target = 1 }'), "api").replicas == 1
    assert codes_of(SERVE.format(body="replicas = 0..4")) == ["E252"]
    assert codes_of(SERVE.format(body="replicas = 0..4  autoscale { cpu = 50 }")) == ["E252"]


@pytest.mark.parametrize("body, code", [
    ("autoscale { cpu = 70 }", "E252"),  # no range
    ('replicas = 2..4  autoscale { cpu = 70  metric = "q"  target = 1 }', "E204"),
    ('replicas = 2..4  autoscale { metric = "q" }', "E203"),
    ("replicas = 2..4  autoscale { target = 3 }", "E203"),
    ("replicas = 5..2", "E207"),
    ("replicas = 0..0", "E209"),
    ("replicas = 0", "E209"),
    ("replicas = 1..2  autoscale { cpu = 0 }", "E209"),
    ('replicas = 1..2  autoscale { metric = ""  target = 1 }', "E202"),
    ("replicas = 1..2  autoscale { cpu = 50  speed = 3 }", "E106"),
])
def test_autoscaling_that_cannot_work_is_an_error(body, code):
    assert codes_of(SERVE.format(body=body)) == [code]


def test_a_replica_range_from_a_parameter():
    pipeline = compile_ok('param scale: string = "2..6"\n' + SERVE.format(body='replicas = "${scale}"'))
    assert (pipeline.stage("api").autoscale.minimum, pipeline.stage("api").autoscale.maximum) == (2, 6)


def test_a_gpu_service_on_cpu_is_warned_about_once():
    assert codes_of(SERVE.format(body="replicas = 1..4  resources { gpu = 1 }")) == ["W250"]
    assert codes_of(SERVE.format(body="replicas = 1..4  autoscale { cpu = 60 }  resources { gpu = 1 }")) == ["W250"]
    assert codes_of(SERVE.format(body='replicas = 1..4  autoscale { metric = "q"  target = 5 }  '
                                      "resources { gpu = 1 }")) == []
