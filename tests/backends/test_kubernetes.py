"""aipc compile --target k8s: snapshots, the YAML read back, and the clusters' own checkers."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import kubernetes_validate
import pytest

from aipc.backends import get_backend
from aipc.compiler import check_source
from aipc.backends import kubernetes as k8s
from tests.backends.clusters import (
    CLUSTER_EXAMPLES, EDGE_PROGRAM, ROOT, by_kind, compile_ir, emit_yaml, example_ir, pod_spec,
    read_back, run_checkov, write_outputs,
)

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
QUANTITY = re.compile(r"[0-9]+(m|Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?")


def example(stem: str, **params) -> list[dict]:
    return read_back(emit_yaml("k8s", example_ir(ROOT / "examples" / f"{stem}.aip", params)))


def edge(**options) -> list[dict]:
    return read_back(emit_yaml("k8s", compile_ir(EDGE_PROGRAM), **options))


def container(document: dict) -> dict:
    (only,) = pod_spec(document)["containers"]
    return only


def all_outputs() -> dict[str, str]:
    outputs = {path.stem: emit_yaml("k8s", example_ir(path)) for path in CLUSTER_EXAMPLES}
    outputs["edge"] = emit_yaml("k8s", compile_ir(EDGE_PROGRAM))
    outputs["edge-with-namespace"] = emit_yaml(
        "k8s", compile_ir('pipeline "edge" { namespace = "edge-ns" }\n' + EDGE_PROGRAM), namespace_object=True)
    return outputs


# ------------------------------------------------------------------ snapshots


@pytest.mark.parametrize("path", CLUSTER_EXAMPLES, ids=lambda p: p.stem)
def test_example_snapshot(path, yaml_snapshot):
    assert emit_yaml("k8s", example_ir(path)) == yaml_snapshot


def test_edge_program_snapshot(yaml_snapshot):
    assert emit_yaml("k8s", compile_ir(EDGE_PROGRAM)) == yaml_snapshot


def test_mounted_host_volume_is_an_error_at_each_mount():
    path = ROOT / "examples" / "laptop.aip"
    pipeline = example_ir(path)
    emitted = get_backend("k8s").emit(pipeline, k8s.Options())
    assert emitted.documents == ()
    text = path.read_text(encoding="utf-8")
    lines = sorted(text.count("\n", 0, d.span.start) + 1 for d in emitted.diagnostics)
    assert {d.code for d in emitted.diagnostics} == {"B001"}
    assert all(d.is_error for d in emitted.diagnostics)
    mount_lines = [n for n, line in enumerate(text.splitlines(), 1) if line.strip().startswith("mount raw")]
    assert lines == mount_lines and len(lines) == 4  # the four `mount raw ...` lines
    assert all(text[d.span.start:d.span.end].startswith("mount raw") for d in emitted.diagnostics)


def test_unused_host_volume_is_not_an_error():
    # Declared and mounted nowhere: the checker warns (W101), the target leaves it out.
    source = 'volume scratch { host = "./scratch" }\ndata a { image = "e:1" }\n'
    assert [d.code for d in check_source(source, "t.aip").diagnostics] == ["W101"]
    documents = read_back(emit_yaml("k8s", compile_ir(source)))
    assert [d["kind"] for d in documents] == ["NetworkPolicy", "Job"]


# ---------------------------------------------------------- what stages become


def test_batch_stage_is_a_job_with_retries_deadline_and_ttl():
    jobs = by_kind(example("fraud-detection"), "Job")
    ingest = jobs["fraud-detection-ingest"]
    assert ingest["apiVersion"] == "batch/v1"
    assert ingest["spec"]["backoffLimit"] == 2
    assert ingest["spec"]["activeDeadlineSeconds"] == 30 * 60
    assert ingest["spec"]["ttlSecondsAfterFinished"] == 86400
    assert pod_spec(ingest)["restartPolicy"] == "Never"
    featurize = jobs["fraud-detection-featurize"]
    assert featurize["spec"]["backoffLimit"] == 0
    assert "activeDeadlineSeconds" not in featurize["spec"]
    assert jobs["fraud-detection-model"]["spec"]["activeDeadlineSeconds"] == 12 * 3600


def test_serve_stage_is_a_deployment_and_a_service_with_probes():
    documents = example("fraud-detection")
    deployment = by_kind(documents, "Deployment")["fraud-detection-api"]
    service = by_kind(documents, "Service")["fraud-detection-api"]
    assert deployment["spec"]["replicas"] == 3
    api = container(deployment)
    assert api["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert api[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert DNS_1035.fullmatch(service["metadata"]["name"])
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"]["matchLabels"], service["spec"]["selector"]):
        assert selector.items() <= template_labels.items()
    assert "restartPolicy" not in pod_spec(deployment)


def test_serve_stage_without_health_is_probed_on_its_port():
    web = container(by_kind(edge(), "Deployment")["edge-web-ui"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert web[probe]["tcpSocket"] == {"port": "http"}


def test_nvidia_gpus_model_and_shm():
    model = by_kind(example("fraud-detection"), "Job")["fraud-detection-model"]
    spec, train = pod_spec(model), container(model)
    assert train["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert "nvidia.com/gpu" not in train["resources"]["requests"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    shm = [v for v in spec["volumes"] if "emptyDir" in v and v["emptyDir"].get("medium") == "Memory"]
    assert shm == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in train["volumeMounts"]
    evaluate = by_kind(example("fraud-detection"), "Job")["fraud-detection-evaluate"]
    assert "nodeSelector" not in pod_spec(evaluate)
    assert container(evaluate)["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_gpu_model_is_written_as_the_product_label():
    pipeline = compile_ir('train t { image = "x:1"  resources { gpu = 1  gpu_model = "Tesla T4" } }')
    (job,) = by_kind(read_back(emit_yaml("k8s", pipeline)), "Job").values()
    assert pod_spec(job)["nodeSelector"] == {"nvidia.com/gpu.product": "Tesla-T4"}


def test_amd_and_intel_gpus():
    jobs = by_kind(example("vision-amd"), "Job")
    classifier = jobs["vision-amd-classifier"]
    assert container(classifier)["resources"]["limits"]["amd.com/gpu"] == 4
    assert pod_spec(classifier)["nodeSelector"] == {"amd.com/gpu.product-name": "AMD-Instinct-MI250X"}
    assert pod_spec(classifier)["tolerations"][0]["key"] == "amd.com/gpu"
    assert "nodeSelector" not in pod_spec(jobs["vision-amd-accuracy"])
    assert "tolerations" not in pod_spec(jobs["vision-amd-fetch"])
    prepare = by_kind(edge(), "Job")["edge-prepare"]
    assert container(prepare)["resources"]["limits"]["gpu.intel.com/i915"] == 2
    assert pod_spec(prepare)["tolerations"][0]["key"] == "gpu.intel.com/i915"


def test_cpu_memory_disk_ranges_and_defaults():
    finetune = container(by_kind(example("llm-finetune"), "Job")["llm-finetune-finetune"])["resources"]
    assert finetune["requests"] == {"cpu": "32", "memory": "480Gi", "ephemeral-storage": "200Gi"}
    assert finetune["limits"] == {"cpu": "64", "memory": "640Gi", "ephemeral-storage": "200Gi",
                                  "nvidia.com/gpu": 8}
    predict = container(by_kind(example("fraud-detection"), "Job")["fraud-detection-evaluate"])["resources"]
    assert predict["requests"] == {"cpu": "500m", "memory": "512Mi"}  # nothing declared: the defaults
    assert predict["limits"] == {"cpu": "2", "memory": "2Gi", "nvidia.com/gpu": 1}


def test_volumes_become_claims_with_sizes_access_modes_and_classes():
    documents = example("fraud-detection")
    claims = by_kind(documents, "PersistentVolumeClaim")
    assert set(claims) == {"fraud-detection-raw", "fraud-detection-features", "fraud-detection-models"}
    raw = claims["fraud-detection-raw"]["spec"]
    assert raw == {"accessModes": ["ReadWriteMany"], "storageClassName": "fast-ssd",
                   "resources": {"requests": {"storage": "200Gi"}}}
    assert claims["fraud-detection-features"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in claims["fraud-detection-features"]["spec"]
    featurize = by_kind(documents, "Job")["fraud-detection-featurize"]
    mounts = {m["mountPath"]: m for m in container(featurize)["volumeMounts"]}
    assert mounts["/data/raw"] == {"name": "raw", "mountPath": "/data/raw", "readOnly": True}
    assert mounts["/data/features"] == {"name": "features", "mountPath": "/data/features"}
    volumes = {v["name"]: v for v in pod_spec(featurize)["volumes"]}
    assert volumes["raw"]["persistentVolumeClaim"] == {"claimName": "fraud-detection-raw"}
    llm = by_kind(example("llm-finetune"), "PersistentVolumeClaim")
    assert llm["llm-finetune-checkpoints"]["spec"]["resources"]["requests"]["storage"] == "1Ti"


def test_existing_claim_is_referenced_and_not_created():
    documents = edge()
    assert "shared-lake" not in by_kind(documents, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in pod_spec(by_kind(documents, "Job")["edge-prepare"])["volumes"]}
    assert volumes["lake"] == {"name": "lake", "persistentVolumeClaim": {"claimName": "shared-lake"}}


def test_scratch_volumes_stay_clear_of_user_volumes():
    documents = edge()
    prepare = by_kind(documents, "Job")["edge-prepare"]  # mounts the user's `tmp` volume at /tmp
    assert [m for m in container(prepare)["volumeMounts"] if m["mountPath"] == "/tmp"] == [
        {"name": "tmp", "mountPath": "/tmp"}]
    web = by_kind(documents, "Deployment")["edge-web-ui"]
    assert {"name": "tmp-2", "mountPath": "/tmp"} in container(web)["volumeMounts"]
    assert {"name": "tmp-2", "emptyDir": {}} in pod_spec(web)["volumes"]


def test_secrets_are_references_never_values():
    documents = example("llm-finetune")
    finetune = container(by_kind(documents, "Job")["llm-finetune-finetune"])
    assert finetune["envFrom"] == [{"secretRef": {"name": "huggingface"}}, {"secretRef": {"name": "wandb"}}]
    assert not [d for d in documents if d["kind"] == "Secret"]
    assert "envFrom" not in container(by_kind(documents, "Job")["llm-finetune-tokenize"])
    web = container(by_kind(edge(), "Deployment")["edge-web-ui"])
    assert web["envFrom"] == [{"secretRef": {"name": "api-keys"}}]


def test_hardening_on_every_pod():
    for documents in (example("fraud-detection"), example("recommender"), edge()):
        for document in documents:
            if document["kind"] not in ("Job", "Deployment"):
                continue
            spec = pod_spec(document)
            assert spec["automountServiceAccountToken"] is False
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["securityContext"]["runAsUser"] >= 10000
            assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"]
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            context = container(document)["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert any(m["mountPath"] == "/tmp" for m in container(document)["volumeMounts"])


def test_network_policies_deny_ingress_except_serve_ports_and_egress_to_the_metadata_service():
    policies = by_kind(example("recommender"), "NetworkPolicy")
    deny = policies["recommender"]["spec"]
    pipeline_pods = {"matchLabels": {"app.kubernetes.io/part-of": "recommender"}}
    assert deny == {
        "podSelector": pipeline_pods,
        "policyTypes": ["Ingress", "Egress"],  # no ingress rule: none but what the serve policies admit
        "egress": [
            {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},  # DNS
            {"to": [{"podSelector": pipeline_pods}]},  # the pipeline's own pods
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}},  # not the metadata
                    {"ipBlock": {"cidr": "::/0", "except": ["fd00:ec2::254/128"]}}]},
        ],
    }
    assert policies["recommender-candidates"]["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 9000}]}]
    assert policies["recommender-ranker"]["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "ranker", "app.kubernetes.io/part-of": "recommender"}
    assert len(policies) == 3


# ------------------------------------------------------------------ parameters


def test_interpolated_parameters_and_overrides():
    ingest = container(by_kind(example("fraud-detection"), "Job")["fraud-detection-ingest"])
    assert ingest["command"][4] == "2024-12-22"
    model = container(by_kind(example("fraud-detection", epochs="20", lr="0.01"), "Job")["fraud-detection-model"])
    assert model["command"] == ["python", "train.py", "--epochs", "20", "--lr", "0.01", "--amp=true"]
    candidates = container(by_kind(example("recommender", top_k="50"), "Deployment")["recommender-candidates"])
    assert {"name": "TOP_K", "value": "50"} in candidates["env"]


def test_parameters_in_quantities_and_durations():
    documents = example("llm-finetune", gpus="4", deadline="90m")
    finetune = by_kind(documents, "Job")["llm-finetune-finetune"]
    assert container(finetune)["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert container(finetune)["command"][:3] == ["torchrun", "--nproc-per-node", "4"]
    assert finetune["spec"]["activeDeadlineSeconds"] == 90 * 60
    default = by_kind(example("llm-finetune"), "Job")["llm-finetune-finetune"]
    assert default["spec"]["activeDeadlineSeconds"] == 20 * 3600


def test_registry_and_default_image():
    recommender = container(by_kind(example("recommender"), "Job")["recommender-events-export"])
    assert recommender["image"] == "registry.acme.internal/recsys/etl:3.2.1"
    shard = container(by_kind(example("vision-amd"), "Job")["vision-amd-shard"])
    assert shard["image"] == "rocm/pytorch:rocm6.1_ubuntu22.04_py3.10_pytorch_2.1.2"


def test_text_reaches_the_container_verbatim():
    """Kubernetes expands `$(VAR)` and `$$` in command, args and env: they are escaped."""
    documents = edge()
    script = container(by_kind(documents, "Job")["edge-prepare"])["args"][0]
    assert script.startswith('echo "$$(date) hello from $$$$ with $$HOME"')
    assert container(by_kind(documents, "Deployment")["edge-web-ui"])["command"][2] == "daemon off; pid $$(PIDFILE);"
    plain = container(by_kind(example("fraud-detection"), "Job")["fraud-detection-ingest"])
    assert "$$" not in str(plain["command"])


def test_home_points_at_the_writable_tmp_unless_set():
    assert {"name": "HOME", "value": "/tmp"} in container(by_kind(example("fraud-detection"), "Job")["fraud-detection-ingest"])["env"]
    env = container(by_kind(edge(), "Job")["edge-prepare"])["env"]
    assert [e for e in env if e["name"] == "HOME"] == [{"name": "HOME", "value": "/work"}]


# --------------------------------------------------------- metadata and order


def test_dependency_annotations_match_the_program():
    for path in CLUSTER_EXAMPLES:
        pipeline = example_ir(path)
        documents = read_back(emit_yaml("k8s", pipeline))
        workloads = {d["metadata"]["annotations"]["aipc.dev/stage"]: d for d in documents
                     if d["kind"] in ("Job", "Deployment")}
        assert set(workloads) == {s.name for s in pipeline.stages}
        names = {f"{d['kind']}/{d['metadata']['name']}": stage for stage, d in workloads.items()}
        for stage in pipeline.stages:
            annotations = workloads[stage.name]["metadata"]["annotations"]
            listed = annotations["aipc.dev/depends-on"]
            assert sorted(names[ref] for ref in listed.split(",") if ref) == sorted(stage.after)
            assert annotations["aipc.dev/level"] == str(stage.level)
    ranker = by_kind(example("recommender"), "Deployment")["recommender-ranker"]
    assert ranker["metadata"]["annotations"]["aipc.dev/depends-on"] == "Deployment/recommender-candidates"
    two_tower = by_kind(example("recommender"), "Job")["recommender-two-tower"]
    assert two_tower["metadata"]["annotations"]["aipc.dev/depends-on"] == (
        "Job/recommender-item-features,Job/recommender-user-features")


def test_documents_in_topological_order():
    pipeline = example_ir(ROOT / "examples" / "recommender.aip")
    documents = read_back(emit_yaml("k8s", pipeline))
    kinds = [d["kind"] for d in documents]
    assert kinds[:4] == ["NetworkPolicy", "PersistentVolumeClaim", "PersistentVolumeClaim", "PersistentVolumeClaim"]
    stages = [d["metadata"]["annotations"]["aipc.dev/stage"] for d in documents if d["kind"] in ("Job", "Deployment")]
    assert stages == [s.name for s in pipeline.stages]
    position = {name: stages.index(name) for name in stages}
    for stage in pipeline.stages:
        assert all(position[dependency] < position[stage.name] for dependency in stage.after)


def test_namespace_everywhere_and_the_namespace_object_behind_a_flag():
    documents = example("fraud-detection")
    assert {d["metadata"]["namespace"] for d in documents} == {"ml-prod"}
    assert not [d for d in documents if d["kind"] == "Namespace"]
    pipeline = compile_ir('pipeline "edge" { namespace = "edge-ns" }\n' + EDGE_PROGRAM)
    flagged = read_back(emit_yaml("k8s", pipeline, namespace_object=True))
    assert flagged[0]["kind"] == "Namespace" and flagged[0]["metadata"]["name"] == "edge-ns"
    assert "namespace" not in flagged[0]["metadata"]
    assert all(d["metadata"]["namespace"] == "edge-ns" for d in flagged[1:])
    assert all("namespace" not in d["metadata"] for d in edge())  # no namespace named: none written


def test_labels_on_every_object():
    documents = example("llm-finetune")
    for document in documents:
        labels = document["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "llm-finetune"
        assert labels["app.kubernetes.io/managed-by"] == "aipc"
        assert labels["team"] == "assistants" and labels["app.kubernetes.io/tier"] == "ml"
        assert "app.kubernetes.io/name" in labels and "app.kubernetes.io/component" in labels
    finetune = by_kind(documents, "Job")["llm-finetune-finetune"]
    assert finetune["metadata"]["labels"]["workload"] == "training"
    assert finetune["metadata"]["labels"]["app.kubernetes.io/component"] == "train"
    assert finetune["spec"]["template"]["metadata"]["labels"] == finetune["metadata"]["labels"]


@pytest.mark.parametrize("name", ["fraud-detection", "llm-finetune", "recommender", "vision-amd", "edge"])
def test_names_labels_quantities_and_references_are_well_formed(name):
    documents = read_back(all_outputs()[name])
    claims = set(by_kind(documents, "PersistentVolumeClaim"))
    for document in documents:
        meta = document["metadata"]
        assert len(meta["name"]) <= 63 and DNS_LABEL.fullmatch(meta["name"]), meta["name"]
        for value in meta["labels"].values():
            assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), value
        if document["kind"] not in ("Job", "Deployment"):
            continue
        spec = pod_spec(document)
        pod_volumes = {v["name"] for v in spec["volumes"]}
        for entry in container(document)["volumeMounts"]:
            assert entry["name"] in pod_volumes
        for volume in spec["volumes"]:
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert claim in claims or claim == "shared-lake"
        for group in container(document)["resources"].values():
            for key, value in group.items():
                assert isinstance(value, int) if "gpu" in key else QUANTITY.fullmatch(value), (key, value)
        ports = {p["name"] for p in container(document).get("ports", [])}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe in container(document):
                handler = container(document)[probe].get("httpGet") or container(document)[probe]["tcpSocket"]
                assert handler["port"] in ports


# ------------------------------------------------------------ the command line


def test_cli_alias_output_directory_and_flag(tmp_path):
    from aipc.cli import main

    assert main(["compile", str(ROOT / "examples" / "recommender.aip"), "--target", "kubernetes",
                 "--namespace-object", "-o", f"{tmp_path}{os.sep}"]) == 0
    written = read_back((tmp_path / "recommender.k8s.yaml").read_text())
    assert written[0]["kind"] == "Namespace"
    assert main(["compile", str(ROOT / "examples" / "laptop.aip"), "--target", "k8s",
                 "-o", str(tmp_path / "laptop.yaml")]) == 1
    assert not (tmp_path / "laptop.yaml").exists()


def test_output_is_deterministic_across_runs_and_hash_seeds():
    script = (
        "import sys\n"
        "from aipc.cli import main\n"
        "for path in sys.argv[1:]:\n"
        "    main(['compile', path, '--target', 'k8s', '--namespace-object'])\n"
    )
    paths = [str(p) for p in CLUSTER_EXAMPLES]
    outputs = set()
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, env=env, check=True)
        outputs.add(result.stdout)
    assert len(outputs) == 1
    jobs = sum(stage.is_batch for path in CLUSTER_EXAMPLES for stage in example_ir(path).stages)
    assert outputs.pop().count(b"\nkind: Job\n") == jobs >= 19


# ----------------------------------------------------------- external checkers


@pytest.mark.parametrize("version", ["1.28.0", kubernetes_validate.latest_version()])
def test_kubernetes_validate_strict(version):
    for name, text in all_outputs().items():
        for document in read_back(text):
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{name}: {document['kind']} {document['metadata']['name']}: {error.message}")


ALWAYS_EXCEPTED = {
    "CKV_K8S_15",  # image pull policy Always: a pinned tag needs no re-pull
    "CKV_K8S_43",  # images by digest: the program names tags, the compiler cannot know digests
}


def test_checkov_kubernetes(tmp_path):
    outputs = all_outputs()
    results = run_checkov(write_outputs(tmp_path / "k8s", outputs), "kubernetes")
    assert set(results) == {f"{name}.yaml" for name in outputs}
    for name in outputs:
        result = results[f"{name}.yaml"]
        excepted = set(ALWAYS_EXCEPTED)
        example = ROOT / "examples" / f"{name}.aip"
        if name == "edge" or (example.exists() and example_ir(example).namespace is None):
            excepted.add("CKV_K8S_21")  # names no namespace: the default namespace
        failed = sorted({check for check, _ in result["failed_checks"]} - excepted)
        assert not failed, (name, failed)
        assert result["passed_checks"]
        skipped = {check for check, _ in result["skipped_checks"]}
        assert skipped <= {"CKV_K8S_35"}  # secrets as environment variables, by the language's design
