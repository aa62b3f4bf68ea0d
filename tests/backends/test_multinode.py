"""`nodes = N` on every target (issue 16): the group, its names and its variables."""

from __future__ import annotations

import kubernetes_validate
import pytest

from aipc.backends import kubernetes as k8s

from aipc.compiler import ir
from tests.backends.clusters import by_kind, compile_ir, emit, emit_yaml, pod_spec, read_back
from tests.backends.jobset_schema import jobset_errors
from tests.compiler.test_nodes import CONTRACT

MASTER = "pretrain-pretrain-0.pretrain-pretrain"  # `<job>-0.<service>`: the pipeline is named after the file
INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
VARIABLES = {"MASTER_ADDR": MASTER, "MASTER_PORT": "29500", "NNODES": "4", "NPROC_PER_NODE": "8",
             "WORLD_SIZE": "32", "PET_MASTER_ADDR": MASTER, "PET_MASTER_PORT": "29500", "PET_NNODES": "4",
             "PET_NPROC_PER_NODE": "8"}


def contract(**params) -> ir.Pipeline:
    return compile_ir(CONTRACT, params, path="pretrain.aip")


def kubernetes(**options) -> list[dict]:
    return read_back(emit_yaml("k8s", contract(), **options))


def env_of(pod: dict) -> dict:
    (container,) = pod["containers"]
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def assert_contract(env: dict, master: str = MASTER) -> None:
    """Every variable of the contract: the fixed ones by value, the rank from the completion index."""
    expected = {**VARIABLES, "MASTER_ADDR": master, "PET_MASTER_ADDR": master}
    assert {name: env[name] for name in expected} == expected
    for name in ("NODE_RANK", "PET_NODE_RANK"):
        assert env[name] == {"fieldRef": {"fieldPath": INDEX_FIELD}}
    assert set(ir.NODE_VARIABLES) <= set(env)


# ------------------------------------------------------------------ Kubernetes


