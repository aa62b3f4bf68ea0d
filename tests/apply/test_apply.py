"""aipc apply through the official kubernetes client, against a request-recording
stub API server on 127.0.0.1 (see stub_api.py): server-side apply requests, the
Job watch, dependency order, failures, --dry-run, --wait and the error paths."""

from __future__ import annotations

import pytest

from aipc import cli
from aipc.backends.kubernetes import emit
from tests.apply.stub_api import StubCluster, StubServer, kubeconfig
from tests.helpers import EXAMPLES, compile_example, compile_ok, free_port

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def example(stem: str):
    return next(p for p in EXAMPLES if p.stem == stem)


@pytest.fixture
def stub(tmp_path, monkeypatch):
    """Start a stub API server: ``stub(fail_jobs=..., ...)`` -> StubServer."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    servers: list[StubServer] = []

    def start(**options) -> StubServer:
        directory = tmp_path / f"stub{len(servers)}"
        directory.mkdir()
        server = StubServer(StubCluster(**options), directory).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def apply(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["apply", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def expected_documents(path, namespace: str | None = None) -> list[dict]:
    documents = [dict(d) for d in emit(compile_example(path)).documents]
    for document in documents:
        if namespace:
            document["metadata"] = {**document["metadata"], "namespace": namespace}
    return documents


def object_path(document: dict) -> str:
    group_version = document["apiVersion"]
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    plural = {"NetworkPolicy": "networkpolicies", "PersistentVolumeClaim": "persistentvolumeclaims",
              "Service": "services", "Job": "jobs", "Deployment": "deployments",
              "HorizontalPodAutoscaler": "horizontalpodautoscalers"}[document["kind"]]
    return f"{prefix}/namespaces/{document['metadata']['namespace']}/{plural}/{document['metadata']['name']}"


def patch_index(cluster: StubCluster, name: str, kind: str) -> int:
    (request,) = [r for r in cluster.patches if r.path.endswith(f"/{kind}/{name}")]
    return request.seq


def met_at(cluster: StubCluster, kind: str, name: str) -> int:
    """When the stub's controller completed a Job or made a Deployment available."""
    states = {"Job": "complete", "Deployment": "available"}
    (transition,) = [t for t in cluster.transitions(states[kind]) if t.kind == kind and t.name == name]
    return transition.seq


def assert_dependency_order(cluster: StubCluster, path) -> None:
    """Each Job and Deployment was applied after every dependency was met (Jobs
    completed, Deployments available), and each dependency was applied before."""
    pipeline = compile_example(path)
    for stage in pipeline.stages:
        kind = "Job" if stage.is_batch else "Deployment"
        applied = patch_index(cluster, pipeline.object_name(stage.name), f"{kind.lower()}s")
        for name in stage.after:
            dependency = pipeline.stage(name)
            dependency_kind = "Job" if dependency.is_batch else "Deployment"
            object_name = pipeline.object_name(name)
            assert patch_index(cluster, object_name, f"{dependency_kind.lower()}s") \
                < met_at(cluster, dependency_kind, object_name) < applied, (stage.name, name)


# ------------------------------------------------------------------ applying


