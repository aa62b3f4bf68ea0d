"""aipc compile --target argo: snapshots, the Workflow read back against the
program and the Kubernetes backend, a strict schema, and checkov."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from aipc.backends import argo, get_backend
from aipc.backends.writer import to_yaml
from aipc.compiler import ir
from tests.backends.argo_schema import workflow_errors
from tests.helpers import compile_ok
from tests.backends.clusters import (
    CLUSTER_EXAMPLES, EDGE_PROGRAM, ROOT, by_kind, compile_ir, emit, emit_yaml, example_ir, pod_spec,
    read_back, run_checkov, write_outputs,
)

PARAMETER = re.compile(r"\{\{workflow\.parameters\.([A-Za-z0-9_-]+)\}\}")

# Names chosen to collide with what the backend adds: a stage called `main`, one
# whose name is another's Service template, a served volume `models`.
COLLIDING_PROGRAM = '''
pipeline "clash" { namespace = "clash" }
volume models { size = 5Gi  access = rwx }
data main { image = "etl:1.0"  mount models at "/models" }
data api_service { image = "etl:1.0"  after = [main] }
data models_volume { image = "etl:1.0"  after = [main]  mount models at "/m" readonly }
serve api { image = "api:1.0"  after = [api_service]  port = 8080  health = "/ready"  mount models at "/models" readonly }
'''


def workflow_of(pipeline: ir.Pipeline, **options) -> dict:
    (document,) = read_back(emit_yaml("argo", pipeline, **options))
    return document


def example(stem: str, **params) -> dict:
    return workflow_of(example_ir(ROOT / "examples" / f"{stem}.aip", params))


def templates(workflow: dict) -> dict[str, dict]:
    return {template["name"]: template for template in workflow["spec"]["templates"]}


def dag_tasks(workflow: dict) -> dict[str, dict]:
    entry = templates(workflow)[workflow["spec"]["entrypoint"]]
    return {task["name"]: task for task in entry["dag"]["tasks"]}


def task(stage: ir.Stage) -> str:
    return ir.dns_label(stage.name)


def substitute(value, pipeline: ir.Pipeline):
    """Argo's part: `{{workflow.parameters.x}}` becomes the parameter's value."""
    texts = {param.name: param.text for param in pipeline.params}
    if isinstance(value, str):
        return PARAMETER.sub(lambda m: texts[m.group(1)], value)
    if isinstance(value, list):
        return [substitute(v, pipeline) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, pipeline) for k, v in value.items()}
    return value


def all_outputs() -> dict[str, str]:
    outputs = {path.stem: emit_yaml("argo", example_ir(path)) for path in CLUSTER_EXAMPLES}
    outputs["edge"] = emit_yaml("argo", compile_ir(EDGE_PROGRAM))
    outputs["clash"] = emit_yaml("argo", compile_ir(COLLIDING_PROGRAM), stable_name=True, service_account="runner")
    return outputs


# ------------------------------------------------------------------ snapshots


@pytest.mark.parametrize("path", CLUSTER_EXAMPLES, ids=lambda p: p.stem)
def test_example_snapshot(path, yaml_snapshot):
    assert emit_yaml("argo", example_ir(path)) == yaml_snapshot


def test_edge_program_snapshot(yaml_snapshot):
    assert emit_yaml("argo", compile_ir(EDGE_PROGRAM)) == yaml_snapshot


def test_mounted_host_volume_is_an_error():
    emitted = get_backend("argo").emit(example_ir(ROOT / "examples" / "laptop.aip"), argo.Options())
    assert emitted.documents == ()
    assert [d.code for d in emitted.diagnostics] == ["B001"] * 4
    assert all(d.is_error and "Argo Workflows" in d.message for d in emitted.diagnostics)


# --------------------------------------------------------------------- the DAG


def limited_groups(workflow: dict, pipeline: ir.Pipeline) -> dict[str, str]:
    """Each instance that runs in the DAG template of its matrix stage (under
    `max_parallel`), and that template's task in the entrypoint."""
    out = {}
    for template in templates(workflow).values():
        if "parallelism" in template:
            for inner in template["dag"]["tasks"]:
                out[inner["name"]] = template["name"]
    return out