def test_kubernetes_an_indexed_job_of_n_pods_named_by_a_headless_service():
    documents = kubernetes()
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("NetworkPolicy", "pretrain"), ("Service", "pretrain-pretrain"),
        ("NetworkPolicy", "pretrain-pretrain"), ("Job", "pretrain-pretrain")]
    job = by_kind(documents, "Job")["pretrain-pretrain"]
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 4, 4)
    assert spec["backoffLimit"] == 2  # settled: per pod
    assert pod_spec(job)["subdomain"] == "pretrain-pretrain"
    assert pod_spec(job)["restartPolicy"] == "Never"
    service = by_kind(documents, "Service")["pretrain-pretrain"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    # the Service selects exactly the Job's pods
    assert service["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert_contract(env_of(pod_spec(job)))


def test_kubernetes_the_nodes_reach_each_other_on_every_port():
    documents = kubernetes()
    policy = by_kind(documents, "NetworkPolicy")["pretrain-pretrain"]
    job = by_kind(documents, "Job")["pretrain-pretrain"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= job["spec"]["template"]["metadata"]["labels"].items()
    (rule,) = policy["spec"]["ingress"]
    assert rule == {"from": [{"podSelector": {"matchLabels": selector}}]}  # no `ports`: every port


def test_kubernetes_a_stage_without_nodes_stays_a_plain_job():
    documents = read_back(emit_yaml("k8s", compile_ir('train t { image = "t:1" }')))
    assert [d["kind"] for d in documents] == ["NetworkPolicy", "Job"]
    (job,) = by_kind(documents, "Job").values()
    assert "completionMode" not in job["spec"] and "subdomain" not in pod_spec(job)
    assert not set(env_of(pod_spec(job))) & set(ir.NODE_VARIABLES)


def test_kubernetes_a_parameter_sets_the_number_of_nodes():
    text = 'param n: int = 2\ntrain t { image = "t:1"  nodes = "${n}" }'
    (job,) = by_kind(read_back(emit_yaml("k8s", compile_ir(text, {"n": "6"}))), "Job").values()
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 6
    assert env_of(pod_spec(job))["NNODES"] == "6" and env_of(pod_spec(job))["WORLD_SIZE"] == "6"


@pytest.mark.parametrize("version", ["1.28.0", kubernetes_validate.latest_version()])
@pytest.mark.parametrize("form", ["job", "jobset"])
def test_kubernetes_validate_strict_on_every_form(version, form):
    for document in kubernetes(multinode=form):
        if document["kind"] == "JobSet":
            continue  # a CRD: checked against the JobSet schema below
        kubernetes_validate.validate(document, version, strict=True)


# ------------------------------------------------------------------ JobSet


def test_jobset_one_group_restarted_whole_valid_against_the_jobset_api():
    documents = kubernetes(multinode="jobset")
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("NetworkPolicy", "pretrain"), ("NetworkPolicy", "pretrain-pretrain"), ("JobSet", "pretrain-pretrain")]
    jobset = by_kind(documents, "JobSet")["pretrain-pretrain"]
    assert jobset_errors(jobset) == []
    spec = jobset["spec"]
    assert spec["failurePolicy"] == {"maxRestarts": 2}  # retries: restarts of the whole group
    assert spec["network"] == {"enableDNSHostnames": True, "publishNotReadyAddresses": True,
                               "subdomain": "pretrain-pretrain"}
    (replicated,) = spec["replicatedJobs"]
    assert replicated["replicas"] == 1
    job = replicated["template"]["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"]) == ("Indexed", 4, 4)
    assert job["backoffLimit"] == 0 and job["template"]["spec"]["restartPolicy"] == "Never"
    assert "subdomain" not in job["template"]["spec"]  # the JobSet sets it
    # node 0 is `<jobset>-<replicatedJob>-<jobIndex>-<podIndex>.<subdomain>`
    assert_contract(env_of(job["template"]["spec"]), master="pretrain-pretrain-node-0-0.pretrain-pretrain")


def test_jobset_dependants_wait_for_the_jobset():
    text = CONTRACT + 'eval score { image = "t:1"  after = [pretrain] }\n'
    documents = read_back(emit_yaml("k8s", compile_ir(text, path="pretrain.aip"), multinode="jobset"))
    score = by_kind(documents, "Job")["pretrain-score"]
    assert score["metadata"]["annotations"]["aipc.dev/depends-on"] == "JobSet/pretrain-pretrain"
    documents = read_back(emit_yaml("k8s", compile_ir(text, path="pretrain.aip")))
    score = by_kind(documents, "Job")["pretrain-score"]
    assert score["metadata"]["annotations"]["aipc.dev/depends-on"] == "Job/pretrain-pretrain"


def test_jobset_leaves_stages_without_nodes_as_jobs():
    documents = read_back(emit_yaml("k8s", compile_ir('train t { image = "t:1" }'), multinode="jobset"))
    assert [d["kind"] for d in documents] == ["NetworkPolicy", "Job"]


@pytest.mark.parametrize("form, longest", [("job", 55), ("jobset", 42)])
def test_kubernetes_the_last_nodes_hostname_fits_a_dns_label(form, longest):
    """`<pipeline>-t-99999` for an Indexed Job, `<pipeline>-t-node-0-99999-xxxxx` for a JobSet."""
    def program(length: int) -> ir.Pipeline:
        return compile_ir(f'pipeline {"p" * length} {{}}\ntrain t {{ image = "t:1"  nodes = 100000 }}')

    emit("k8s", program(longest), multinode=form)
    emitted = k8s.emit(program(longest + 1), k8s.Options(multinode=form))
    assert [d.code for d in emitted.diagnostics] == ["E110"] and not emitted.documents


# ------------------------------------------------------------------ Argo


def argo_templates(pipeline: ir.Pipeline, **options) -> dict[str, dict]:
    (workflow,) = emit("argo", pipeline, **options).documents
    return {template["name"]: template for template in workflow["spec"]["templates"]}


def manifest(template: dict, run: str = "run-1") -> dict:
    """A resource template's object as Argo creates it in the run ``run``."""
    (document,) = read_back(template["resource"]["manifest"].replace("{{workflow.name}}", run))
    return document


def test_argo_creates_the_service_then_the_indexed_job_and_ends_with_the_job():
    pipeline = contract()
    templates = argo_templates(pipeline)
    assert templates["pretrain"]["steps"] == [[{"name": "network-policy", "template": "pretrain-network-policy"},
                                               {"name": "service", "template": "pretrain-service"}],
                                              [{"name": "job", "template": "pretrain-job"}]]
    # the Workflow's own policy denies ingress: the group's pods are admitted to each other
    policy = manifest(templates["pretrain-network-policy"])
    assert policy["spec"]["ingress"] == [{"from": [{"podSelector": policy["spec"]["podSelector"]}]}]
    job_template, service_template = templates["pretrain-job"], templates["pretrain-service"]
    assert job_template["serviceAccountName"] == service_template["serviceAccountName"] == "pretrain-deployer"
    resource = job_template["resource"]
    assert (resource["action"], resource["setOwnerReference"]) == ("create", True)
    # label-selector expressions Argo evaluates on the Job's status: all 4 pods, or more failures than backoffLimit
    assert resource["successCondition"] == "status.succeeded > 3"
    assert resource["failureCondition"] == "status.failed > 2"
    job, service = manifest(job_template), manifest(service_template)
    assert job["metadata"]["name"] == service["metadata"]["name"] == "run-1-pretrain"  # per run
    assert pod_spec(job)["subdomain"] == "run-1-pretrain"
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == (
        "Indexed", 4, 4)
    assert_contract(env_of(pod_spec(job)), master="run-1-pretrain-0.run-1-pretrain")
    # otherwise the Kubernetes backend's Job
    (kubernetes_job,) = by_kind(kubernetes(), "Job").values()
    assert pod_spec(job)["containers"][0]["resources"] == pod_spec(kubernetes_job)["containers"][0]["resources"]
    for version in ("1.28.0", kubernetes_validate.latest_version()):
        kubernetes_validate.validate(job, version, strict=True)
        kubernetes_validate.validate(service, version, strict=True)


def test_argo_a_timeout_bounds_the_resource_template_and_volumes_are_claims_of_their_own():
    text = ('volume data { size = 1Gi  access = rwx }\n'
            'train t { image = "t:1"  nodes = 2  timeout = 1h  mount data at "/data" }\n')
    pipeline = compile_ir(text, path="p.aip")
    templates = argo_templates(pipeline)
    assert templates["t-job"]["timeout"] == "3600s"
    job = manifest(templates["t-job"])
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "p-data"}} in pod_spec(job)["volumes"]
    assert manifest(templates["data-volume"])["kind"] == "PersistentVolumeClaim"  # created before the group
    (workflow,) = emit("argo", pipeline).documents
    (main,) = [t for t in workflow["spec"]["templates"] if t["name"] == "main"]
    assert {"name": "t", "template": "t", "dependencies": ["data-volume"]} in main["dag"]["tasks"]


