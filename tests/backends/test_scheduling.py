"""Scheduling on real clusters on every target: node selectors and GPU model
affinity per label convention, tolerations, priority classes, Kueue queues and
HorizontalPodAutoscalers on Kubernetes and Argo; what docker-compose ignores, and
GPU device ids on one machine (`--gpus N`)."""

from __future__ import annotations

import subprocess

import kubernetes_validate
import pytest
import yaml

from aipc import cli
from aipc.backends import get_backend
from tests.backends.argo_schema import workflow_errors
from tests.backends.clusters import by_kind, compile_ir, emit, emit_yaml, pod_spec, read_back
from tests.compiler.test_scheduling import CONTRACT

QUEUE = "kueue.x-k8s.io/queue-name"
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
H100_GFD = {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"]}


def k8s(text: str, **options) -> list[dict]:
    return read_back(emit_yaml("k8s", compile_ir(text), **options))


def argo(text: str, **options) -> dict:
    from aipc.backends import argo as backend

    kubernetes = backend.k8s.Options(**options)
    (workflow,) = emit("argo", compile_ir(text), kubernetes=kubernetes).documents
    return workflow


def templates(workflow: dict) -> dict[str, dict]:
    return {template["name"]: template for template in workflow["spec"]["templates"]}


def manifest(workflow: dict, template: str) -> dict:
    return yaml.safe_load(templates(workflow)[template]["resource"]["manifest"])


def only(documents: list[dict], kind: str) -> dict:
    (document,) = by_kind(documents, kind).values()
    return document


def required_terms(spec: dict) -> list:
    return spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]


# ------------------------------------------------------------------ Kubernetes


def test_the_contract_program_on_kubernetes():
    documents = k8s(CONTRACT)
    job = by_kind(documents, "Job")["pretrain-big"]
    spec = pod_spec(job)
    assert job["metadata"]["labels"][QUEUE] == "team-a"
    assert QUEUE not in job["spec"]["template"]["metadata"]["labels"]  # Kueue reads the Job's
    assert spec["nodeSelector"] == {"cloud.google.com/gke-spot": "true"}
    assert required_terms(spec) == [{"matchExpressions": [H100_GFD]}]
    assert spec["tolerations"] == [GPU_TAINT, {"key": "ondemand", "operator": "Exists"},
                                   {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    assert spec["priorityClassName"] == "batch-high"
    deployment = by_kind(documents, "Deployment")["pretrain-api"]
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
    assert pod_spec(deployment)["priorityClassName"] == "batch-high"
    assert QUEUE not in deployment["metadata"]["labels"]
    hpa = by_kind(documents, "HorizontalPodAutoscaler")["pretrain-api"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "pretrain-api"},
        "minReplicas": 2, "maxReplicas": 10,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 70}}}]}
    kinds = [document["kind"] for document in documents]
    assert kinds.index("HorizontalPodAutoscaler") == kinds.index("Deployment") + 1  # next to it


@pytest.mark.parametrize("version", ["1.28.0", kubernetes_validate.latest_version()])
@pytest.mark.parametrize("labels", ["gfd", "gke", "karpenter"])
def test_scheduling_output_validates_strictly(version, labels):
    program = CONTRACT + '''
serve llm {
  image = "vllm/vllm-openai:v0.6.3"
  port = 8000
  replicas = 0..4
  autoscale { metric = "vllm_num_requests_waiting"  target = 5 }
  resources { gpu = 1  gpu_model = "A100-80GB"  memory = 24Gi }
}
'''
    for document in k8s(program, gpu_labels=labels_of(labels)):
        kubernetes_validate.validate(document, version, strict=True)
    workflow = argo(program, gpu_labels=labels_of(labels))
    assert workflow_errors(workflow) == []
    for template in workflow["spec"]["templates"]:
        if "resource" in template:
            kubernetes_validate.validate(yaml.safe_load(template["resource"]["manifest"]), version, strict=True)


def labels_of(name: str):
    from aipc.compiler.ir import GpuLabels

    return GpuLabels(name)