@pytest.mark.parametrize("path", CLUSTER_EXAMPLES + [None], ids=lambda p: p.stem if p else "clash")
def test_dag_edges_are_the_programs_edges(path):
    """Each stage is a task of the entrypoint, or of the DAG template of its matrix
    stage when `max_parallel` limits its instances, which the entrypoint runs as one
    task standing for all of them."""
    pipeline = example_ir(path) if path else compile_ir(COLLIDING_PROGRAM)
    workflow = workflow_of(pipeline)
    tasks = dag_tasks(workflow)
    grouped = limited_groups(workflow, pipeline)

    def task_of(stage: ir.Stage) -> str:
        return grouped.get(task(stage), task(stage))

    stage_tasks = {task_of(stage) for stage in pipeline.stages}
    assert stage_tasks <= set(tasks)
    assert {task(stage) for stage in pipeline.stages} == {task(s) for s in pipeline.stages if task(s) in tasks} | set(grouped)
    extra = set(tasks) - stage_tasks
    policy = "network-policy"  # applied first: every other task waits for it
    assert policy in extra and "dependencies" not in tasks[policy]
    assert templates(workflow)[policy]["resource"]["manifest"].startswith(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n")
    for name in extra - {policy}:  # the others create a volume a serve stage mounts
        assert templates(workflow)[tasks[name]["template"]]["resource"]["manifest"].startswith(
            "apiVersion: v1\nkind: PersistentVolumeClaim\n")
        assert tasks[name]["dependencies"] == [policy]
    for name in stage_tasks:
        assert tasks[name]["dependencies"]  # the policy, an `after`, or a volume (which waits for the policy)
    edges = {(dependency, name) for name, t in tasks.items() if name in stage_tasks
             for dependency in t.get("dependencies", []) if dependency in stage_tasks}
    assert edges == {(task_of(pipeline.stage(after)), task_of(stage)) for stage in pipeline.stages
                     for after in stage.after}
    for name, t in tasks.items():
        assert t["template"] in templates(workflow)
        assert len(t.get("dependencies", [])) == len(set(t.get("dependencies", [])))


def test_exact_dependencies_when_no_volume_outlives_the_run():
    pipeline = example_ir(ROOT / "examples" / "vision-amd.aip")
    tasks = dag_tasks(workflow_of(pipeline))
    assert set(tasks) == {task(stage) for stage in pipeline.stages} | {"network-policy"}
    for stage in pipeline.stages:
        assert tasks[task(stage)]["dependencies"] == [task(pipeline.stage(a)) for a in stage.after] or [
            "network-policy"]


def test_a_served_volume_is_created_before_its_first_users_and_outlives_the_run():
    workflow = example("fraud-detection")
    tasks = dag_tasks(workflow)
    assert tasks["model"]["dependencies"] == ["featurize", "models-volume"]
    assert tasks["evaluate"]["dependencies"] == ["model"]  # waits for it through `model`
    claim = yaml.safe_load(templates(workflow)["models-volume"]["resource"]["manifest"])
    k8s_claim = by_kind(read_back(emit_yaml("k8s", example_ir(ROOT / "examples" / "fraud-detection.aip"))),
                        "PersistentVolumeClaim")["fraud-detection-models"]
    assert claim == k8s_claim
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "fraud-detection-models"}} in workflow["spec"]["volumes"]
    assert "models" not in {t["metadata"]["name"] for t in workflow["spec"]["volumeClaimTemplates"]}
    clash = dag_tasks(workflow_of(compile_ir(COLLIDING_PROGRAM)))
    assert clash["main"]["dependencies"] == ["models-volume-2"]  # the first user; later users wait through it
    assert clash["models-volume"]["dependencies"] == ["main"]