@pytest.mark.parametrize("stem", ["recommender", "fraud-detection", "llm-finetune", "vision-amd", "gpu-cluster"])
def test_apply_creates_jobs_as_their_dependencies_complete(stem, stub, capsys):
    server = stub()
    path = example(stem)
    code, out, err = apply(capsys, str(path), "--kubeconfig", str(server.kubeconfig))
    assert code == 0, err
    cluster = server.cluster
    documents = expected_documents(path)
    patches = cluster.patches
    # every object the k8s backend emits, applied once, with its body as emitted
    assert sorted(r.path for r in patches) == sorted(object_path(d) for d in documents)
    bodies = {r.path: r.body for r in patches}
    for document in documents:
        assert bodies[object_path(document)] == document
    # server-side apply, as the client serialised it
    for request in patches:
        assert request.headers["content-type"] == "application/apply-patch+yaml"
        assert request.param("fieldManager") == "aipc"
        assert request.param("force") == "true"
        assert request.param("dryRun") is None
        assert request.headers["authorization"] == "Bearer stub-token"
    # objects that run no stage first, in the backend's order
    others = [object_path(d) for d in documents if d["kind"] not in ("Job", "Deployment")]
    assert [r.path for r in patches[:len(others)]] == others
    assert_dependency_order(cluster, path)
    # the Jobs were watched, not polled: a list of the completed ones (when a Job has a cache
    # key), one to start watching, then watch requests from its version
    job_gets = [r for r in cluster.requests if r.method == "GET" and r.path.endswith("/jobs")]
    assert job_gets[0].param("watch") is None and job_gets[0].param("labelSelector") == \
        f"app.kubernetes.io/part-of={compile_example(path).name},app.kubernetes.io/managed-by=aipc"
    watches = [r for r in job_gets if r.param("watch") == "true"]
    assert watches and all(r.param("resourceVersion") and r.param("timeoutSeconds") for r in watches)
    keyed = any("aipc.dev/cache-key" in d["metadata"].get("annotations", {}) for d in documents if d["kind"] == "Job")
    assert len(job_gets) - len(watches) == (2 if keyed else 1)
    assert "applied" in out and "Traceback" not in err


def test_serve_after_serve_waits_for_availability(stub, capsys):
    server = stub()
    code, out, err = apply(capsys, str(example("recommender")), "--kubeconfig", str(server.kubeconfig))
    assert code == 0, err
    cluster = server.cluster
    # ranker comes after candidates is available (a Deployment watch saw it)
    assert met_at(cluster, "Deployment", "recommender-candidates") \
        < patch_index(cluster, "recommender-ranker", "deployments")
    assert any(r.path == "/apis/apps/v1/namespaces/recsys/deployments" and r.param("watch") == "true"
               for r in cluster.requests)
    assert "stage candidates available" in out


def test_a_batch_stage_after_services_waits_until_they_are_available(stub, capsys):
    server = stub()
    code, out, err = apply(capsys, str(example("llm-serving")), "--kubeconfig", str(server.kubeconfig))
    assert code == 0, err
    cluster = server.cluster
    smoke = patch_index(cluster, "llm-serving-smoke", "jobs")
    # the Job goes out once both Deployments it follows are available, not when they are applied
    for service in ("llm-serving-vllm", "llm-serving-tracking"):
        assert patch_index(cluster, service, "deployments") < met_at(cluster, "Deployment", service) < smoke
    assert "stage vllm available" in out and "stage tracking available" in out
    assert_dependency_order(cluster, example("llm-serving"))


def test_a_batch_stage_after_a_stalled_service_is_never_applied(stub, capsys):
    server = stub(stall_deployments=frozenset({"llm-serving-vllm"}))
    code, out, err = apply(capsys, str(example("llm-serving")), "--kubeconfig", str(server.kubeconfig))
    assert code == 1
    assert "vllm" in err and not any(r.path.endswith("/jobs/llm-serving-smoke") for r in server.cluster.patches)


def test_parallel_stages_are_applied_together(stub, capsys):
    server = stub()
    code, _, err = apply(capsys, str(example("recommender")), "--kubeconfig", str(server.kubeconfig))
    assert code == 0, err
    cluster = server.cluster
    export_done = met_at(cluster, "Job", "recommender-events-export")
    users = patch_index(cluster, "recommender-user-features", "jobs")
    items = patch_index(cluster, "recommender-item-features", "jobs")
    # both features Jobs go out on the same completion, before either of them completes
    assert export_done < min(users, items)
    assert max(users, items) < min(met_at(cluster, "Job", "recommender-user-features"),
                                   met_at(cluster, "Job", "recommender-item-features"))