# ------------------------------------------------------------------ docker-compose


def test_compose_n_services_each_with_its_rank_and_node_0s_name():
    pipeline = compile_ir(CONTRACT + 'eval score { image = "t:1"  after = [pretrain] }\n', path="pretrain.aip")
    emitted = emit("compose", pipeline)
    (document,) = emitted.documents
    services = document["services"]
    nodes = [f"pretrain-node-{rank}" for rank in range(4)]
    assert list(services) == [*nodes, "score"]
    for rank, name in enumerate(nodes):
        service = services[name]
        env = dict(item.split("=", 1) for item in service["environment"])
        assert {key: env[key] for key in VARIABLES} == VARIABLES
        assert env["NODE_RANK"] == env["PET_NODE_RANK"] == str(rank)
        # reached by the name node `rank` has on Kubernetes; node 0's is MASTER_ADDR
        assert service["networks"]["default"]["aliases"] == [f"pretrain-pretrain-{rank}.pretrain-pretrain"]
        assert service["hostname"] == f"pretrain-pretrain-{rank}"
        assert service["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 8
    # a dependant starts once every node completed successfully
    assert services["score"]["depends_on"] == {name: {"condition": "service_completed_successfully"}
                                               for name in nodes}
    (warning,) = [d for d in emitted.diagnostics if d.code == "B120"]
    assert "4 nodes of `pretrain`" in warning.message and "one host" in warning.message


def test_compose_one_timeout_warning_for_the_whole_group():
    emitted = emit("compose", compile_ir('train t { image = "t:1"  nodes = 3  timeout = 1h }'))
    assert sorted(d.code for d in emitted.diagnostics) == ["B101", "B120"]


def test_a_matrix_of_groups_is_a_group_per_instance_warned_about_once():
    text = ('train model { image = "t:1"  matrix { lr = [1, 2] }  nodes = 2 }\n'
            'eval score { image = "t:1"  matrix = model  after = [model] }\n')
    pipeline = compile_ir(text, path="p.aip")
    emitted = emit("compose", pipeline)
    assert [d.code for d in emitted.diagnostics] == ["B120"]
    assert "`model` (each instance)" in emitted.diagnostics[0].message
    services = emitted.documents[0]["services"]
    assert list(services["score-2"]["depends_on"]) == ["model-2-node-0", "model-2-node-1"]
    jobs = by_kind(read_back(emit_yaml("k8s", pipeline)), "Job")
    assert jobs["p-model-1"]["spec"]["completions"] == 2 and "completions" not in jobs["p-score-1"]["spec"]
    assert env_of(pod_spec(jobs["p-model-2"]))["MASTER_ADDR"] == "p-model-2-0.p-model-2"


def test_argo_with_jobset_creates_the_jobset_and_ends_with_its_terminal_state():
    templates = argo_templates(contract(), kubernetes=k8s.Options(multinode="jobset"))
    assert templates["pretrain"]["steps"] == [[{"name": "network-policy", "template": "pretrain-network-policy"}],
                                              [{"name": "jobset", "template": "pretrain-jobset"}]]
    resource = templates["pretrain-jobset"]["resource"]
    assert (resource["action"], resource["setOwnerReference"]) == ("create", True)
    assert resource["successCondition"] == "status.terminalState == Completed"
    assert resource["failureCondition"] == "status.terminalState == Failed"
    jobset = manifest(templates["pretrain-jobset"])
    assert jobset_errors(jobset) == []
    assert jobset["metadata"]["name"] == jobset["spec"]["network"]["subdomain"] == "run-1-pretrain"
    assert "aipc.dev/depends-on" not in jobset["metadata"]["annotations"]
    job = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]
    assert_contract(env_of(job["template"]["spec"]), master="run-1-pretrain-node-0-0.run-1-pretrain")
    assert "pretrain-service" not in templates  # the JobSet makes its own
    from tests.backends.argo_schema import workflow_errors

    for form in ("job", "jobset"):
        (workflow,) = emit("argo", contract(), kubernetes=k8s.Options(multinode=form)).documents
        assert workflow_errors(workflow) == [], form