def test_names_the_backend_adds_never_collide_with_stages():
    workflow = workflow_of(compile_ir(COLLIDING_PROGRAM))
    names = [t["name"] for t in workflow["spec"]["templates"]]
    assert len(names) == len(set(names))
    assert workflow["spec"]["entrypoint"] == "main-2"
    assert "container" in templates(workflow)["api-service"]  # the stage keeps its name
    steps = templates(workflow)["api"]["steps"]
    assert [[s["template"] for s in group] for group in steps] == [
        ["api-deployment", "api-service-2", "api-network-policy"]]
    for name in names:
        assert re.fullmatch(r"[a-z0-9][-a-z0-9]*", name) and len(name) <= 128


# ------------------------------------------------- the same stage as Kubernetes


@pytest.mark.parametrize("path", CLUSTER_EXAMPLES, ids=lambda p: p.stem)
def test_batch_stages_run_as_the_kubernetes_jobs_do(path):
    pipeline = example_ir(path)
    workflow = workflow_of(pipeline)
    jobs = by_kind(read_back(emit_yaml("k8s", pipeline)), "Job")
    for stage in pipeline.stages:
        if not stage.is_batch or stage.nodes is not None:  # a group creates its Job: tests/backends/test_multinode.py
            continue
        template = templates(workflow)[task(stage)]
        job_pod = pod_spec(jobs[pipeline.object_name(stage.name)])
        job_container = job_pod["containers"][0]
        container = substitute(template["container"], pipeline)
        assert container == {**job_container, "name": "main"}
        assert container["resources"] == job_container["resources"]  # GPUs, cpu, memory, disk
        assert container["volumeMounts"] == job_container["volumeMounts"]  # volumes and /dev/shm
        assert template.get("tolerations") == job_pod.get("tolerations")
        assert template.get("nodeSelector") == job_pod.get("nodeSelector")
        scratch = [v for v in job_pod["volumes"] if "emptyDir" in v]
        assert template["volumes"] == scratch  # the writable /tmp and the sized /dev/shm
        assert workflow["spec"]["securityContext"] == job_pod["securityContext"]
        assert template["metadata"]["labels"] == jobs[pipeline.object_name(stage.name)]["metadata"]["labels"]
        for volume in job_pod["volumes"]:
            if "persistentVolumeClaim" in volume:
                declared = {v["name"]: v for v in workflow["spec"].get("volumes", [])}
                claim_templates = {t["metadata"]["name"]: t for t in workflow["spec"].get("volumeClaimTemplates", [])}
                assert volume["name"] in declared or volume["name"] in claim_templates
                if volume["name"] in declared:
                    assert declared[volume["name"]] == volume


def test_volume_claim_templates_are_the_kubernetes_claims():
    pipeline = example_ir(ROOT / "examples" / "llm-finetune.aip")
    claims = by_kind(read_back(emit_yaml("k8s", pipeline)), "PersistentVolumeClaim")
    workflow = workflow_of(pipeline)
    for claim_template in workflow["spec"]["volumeClaimTemplates"]:
        name = claim_template["metadata"]["name"]
        assert claim_template["spec"] == claims[f"llm-finetune-{name}"]["spec"]
    assert {t["metadata"]["name"] for t in workflow["spec"]["volumeClaimTemplates"]} == {"hf-cache", "datasets"}


@pytest.mark.parametrize("path", CLUSTER_EXAMPLES, ids=lambda p: p.stem)
def test_serve_stages_apply_the_kubernetes_deployment_and_service(path):
    pipeline = example_ir(path)
    workflow = workflow_of(pipeline)
    k8s_documents = read_back(emit_yaml("k8s", pipeline))
    for stage in pipeline.stages:
        if stage.is_batch:
            continue
        (group,) = templates(workflow)[task(stage)]["steps"]
        applied = {}
        for step in group:
            resource = templates(workflow)[step["template"]]["resource"]
            assert resource["action"] == "apply"
            manifest = yaml.safe_load(resource["manifest"])
            applied[manifest["kind"]] = (manifest, resource)
        deployment, resource = applied["Deployment"]
        expected = by_kind(k8s_documents, "Deployment")[pipeline.object_name(stage.name)]
        annotations = dict(expected["metadata"]["annotations"])
        del annotations["aipc.dev/depends-on"], annotations["aipc.dev/level"]
        assert substitute(deployment, pipeline) == {**expected, "metadata": {**expected["metadata"], "annotations": annotations}}
        n = stage.replicas - 1
        assert resource["successCondition"] == f"status.updatedReplicas > {n},status.availableReplicas > {n}"
        assert applied["Service"][0] == by_kind(k8s_documents, "Service")[pipeline.object_name(stage.name)]