def test_max_parallel_instances_of_a_matrix_stage_run_at_once(stub, capsys):
    """The sweep's `model` (5 instances, max_parallel = 2): an instance's Job is
    applied only while fewer than 2 of its stage's are applied and not complete."""
    server = stub(job_delay=0.05)
    path = example("sweep")
    code, out, err = apply(capsys, str(path), "--kubeconfig", str(server.kubeconfig), "--wait")
    assert code == 0, err
    cluster = server.cluster
    pipeline = compile_ok(path.read_text(), path=path.name)
    models = [pipeline.object_name(name) for name in pipeline.matrices[0].instances]
    spans = [(patch_index(cluster, name, "jobs"), met_at(cluster, "Job", name)) for name in models]
    most = max(sum(1 for start, end in spans if start <= moment < end) for moment, _ in spans)
    assert most == 2
    scores = [pipeline.object_name(name) for name in pipeline.matrices[1].instances]
    score_spans = [(patch_index(cluster, name, "jobs"), met_at(cluster, "Job", name)) for name in scores]
    assert_dependency_order(cluster, path)  # each score after its model, pick_best after every score
    assert max(start for start, _ in score_spans) < patch_index(cluster, "sweep-pick-best", "jobs")


TWO_STAGES = 'data first { image = "e:1" }\ntrain second { image = "e:1"  after = [first] }\n'


def test_without_wait_aipc_leaves_the_last_stage_running(stub, capsys, tmp_path):
    server = stub(job_delay=0.25)
    source = tmp_path / "two.aip"
    source.write_text(TWO_STAGES)
    code, out, err = apply(capsys, str(source), "--kubeconfig", str(server.kubeconfig))
    assert code == 0, err
    assert "job/two-second created: stage second started" in out
    assert "still running: second" in out
    assert [t.name for t in server.cluster.transitions("complete")] == ["two-first"]


def test_wait_waits_for_jobs_and_deployments(stub, capsys):
    server = stub()
    code, out, err = apply(capsys, str(example("fraud-detection")), "--kubeconfig", str(server.kubeconfig),
                           "--wait")
    assert code == 0, err
    assert "stage api available" in out and "every stage is done" in out
    assert server.cluster.transitions("available")[-1].name == "fraud-detection-api"


def test_watches_are_renewed_when_the_server_ends_them(stub, capsys, tmp_path):
    # Jobs that outlast the server's watch duration: aipc renews the watch from
    # the last version it saw and still sees the completion.
    server = stub(job_delay=0.35, watch_cap=0.1)
    source = tmp_path / "two.aip"
    source.write_text(TWO_STAGES)
    code, out, err = apply(capsys, str(source), "--kubeconfig", str(server.kubeconfig), "--wait")
    assert code == 0, err
    watches = [r for r in server.cluster.requests if r.path.endswith("/jobs") and r.param("watch") == "true"]
    assert len(watches) >= 5
    versions = [int(r.param("resourceVersion")) for r in watches]
    assert versions == sorted(versions) and versions[-1] > versions[0]
    assert_dependency_order(server.cluster, source)


# ------------------------------------------------------------------ failures


def test_a_failed_job_stops_its_dependants(stub, capsys):
    server = stub(fail_jobs=frozenset({"fraud-detection-model"}))
    code, out, err = apply(capsys, str(example("fraud-detection")), "--kubeconfig", str(server.kubeconfig))
    assert code == 1
    assert "stage `model` failed: job/fraud-detection-model: Failed (BackoffLimitExceeded): " \
           "Job has reached the specified backoff limit" in err
    assert "not started, as they wait for `model`: evaluate, api" in err
    assert "kubectl delete job fraud-detection-model -n ml-prod" in err
    paths = [r.path for r in server.cluster.patches]
    assert not [p for p in paths if p.endswith("/jobs/fraud-detection-evaluate")]
    assert not [p for p in paths if p.endswith("/deployments/fraud-detection-api")]
    assert "Traceback" not in err