@pytest.mark.parametrize("labels, expressions", [
    ("gfd", [H100_GFD]),
    ("gke", [{"key": "cloud.google.com/gke-accelerator", "operator": "In",
              "values": ["nvidia-h100-80gb", "nvidia-h100-mega-80gb"]}]),
    ("karpenter", [{"key": "karpenter.k8s.aws/instance-gpu-name", "operator": "In", "values": ["h100"]}]),
])
def test_a_portable_model_is_node_affinity_of_the_convention(labels, expressions):
    program = 'train t { image = "x:1"  resources { gpu = 8  gpu_model = "H100-80GB" } }'
    spec = pod_spec(only(k8s(program, gpu_labels=labels_of(labels)), "Job"))
    assert required_terms(spec) == [{"matchExpressions": expressions}]
    assert "nodeSelector" not in spec
    # the header chooses when the command line does not
    header = f'pipeline "t" {{ gpu_labels = {labels} }}\n' + program
    assert required_terms(pod_spec(only(k8s(header), "Job"))) == [{"matchExpressions": expressions}]


def test_the_command_line_convention_wins_over_the_header(tmp_path, capsys):
    source = tmp_path / "p.aip"
    source.write_text('pipeline "p" { gpu_labels = gke }\ntrain t { image = "x:1"  resources { gpu = 1  '
                      'gpu_model = "L4" } }\n')
    for target in ("k8s", "argo"):
        assert cli.main(["compile", str(source), "-t", target, "--gpu-labels", "karpenter"]) == 0
        out = capsys.readouterr().out
        assert "karpenter.k8s.aws/instance-gpu-name" in out and "gke-accelerator" not in out


def test_karpenter_tells_a100s_apart_by_gpu_memory():
    spec = pod_spec(only(k8s('train t { image = "x:1"  resources { gpu = 8  gpu_model = "A100-40GB" } }',
                             gpu_labels=labels_of("karpenter")), "Job"))
    assert required_terms(spec) == [{"matchExpressions": [
        {"key": "karpenter.k8s.aws/instance-gpu-name", "operator": "In", "values": ["a100"]},
        {"key": "karpenter.k8s.aws/instance-gpu-memory", "operator": "In", "values": ["40960"]}]}]


def test_a_label_value_is_a_node_selector_merged_with_schedule_node():
    program = ('train t { image = "x:1"  resources { gpu = 1  gpu_model = "NVIDIA-A100-SXM4-80GB" }\n'
               '  schedule { node = { pool = "a100" } } }')
    spec = pod_spec(only(k8s(program), "Job"))
    assert spec["nodeSelector"] == {"pool": "a100", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert "affinity" not in spec
    gke = pod_spec(only(k8s(program.replace("NVIDIA-A100-SXM4-80GB", "nvidia-tesla-a100"),
                            gpu_labels=labels_of("gke")), "Job"))
    assert gke["nodeSelector"] == {"pool": "a100", "cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}


def test_a_model_the_convention_has_no_nodes_of_is_an_error():
    program = 'train t { image = "x:1"  resources { gpu = 1  gpu_model = "L40S" } }'
    emitted = get_backend("k8s").emit(compile_ir(program), get_backend("k8s").Options(gpu_labels=labels_of("gke")))
    (diagnostic,) = emitted.diagnostics
    assert (diagnostic.code, diagnostic.is_error, emitted.documents) == ("B001", True, ())
    assert program[diagnostic.span.start:diagnostic.span.end] == 'gpu_model = "L40S"'
    argo_emitted = get_backend("argo").emit(compile_ir(program), get_backend("argo").Options(
        kubernetes=get_backend("k8s").Options(gpu_labels=labels_of("gke"))))
    assert [d.code for d in argo_emitted.diagnostics] == ["B001"]


def test_a_node_label_asked_for_twice_with_two_values_is_an_error():
    program = ('train t { image = "x:1"  resources { gpu = 1  gpu_model = "Tesla-T4" }\n'
               '  schedule { node = { "nvidia.com/gpu.product" = "NVIDIA-L4" } } }')
    emitted = get_backend("k8s").emit(compile_ir(program), get_backend("k8s").Options())
    assert [d.code for d in emitted.diagnostics] == ["E204"]


def test_tolerations_are_not_repeated():
    program = 'train t { image = "x:1"  resources { gpu = 1 }  schedule { tolerate = ["nvidia.com/gpu:NoSchedule"] } }'
    assert pod_spec(only(k8s(program), "Job"))["tolerations"] == [
        GPU_TAINT, {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}][:1]


def test_a_queue_goes_on_batch_workloads_only():
    program = ('pipeline "q" { schedule { queue = "team-b" } }\n'
               'data d { image = "x:1" }\nserve s { image = "x:1"  port = 80 }')
    documents = k8s(program)
    assert only(documents, "Job")["metadata"]["labels"][QUEUE] == "team-b"
    assert all(QUEUE not in document["metadata"]["labels"] for document in documents if document["kind"] != "Job")


def test_autoscaling_on_a_custom_metric_and_from_zero():
    program = '''
serve a { image = "x:1"  port = 80  replicas = 1..8  autoscale { metric = "requests_waiting"  target = 10 } }
serve b { image = "x:1"  port = 81  replicas = 0..3  autoscale { metric = "queue_length"  target = 2 } }
'''
    emitted = emit("k8s", compile_ir(program))
    hpas = by_kind(list(emitted.documents), "HorizontalPodAutoscaler")
    assert hpas["edge-a"]["spec"]["metrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": "requests_waiting"}, "target": {"type": "AverageValue", "averageValue": "10"}}}]
    assert hpas["edge-b"]["spec"]["minReplicas"] == 0
    assert hpas["edge-b"]["spec"]["metrics"] == [{"type": "External", "external": {
        "metric": {"name": "queue_length"}, "target": {"type": "AverageValue", "averageValue": "2"}}}]
    (warning,) = emitted.diagnostics
    assert warning.code == "B101" and "HPAScaleToZero" in warning.message
    assert program[warning.span.start:warning.span.end] == "0..3"