def test_parameters_never_reach_serve_manifests_raw():
    """Argo pastes a parameter into a resource template's manifest text as it is:
    a serve stage's parameters are fixed when compiling, so the manifest is
    YAML aipc wrote, whatever value is given, and the parameter is not offered."""
    workflow = example("recommender")
    manifest = templates(workflow)["candidates-deployment"]["resource"]["manifest"]
    assert "{{" not in manifest and "value: '500'" in manifest
    assert "top_k" not in {p["name"] for p in workflow["spec"]["arguments"]["parameters"]}


HOSTILE_DEFAULT = "it's fine\"\n      hostNetwork: true\n      containers: [{name: x, image: evil}]"


@pytest.mark.parametrize("value", [None, HOSTILE_DEFAULT])
def test_a_crafted_parameter_value_stays_one_string_in_the_manifest(value):
    text = f'''param note: string = "it's fine"
data prep {{ image = "etl:1.0"  command = ["echo", "${{note}}"] }}
serve api {{ image = "api:1.0"  after = [prep]  port = 8080  env = {{ NOTE = "${{note}}" }} }}
'''
    pipeline = compile_ok(text, {"note": value} if value else None)
    emitted = emit("argo", pipeline)
    (workflow,) = read_back(emit_yaml("argo", pipeline))
    manifest = templates(workflow)["api-deployment"]["resource"]["manifest"]
    deployment = yaml.safe_load(manifest)
    pod = deployment["spec"]["template"]["spec"]
    assert "hostNetwork" not in pod and [c["name"] for c in pod["containers"]] == ["api"]
    assert {"name": "NOTE", "value": value or "it's fine"} in pod["containers"][0]["env"]
    # one value everywhere: the batch stage gets the same, and nothing is offered for submission
    assert templates(workflow)["prep"]["container"]["command"] == ["echo", value or "it's fine"]
    assert "arguments" not in workflow["spec"]
    (warning,) = emitted.diagnostics
    assert warning.code == "B101" and "serve stage `api`" in warning.message
    assert text[warning.span.start:warning.span.end] == '"${note}"' and warning.span.start > text.index("serve")