def test_a_stalled_rollout_fails_with_wait(stub, capsys):
    server = stub(stall_deployments=frozenset({"recommender-candidates"}))
    code, _, err = apply(capsys, str(example("recommender")), "--kubeconfig", str(server.kubeconfig))
    assert code == 1
    assert "stage `candidates` failed: deployment/recommender-candidates: Progressing " \
           "(ProgressDeadlineExceeded)" in err
    assert "not started, as they wait for `candidates`: ranker" in err
    assert not [r for r in server.cluster.patches if r.path.endswith("/deployments/recommender-ranker")]


def test_a_refused_object_names_it_with_the_server_message(stub, capsys):
    message = 'Job.batch "fraud-detection-ingest" is invalid: spec.template: Invalid value: ...: field is immutable'
    server = stub(reject={"fraud-detection-ingest": (422, message)})
    code, _, err = apply(capsys, str(example("fraud-detection")), "--kubeconfig", str(server.kubeconfig))
    assert code == 1
    assert f"cannot apply job/fraud-detection-ingest: {message}" in err
    assert "delete it first (`kubectl delete job fraud-detection-ingest -n ml-prod`)" in err


def test_a_missing_namespace_is_explained(stub, capsys):
    server = stub(missing_namespaces=frozenset({"ml-prod"}))
    code, out, err = apply(capsys, str(example("fraud-detection")), "--kubeconfig", str(server.kubeconfig))
    assert code == 1
    assert "the namespace `ml-prod` does not exist" in err and "--namespace-object" in err
    assert len(server.cluster.patches) == 1  # the first object, refused; nothing after it


def test_timeout(stub, capsys):
    server = stub(job_delay=5)
    code, _, err = apply(capsys, str(example("fraud-detection")), "--kubeconfig", str(server.kubeconfig),
                         "--timeout", "1s")
    assert code == 1
    assert "timed out after 1s; still running in the cluster: ingest (job/fraud-detection-ingest); " \
           "not started: featurize, model, evaluate, api" in err


# ------------------------------------------------------------------ --dry-run, namespaces, options


def test_dry_run_sends_every_object_with_dry_run_all(stub, capsys):
    server = stub()
    path = example("recommender")
    code, out, err = apply(capsys, str(path), "--kubeconfig", str(server.kubeconfig), "--dry-run")
    assert code == 0, err
    cluster = server.cluster
    documents = expected_documents(path)
    # the order of a real apply, nothing awaited: the objects that run no stage, then the
    # Jobs and Deployments, each group in the backend's order
    documents = [d for d in documents if d["kind"] not in ("Job", "Deployment")] + \
        [d for d in documents if d["kind"] in ("Job", "Deployment")]
    assert [r.path for r in cluster.patches] == [object_path(d) for d in documents]
    for request, document in zip(cluster.patches, documents):
        assert request.param("dryRun") == "All"
        assert request.param("fieldManager") == "aipc"
        assert request.headers["content-type"] == "application/apply-patch+yaml"
        assert request.body == document
    assert cluster.objects == {}  # nothing stored
    assert not [r for r in cluster.requests if r.method == "GET" and "watch" in r.query]  # nothing awaited
    assert "validating (dry run)" in out and "nothing was changed" in out


def test_namespace_option_moves_every_object(stub, capsys):
    server = stub()
    path = example("fraud-detection")
    code, _, err = apply(capsys, str(path), "--kubeconfig", str(server.kubeconfig), "--namespace", "staging",
                         "--dry-run")
    assert code == 0, err
    assert sorted(r.path for r in server.cluster.patches) == \
        sorted(object_path(d) for d in expected_documents(path, "staging"))
    assert all(r.body["metadata"]["namespace"] == "staging" for r in server.cluster.patches)


