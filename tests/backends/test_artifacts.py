"""Outputs and inputs on every target: a Docker volume per output on compose (the
same container spec `aipc run` uses), one claim per pipeline with a subPath per
output on Kubernetes and Argo, inputs read-only, a fan-in one subdirectory per
instance; B002 without `artifacts { }` on a cluster, B104 on an `rwo` claim."""

from __future__ import annotations

import pytest

from aipc import codes
from aipc.backends import get_backend
from aipc.backends.docker import container_specs
from aipc.diagnostics import Diagnostics
from tests.dsl.test_v1_syntax import CONTRACT
from tests.helpers import compile_ok

CHURN = CONTRACT["artifacts"]

FAN_IN = '''\
pipeline "sweep" { artifacts { size = 10Gi  access = rwx } }
train model {
  image  = "t:1"
  matrix { seed = [1, 2] }
  output weights at "/out/w"
}
eval score {
  image  = "t:1"
  matrix = model
  input  model.weights at "/in/w"
}
eval pick {
  image = "t:1"
  input model.weights at "/in/all"
}
'''


def emit(target: str, text: str):
    emitted = get_backend(target).emit(compile_ok(text))
    return emitted.documents, emitted.diagnostics


def by_kind(documents, kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def mounts_of(pod_spec: dict) -> list[dict]:
    (container,) = pod_spec["containers"]
    return [m for m in container["volumeMounts"] if m["mountPath"] != "/tmp"]


def test_compose_keeps_each_output_in_a_volume_and_mounts_inputs_read_only():
    (document,), diagnostics = emit("compose", CHURN)
    assert not diagnostics
    services = document["services"]
    assert services["model"]["volumes"] == ["model.model:/out/model:nocopy", "model.metrics:/out/metrics:nocopy"]
    assert services["evaluate"]["volumes"] == ["model.model:/in/model:ro,nocopy",
                                               "model.metrics:/in/metrics:ro,nocopy"]
    assert services["evaluate"]["depends_on"] == {"model": {"condition": "service_completed_successfully"}}
    # the outputs are the volume group's before their writer starts (uid 65532 writes them); inputs stay read-only
    assert services["aipc-volumes"]["volumes"] == ["model.metrics:/aipc/volumes/model.metrics:nocopy",
                                                   "model.model:/aipc/volumes/model.model:nocopy"]
    assert services["model"]["depends_on"] == {"aipc-volumes": {"condition": "service_completed_successfully"}}
    assert sorted(document["volumes"]) == ["model.metrics", "model.model"]
    assert document["volumes"]["model.model"]["labels"]["app.kubernetes.io/part-of"] == "churn"


def test_aipc_run_mounts_what_compose_does():
    pipeline = compile_ok(CHURN)
    specs = container_specs(pipeline, pipeline.stages, Diagnostics("t.aip"), "`aipc run`")
    assert [(m.volume.name, m.target, m.read_only) for m in specs["evaluate"].mounts] == [
        ("model.model", "/in/model", True), ("model.metrics", "/in/metrics", True)]
    assert [(m.volume.name, m.target, m.read_only) for m in specs["model"].mounts] == [
        ("model.model", "/out/model", False), ("model.metrics", "/out/metrics", False)]


def test_kubernetes_keeps_every_output_in_one_claim_each_a_sub_path():
    documents, diagnostics = emit("kubernetes", CHURN)
    assert [d.code for d in diagnostics] == [codes.TAG_KEYED_CACHE.id]
    (claim,) = by_kind(documents, "PersistentVolumeClaim").values()
    assert claim["metadata"]["name"] == "churn-artifacts"
    assert claim["spec"] == {"accessModes": ["ReadWriteMany"], "storageClassName": "standard-rwx",
                             "resources": {"requests": {"storage": "100Gi"}}}
    jobs = by_kind(documents, "Job")
    model = jobs["churn-model"]["spec"]["template"]["spec"]
    evaluate = jobs["churn-evaluate"]["spec"]["template"]["spec"]
    assert mounts_of(model) == [
        {"name": "artifacts", "mountPath": "/out/model", "subPath": "model/model"},
        {"name": "artifacts", "mountPath": "/out/metrics", "subPath": "model/metrics"}]
    assert mounts_of(evaluate) == [
        {"name": "artifacts", "mountPath": "/in/model", "subPath": "model/model", "readOnly": True},
        {"name": "artifacts", "mountPath": "/in/metrics", "subPath": "model/metrics", "readOnly": True}]
    for spec in (model, evaluate):
        assert {"name": "artifacts", "persistentVolumeClaim": {"claimName": "churn-artifacts"}} in spec["volumes"]


def test_the_claim_takes_another_name_beside_a_volume_named_artifacts():
    text = CHURN.replace("train model {", 'volume artifacts { size = 1Gi }\ntrain model {\n  mount artifacts at "/a"')
    documents, _ = emit("kubernetes", text)
    assert sorted(by_kind(documents, "PersistentVolumeClaim")) == ["churn-artifacts", "churn-artifacts-2"]


def test_argo_makes_the_claim_for_the_run():
    (workflow,), diagnostics = emit("argo", CHURN)
    assert [d.code for d in diagnostics] == [codes.TAG_KEYED_CACHE.id]
    (template,) = workflow["spec"]["volumeClaimTemplates"]
    assert template["metadata"]["name"] == "artifacts"
    assert template["spec"]["accessModes"] == ["ReadWriteMany"]
    templates = {t["name"]: t for t in workflow["spec"]["templates"]}
    assert templates["evaluate"]["container"]["volumeMounts"][:2] == [
        {"name": "artifacts", "mountPath": "/in/model", "subPath": "model/model", "readOnly": True},
        {"name": "artifacts", "mountPath": "/in/metrics", "subPath": "model/metrics", "readOnly": True}]


def test_a_service_that_reads_an_output_keeps_the_claim_beyond_the_argo_run():
    text = CHURN + 'serve api {\n  image = "api:1"\n  port = 80\n  input model.model at "/models"\n}\n'
    (workflow,), _ = emit("argo", text)
    assert "volumeClaimTemplates" not in workflow["spec"]
    assert {"name": "artifacts", "persistentVolumeClaim": {"claimName": "churn-artifacts"}} \
        in workflow["spec"]["volumes"]
    assert "artifacts-volume" in {t["name"] for t in workflow["spec"]["templates"]}


def test_a_fan_in_mounts_each_instance_at_its_own_subdirectory_on_every_target():
    (compose,), _ = emit("compose", FAN_IN)
    assert compose["services"]["pick"]["volumes"] == [
        "model-1.weights:/in/all/model-1:ro,nocopy", "model-2.weights:/in/all/model-2:ro,nocopy"]
    assert compose["services"]["score-2"]["volumes"] == ["model-2.weights:/in/w:ro,nocopy"]
    documents, _ = emit("kubernetes", FAN_IN)
    pick = by_kind(documents, "Job")["sweep-pick"]["spec"]["template"]["spec"]
    assert mounts_of(pick) == [
        {"name": "artifacts", "mountPath": "/in/all/model-1", "subPath": "model-1/weights", "readOnly": True},
        {"name": "artifacts", "mountPath": "/in/all/model-2", "subPath": "model-2/weights", "readOnly": True}]


def test_outputs_need_artifacts_on_a_cluster_and_nowhere_else():
    text = CHURN.replace('  artifacts { size = 100Gi  class = "standard-rwx"  access = rwx }', "")
    for target in ("kubernetes", "argo"):
        documents, diagnostics = emit(target, text)
        assert documents == ()
        (error,) = [d for d in diagnostics if d.is_error]
        assert error.code == codes.NO_ARTIFACT_STORE.id
        assert text[error.span.start:error.span.end] == 'output model   at "/out/model"'
        assert "artifacts {" in error.help
    assert emit("compose", text)[1] == ()


def test_an_rwo_claim_is_a_warning_when_a_stage_reads_an_output():
    text = CHURN.replace('  class = "standard-rwx"  access = rwx', "")
    for target in ("kubernetes", "argo"):
        (warning, _) = sorted(emit(target, text)[1], key=lambda d: d.code)
        assert warning.code == codes.SINGLE_NODE_ARTIFACTS.id and warning.severity.value == "warning"
    alone = text.split("eval evaluate")[0]
    assert [d.code for d in emit("kubernetes", alone)[1]] == [codes.TAG_KEYED_CACHE.id]


def annotations(documents) -> dict[str, dict]:
    return {name: job["metadata"]["annotations"] for name, job in by_kind(documents, "Job").items()}


def cache_keys(text: str) -> dict[str, str | None]:
    documents, _ = emit("kubernetes", text)
    return {name: a.get("aipc.dev/cache-key") for name, a in annotations(documents).items()}


def test_clusters_carry_the_compile_time_key_which_follows_the_stages_read():
    keys = cache_keys(CHURN)
    assert all(len(key) == 64 for key in keys.values())
    command = cache_keys(CHURN.replace('train model {\n  image = "ghcr.io/acme/trainer:2.1"',
                                       'train model {\n  image = "ghcr.io/acme/trainer:2.1"\n  command = ["t"]'))
    assert command["churn-model"] != keys["churn-model"]
    assert command["churn-evaluate"] != keys["churn-evaluate"]  # it reads what `model` writes
    retried = cache_keys(CHURN.replace("eval evaluate {", "eval evaluate {\n  retries = 3\n  timeout = 1h"))
    assert retried == keys
    image = cache_keys(CHURN.replace("trainer:2.1", "trainer:2.2"))
    assert image["churn-model"] != keys["churn-model"]


def test_a_stage_never_cached_carries_no_key_and_argo_does_not_memoize_it():
    text = CHURN + '''volume v { size = 1Gi }
data writes { image = "i:1"  mount v at "/v" }
data off { image = "i:1"  cache = false }
'''
    keys = cache_keys(text)
    assert keys["churn-writes"] is None and keys["churn-off"] is None and keys["churn-model"]
    (workflow,), _ = emit("argo", text)
    templates = {t["name"]: t for t in workflow["spec"]["templates"]}
    assert "memoize" not in templates["writes"] and "memoize" not in templates["off"]
    assert templates["evaluate"]["memoize"] == {
        "key": keys["churn-evaluate"], "maxAge": "8760h", "cache": {"configMap": {"name": "churn-cache"}}}
    # a stage with outputs is not: the run's claim is new, a step skipped would leave them empty
    assert "memoize" not in templates["model"] and templates["model"]["metadata"]["annotations"][
        "aipc.dev/cache-key"] == keys["churn-model"]


@pytest.mark.parametrize("reads", ['command = ["t", "${lr}"]', 'args = ["--lr", "${lr}"]'])
def test_argo_memoizes_no_stage_that_reads_a_workflow_parameter(reads):
    text = 'param lr: float = 0.1\n' + CHURN.replace(
        'input model.metrics at "/in/metrics"', f'input model.metrics at "/in/metrics"\n  {reads}')
    (workflow,), _ = emit("argo", text)
    templates = {t["name"]: t for t in workflow["spec"]["templates"]}
    assert "memoize" not in templates["evaluate"]  # its value is set when the Workflow is submitted
    assert templates["evaluate"]["metadata"]["annotations"]["aipc.dev/cache-key"]
    assert [p["name"] for p in workflow["spec"]["arguments"]["parameters"]] == ["lr"]
    (workflow,), _ = emit("argo", CHURN)
    assert "memoize" in {t["name"]: t for t in workflow["spec"]["templates"]}["evaluate"]


def test_a_tag_keys_the_cluster_cache_once_a_pipeline():
    for target in ("kubernetes", "argo"):
        (warning,) = emit(target, CHURN)[1]
        assert warning.code == codes.TAG_KEYED_CACHE.id
        assert CHURN[warning.span.start:warning.span.end] == '"ghcr.io/acme/trainer:2.1"'
    pinned = CHURN.replace("trainer:2.1", "trainer@sha256:" + "a" * 64)
    assert emit("kubernetes", pinned)[1] == ()


def test_a_stage_reading_a_volume_another_stage_writes_carries_no_key():
    text = '''\
volume v { size = 1Gi }
data writes { image = "i:1"  mount v at "/v" }
eval reads { image = "i:1"  after = [writes]  mount v at "/v" readonly }
eval forced { image = "i:1"  after = [writes]  mount v at "/v" readonly  cache = true }
eval alone { image = "i:1" }
'''
    keys = {name.removeprefix("test-"): key for name, key in cache_keys(text).items()}
    assert keys["reads"] is None and keys["writes"] is None
    assert keys["forced"] and keys["alone"]