def test_a_parameter_in_a_number_is_fixed_everywhere_and_not_offered():
    """`argo submit -p gpus=4` would change the argv but not nvidia.com/gpu: such a
    parameter is fixed at its compiled value in every use, and a warning says where."""
    text = '''param gpus: int = 8
param epochs: int = 3
param unused: string = "x"
train t {
  image   = "trainer:1.0"
  command = ["torchrun", "--nproc-per-node", "${gpus}", "--epochs", "${epochs}"]
  resources { gpu = "${gpus}" }
}
'''
    pipeline = compile_ok(text, {"gpus": "4"})
    emitted = emit("argo", pipeline)
    (workflow,) = read_back(emit_yaml("argo", pipeline))
    container = templates(workflow)["t"]["container"]
    assert container["command"] == ["torchrun", "--nproc-per-node", "4", "--epochs", "{{workflow.parameters.epochs}}"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert workflow["spec"]["arguments"]["parameters"] == [{"name": "epochs", "value": "3"}]  # not gpus, not unused
    (warning,) = emitted.diagnostics
    assert warning.code == "B101" and "`gpus`" in warning.message and "`gpu` of stage `t`" in warning.message
    assert text[warning.span.start:warning.span.end] == "${gpus}"
    assert "argo submit -p gpus=" in warning.help


def test_every_place_a_parameter_is_fixed_is_shown():
    text = '''param where: string = "/data"
volume v { size = 1Gi }
data a { image = "e:1"  mount v at "${where}"  command = ["ls", "${where}"] }
serve b { image = "e:1"  port = 80  env = { W = "${where}" } }
'''
    (warning,) = emit("argo", compile_ok(text)).diagnostics
    assert "`mount` of stage `a`" in warning.message
    assert [text[label.span.start:label.span.end] for label in warning.related] == ['"${where}"']


# ------------------------------------------------------------------ the Workflow


def test_workflow_settings():
    workflow = example("fraud-detection")
    assert workflow["apiVersion"] == "argoproj.io/v1alpha1" and workflow["kind"] == "Workflow"
    assert workflow["metadata"]["generateName"] == "fraud-detection-" and "name" not in workflow["metadata"]
    assert workflow["metadata"]["namespace"] == "ml-prod"
    assert workflow["metadata"]["labels"]["team"] == "risk"
    assert workflow["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "aipc"
    assert workflow["metadata"]["annotations"] == {"workflows.argoproj.io/description": "Nightly retrain of the fraud model"}
    spec = workflow["spec"]
    assert spec["serviceAccountName"] == "fraud-detection-runner"  # batch steps: what the executor needs
    assert spec["podGC"] == {"strategy": "OnPodSuccess"}
    assert spec["ttlStrategy"] == {"secondsAfterCompletion": 86400}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ingest, model = templates(workflow)["ingest"], templates(workflow)["model"]
    assert ingest["activeDeadlineSeconds"] == 1800  # one attempt; and all of them:
    assert ingest["retryStrategy"] == {"limit": 2, "backoff": {"duration": "0s", "maxDuration": "1800s"}}
    assert "retryStrategy" not in model and model["activeDeadlineSeconds"] == 12 * 3600
    assert model["container"]["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert model["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in model["volumes"]
    assert ingest["container"]["envFrom"] == [{"secretRef": {"name": "s3"}}]


def test_a_timeout_bounds_the_whole_stage_with_its_retries():
    """`timeout` is the deadline of the whole stage (LANGUAGE.md); Argo's
    activeDeadlineSeconds is per attempt, so (retries + 1) x timeout without
    retryStrategy.backoff.maxDuration."""
    text = '''data a { image = "e:1"  retries = 3  timeout = 1h }
data b { image = "e:1"  timeout = 10m }
data c { image = "e:1"  retries = 2 }
'''
    by_name = templates(workflow_of(compile_ok(text)))
    assert by_name["a"]["retryStrategy"] == {"limit": 3, "backoff": {"duration": "0s", "maxDuration": "3600s"}}
    assert by_name["a"]["activeDeadlineSeconds"] == 3600
    assert "retryStrategy" not in by_name["b"] and by_name["b"]["activeDeadlineSeconds"] == 600
    assert by_name["c"]["retryStrategy"] == {"limit": 2} and "activeDeadlineSeconds" not in by_name["c"]


# --------------------------------------------------------- least privilege


RESOURCES = {"NetworkPolicy": ("networking.k8s.io", "networkpolicies"), "Deployment": ("apps", "deployments"),
             "Service": ("", "services"), "PersistentVolumeClaim": ("", "persistentvolumeclaims"),
             "Job": ("batch", "jobs"), "JobSet": ("jobset.x-k8s.io", "jobsets"),
             "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers")}


def allows(role: dict, group: str, resource: str, verb: str, name: str | None = None) -> bool:
    """What the Kubernetes RBAC authorizer decides for one request under ``role``
    (a rule matches its groups, resources and verbs, and names when it lists any)."""
    return any(group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
               and (not rule.get("resourceNames") or name in rule["resourceNames"]) for rule in role["rules"])


def rbac_output(pipeline: ir.Pipeline, **options) -> tuple[dict[tuple[str, str], dict], dict]:
    documents = read_back(emit_yaml("argo", pipeline, rbac=True, **options))
    assert documents[-1]["kind"] == "Workflow"
    return {(d["kind"], d["metadata"]["name"]): d for d in documents[:-1]}, documents[-1]


# Instances of a matrix of serve stages: each applies its own objects, as another serve stage would.
SERVE_MATRIX = """\
pipeline "grid" { image = "api:1.0" }
serve api { matrix = { port = [8080, 8081] }  port = "${matrix.port}" }
"""


@pytest.mark.parametrize("path", CLUSTER_EXAMPLES + [None, "matrix"],
                         ids=lambda p: p.stem if isinstance(p, Path) else p or "clash")
def test_batch_steps_may_do_only_what_the_executor_needs_and_apply_steps_only_their_objects(path):
    if isinstance(path, Path):
        pipeline = example_ir(path)
    else:
        pipeline = compile_ir(SERVE_MATRIX if path else COLLIDING_PROGRAM)
    rbac, workflow = rbac_output(pipeline)
    runner, deployer = f"{pipeline.dns_name}-runner", f"{pipeline.dns_name}-deployer"
    assert sorted(rbac) == sorted((kind, name) for name in (runner, deployer)
                                  for kind in ("ServiceAccount", "Role", "RoleBinding"))
    for name in (runner, deployer):
        binding = rbac[("RoleBinding", name)]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
        assert [s["name"] for s in binding["subjects"]] == [name]
    executor = {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}
    assert rbac[("Role", runner)]["rules"] == [executor]  # and nothing else: no Deployments, no pods
    assert workflow["spec"]["serviceAccountName"] == runner
    role = rbac[("Role", deployer)]
    assert allows(role, "argoproj.io", "workflowtaskresults", "create")
    applied = set()
    for template in workflow["spec"]["templates"]:
        if "container" in template:
            assert "serviceAccountName" not in template  # batch steps: the workflow's, the runner
        if "resource" not in template:
            continue
        assert template["serviceAccountName"] == deployer
        manifest = yaml.safe_load(template["resource"]["manifest"])
        group, resource = RESOURCES[manifest["kind"]]
        name = manifest["metadata"]["name"]
        if template["resource"]["action"] == "create":
            # a multi-node stage's Service and Job, named after the run: created, then read by the
            # success condition, whatever the run's name (tests/backends/test_multinode.py)
            assert name.startswith("{{workflow.name}}-")
            for verb in ("get", "create"):
                assert allows(role, group, resource, verb, name.replace("{{workflow.name}}", "any-run")), verb
            assert not allows(role, group, resource, "patch", name) and not allows(role, group, resource, "delete", name)
            continue
        applied.add((group, resource, name))
        # kubectl apply reads the object, then creates or patches it; the success condition reads it
        for verb in ("get", "create", "patch"):
            assert allows(role, group, resource, verb, name), (verb, resource, name)
    # nothing but those objects: not another Deployment, not a Secret, no deletes
    for group, resource, name in applied:
        assert not allows(role, group, resource, "get", name + "-other")
        assert not allows(role, group, resource, "delete", name)
    assert not any(allows(role, "", "secrets", verb, "x") for verb in ("get", "list", "create"))
    assert not allows(role, "", "pods", "create") and not allows(role, "apps", "deployments", "list")


def test_rbac_names_follow_the_options_and_stay_out_without_the_flag():
    pipeline = compile_ir(EDGE_PROGRAM)
    assert [d["kind"] for d in read_back(emit_yaml("argo", pipeline))] == ["Workflow"]
    rbac, workflow = rbac_output(pipeline, service_account="steps", deploy_service_account="apply")
    assert {name for _, name in rbac} == {"steps", "apply"}
    assert workflow["spec"]["serviceAccountName"] == "steps"
    assert {t["serviceAccountName"] for t in workflow["spec"]["templates"] if "resource" in t} == {"apply"}
    # no namespace in the program: the objects, and the binding's subject, are in the one they are applied to
    assert all("namespace" not in d["metadata"] for d in rbac.values())
    assert rbac[("RoleBinding", "steps")]["subjects"] == [{"kind": "ServiceAccount", "name": "steps"}]


@pytest.mark.parametrize("version", ["1.28.0", kubernetes_validate.latest_version()])
def test_rbac_output_validates_strictly(version):
    for pipeline in [example_ir(path) for path in CLUSTER_EXAMPLES] + [compile_ir(EDGE_PROGRAM)]:
        rbac, _ = rbac_output(pipeline)
        for document in rbac.values():
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{pipeline.name}: {document['kind']} {document['metadata']['name']}: {error.message}")


def test_checkov_rbac_output(tmp_path):
    outputs = {path.stem: emit_yaml("argo", example_ir(path), rbac=True) for path in CLUSTER_EXAMPLES}
    rbac_only = {name: to_yaml([d for d in read_back(text) if d["kind"] != "Workflow"])
                 for name, text in outputs.items()}
    results = run_checkov(write_outputs(tmp_path / "rbac", rbac_only), "kubernetes")
    assert set(results) == {f"{name}.yaml" for name in outputs}
    for name, result in results.items():
        failed = {check for check, _ in result["failed_checks"]}
        if example_ir(ROOT / "examples" / name.replace(".yaml", ".aip")).namespace is None:
            failed.discard("CKV_K8S_21")  # names no namespace: the default namespace, as on Kubernetes
        assert not failed, name
        assert {check for check, _ in result["passed_checks"]} >= {"CKV_K8S_157", "CKV_K8S_158"}, name


def test_network_policies_are_applied_before_any_pod_and_with_each_serve_stage():
    pipeline = example_ir(ROOT / "examples" / "recommender.aip")
    workflow = workflow_of(pipeline)
    k8s_policies = by_kind(read_back(emit_yaml("k8s", pipeline)), "NetworkPolicy")
    first = yaml.safe_load(templates(workflow)["network-policy"]["resource"]["manifest"])
    assert first == k8s_policies["recommender"]
    for stage in ("candidates", "ranker"):
        (group,) = templates(workflow)[stage]["steps"]
        (policy,) = [step for step in group if step["name"] == "network-policy"]
        applied = yaml.safe_load(templates(workflow)[policy["template"]]["resource"]["manifest"])
        assert applied == k8s_policies[f"recommender-{stage}"]


def test_stable_name_service_account_and_no_namespace():
    pipeline = compile_ir(EDGE_PROGRAM)
    workflow = workflow_of(pipeline, stable_name=True, service_account="pipelines")
    assert workflow["metadata"]["name"] == "edge" and "generateName" not in workflow["metadata"]
    assert "namespace" not in workflow["metadata"]
    assert workflow["spec"]["serviceAccountName"] == "pipelines"
    assert workflow["spec"]["volumes"] == [{"name": "lake", "persistentVolumeClaim": {"claimName": "shared-lake"}}]
    prepare = templates(workflow)["prepare"]
    assert prepare["container"]["resources"]["limits"]["gpu.intel.com/i915"] == 2
    assert "volumes" not in prepare  # /tmp is the user's `tmp` volume
    assert workflow["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "tmp"


def test_parameters_are_workflow_arguments_and_references():
    workflow = example("fraud-detection")
    parameters = workflow["spec"]["arguments"]["parameters"]
    assert parameters == [
        {"name": "epochs", "value": "10"},
        {"name": "lr", "value": "3e-4"},
        {"name": "run_date", "value": "2024-12-22"},
        {"name": "use_amp", "value": "true", "enum": ["true", "false"]},
    ]
    model = templates(workflow)["model"]["container"]["command"]
    assert model == ["python", "train.py", "--epochs", "{{workflow.parameters.epochs}}",
                     "--lr", "{{workflow.parameters.lr}}", "--amp={{workflow.parameters.use_amp}}"]
    overridden = example("fraud-detection", epochs="20")
    assert overridden["spec"]["arguments"]["parameters"][0] == {"name": "epochs", "value": "20"}
    assert templates(overridden)["model"]["container"]["command"][3] == "{{workflow.parameters.epochs}}"
    tokenize = templates(example("llm-finetune"))["tokenize"]["container"]["args"][0]
    assert '--model "{{workflow.parameters.base_model}}"' in tokenize
    assert "--max-seq-len 4096" in tokenize  # the serve stage uses it too: fixed, in every stage
    edge = templates(workflow_of(compile_ir(EDGE_PROGRAM)))["prepare"]["container"]
    assert {"name": "SHARDS", "value": "{{workflow.parameters.shards}}"} in edge["env"]


def test_every_parameter_reference_is_declared():
    for name, text in all_outputs().items():
        (workflow,) = read_back(text)
        declared = {p["name"] for p in workflow["spec"].get("arguments", {}).get("parameters", [])}
        assert set(PARAMETER.findall(text)) <= declared, name


def test_size_warning_over_one_mebibyte():
    script = "\\n".join(f"echo line {i} {'x' * 100}" for i in range(11000))
    pipeline = compile_ir(f'data big {{ image = "busybox:1.36"  script = "{script}" }}\n')
    emitted = emit("argo", pipeline)
    assert [d.code for d in emitted.diagnostics] == ["B103"]
    assert not emitted.diagnostics[0].is_error and emitted.documents
    assert "B103" not in {d.code for d in emit("argo", example_ir(ROOT / "examples" / "llm-finetune.aip")).diagnostics}


def test_cli_target_and_flags(tmp_path):
    from aipc.cli import main

    assert main(["compile", str(ROOT / "examples" / "vision-amd.aip"), "--target", "argo", "--stable-name",
                 "--service-account", "vision-runner", "-o", f"{tmp_path}{os.sep}"]) == 0
    (workflow,) = read_back((tmp_path / "vision-amd.argo.yaml").read_text())
    assert workflow["metadata"]["name"] == "vision-amd"
    assert workflow["spec"]["serviceAccountName"] == "vision-runner"


def test_output_is_deterministic_across_hash_seeds():
    script = (
        "import sys\n"
        "from aipc.cli import main\n"
        "for path in sys.argv[1:]:\n"
        "    main(['compile', path, '--target', 'argo'])\n"
    )
    outputs = set()
    for seed in ("0", "7", "31337"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", script, *map(str, CLUSTER_EXAMPLES)],
                                capture_output=True, env=env, check=True)
        outputs.add(result.stdout)
    assert len(outputs) == 1
    assert outputs.pop().count(b"kind: Workflow\n") == len(CLUSTER_EXAMPLES)


# ----------------------------------------------------------- external checkers


def test_strict_workflow_schema():
    for name, text in all_outputs().items():
        (workflow,) = read_back(text)
        assert workflow_errors(workflow) == [], name


def test_schema_is_strict():
    (workflow,) = read_back(all_outputs()["fraud-detection"])
    templates(workflow)["ingest"]["container"]["imagePullPolcy"] = "Always"
    templates(workflow)["model"]["retryStrategy"] = {"limits": 1}
    errors = workflow_errors(workflow)
    assert any("imagePullPolcy" in error for error in errors)
    assert any("limits" in error for error in errors)


@pytest.mark.parametrize("version", ["1.28.0", kubernetes_validate.latest_version()])
def test_applied_manifests_validate_strictly(version):
    for name, text in all_outputs().items():
        (workflow,) = read_back(text)
        for template in workflow["spec"]["templates"]:
            if "resource" in template:
                manifest = yaml.safe_load(template["resource"]["manifest"])
                try:
                    kubernetes_validate.validate(manifest, version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    pytest.fail(f"{name}: {template['name']}: {error.message}")


def test_checkov_argo_workflows(tmp_path):
    outputs = all_outputs()
    results = run_checkov(write_outputs(tmp_path / "argo", outputs), "argo_workflows")
    assert set(results) == {f"{name}.yaml" for name in outputs}
    for name in outputs:
        result = results[f"{name}.yaml"]
        assert result["failed_checks"] == [], name
        assert {check for check, _ in result["passed_checks"]} >= {"CKV_ARGO_1", "CKV_ARGO_2"}


def test_double_braces_are_reported_where_argo_would_evaluate_them():
    text = 'data a {\n  image = "e:1"\n  command = ["echo", "{{workflow.name}}"]\n}\n'
    emitted = get_backend("argo").emit(compile_ir(text), argo.Options())
    (warning,) = emitted.diagnostics
    assert warning.code == "B101" and not warning.is_error
    assert text[warning.span.start:warning.span.end].startswith("command = ")