def test_a_fixed_number_of_replicas_has_no_autoscaler():
    documents = k8s('serve s { image = "x:1"  port = 80  replicas = 3 }')
    assert by_kind(documents, "Deployment")["edge-s"]["spec"]["replicas"] == 3
    assert by_kind(documents, "HorizontalPodAutoscaler") == {}


# ------------------------------------------------------------------------ Argo


def test_the_contract_program_on_argo():
    workflow = argo(CONTRACT)
    assert workflow_errors(workflow) == []
    big = templates(workflow)["big"]
    assert big["metadata"]["labels"][QUEUE] == "team-a"  # Kueue's pod integration reads the pod's
    assert big["nodeSelector"] == {"cloud.google.com/gke-spot": "true"}
    assert required_terms(big) == [{"matchExpressions": [H100_GFD]}]
    assert big["tolerations"][1:] == [{"key": "ondemand", "operator": "Exists"},
                                      {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    assert big["priorityClassName"] == "batch-high"
    api = templates(workflow)["api"]
    assert [step["name"] for step in api["steps"][0]] == ["deployment", "service", "network-policy", "autoscaler"]
    hpa = manifest(workflow, "api-autoscaler")
    assert hpa["kind"] == "HorizontalPodAutoscaler"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    deployment = manifest(workflow, "api-deployment")
    assert "replicas" not in deployment["spec"]
    assert deployment["spec"]["template"]["spec"]["priorityClassName"] == "batch-high"
    # done once the minimum of replicas is available
    assert templates(workflow)["api-deployment"]["resource"]["successCondition"] == \
        "status.updatedReplicas > 1,status.availableReplicas > 1"



def test_argos_deployer_may_apply_the_autoscaler_and_no_other():
    documents = emit("argo", compile_ir(CONTRACT), rbac=True).documents
    (role,) = [d for d in documents if d["kind"] == "Role" and d["metadata"]["name"] == "pretrain-deployer"]
    rules = [rule for rule in role["rules"] if rule["apiGroups"] == ["autoscaling"]]
    assert rules == [{"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["create"]},
                     {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"],
                      "resourceNames": ["pretrain-api"], "verbs": ["get", "patch"]}]
    (workflow,) = [d for d in documents if d["kind"] == "Workflow"]
    assert templates(workflow)["api-autoscaler"]["serviceAccountName"] == "pretrain-deployer"


# --------------------------------------------------------------------- compose


def compose_of(text: str, **options):
    return emit("compose", compile_ir(text), **options)


def test_compose_ignores_scheduling_with_one_warning_per_place_it_is_written():
    emitted = compose_of(CONTRACT)
    warnings = [(d.code, CONTRACT[d.span.start:d.span.end].split(" ")[0]) for d in emitted.diagnostics]
    assert sorted(warnings) == sorted([("B101", "queue"), ("B101", "priority"), ("B101", "node"),
                                       ("B101", "tolerate"), ("B101", "gpu_model"), ("B101", "2..10")])
    (document,) = emitted.documents
    assert document["services"]["api"]["deploy"]["replicas"] == 2  # the low end


def test_compose_starts_one_replica_of_a_service_scaled_from_zero():
    emitted = compose_of('serve s { image = "x:1"  port = 80  replicas = 0..3  autoscale { metric = "q"  target = 1 } }')
    assert emitted.documents[0]["services"]["s"]["deploy"]["replicas"] == 1
    assert "at least one" in emitted.diagnostics[0].message


GPU_BOX = '''
data prepare { image = "x:1"  resources { gpu = 1 } }
train a { image = "x:1"  after = [prepare]  resources { gpu = 2 } }
train b { image = "x:1"  after = [prepare]  resources { gpu = 2 } }
eval both { image = "x:1"  after = [a, b]  resources { gpu = 3 } }
serve api { image = "x:1"  after = [both]  port = 80  replicas = 2  resources { gpu = 1 } }
data cpu_only { image = "x:1" }
'''


def device_ids(document: dict, service: str):
    devices = document["services"][service].get("deploy", {}).get("resources", {}).get("reservations", {})
    return devices.get("devices")


def test_compose_gpus_gives_overlapping_stages_devices_of_their_own():
    emitted = compose_of(GPU_BOX, gpus=4)
    (document,) = emitted.documents
    ids = {name: device_ids(document, name)[0]["device_ids"] for name in ("prepare", "a", "b", "both", "api")}
    assert all("count" not in device_ids(document, name)[0] for name in ids)  # count and device_ids exclude each other
    assert set(ids["a"]).isdisjoint(ids["b"])
    assert len(ids["both"]) == 3 and len(ids["api"]) == 2
    assert device_ids(document, "cpu_only") is None
    # compose has one device list per service: the two replicas share theirs, with a warning
    (warning,) = emitted.diagnostics
    assert warning.code == "B101" and "replicas" in warning.message


def test_compose_gpus_fewer_than_the_peak_is_an_error_naming_the_stages():
    emitted = get_backend("compose").emit(compile_ir(GPU_BOX), get_backend("compose").Options(gpus=3))
    (error,) = emitted.diagnostics
    assert error.code == "B150" and error.is_error and emitted.documents == ()
    assert "need 4 GPUs" in error.message and "`a` and `b` at level 1" in error.message
    one = get_backend("compose").emit(compile_ir('train big { image = "x:1"  resources { gpu = 3 } }'),
                                      get_backend("compose").Options(gpus=2))
    assert "`big` at level 0 needs 3 GPUs, more than the 2 of this machine" in one.diagnostics[0].message


def test_compose_gpus_output_passes_docker_compose_config(tmp_path):
    path = tmp_path / "compose.yaml"
    path.write_text(emit_yaml("compose", compile_ir(GPU_BOX), gpus=4))
    result = subprocess.run(["docker-compose", "-f", str(path), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_compose_gpus_from_the_command_line(tmp_path, capsys):
    source = tmp_path / "p.aip"
    source.write_text(GPU_BOX)
    assert cli.main(["compile", str(source), "-t", "compose", "--gpus", "3"]) == 1
    assert "error[B150]" in capsys.readouterr().err
    assert cli.main(["compile", str(source), "-t", "compose", "--gpus", "4"]) == 0
    assert "device_ids" in capsys.readouterr().out