def test_namespace_object_is_applied_first(stub, capsys):
    server = stub()
    code, _, err = apply(capsys, str(example("fraud-detection")), "--kubeconfig", str(server.kubeconfig),
                         "--namespace-object", "--dry-run")
    assert code == 0, err
    first = server.cluster.patches[0]
    assert first.path == "/api/v1/namespaces/ml-prod" and first.body["kind"] == "Namespace"


def test_the_context_namespace_is_the_default(stub, capsys, tmp_path):
    server = stub()
    source = tmp_path / "plain.aip"
    source.write_text('data a { image = "e:1" }\ndata b { image = "e:1"  after = [a] }\n')
    code, _, err = apply(capsys, str(source), "--kubeconfig", str(server.kubeconfig))
    assert code == 0, err
    assert {r.path.split("/")[-3] for r in server.cluster.patches} == {"from-context"}
    code, _, err = apply(capsys, str(source), "--kubeconfig", str(server.kubeconfig), "--context", "other",
                         "--dry-run")
    assert code == 0, err
    assert server.cluster.patches[-1].path == "/apis/batch/v1/namespaces/default/jobs/plain-b"


def test_kubeconfig_from_the_environment(stub, capsys, tmp_path, monkeypatch):
    server = stub()
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'absent'}:{server.kubeconfig}")
    code, out, err = apply(capsys, str(example("fraud-detection")), "--dry-run")
    assert code == 0, err
    assert f"at {server.url} (context stub)" in out
    assert len(server.cluster.patches) == len(expected_documents(example("fraud-detection")))


def test_second_apply_finds_completed_jobs(stub, capsys):
    server = stub()
    path = str(example("vision-amd"))
    assert apply(capsys, path, "--kubeconfig", str(server.kubeconfig), "--wait")[0] == 0
    completed = len(server.cluster.transitions("complete"))
    code, out, err = apply(capsys, path, "--kubeconfig", str(server.kubeconfig), "--wait")
    assert code == 0, err
    assert "job/vision-amd-fetch configured" in out
    assert len(server.cluster.transitions("complete")) == completed  # nothing ran twice


# ------------------------------------------------------------------ no cluster, bad input


@pytest.mark.parametrize(("userinfo", "shown"), [("", ""), ("alice:s3cret-pw@", "alice:***@")],
                         ids=["plain", "with-credentials"])
def test_no_cluster_answers(stub, capsys, tmp_path, userinfo, shown):
    port = free_port()
    config = tmp_path / "dead-kubeconfig"
    config.write_text(kubeconfig(f"http://{userinfo}127.0.0.1:{port}"))
    code, out, err = apply(capsys, str(example("fraud-detection")), "--kubeconfig", str(config))
    assert code == 1
    assert f"cannot reach the Kubernetes API server at http://{shown}127.0.0.1:{port}: connection refused" in err
    assert "Traceback" not in err and out == "" and "s3cret-pw" not in err


def test_missing_kubeconfig(stub, capsys, tmp_path, monkeypatch):
    code, _, err = apply(capsys, str(example("fraud-detection")), "--kubeconfig", str(tmp_path / "nope"))
    assert code == 1 and f"the kubeconfig `{tmp_path / 'nope'}` does not exist" in err
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code, _, err = apply(capsys, str(example("fraud-detection")))
    assert code == 1 and "no kubeconfig: `~/.kube/config` does not exist; pass --kubeconfig PATH" in err


def test_unknown_context_and_bad_credentials(stub, capsys, tmp_path):
    server = stub()
    code, _, err = apply(capsys, str(example("fraud-detection")), "--kubeconfig", str(server.kubeconfig),
                         "--context", "nowhere")
    assert code == 1 and "cannot use the kubeconfig" in err and "nowhere" in err
    config = tmp_path / "wrong-token"
    config.write_text(kubeconfig(server.url, token="wrong"))
    code, _, err = apply(capsys, str(example("fraud-detection")), "--kubeconfig", str(config))
    assert code == 1 and "did not accept the credentials (401 Unauthorized)" in err
    assert server.cluster.patches == []