def test_the_multinode_option_reaches_argo_from_the_command_line(tmp_path):
    from aipc import cli

    source = tmp_path / "p.aip"
    source.write_text(CONTRACT)
    assert cli.main(["compile", str(source), "-t", "argo", "--multinode", "jobset", "-o", str(tmp_path / "w.yaml")]) == 0
    assert "kind: JobSet" in (tmp_path / "w.yaml").read_text()


@pytest.mark.parametrize("form, created", [("job", [("", "services"), ("batch", "jobs")]),
                                           ("jobset", [("jobset.x-k8s.io", "jobsets")])])
def test_argo_the_deployer_may_create_and_get_what_a_group_creates(form, created):
    (workflow, *rbac) = emit("argo", contract(), rbac=True, kubernetes=k8s.Options(multinode=form)).documents
    (role,) = [d for d in rbac if d["kind"] == "Role" and d["metadata"]["name"] == "pretrain-deployer"]
    for group, resource in created:  # named after the run: no resourceNames
        assert {"apiGroups": [group], "resources": [resource], "verbs": ["create", "get"]} in role["rules"]
    assert {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
            "resourceNames": ["pretrain", "pretrain-pretrain"], "verbs": ["get", "patch"]} in role["rules"]


def test_argo_a_parameter_of_a_group_is_compiled_in_as_a_serve_stages_is():
    text = 'param epochs: string = "3"\ntrain t { image = "t:1"  nodes = 2  command = ["run", "${epochs}"] }\n'
    emitted = emit("argo", compile_ir(text, path="p.aip"))
    (workflow,) = emitted.documents
    assert "arguments" not in workflow["spec"]
    job = manifest({t["name"]: t for t in workflow["spec"]["templates"]}["t-job"])
    assert pod_spec(job)["containers"][0]["command"] == ["run", "3"]
    (warning,) = [d for d in emitted.diagnostics if d.code == "B101"]
    assert "multi-node stage `t` uses it" in warning.message


def test_compose_with_gpus_gives_each_node_devices_of_its_own():
    pipeline = compile_ir('train t { image = "t:1"  nodes = 2  resources { gpu = 2 } }\n'
                          'train u { image = "t:1"  after = [t]  resources { gpu = 4 } }\n', path="p.aip")
    emitted = emit("compose", pipeline, gpus=4)
    services = emitted.documents[0]["services"]
    ids = [services[f"t-node-{rank}"]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
           for rank in range(2)]
    assert sorted(ids[0] + ids[1]) == ["0", "1", "2", "3"] and len(ids[0]) == 2
    assert not [d for d in emitted.diagnostics if d.code == "B101"]  # not shared, unlike a service's replicas
    # a group needs all of its nodes' GPUs at once
    (diagnostic,) = [d for d in emit_raw("compose", pipeline, gpus=3).diagnostics if d.is_error]
    assert diagnostic.code == "B150" and "needs 4 GPUs" in diagnostic.message


def emit_raw(target: str, pipeline: ir.Pipeline, **options):
    backend = __import__("aipc.backends", fromlist=["get_backend"]).get_backend(target)
    return backend.emit(pipeline, backend.Options(**options))


def test_kueue_admits_the_indexed_job_or_the_jobset_by_the_queue_label_on_it():
    text = CONTRACT.replace("  retries = 2", '  retries = 2\n  schedule { queue = "team-a" }')
    pipeline = compile_ir(text, path="pretrain.aip")
    (job,) = by_kind(read_back(emit_yaml("k8s", pipeline)), "Job").values()
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    (jobset,) = by_kind(read_back(emit_yaml("k8s", pipeline, multinode="jobset")), "JobSet").values()
    assert jobset["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert jobset_errors(jobset) == []
    inner = jobset["spec"]["replicatedJobs"][0]["template"]
    assert "kueue.x-k8s.io/queue-name" not in inner["metadata"]["labels"]  # Kueue admits the JobSet whole
    assert "kueue.x-k8s.io/queue-name" not in inner["spec"]["template"]["metadata"]["labels"]