def test_malformed_kubeconfig(stub, capsys, tmp_path):
    config = tmp_path / "garbage"
    config.write_text("just some text\n")
    code, _, err = apply(capsys, str(example("fraud-detection")), "--kubeconfig", str(config))
    assert code == 1 and "kubeconfig" in err and "Traceback" not in err


def test_input_errors_and_usage(stub, capsys, tmp_path):
    server = stub()
    laptop = example("laptop")  # mounts a host volume: the k8s backend refuses it (B001)
    code, _, err = apply(capsys, str(laptop), "--kubeconfig", str(server.kubeconfig))
    assert code == 1 and "B001" in err
    assert server.cluster.requests == []  # not even connected
    assert apply(capsys, str(laptop), "--dry-run", "--wait")[0] == 2
    code, _, err = apply(capsys, str(laptop), "--timeout", "soon")
    assert code == 2 and "--timeout soon" in err


def test_ctrl_c_stops_creating_jobs(stub, tmp_path):
    """`aipc apply` as a process: SIGINT while it waits for a Job ends it (exit 130)
    with a note that applied objects stay, and nothing more is applied."""
    import os
    import signal
    import subprocess
    import sys
    import time

    server = stub(job_delay=30)
    source = tmp_path / "two.aip"
    source.write_text(TWO_STAGES)
    process = subprocess.Popen([sys.executable, "-m", "aipc", "apply", str(source), "--kubeconfig",
                                str(server.kubeconfig)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while not [r for r in server.cluster.patches if r.path.endswith("/jobs/two-first")]:
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert b"interrupted: what was applied stays in the cluster" in err
    assert b"Traceback" not in err
    assert not [r for r in server.cluster.patches if r.path.endswith("/jobs/two-second")]


# ------------------------------------------------------------------ multi-node stages

GROUP = '''
pipeline "mn" { namespace = "ml" }
data prep { image = "t:1" }
train pretrain { image = "t:1"  nodes = 4  after = [prep]  retries = 2  command = ["torchrun", "train.py"] }
eval score { image = "t:1"  after = [pretrain] }
'''


def write_group(tmp_path):
    path = tmp_path / "mn.aip"
    path.write_text(GROUP)
    return path


def test_a_multi_node_stage_gets_its_service_first_and_dependants_wait_for_every_node(stub, capsys, tmp_path):
    server = stub()
    code, out, err = apply(capsys, str(write_group(tmp_path)), "--kubeconfig", str(server.kubeconfig), "--wait")
    assert code == 0, err
    cluster = server.cluster
    service = patch_index(cluster, "mn-pretrain", "services")
    policy = patch_index(cluster, "mn-pretrain", "networkpolicies")
    job = patch_index(cluster, "mn-pretrain", "jobs")
    assert service < job and policy < job  # the nodes' names exist before the nodes
    assert met_at(cluster, "Job", "mn-prep") < job < met_at(cluster, "Job", "mn-pretrain") \
        < patch_index(cluster, "mn-score", "jobs")
    (request,) = [r for r in cluster.patches if r.path.endswith("/jobs/mn-pretrain")]
    assert (request.body["spec"]["completionMode"], request.body["spec"]["completions"]) == ("Indexed", 4)
    assert "stage pretrain completed" in out


def test_a_jobset_is_applied_as_a_custom_object_and_waited_for(stub, capsys, tmp_path):
    server = stub()
    code, out, err = apply(capsys, str(write_group(tmp_path)), "--kubeconfig", str(server.kubeconfig),
                           "--multinode", "jobset", "--wait")
    assert code == 0, err
    cluster = server.cluster
    (request,) = [r for r in cluster.patches if r.path.endswith("/jobsets/mn-pretrain")]
    assert request.path == "/apis/jobset.x-k8s.io/v1alpha2/namespaces/ml/jobsets/mn-pretrain"
    assert request.headers["content-type"] == "application/apply-patch+yaml"
    assert request.param("fieldManager") == "aipc" and request.param("force") == "true"
    assert request.body["spec"]["failurePolicy"] == {"maxRestarts": 2}
    (completed,) = [t for t in cluster.transitions("completed") if t.kind == "JobSet"]
    assert met_at(cluster, "Job", "mn-prep") < request.seq < completed.seq < patch_index(cluster, "mn-score", "jobs")
    # JobSets were watched
    watches = [r for r in cluster.requests if r.method == "GET" and r.path.endswith("/jobsets")]
    assert any(r.param("watch") == "true" for r in watches)
    assert "stage pretrain completed" in out and "Traceback" not in err


def test_a_failed_jobset_stops_its_dependants(stub, capsys, tmp_path):
    server = stub(fail_jobs=frozenset({"mn-pretrain"}))
    code, out, err = apply(capsys, str(write_group(tmp_path)), "--kubeconfig", str(server.kubeconfig),
                           "--multinode", "jobset")
    assert code == 1
    assert "stage `pretrain` failed: jobset/mn-pretrain: Failed (ReachedMaxRestarts)" in err
    assert "not started, as they wait for `pretrain`: score" in err
    assert "kubectl describe jobset/mn-pretrain -n ml" in err
    assert not [r for r in server.cluster.patches if r.path.endswith("/jobs/mn-score")]


def test_a_cluster_without_jobset_is_told_so(stub, capsys, tmp_path):
    server = stub(no_jobset_api=True)
    code, out, err = apply(capsys, str(write_group(tmp_path)), "--kubeconfig", str(server.kubeconfig),
                           "--multinode", "jobset")
    assert code == 1
    assert "this cluster has no JobSet API; install the JobSet controller" in err
    assert "without `--multinode jobset`" in err and "Traceback" not in err
    code, out, err = apply(capsys, str(write_group(tmp_path)), "--kubeconfig", str(server.kubeconfig),
                           "--multinode", "jobset", "--dry-run")
    assert code == 1
    assert "cannot apply jobset/mn-pretrain: this cluster has no JobSet API" in err


def test_a_job_whose_key_completed_in_the_cluster_is_not_applied_again(stub, capsys, tmp_path):
    server = stub()
    source = example("churn").read_text()
    path = tmp_path / "churn.aip"
    path.write_text(source)
    config = str(server.kubeconfig)
    assert apply(capsys, str(path), "--kubeconfig", config, "--wait")[0] == 0
    jobs = len([r for r in server.cluster.patches if "/jobs/" in r.path])
    code, out, err = apply(capsys, str(path), "--kubeconfig", config, "--wait")
    assert code == 0, err
    assert "job/churn-model cached: stage model completed before with the same key" in out
    assert "job/churn-evaluate cached" in out
    assert len([r for r in server.cluster.patches if "/jobs/" in r.path]) == jobs  # neither applied again

    # `evaluate` changes: its key no longer matches, so it is applied; `model` stays cached
    path.write_text(source.replace('input model.metrics at "/in/metrics"',
                                   'input model.metrics at "/in/metrics"\n  command = ["score"]'))
    code, out, err = apply(capsys, str(path), "--kubeconfig", config)
    assert "job/churn-model cached" in out
    assert [r.path.rsplit("/", 1)[1] for r in server.cluster.patches if "/jobs/" in r.path][jobs:] == [
        "churn-evaluate"]


# ------------------------------------------------------------------ credentials in messages


def test_the_server_url_is_printed_without_its_credentials(stub, capsys, tmp_path):
    server = stub()
    config = tmp_path / "userinfo-kubeconfig"
    address = server.url.replace("http://", "")
    config.write_text(kubeconfig(f"http://alice:s3cret-pw@{address}"))
    code, out, err = apply(capsys, str(example("fraud-detection")), "--kubeconfig", str(config), "--dry-run")
    assert code == 0, err
    assert f"at http://alice:***@{address} (context stub)" in out
    assert "s3cret-pw" not in out + err
