"""One table test per program: what every target must contain (issue 11).

In the spirit of sqlglot's ``validate_all``: each case names a program (every
example, and small hand-written ones for each construct) and states, for every
target, the facts that matter there: GPUs, shared memory, deadlines, retries,
ordering, volumes, ports, replicas, probes, secrets and hardening. A fact is a
path into the YAML that `aipc compile` prints and the value expected there, or
a diagnostic (tests/facts.py). The snapshots next to this (tests/backends)
show the whole output; this table says which parts of it are the point, the
same point on every target, and fails with every broken fact at once.

The programs are compiled through the command line, as a user runs them, so
the facts hold whatever the backends build their documents with. Every case
runs with a value in the environment for each secret key it uses: no value
may appear in any output or message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from aipc import cli
from tests.facts import ABSENT, At, Fails, Has, Missing, Output, Quiet, Re, Warns, failures, resolve
from tests.helpers import EXAMPLES

TARGETS = ("compose", "k8s", "argo")


@dataclass(frozen=True)
class Case:
    """A program (source text, or an example's path), and per target the facts
    its output must hold. ``params`` are `-p NAME=VALUE` overrides; ``env`` is
    the environment it compiles in (secret values, which must appear nowhere)."""

    program: str | Path
    facts: dict[str, list]
    params: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # files it imports, by path next to it
    xfail: dict[str, str] = field(default_factory=dict)  # target -> why that row fails today
    args: dict[str, tuple[str, ...]] = field(default_factory=dict)  # target -> more `aipc compile` options


# ------------------------------------------------------------ paths per target
# compose: the compose file; k8s: its objects by `Kind/name`; argo: the Workflow.


def svc(stage: str) -> str:
    return f"services.{stage}"


def obj(kind: str, name: str) -> str:
    return f"[{kind}/{name}]"


def pod(kind: str, name: str) -> str:
    return f"[{kind}/{name}].spec.template.spec"


def ctr(kind: str, name: str) -> str:
    return f"[{kind}/{name}].spec.template.spec.containers[0]"


def tpl(stage: str) -> str:
    return f"spec.templates[name={stage}]"


def task(stage: str) -> str:
    return f"spec.templates[name=main].dag.tasks[name={stage}]"


def applied(stage: str, what: str = "deployment") -> str:
    """Inside the manifest an Argo resource template applies for a serve stage."""
    return f"spec.templates[name={stage}-{what}].resource.manifest>"


# --------------------------------------------------------------- hardening
# The same defaults on every target, for every stage (DESIGN.md, "hardening").


def hardened_compose(*stages: str) -> list:
    return [fact for stage in stages for fact in (
        (f"{svc(stage)}.read_only", True),
        (f"{svc(stage)}.cap_drop", Has("ALL")),
        (f"{svc(stage)}.security_opt", Has("no-new-privileges:true")),
        (f"{svc(stage)}.tmpfs", Has(Re(r"/tmp:size=\d+[gmk]?,exec"))),  # sized, as large as the memory limit
        (f"{svc(stage)}.privileged", ABSENT),
        (f"{svc(stage)}.cap_add", ABSENT),
        (f"{svc(stage)}.user", "65532:65532"),  # the user Kubernetes runs it as
        (f"{svc(stage)}.group_add", ["65532"]),  # fsGroup
        (f"{svc(stage)}.pids_limit", 4096),
        (f"{svc(stage)}.deploy.resources.limits.memory", Re(r"\d+[gmk]?")),  # the default when it sets none
        (f"{svc(stage)}.environment", Has(Re(r"HOME=.+"), Re(r"USER=.+"))),
    )]


def _hardened_pod(spec: str, container: str) -> list:
    return [
        (f"{spec}.automountServiceAccountToken", False),
        (f"{container}.securityContext.allowPrivilegeEscalation", False),
        (f"{container}.securityContext.privileged", False),
        (f"{container}.securityContext.readOnlyRootFilesystem", True),
        (f"{container}.securityContext.runAsNonRoot", True),
        (f"{container}.securityContext.capabilities.drop", Has("ALL")),
        (f"{container}.securityContext.capabilities.add", ABSENT),
        (f"{container}.volumeMounts[mountPath=/tmp].name", "tmp"),
        (f"{container}.env[name=HOME].value", Re(r"/.*")),  # writable: /tmp, or /root for a writable root
        (f"{container}.env[name=USER].value", Re(r".+")),  # getpass.getuser() reads it first
    ]


def _pod_security(spec: str) -> list:
    return [(f"{spec}.securityContext.runAsNonRoot", True),
            (f"{spec}.securityContext.runAsUser", 65532),
            (f"{spec}.securityContext.fsGroup", 65532),
            (f"{spec}.securityContext.seccompProfile.type", "RuntimeDefault")]


def hardened_k8s(pipeline: str, jobs=(), deployments=()) -> list:
    out: list = []
    for kind, stages in (("Job", jobs), ("Deployment", deployments)):
        for stage in stages:
            spec, container = pod(kind, f"{pipeline}-{stage}"), ctr(kind, f"{pipeline}-{stage}")
            out += _hardened_pod(spec, container) + _pod_security(spec)
    return out


def relaxed_llm_serving(vllm: str, db: str, model: str = "meta-llama/Meta-Llama-3-8B-Instruct") -> list:
    """What the security blocks of llm-serving's vllm and db stages become in a pod spec."""
    return [
        (f"{vllm}.securityContext.runAsUser", 0),
        (f"{vllm}.securityContext.runAsNonRoot", ABSENT),
        (f"{vllm}.containers[0].securityContext.runAsNonRoot", ABSENT),
        (f"{vllm}.containers[0].securityContext.readOnlyRootFilesystem", False),
        (f"{vllm}.containers[0].securityContext.allowPrivilegeEscalation", False),
        (f"{vllm}.containers[0].securityContext.capabilities", {"drop": ["ALL"]}),
        (f"{vllm}.containers[0].command", ABSENT),
        (f"{vllm}.containers[0].args", ["--model", model, "--port", "8000"]),
        (f"{vllm}.containers[0].imagePullPolicy", "IfNotPresent"),
        (f"{vllm}.containers[0].env[name=HUGGING_FACE_HUB_TOKEN].valueFrom",
         {"secretKeyRef": {"name": "hf", "key": "HF_TOKEN"}}),
        (f"{vllm}.containers[0].env[name=HOME].value", "/root"),
        (f"{vllm}.containers[0].env[name=USER].value", "root"),
        (f"{db}.securityContext.runAsUser", 0),
        (f"{db}.securityContext.fsGroup", 65532),
        (f"{db}.containers[0].securityContext.readOnlyRootFilesystem", False),
        (f"{db}.containers[0].securityContext.capabilities",
         {"drop": ["ALL"], "add": ["CHOWN", "SETUID", "SETGID", "FOWNER", "DAC_OVERRIDE"]}),
        (f"{db}.containers[0].securityContext.privileged", False),
    ]


def hardened_argo(batch=(), serve=()) -> list:
    out: list = _pod_security("spec")
    for stage in batch:
        out += [fact for fact in _hardened_pod(tpl(stage), f"{tpl(stage)}.container")
                if "automount" not in fact[0]]  # the workflow's pods need the token to report back
    for stage in serve:
        spec = applied(stage) + "spec.template.spec"
        out += _hardened_pod(spec, f"{spec}.containers[0]") + _pod_security(spec)
    return out


# ------------------------------------------------------------- shared facts

NVIDIA_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
AMD_TAINT = {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
INTEL_TAINT = {"key": "gpu.intel.com/i915", "operator": "Exists", "effect": "NoSchedule"}
A100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}  # the node labels a `gpu_model` selects
MI250X = {"amd.com/gpu.product-name": "AMD-Instinct-MI250X"}
ARC = {"gpu.intel.com/product": "Arc-A770"}
COMPLETED = {"condition": "service_completed_successfully"}
# Stages that write a volume wait for the one-off service giving it to the volume group.
SETUP = {"aipc-volumes": COMPLETED}
HOME_USER = ["HOME=/tmp", "USER=nonroot"]  # the hardened default's, unless the stage sets them
QUEUE = "kueue.x-k8s.io/queue-name"
GPU_NODES = "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"


def gpu_affinity(spec: str, key: str, *values: str) -> tuple:
    """A portable GPU model: the node label ``key`` must have one of ``values``."""
    return (f"{spec}.{GPU_NODES}", [{"matchExpressions": [{"key": key, "operator": "In", "values": list(values)}]}])


def hpa(name: str) -> str:
    return f"[HorizontalPodAutoscaler/{name}].spec"


CPU_70 = [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]


def gpus_compose(stage: str, driver: str, count: int) -> tuple:
    return (f"{svc(stage)}.deploy.resources.reservations.devices",
            [{"driver": driver, "count": count, "capabilities": ["gpu"]}])


def gpus_pod(spec: str, container: str, resource: str, count: int, taint: dict, model: dict | None = None) -> list:
    """``count`` GPUs of ``resource``, a toleration of the vendor's taint, and the
    model's node selector, or none (Kubernetes and Argo)."""
    return [(f"{container}.resources.limits[{resource}]", count),
            (f"{spec}.tolerations", [taint]),
            (f"{spec}.nodeSelector", ABSENT if model is None else model)]


def shm_pod(spec: str, container: str, size: str) -> list:
    """/dev/shm as a memory-backed emptyDir of ``size`` (Kubernetes and Argo)."""
    return [(f"{spec}.volumes[name=dshm].emptyDir", {"medium": "Memory", "sizeLimit": size}),
            (f"{container}.volumeMounts[name=dshm].mountPath", "/dev/shm")]


def node_variables(master: str) -> list[tuple[str, str]]:
    """The variables of every node of examples/multinode.aip but its rank (4 nodes of 8 GPUs)."""
    return [("MASTER_ADDR", master), ("MASTER_PORT", "29500"), ("NNODES", "4"), ("NPROC_PER_NODE", "8"),
            ("WORLD_SIZE", "32"), ("PET_MASTER_ADDR", master), ("PET_MASTER_PORT", "29500"),
            ("PET_NNODES", "4"), ("PET_NPROC_PER_NODE", "8")]


def example(name: str) -> Path:
    (path,) = [p for p in EXAMPLES if p.stem == name]
    return path


# ------------------------------------------------------------ the examples

FRAUD = "fraud-detection"
FRAUD_SECRETS = {"AWS_ACCESS_KEY_ID": "AKIA-table-test-key-id", "AWS_SECRET_ACCESS_KEY": "table-test-secret-value"}
LLM = "llm-finetune"
PRETRAIN = "pretrain"  # examples/gpu-cluster.aip
H100 = ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe")
SPOT = [NVIDIA_TAINT, {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true",
                       "effect": "NoSchedule"}, {"key": "ondemand", "operator": "Exists"}]
WAITING = [{"type": "Pods", "pods": {"metric": {"name": "vllm_num_requests_waiting"},
                                     "target": {"type": "AverageValue", "averageValue": "5"}}}]
REC = "recommender"
AMD = "vision-amd"

SWEEP_INSTANCES = [("1e-4", "1"), ("1e-4", "2"), ("3e-4", "1"), ("3e-4", "2"), ("3e-4", "3")]  # (lr, seed)

EXAMPLE_CASES = {
    "gpu-cluster": Case(example("gpu-cluster"), facts={
        "compose": [
            Warns("B101", 6, 14), Warns("B101", 6, 32), Warns("B101", 19, 14),  # queue and priorities
            Warns("B101", 30, 5), Warns("B101", 31, 5),  # node and tolerate
            Warns("B101", 28, 24), Warns("B101", 42, 24), Warns("B101", 54, 24),  # GPU models
            Warns("B101", 34, 3),  # timeout
            Warns("B101", 52, 14), Warns("B101", 62, 14),  # autoscaling: the low end starts
            (f"{svc('completions')}.deploy.replicas", 1),
            (f"{svc('gateway')}.deploy.replicas", 2),
            gpus_compose("pretrain", "nvidia", 8),
            (f"{svc('pretrain')}.shm_size", "128g"),
            *hardened_compose("shard", "pretrain", "humaneval", "completions", "gateway"),
        ],
        "k8s": [
            Quiet(),
            (f"{obj('Job', PRETRAIN + '-shard')}.metadata.labels[{QUEUE}]", "team-a"),
            (f"{pod('Job', PRETRAIN + '-shard')}.priorityClassName", "batch-low"),
            (f"{obj('Job', PRETRAIN + '-pretrain')}.metadata.labels[{QUEUE}]", "team-a"),
            (f"{pod('Job', PRETRAIN + '-pretrain')}.spec", ABSENT),
            (f"{pod('Job', PRETRAIN + '-pretrain')}.priorityClassName", "batch-high"),
            (f"{pod('Job', PRETRAIN + '-pretrain')}.nodeSelector", {"cloud.google.com/gke-spot": "true"}),
            gpu_affinity(pod("Job", PRETRAIN + "-pretrain"), "nvidia.com/gpu.product", *H100),
            (f"{pod('Job', PRETRAIN + '-pretrain')}.tolerations", SPOT),
            gpu_affinity(pod("Job", PRETRAIN + "-humaneval"), "nvidia.com/gpu.product", "NVIDIA-L4"),
            (f"{obj('Deployment', PRETRAIN + '-completions')}.spec.replicas", ABSENT),
            (f"{obj('Deployment', PRETRAIN + '-completions')}.metadata.labels[{QUEUE}]", ABSENT),
            (f"{pod('Deployment', PRETRAIN + '-completions')}.priorityClassName", "batch-high"),
            (f"{hpa(PRETRAIN + '-completions')}.scaleTargetRef.name", PRETRAIN + "-completions"),
            (f"{hpa(PRETRAIN + '-completions')}.minReplicas", 1),
            (f"{hpa(PRETRAIN + '-completions')}.maxReplicas", 4),
            (f"{hpa(PRETRAIN + '-completions')}.metrics", WAITING),
            (f"{hpa(PRETRAIN + '-gateway')}.minReplicas", 2),
            (f"{hpa(PRETRAIN + '-gateway')}.maxReplicas", 10),
            (f"{hpa(PRETRAIN + '-gateway')}.metrics", CPU_70),
            *hardened_k8s(PRETRAIN, jobs=("shard", "pretrain", "humaneval"), deployments=("completions", "gateway")),
        ],
        "argo": [
            Quiet(),
            (f"{tpl('shard')}.metadata.labels[{QUEUE}]", "team-a"),
            (f"{tpl('shard')}.priorityClassName", "batch-low"),
            (f"{tpl('pretrain')}.priorityClassName", "batch-high"),
            (f"{tpl('pretrain')}.nodeSelector", {"cloud.google.com/gke-spot": "true"}),
            gpu_affinity(tpl("pretrain"), "nvidia.com/gpu.product", *H100),
            (f"{tpl('pretrain')}.tolerations", SPOT),
            (f"{tpl('pretrain')}.retryStrategy.limit", 2),
            (f"{applied('completions')}spec.replicas", ABSENT),
            (f"{applied('completions')}spec.template.spec.priorityClassName", "batch-high"),
            (f"{applied('completions', 'autoscaler')}spec.metrics", WAITING),
            (f"{applied('gateway', 'autoscaler')}spec.minReplicas", 2),
            (f"{applied('gateway', 'autoscaler')}spec.maxReplicas", 10),
            (f"{applied('gateway', 'autoscaler')}spec.metrics", CPU_70),
            *hardened_argo(batch=("shard", "pretrain", "humaneval"), serve=("completions", "gateway")),
        ],
    }),
    "fraud-detection": Case(example("fraud-detection"), env=FRAUD_SECRETS, facts={
        "compose": [
            (f"{svc('ingest')}.environment", Has("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "LOG_LEVEL=info")),
            (f"{svc('ingest')}.restart", "on-failure:2"),
            Warns("B101", 27, 3),  # timeout = 30m: compose has no deadline
            (f"{svc('ingest')}.volumes", ["raw:/data/raw:nocopy"]),
            (f"{svc('featurize')}.depends_on", {**SETUP, "ingest": COMPLETED}),
            (f"{svc('featurize')}.volumes", ["raw:/data/raw:ro,nocopy", "features:/data/features:nocopy"]),
            (f"{svc('featurize')}.deploy.resources.limits", {"cpus": "4", "memory": "16g"}),
            (f"{svc('featurize')}.deploy.resources.reservations", {"cpus": "1", "memory": "8g"}),
            gpus_compose("model", "nvidia", 4),
            (f"{svc('model')}.shm_size", "16g"),
            Warns("B101", 52, 5),  # gpu_model: compose cannot select one
            Warns("B101", 55, 3),  # timeout = 12h
            (f"{svc('model')}.restart", "no"),
            gpus_compose("evaluate", "nvidia", 1),
            (f"{svc('api')}.depends_on", {"evaluate": COMPLETED}),
            (f"{svc('api')}.deploy.replicas", 3),
            (f"{svc('api')}.ports", [Re(r"(.*:)?8080-8082:8080")]),
            (f"{svc('api')}.healthcheck.test", Has(Re(r".*http://127\.0\.0\.1:8080/healthz.*"))),
            (f"{svc('api')}.volumes", ["models:/models:ro,nocopy"]),
            ("volumes.raw.labels[app.kubernetes.io/part-of]", FRAUD),
            *hardened_compose("ingest", "featurize", "model", "evaluate", "api"),
        ],
        "k8s": [
            Quiet(),
            (f"{obj('PersistentVolumeClaim', FRAUD + '-raw')}.spec",
             {"accessModes": ["ReadWriteMany"], "storageClassName": "fast-ssd",
              "resources": {"requests": {"storage": "200Gi"}}}),
            (f"{obj('PersistentVolumeClaim', FRAUD + '-features')}.spec.accessModes", ["ReadWriteOnce"]),
            (f"{obj('PersistentVolumeClaim', FRAUD + '-models')}.spec.resources.requests.storage", "20Gi"),
            (f"{obj('Job', FRAUD + '-ingest')}.metadata.namespace", "ml-prod"),
            (f"{obj('Job', FRAUD + '-ingest')}.spec.backoffLimit", 2),
            (f"{obj('Job', FRAUD + '-ingest')}.spec.activeDeadlineSeconds", 1800),
            (f"{ctr('Job', FRAUD + '-ingest')}.envFrom", [{"secretRef": {"name": "s3"}}]),
            (f"{pod('Job', FRAUD + '-ingest')}.volumes[name=raw].persistentVolumeClaim.claimName", FRAUD + "-raw"),
            (f"{obj('Job', FRAUD + '-featurize')}.metadata.annotations[aipc.dev/depends-on]", f"Job/{FRAUD}-ingest"),
            (f"{ctr('Job', FRAUD + '-featurize')}.volumeMounts[name=raw].readOnly", True),
            (f"{ctr('Job', FRAUD + '-featurize')}.volumeMounts[name=features].readOnly", ABSENT),
            (f"{ctr('Job', FRAUD + '-featurize')}.resources",
             {"requests": {"cpu": "1", "memory": "8Gi"}, "limits": {"cpu": "4", "memory": "16Gi"}}),
            (f"{obj('Job', FRAUD + '-featurize')}.spec.activeDeadlineSeconds", ABSENT),
            *gpus_pod(pod("Job", FRAUD + "-model"), ctr("Job", FRAUD + "-model"), "nvidia.com/gpu", 4, NVIDIA_TAINT,
                      A100),
            *shm_pod(pod("Job", FRAUD + "-model"), ctr("Job", FRAUD + "-model"), "16Gi"),
            (f"{obj('Job', FRAUD + '-model')}.spec.activeDeadlineSeconds", 43200),
            (f"{obj('Job', FRAUD + '-model')}.spec.backoffLimit", 0),
            *gpus_pod(pod("Job", FRAUD + "-evaluate"), ctr("Job", FRAUD + "-evaluate"), "nvidia.com/gpu", 1,
                      NVIDIA_TAINT),
            (f"{obj('Deployment', FRAUD + '-api')}.spec.replicas", 3),
            (f"{obj('Deployment', FRAUD + '-api')}.metadata.annotations[aipc.dev/depends-on]",
             f"Job/{FRAUD}-evaluate"),
            (f"{ctr('Deployment', FRAUD + '-api')}.ports[0].containerPort", 8080),
            (f"{ctr('Deployment', FRAUD + '-api')}.readinessProbe.httpGet.path", "/healthz"),
            (f"{ctr('Deployment', FRAUD + '-api')}.livenessProbe.httpGet.path", "/healthz"),
            (f"{ctr('Deployment', FRAUD + '-api')}.resources.limits[nvidia.com/gpu]", 1),
            (f"{obj('Service', FRAUD + '-api')}.spec.ports[0].port", 8080),
            *hardened_k8s(FRAUD, jobs=("ingest", "featurize", "model", "evaluate"), deployments=("api",)),
        ],
        "argo": [
            ("metadata.namespace", "ml-prod"),
            ("spec.arguments.parameters[name=epochs].value", "10"),
            (f"{tpl('ingest')}.retryStrategy.limit", 2),
            (f"{tpl('ingest')}.activeDeadlineSeconds", 1800),  # one attempt; all three together:
            (f"{tpl('ingest')}.retryStrategy.backoff.maxDuration", "1800s"),
            (f"{tpl('ingest')}.container.envFrom", [{"secretRef": {"name": "s3"}}]),
            (f"{tpl('ingest')}.container.command", Has("{{workflow.parameters.run_date}}")),
            ("spec.volumeClaimTemplates[metadata.name=raw].spec.accessModes", ["ReadWriteMany"]),
            ("spec.volumeClaimTemplates[metadata.name=raw].spec.storageClassName", "fast-ssd"),
            (f"{task('featurize')}.dependencies", ["ingest"]),
            (f"{tpl('featurize')}.container.volumeMounts[name=raw].readOnly", True),
            (f"{tpl('featurize')}.retryStrategy", ABSENT),
            (f"{task('model')}.dependencies", Has("featurize")),
            *gpus_pod(tpl("model"), f"{tpl('model')}.container", "nvidia.com/gpu", 4, NVIDIA_TAINT, A100),
            *shm_pod(tpl("model"), f"{tpl('model')}.container", "16Gi"),
            (f"{tpl('model')}.activeDeadlineSeconds", 43200),
            (f"{task('evaluate')}.dependencies", ["model"]),
            (f"{task('api')}.dependencies", ["evaluate"]),
            (f"{applied('api')}spec.replicas", 3),
            (f"{applied('api')}spec.template.spec.containers[0].readinessProbe.httpGet.path", "/healthz"),
            (f"{applied('api')}spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]", 1),
            (f"{applied('api', 'service')}spec.ports[0].port", 8080),
            ("spec.volumes[name=models].persistentVolumeClaim.claimName", FRAUD + "-models"),
            *hardened_argo(batch=("ingest", "featurize", "model", "evaluate"), serve=("api",)),
        ],
    }),
    "laptop": Case(example("laptop"), facts={
        "compose": [
            (f"{svc('prepare')}.image", "churn-laptop:0.3.0"),  # the header's default image
            (f"{svc('prepare')}.working_dir", "/raw"),
            (f"{svc('prepare')}.volumes", [Re(r".*data:/raw:ro"), "artifacts:/artifacts:nocopy"]),
            (f"{svc('model')}.restart", "on-failure:1"),
            (f"{svc('model')}.depends_on", {**SETUP, "prepare": COMPLETED}),
            (f"{svc('check')}.volumes", Has("artifacts:/artifacts:ro,nocopy")),
            (f"{svc('predict')}.depends_on", {"check": COMPLETED}),
            (f"{svc('predict')}.ports", [Re(r"(.*:)?8000:8000")]),
            (f"{svc('predict')}.deploy.resources.limits", {"cpus": "0.5", "memory": "512m"}),
            (f"{svc('predict')}.healthcheck.test", Has(Re(r".*http://127\.0\.0\.1:8000/health.*"))),
            ("volumes.artifacts.labels[app.kubernetes.io/name]", "artifacts"),
            *hardened_compose("prepare", "model", "check", "predict"),
        ],
        # a host volume is a bind mount: compose only, an error at each mount elsewhere
        "k8s": [Fails("B001", (20, 3), (33, 3), (43, 3), (51, 3))],
        "argo": [Fails("B001", (20, 3), (33, 3), (43, 3), (51, 3))],
    }),
    "llm-finetune": Case(example("llm-finetune"), env={"HF_TOKEN": "hf_table_test_token",
                                                        "WANDB_API_KEY": "wandb-table-test-key"}, facts={
        "compose": [
            (f"{svc('download')}.restart", "on-failure:3"),
            Warns("B101", 29, 3),  # timeout = 2h
            (f"{svc('download')}.environment", [*HOME_USER, "HF_TOKEN"]),
            (f"{svc('finetune')}.environment", Has("HF_TOKEN", "WANDB_API_KEY", "NCCL_DEBUG=WARN")),
            gpus_compose("finetune", "nvidia", 8),  # gpu = "${gpus}", 8 by default
            (f"{svc('finetune')}.shm_size", "64g"),
            (f"{svc('finetune')}.deploy.resources.limits", {"cpus": "64", "memory": "640g"}),
            (f"{svc('finetune')}.deploy.resources.reservations.cpus", "32"),
            Warns("B101", 63, 5),  # gpu_model
            Warns("B101", 65, 5),  # disk: compose cannot limit local storage
            Warns("B101", 68, 3),  # timeout = "${deadline}"
            (f"{svc('finetune')}.command", Has("/checkpoints/llm-finetune")),  # ${pipeline.name}
            (f"{svc('benchmark')}.shm_size", "8g"),
            (f"{svc('assistant')}.deploy.replicas", 2),
            (f"{svc('assistant')}.ports", [Re(r"(.*:)?8000-8001:8000")]),
            (f"{svc('assistant')}.shm_size", "4g"),
            gpus_compose("assistant", "nvidia", 1),
            *hardened_compose("download", "tokenize", "finetune", "benchmark", "assistant"),
        ],
        "k8s": [
            Quiet(),
            (f"{obj('Job', LLM + '-download')}.spec.backoffLimit", 3),
            (f"{obj('Job', LLM + '-download')}.spec.activeDeadlineSeconds", 7200),
            (f"{obj('Job', LLM + '-finetune')}.spec.backoffLimit", 1),
            (f"{obj('Job', LLM + '-finetune')}.spec.activeDeadlineSeconds", 72000),
            (f"{obj('Job', LLM + '-finetune')}.metadata.labels.workload", "training"),
            (f"{ctr('Job', LLM + '-finetune')}.envFrom",
             [{"secretRef": {"name": "huggingface"}}, {"secretRef": {"name": "wandb"}}]),
            (f"{ctr('Job', LLM + '-finetune')}.resources",
             {"requests": {"cpu": "32", "memory": "480Gi", "ephemeral-storage": "200Gi"},
              "limits": {"cpu": "64", "memory": "640Gi", "ephemeral-storage": "200Gi", "nvidia.com/gpu": 8}}),
            *gpus_pod(pod("Job", LLM + "-finetune"), ctr("Job", LLM + "-finetune"), "nvidia.com/gpu", 8, NVIDIA_TAINT,
                      {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}),
            *shm_pod(pod("Job", LLM + "-finetune"), ctr("Job", LLM + "-finetune"), "64Gi"),
            *shm_pod(pod("Job", LLM + "-benchmark"), ctr("Job", LLM + "-benchmark"), "8Gi"),
            (f"{obj('Job', LLM + '-benchmark')}.metadata.annotations[aipc.dev/depends-on]", f"Job/{LLM}-finetune"),
            (f"{obj('Deployment', LLM + '-assistant')}.spec.replicas", 2),
            (f"{ctr('Deployment', LLM + '-assistant')}.readinessProbe.httpGet.path", "/health"),
            *shm_pod(pod("Deployment", LLM + "-assistant"), ctr("Deployment", LLM + "-assistant"), "4Gi"),
            *hardened_k8s(LLM, jobs=("download", "tokenize", "finetune", "benchmark"), deployments=("assistant",)),
        ],
        "argo": [
            ("metadata.namespace", "llm"),
            (f"{tpl('download')}.retryStrategy.limit", 3),
            (f"{tpl('finetune')}.retryStrategy.limit", 1),
            (f"{tpl('finetune')}.activeDeadlineSeconds", 72000),
            (f"{tpl('finetune')}.container.resources.limits[nvidia.com/gpu]", 8),
            (f"{tpl('finetune')}.container.resources.limits[ephemeral-storage]", "200Gi"),
            (f"{tpl('finetune')}.container.envFrom",
             [{"secretRef": {"name": "huggingface"}}, {"secretRef": {"name": "wandb"}}]),
            *shm_pod(tpl("finetune"), f"{tpl('finetune')}.container", "64Gi"),
            (f"{tpl('finetune')}.container.command", Has("{{workflow.parameters.epochs}}")),
            (f"{task('finetune')}.dependencies", Has("tokenize")),
            (f"{task('assistant')}.dependencies", ["benchmark"]),
            (f"{applied('assistant')}spec.replicas", 2),
            *shm_pod(applied("assistant") + "spec.template.spec",
                     applied("assistant") + "spec.template.spec.containers[0]", "4Gi"),
            *hardened_argo(batch=("download", "tokenize", "finetune", "benchmark"), serve=("assistant",)),
        ],
    }),
    "llm-serving": Case(example("llm-serving"), env={"HF_TOKEN": "hf_table_test_token",
                                                      "POSTGRES_PASSWORD": "table-test-password"}, facts={
        "compose": [
            (f"{svc('vllm')}.ports", ["127.0.0.1:80:8000", "127.0.0.1:9090:9090"]),
            (f"{svc('vllm')}.healthcheck.start_period", "20m"),
            (f"{svc('db')}.healthcheck.test", ["CMD", "pg_isready", "-U", "mlflow", "-d", "mlflow"]),
            (f"{svc('tracking')}.depends_on", {**SETUP, "db": {"condition": "service_healthy"}}),
            (f"{svc('tracking')}.command", [Re(r'(?s).*postgresql://mlflow:\$\$\{POSTGRES_PASSWORD\}@llm-serving-db:5432/.*')]),
            (f"{svc('smoke')}.depends_on", {"tracking": {"condition": "service_healthy"},
                                            "vllm": {"condition": "service_healthy"}}),
            (f"{svc('smoke')}.command", Has("http://llm-serving-vllm:8000/v1", "http://llm-serving-tracking:5000")),
            *hardened_compose("tracking", "smoke"),
            # vLLM: the image's entrypoint gets `args`; root on a writable root filesystem
            (f"{svc('vllm')}.entrypoint", ABSENT),
            (f"{svc('vllm')}.command", ["--model", "meta-llama/Meta-Llama-3-8B-Instruct", "--port", "8000"]),
            (f"{svc('vllm')}.pull_policy", "if_not_present"),
            (f"{svc('vllm')}.environment", Has("HUGGING_FACE_HUB_TOKEN=${HF_TOKEN}", "HOME=/root", "USER=root")),
            (f"{svc('vllm')}.user", "0:0"),
            (f"{svc('vllm')}.read_only", False),
            (f"{svc('vllm')}.cap_add", ABSENT),
            (f"{svc('vllm')}.security_opt", ["no-new-privileges:true"]),
            # postgres: root that chowns its folders and drops to its user
            (f"{svc('db')}.user", "0:0"),
            (f"{svc('db')}.read_only", False),
            (f"{svc('db')}.cap_drop", ["ALL"]),
            (f"{svc('db')}.cap_add", ["CHOWN", "SETUID", "SETGID", "FOWNER", "DAC_OVERRIDE"]),
            (f"{svc('db')}.privileged", ABSENT),
        ],
        "k8s": [
            (f"{obj('Service', 'llm-serving-vllm')}.spec.ports[0].port", 80),
            (f"{obj('Service', 'llm-serving-vllm')}.spec.ports[0].targetPort", "http"),
            (f"{ctr('Deployment', 'llm-serving-vllm')}.startupProbe.failureThreshold", 120),
            (f"{ctr('Deployment', 'llm-serving-db')}.readinessProbe.exec.command",
             ["pg_isready", "-U", "mlflow", "-d", "mlflow"]),
            (f"{obj('Job', 'llm-serving-smoke')}.metadata.annotations[aipc.dev/depends-on]",
             "Deployment/llm-serving-tracking,Deployment/llm-serving-vllm"),
            (f"{ctr('Job', 'llm-serving-smoke')}.command", Has("http://llm-serving-vllm:80/v1")),
            *hardened_k8s("llm-serving", jobs=("smoke",), deployments=("tracking",)),
            *relaxed_llm_serving(pod("Deployment", "llm-serving-vllm"), pod("Deployment", "llm-serving-db")),
        ],
        "argo": [
            (f"{task('smoke')}.dependencies", ["tracking", "vllm"]),
            (f"{tpl('smoke')}.container.command", Has("http://llm-serving-vllm:80/v1")),
            *hardened_argo(batch=("smoke",), serve=("tracking",)),
            # a serve stage's parameter is fixed at its compiled value on Argo
            *relaxed_llm_serving(applied("vllm") + "spec.template.spec", applied("db") + "spec.template.spec"),
            ("spec.imagePullSecrets", ABSENT),  # the header names none
        ],
    }),
    "recommender": Case(example("recommender"), env={"WAREHOUSE_USER": "table-test-user",
                                                      "WAREHOUSE_PASSWORD": "table-test-password"}, facts={
        "compose": [
            (f"{svc('events_export')}.image", "registry.acme.internal/recsys/etl:3.2.1"),  # the header's registry
            (f"{svc('events_export')}.environment", [*HOME_USER, "WAREHOUSE_USER", "WAREHOUSE_PASSWORD"]),
            Warns("B101", 22, 3, in_file="examples/lib/ml.aip"),  # the `extract` template's timeout = 3h
            (f"{svc('user_features')}.depends_on", {**SETUP, "events_export": COMPLETED}),
            (f"{svc('item_features')}.depends_on", {**SETUP, "events_export": COMPLETED}),
            # the diamond closes: two_tower waits for both feature jobs
            (f"{svc('two_tower')}.depends_on", {**SETUP, "item_features": COMPLETED, "user_features": COMPLETED}),
            gpus_compose("two_tower", "nvidia", 2),
            (f"{svc('two_tower')}.shm_size", "8g"),
            Warns("B101", 56, 3),
            (f"{svc('candidates')}.depends_on", {"offline_metrics": COMPLETED}),
            (f"{svc('candidates')}.environment", Has("TOP_K=500")),
            # a service after a service waits until it is healthy
            (f"{svc('ranker')}.depends_on", {"candidates": {"condition": "service_healthy"}}),
            (f"{svc('ranker')}.environment", ["CANDIDATES_URL=http://recommender-candidates:9000", *HOME_USER]),
            (f"{svc('candidates')}.networks.default.aliases", Has("recommender-candidates")),
            (f"{svc('ranker')}.deploy.replicas", 3),
            (f"{svc('ranker')}.labels.tier", "frontend"),
            *hardened_compose("events_export", "user_features", "item_features", "two_tower", "offline_metrics",
                              "candidates", "ranker"),
        ],
        "k8s": [
            Quiet(),
            (f"{obj('PersistentVolumeClaim', REC + '-events')}.spec.accessModes", ["ReadWriteMany"]),
            (f"{obj('Job', REC + '-two-tower')}.metadata.annotations[aipc.dev/depends-on]",
             f"Job/{REC}-item-features,Job/{REC}-user-features"),
            (f"{obj('Job', REC + '-user-features')}.metadata.annotations[aipc.dev/depends-on]",
             f"Job/{REC}-events-export"),
            (f"{ctr('Job', REC + '-events-export')}.envFrom", [{"secretRef": {"name": "warehouse"}}]),
            (f"{ctr('Job', REC + '-two-tower')}.resources.limits[nvidia.com/gpu]", 2),
            *shm_pod(pod("Job", REC + "-two-tower"), ctr("Job", REC + "-two-tower"), "8Gi"),
            (f"{obj('Deployment', REC + '-ranker')}.metadata.annotations[aipc.dev/depends-on]",
             f"Deployment/{REC}-candidates"),
            (f"{obj('Deployment', REC + '-ranker')}.spec.replicas", 3),
            (f"{ctr('Deployment', REC + '-ranker')}.env[name=CANDIDATES_URL].value",
             "http://recommender-candidates:9000"),
            (f"{obj('Service', REC + '-candidates')}.spec.ports[0].port", 9000),
            (f"{obj('Deployment', REC + '-ranker')}.metadata.labels.tier", "frontend"),
            *hardened_k8s(REC, jobs=("events-export", "user-features", "item-features", "two-tower",
                                     "offline-metrics"), deployments=("candidates", "ranker")),
        ],
        "argo": [
            (f"{task('user-features')}.dependencies", ["events-export"]),
            (f"{task('item-features')}.dependencies", ["events-export"]),
            (f"{task('two-tower')}.dependencies", Has("item-features", "user-features")),
            (f"{task('offline-metrics')}.dependencies", ["two-tower"]),
            (f"{task('ranker')}.dependencies", ["candidates"]),
            # the task applying a Deployment succeeds once it has available replicas
            ("spec.templates[name=candidates-deployment].resource.successCondition",
             Re(r".*status\.availableReplicas > 1.*")),
            (f"{tpl('two-tower')}.container.resources.limits[nvidia.com/gpu]", 2),
            (f"{tpl('events-export')}.container.envFrom", [{"secretRef": {"name": "warehouse"}}]),
            (f"{tpl('events-export')}.container.image", "registry.acme.internal/recsys/etl:3.2.1"),
            (f"{applied('ranker')}spec.replicas", 3),
            *hardened_argo(batch=("events-export", "user-features", "item-features", "two-tower",
                                  "offline-metrics"), serve=("candidates", "ranker")),
        ],
    }),
    "vision-amd": Case(example("vision-amd"), facts={
        "compose": [
            (f"{svc('shard')}.image", "rocm/pytorch:rocm6.1_ubuntu22.04_py3.10_pytorch_2.1.2"),
            gpus_compose("classifier", "amd", 4),
            (f"{svc('classifier')}.shm_size", "32g"),
            Warns("B101", 25, 3),  # timeout = 6h, over the template's
            Warns("B101", 50, 5),  # gpu_model
            Warns("B101", 53, 3),  # timeout = 2d
            gpus_compose("accuracy", "amd", 1),
            (f"{svc('export')}.depends_on", {**SETUP, "accuracy": COMPLETED}),
            *hardened_compose("fetch", "shard", "classifier", "accuracy", "export"),
        ],
        "k8s": [
            Quiet(),
            *gpus_pod(pod("Job", AMD + "-classifier"), ctr("Job", AMD + "-classifier"), "amd.com/gpu", 4, AMD_TAINT,
                      MI250X),
            (f"{ctr('Job', AMD + '-classifier')}.resources.limits[nvidia.com/gpu]", ABSENT),
            (f"{obj('Job', AMD + '-classifier')}.spec.activeDeadlineSeconds", 172800),
            *shm_pod(pod("Job", AMD + "-classifier"), ctr("Job", AMD + "-classifier"), "32Gi"),
            (f"{ctr('Job', AMD + '-accuracy')}.resources.limits[amd.com/gpu]", 1),
            (f"{obj('PersistentVolumeClaim', AMD + '-images')}.spec.storageClassName", "cephfs"),
            (f"{obj('PersistentVolumeClaim', AMD + '-images')}.spec.resources.requests.storage", "2Ti"),
            *hardened_k8s(AMD, jobs=("fetch", "shard", "classifier", "accuracy", "export")),
        ],
        "argo": [
            *gpus_pod(tpl("classifier"), f"{tpl('classifier')}.container", "amd.com/gpu", 4, AMD_TAINT, MI250X),
            (f"{tpl('fetch')}.retryStrategy.limit", 2),
            (f"{tpl('fetch')}.activeDeadlineSeconds", 21600),
            (f"{task('export')}.dependencies", ["accuracy"]),
            *hardened_argo(batch=("fetch", "shard", "classifier", "accuracy", "export")),
        ],
    }),
    # The example that runs on any Docker engine: one public image, a volume passed along, a service.
    "quickstart": Case(example("quickstart"), facts={
        "compose": [
            Quiet(),
            *[(f"{svc(stage)}.image", "busybox:1.36") for stage in ("numbers", "model", "check", "report")],
            (f"{svc('numbers')}.volumes", ["work:/work:nocopy"]),
            (f"{svc('check')}.volumes", ["work:/work:ro,nocopy"]),
            (f"{svc('check')}.depends_on", {"model": COMPLETED}),
            (f"{svc('report')}.entrypoint", ["httpd"]),
            (f"{svc('report')}.command", ["-f", "-v", "-p", "8080", "-h", "/work"]),  # port = "${port}"
            (f"{svc('report')}.ports", [Re(r"(.*:)?8080:8080")]),
            (f"{svc('report')}.healthcheck.test", Has(Re(r".*http://127\.0\.0\.1:8080/model\.txt.*"))),
            *hardened_compose("numbers", "model", "check", "report"),
        ],
        "k8s": [
            Quiet(),
            (f"{obj('PersistentVolumeClaim', 'quickstart-work')}.spec.resources.requests.storage", "1Gi"),
            (f"{obj('Job', 'quickstart-model')}.metadata.annotations[aipc.dev/depends-on]", "Job/quickstart-numbers"),
            (f"{ctr('Deployment', 'quickstart-report')}.readinessProbe.httpGet.path", "/model.txt"),
            (f"{obj('Service', 'quickstart-report')}.spec.ports[0].port", 8080),
            *hardened_k8s("quickstart", jobs=("numbers", "model", "check"), deployments=("report",)),
        ],
        "argo": [
            (f"{task('check')}.dependencies", ["model"]),
            (f"{task('report')}.dependencies", ["check"]),
            (f"{applied('report')}spec.template.spec.containers[0].readinessProbe.httpGet.path", "/model.txt"),
            *hardened_argo(batch=("numbers", "model", "check"), serve=("report",)),
        ],
    }),
    # LANGUAGE.md's artifacts: two outputs, read by the next stage (read-only, implying the order).
    "churn": Case(example("churn"), facts={
        "compose": [
            Quiet(),
            (f"{svc('model')}.volumes", ["model.model:/out/model:nocopy", "model.metrics:/out/metrics:nocopy"]),
            (f"{svc('evaluate')}.volumes", ["model.model:/in/model:ro,nocopy", "model.metrics:/in/metrics:ro,nocopy"]),
            (f"{svc('evaluate')}.depends_on", {"model": COMPLETED}),
            # the outputs are given to the volume group before `model` writes them as uid 65532
            (f"{svc('aipc-volumes')}.volumes", ["model.metrics:/aipc/volumes/model.metrics:nocopy",
                                                 "model.model:/aipc/volumes/model.model:nocopy"]),
            (f"{svc('model')}.depends_on", {"aipc-volumes": COMPLETED}),
            ("volumes[model.model].labels[app.kubernetes.io/part-of]", "churn"),
            *hardened_compose("model", "evaluate"),
        ],
        "k8s": [
            Warns("B105", 6, 11),  # the cluster's cache key holds the image's tag
            (f"{obj('PersistentVolumeClaim', 'churn-artifacts')}.spec.accessModes", ["ReadWriteMany"]),
            (f"{obj('PersistentVolumeClaim', 'churn-artifacts')}.spec.storageClassName", "standard-rwx"),
            (f"{ctr('Job', 'churn-model')}.volumeMounts[0]",
             {"name": "artifacts", "mountPath": "/out/model", "subPath": "model/model"}),
            (f"{ctr('Job', 'churn-evaluate')}.volumeMounts[1]",
             {"name": "artifacts", "mountPath": "/in/metrics", "subPath": "model/metrics", "readOnly": True}),
            (f"{obj('Job', 'churn-evaluate')}.metadata.annotations[aipc.dev/depends-on]", "Job/churn-model"),
            (f"{obj('Job', 'churn-evaluate')}.metadata.annotations[aipc.dev/cache-key]", Re(r"[0-9a-f]{64}")),
            *hardened_k8s("churn", jobs=["model", "evaluate"]),
        ],
        "argo": [
            Warns("B105", 6, 11),
            ("spec.volumeClaimTemplates[0].metadata.name", "artifacts"),
            (f"{tpl('model')}.memoize", ABSENT),  # it has outputs: the run's claim is new
            (f"{tpl('evaluate')}.memoize.key", Re(r"[0-9a-f]{64}")),
            (f"{tpl('evaluate')}.memoize.cache.configMap.name", "churn-cache"),
            ("spec.volumeClaimTemplates[0].spec.accessModes", ["ReadWriteMany"]),
            (f"{tpl('evaluate')}.container.volumeMounts[0]",
             {"name": "artifacts", "mountPath": "/in/model", "subPath": "model/model", "readOnly": True}),
            (f"{task('evaluate')}.dependencies", ["model"]),
            *hardened_argo(batch=("model", "evaluate")),
        ],
    }),
    # LANGUAGE.md's sweep: 2 x 3 less one excluded, max_parallel = 2, paired, then fan-in.
    "sweep": Case(example("sweep"), facts={
        "compose": [
            Quiet(),
            *[fact for lr, seed in SWEEP_INSTANCES for fact in (
                (f"{svc(f'model-{lr}-{seed}')}.entrypoint", ["python"]),
                (f"{svc(f'model-{lr}-{seed}')}.command", ["train.py", "--lr", lr, "--seed", seed]),
                (f"{svc(f'score-{lr}-{seed}')}.command", ["eval.py", "--lr", lr, "--seed", seed]),
                # pairing: each score instance after exactly its own model instance
                (f"{svc(f'score-{lr}-{seed}')}.depends_on", {f"model-{lr}-{seed}": COMPLETED}),
                gpus_compose(f"model-{lr}-{seed}", "nvidia", 1),
                (f"{svc(f'model-{lr}-{seed}')}.labels[aipc.dev/matrix]", "model"),
            )],
            (svc("model-1e-4-3"), ABSENT),  # excluded
            # max_parallel = 2: a window of two chains, each instance after the one two before it
            (f"{svc('model-1e-4-1')}.depends_on", ABSENT),
            (f"{svc('model-1e-4-2')}.depends_on", ABSENT),
            (f"{svc('model-3e-4-1')}.depends_on", {"model-1e-4-1": COMPLETED}),
            (f"{svc('model-3e-4-2')}.depends_on", {"model-1e-4-2": COMPLETED}),
            (f"{svc('model-3e-4-3')}.depends_on", {"model-3e-4-1": COMPLETED}),
            (f"{svc('model-3e-4-2')}.labels[aipc.dev/matrix-coordinates]", '{"lr": 0.0003, "seed": 2}'),
            (f"{svc('pick_best')}.depends_on", {f"score-{lr}-{seed}": COMPLETED for lr, seed in SWEEP_INSTANCES}),
            *hardened_compose(*[f"{stage}-{lr}-{seed}" for stage in ("model", "score")
                                for lr, seed in SWEEP_INSTANCES], "pick_best"),
        ],
        "k8s": [
            Quiet(),
            *[fact for lr, seed in SWEEP_INSTANCES for fact in (
                (f"{ctr('Job', f'sweep-model-{lr}-{seed}')}.command",
                 ["python", "train.py", "--lr", lr, "--seed", seed]),
                (f"{obj('Job', f'sweep-score-{lr}-{seed}')}.metadata.annotations[aipc.dev/depends-on]",
                 f"Job/sweep-model-{lr}-{seed}"),
                (f"{obj('Job', f'sweep-model-{lr}-{seed}')}.metadata.annotations[aipc.dev/max-parallel]", "2"),
                (f"{obj('Job', f'sweep-score-{lr}-{seed}')}.metadata.annotations[aipc.dev/max-parallel]", ABSENT),
                (f"{obj('Job', f'sweep-model-{lr}-{seed}')}.metadata.labels[aipc.dev/matrix]", "model"),
            )],
            (obj("Job", "sweep-model-1e-4-3"), ABSENT),
            (f"{obj('Job', 'sweep-model-3e-4-2')}.metadata.annotations[aipc.dev/matrix-coordinates]",
             '{"lr": 0.0003, "seed": 2}'),
            (f"{obj('Job', 'sweep-pick-best')}.metadata.annotations[aipc.dev/depends-on]",
             ",".join(f"Job/sweep-score-{lr}-{seed}" for lr, seed in SWEEP_INSTANCES)),
            *hardened_k8s("sweep", jobs=[f"{stage}-{lr}-{seed}" for stage in ("model", "score")
                                         for lr, seed in SWEEP_INSTANCES] + ["pick-best"]),
        ],
        "argo": [
            Warns("B101", 5, 3),  # under max_parallel, score's instances wait for all of model's
            # the instances in a DAG template of their own, `parallelism` = max_parallel
            ("spec.templates[name=model].parallelism", 2),
            ("spec.templates[name=model].dag.tasks",
             [{"name": f"model-{lr}-{seed}", "template": f"model-{lr}-{seed}"} for lr, seed in SWEEP_INSTANCES]),
            (f"{task('model')}.template", "model"),
            *[fact for lr, seed in SWEEP_INSTANCES for fact in (
                (f"{tpl(f'model-{lr}-{seed}')}.container.command", ["python", "train.py", "--lr", lr, "--seed", seed]),
                (f"{task(f'score-{lr}-{seed}')}.dependencies", ["model"]),
                (f"{tpl(f'model-{lr}-{seed}')}.metadata.labels[aipc.dev/matrix]", "model"),
            )],
            (f"{tpl('model-3e-4-2')}.metadata.annotations[aipc.dev/matrix-coordinates]", '{"lr": 0.0003, "seed": 2}'),
            (f"{task('pick-best')}.dependencies", [f"score-{lr}-{seed}" for lr, seed in SWEEP_INSTANCES]),
            *hardened_argo(batch=[f"{stage}-{lr}-{seed}" for stage in ("model", "score")
                                  for lr, seed in SWEEP_INSTANCES] + ["pick-best"]),
        ],
    }),
    # nodes = 4: one group of 4 pods (containers), each told the group by the same variables.
    "multinode": Case(example("multinode"), facts={
        "compose": [
            Warns("B120", 13, 3),  # 4 containers on one host
            (svc("pretrain"), ABSENT),
            *[fact for rank in range(4) for fact in (
                (f"{svc(f'pretrain-node-{rank}')}.entrypoint", ["torchrun"]),
                (f"{svc(f'pretrain-node-{rank}')}.environment", Has(
                    *[f"{name}={value}" for name, value in node_variables("multinode-pretrain-0.multinode-pretrain")],
                    f"NODE_RANK={rank}", f"PET_NODE_RANK={rank}")),
                (f"{svc(f'pretrain-node-{rank}')}.networks.default.aliases",
                 [f"multinode-pretrain-{rank}.multinode-pretrain"]),
                gpus_compose(f"pretrain-node-{rank}", "nvidia", 8),
                (f"{svc(f'pretrain-node-{rank}')}.shm_size", "128g"),
                (f"{svc(f'pretrain-node-{rank}')}.restart", "on-failure:2"),
            )],
            (f"{svc('score')}.depends_on", {f"pretrain-node-{rank}": COMPLETED for rank in range(4)}),
            *hardened_compose(*[f"pretrain-node-{rank}" for rank in range(4)], "score"),
        ],
        "k8s": [
            Quiet(),
            (f"{obj('Job', 'multinode-pretrain')}.spec.completionMode", "Indexed"),
            (f"{obj('Job', 'multinode-pretrain')}.spec.completions", 4),
            (f"{obj('Job', 'multinode-pretrain')}.spec.parallelism", 4),
            (f"{obj('Job', 'multinode-pretrain')}.spec.backoffLimit", 2),
            (f"{pod('Job', 'multinode-pretrain')}.subdomain", "multinode-pretrain"),
            (f"{obj('Service', 'multinode-pretrain')}.spec.clusterIP", "None"),
            (f"{obj('Service', 'multinode-pretrain')}.spec.publishNotReadyAddresses", True),
            (f"{obj('NetworkPolicy', 'multinode-pretrain')}.spec.ingress",
             [{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "pretrain",
                                                         "app.kubernetes.io/part-of": "multinode"}}}]}]),
            *[(f"{ctr('Job', 'multinode-pretrain')}.env[name={name}].value", value)
              for name, value in node_variables("multinode-pretrain-0.multinode-pretrain")],
            *[(f"{ctr('Job', 'multinode-pretrain')}.env[name={name}].valueFrom.fieldRef.fieldPath",
               "metadata.annotations['batch.kubernetes.io/job-completion-index']")
              for name in ("NODE_RANK", "PET_NODE_RANK")],
            *gpus_pod(pod("Job", "multinode-pretrain"), ctr("Job", "multinode-pretrain"), "nvidia.com/gpu", 8,
                      NVIDIA_TAINT),
            *shm_pod(pod("Job", "multinode-pretrain"), ctr("Job", "multinode-pretrain"), "128Gi"),
            (f"{obj('Job', 'multinode-score')}.metadata.annotations[aipc.dev/depends-on]", "Job/multinode-pretrain"),
            *hardened_k8s("multinode", jobs=["pretrain", "score"]),
        ],
        "argo": [
            Warns("B101", 13, 14),  # `${machines}` is a number: compiled in, not offered for submission
            (f"{tpl('pretrain')}.steps", [[{"name": "network-policy", "template": "pretrain-network-policy"},
                                           {"name": "service", "template": "pretrain-service"}],
                                          [{"name": "job", "template": "pretrain-job"}]]),
            (f"{tpl('pretrain-job')}.resource.successCondition", "status.succeeded > 3"),
            (f"{tpl('pretrain-job')}.resource.failureCondition", "status.failed > 2"),
            (f"{tpl('pretrain-job')}.resource.manifest>spec.completionMode", "Indexed"),
            (f"{tpl('pretrain-job')}.resource.manifest>spec.completions", 4),
            (f"{tpl('pretrain-job')}.resource.manifest>spec.template.spec.subdomain", "{{workflow.name}}-pretrain"),
            (f"{tpl('pretrain-service')}.resource.manifest>spec.publishNotReadyAddresses", True),
            *[(f"{tpl('pretrain-job')}.resource.manifest>spec.template.spec.containers[0].env[name={name}].value",
               value) for name, value in node_variables("{{workflow.name}}-pretrain-0.{{workflow.name}}-pretrain")],
            *[(f"{tpl('pretrain-job')}.resource.manifest>spec.template.spec.containers[0]"
               f".env[name={name}].valueFrom.fieldRef.fieldPath",
               "metadata.annotations['batch.kubernetes.io/job-completion-index']")
              for name in ("NODE_RANK", "PET_NODE_RANK")],
            *_hardened_pod(f"{tpl('pretrain-job')}.resource.manifest>spec.template.spec",
                           f"{tpl('pretrain-job')}.resource.manifest>spec.template.spec.containers[0]"),
            # the Job's pods are not the Workflow's: the volume is a claim of its own, created first
            (f"{tpl('pretrain-job')}.resource.manifest>spec.template.spec.volumes[name=checkpoints]"
             ".persistentVolumeClaim.claimName", "multinode-checkpoints"),
            (f"{task('pretrain')}.dependencies", ["checkpoints-volume"]),
            (f"{task('score')}.dependencies", ["pretrain"]),
        ],
    }),
}

# --------------------------------------------------- hand-written programs
# Each compiles as t.aip: the pipeline is `t`, and objects are named `t-STAGE`.

GPUS = """\
train cuda  { image = "x:1"  resources { gpu = 2  gpu_model = "NVIDIA-A100-SXM4-80GB" } }
train rocm  { image = "x:1"  resources { gpu = 1  gpu_vendor = amd } }
train arc   { image = "x:1"  resources { gpu = 1  gpu_vendor = intel  gpu_model = "Arc-A770" } }
train plain { image = "x:1"  resources { gpu = 0 } }
"""

RESOURCES = """\
train model {
  image = "x:1"
  resources { cpu = 500m..2  memory = 1Gi..4Gi  shm = 2Gi  disk = 10Gi }
}
"""

RETRIES_AND_TIMEOUT = """\
data flaky { image = "x:1"  retries = 3  timeout = 1h30m }
data once  { image = "x:1" }
"""

VOLUMES = """\
volume shared { claim = "team-datasets" }
volume one    { size = 1Gi }
volume many   { size = 2Gi  access = rwx  class = "nfs" }
volume frozen { size = 3Gi  access = rox }
data write { image = "x:1"  mount one at "/one"  mount many at "/many" }
data read {
  image = "x:1"
  after = [write]
  mount shared at "/shared" readonly
  mount one    at "/one" readonly
  mount many   at "/many"
  mount frozen at "/frozen" readonly
}
"""

ROX_WITHOUT_READONLY = """\
volume frozen { size = 3Gi  access = rox }
data read { image = "x:1"  mount frozen at "/frozen" }
"""

HOST_VOLUME = """\
volume local { host = "./data" }
data read  { image = "x:1"  mount local at "/data" readonly }
data write { image = "x:1"  after = [read]  mount local at "/out" }
"""

SECRETS = """\
secret s3  { keys = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] }
secret db  { keys = ["DB_PASSWORD"] }
data etl { image = "x:1"  secrets = [s3, db]  env = { LOG_LEVEL = "debug" } }
serve api { image = "x:1"  port = 8080  secrets = [db] }
"""
SECRET_VALUES = {"AWS_ACCESS_KEY_ID": "AKIA-table-test", "AWS_SECRET_ACCESS_KEY": "s3-table-test-secret",
                 "DB_PASSWORD": "db-table-test-password"}

# The header's security is every stage's default; a stage's keys replace it key by key.
CONTAINERS = """\
pipeline "t" {
  pull_secrets = ["regcred"]
  security { user = "1000:100" }
}
secret hf { keys = ["token"] }
data fetch { image = "x:1"  args = ["--all"]  env = { HF_TOKEN = hf.token }  pull = never }
data chowner { image = "x:1"  security { user = root  capabilities = ["CHOWN"] } }
"""
HF_VALUE = {"token": "hf-table-test-token"}

ORDER = """\
data a { image = "x:1" }
data b { image = "x:1"  after = [a] }
data c { image = "x:1"  after = [a] }
train d { image = "x:1"  after = [b, c] }
eval e { image = "x:1"  after = [d] }
"""

SERVICES = """\
data prep { image = "x:1" }
serve db  { image = "db:1"   after = [prep]  port = 5432 }
serve api { image = "api:1"  after = [db]    port = 8080  replicas = 2  health = "/healthz" }
serve web { image = "web:1"  after = [api]   port = 3000 }
"""

# Ports, `expose`, the `health` block, service addresses, a batch stage after serve stages.
ADDRESSES = """\
serve db  { image = "db:1"  port = 5432  expose = 15432  health { command = ["pg_isready"]  interval = 2s  failures = 5 } }
serve api {
  image = "api:1"  port = 8000  expose = 80  ports = { metrics = 9090 }  replicas = 2
  health { http = "/ready"  start = 2m  interval = 10s  timeout = 3s }
}
data load { image = "etl:1"  after = [db, api]  command = ["load", "${db.host}:${db.port}", "${api.url}"] }
"""

PARAMS = """\
param epochs: int    = 10
param lr: float      = 3e-4
param tag: string    = "1.0"
param amp: bool      = true
train model {
  image   = "trainer:${tag}"
  command = ["train", "--epochs=${epochs}", "--lr", "${lr}", "--amp=${amp}"]
  env     = { RUN = "${pipeline.name}-${stage.name}" }
}
"""

HARDENING = """\
data job   { image = "x:1" }
serve web  { image = "x:1"  port = 80 }
"""

# Portable GPU models under GKE's and Karpenter's labels, and a label value as written.
GPU_LABELS = """\
train big  { image = "x:1"  resources { gpu = 8  gpu_model = "A100-40GB" } }
train raw  { image = "x:1"  resources { gpu = 1  gpu_model = "nvidia-tesla-t4" } }
"""

# One GPU box: `a` and `b` may run together; `both` after them; a service with two replicas.
GPU_BOX = """\
train a     { image = "x:1"  resources { gpu = 2 } }
train b     { image = "x:1"  resources { gpu = 1 } }
eval  both  { image = "x:1"  after = [a, b]  resources { gpu = 3 } }
serve api   { image = "x:1"  after = [both]  port = 80  replicas = 2  resources { gpu = 1 } }
"""

# A parameter that sets a number and one that a serve stage uses: on Argo, where
# parameters are taken at submission, both are fixed so that each means one value.
FIXED_PARAMS = """\
param gpus: int = 2
param epochs: int = 5
param greeting: string = "it's fine"
train model {
  image   = "trainer:1.0"
  command = ["torchrun", "--nproc-per-node=${gpus}", "--epochs=${epochs}"]
  resources { gpu = "${gpus}"  memory = 32Gi }
}
serve api { image = "api:1.0"  after = [model]  port = 8080  env = { GREETING = "${greeting}" } }
"""

# The Docker socket as a host volume: it hands the host to the container, said on
# every target (compose binds it; the clusters have no host paths at all).
DOCKER_SOCKET = """\
volume engine { host = "/var/run/docker.sock" }
data build { image = "docker:27.1"  mount engine at "/var/run/docker.sock" }
"""

# A matrix stage under max_parallel and a matrix of serve stages: their instances
# get what every other stage gets (accounts, network policies, parameter rules).
MATRIX_SECURITY = """\
param epochs: int = 5
param gpus: int = 2
param greeting: string = "it's fine"
pipeline "grid" { image = "trainer:1.0" }
train fit {
  matrix       { lr = [1e-4, 3e-4]  seed = [1, 2] }
  max_parallel = 2
  command      = ["fit", "--lr", "${matrix.lr}", "--epochs=${epochs}"]
  resources { gpu = "${gpus}"  memory = 32Gi }
}
serve api {
  matrix = { port = [8080, 8081] }
  port   = "${matrix.port}"
  env    = { GREETING = "${greeting}" }
}
"""
FITS = ["fit-1e-4-1", "fit-1e-4-2", "fit-3e-4-1", "fit-3e-4-2"]  # fit-LR-SEED


def lr_of(instance: str) -> str:
    return instance.split("-", 1)[1].rsplit("-", 1)[0]


def egress_of(pipeline: str) -> list:
    """The egress rules of a pipeline's policy: DNS, its own pods, anything but the metadata service."""
    return [{"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": pipeline}}}]},
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}},
                    {"ipBlock": {"cidr": "::/0", "except": ["fd00:ec2::254/128"]}}]}]


EGRESS = egress_of("t")

# A stage from a local template, itself from an imported one: what each target gets is the merge.
TEMPLATES = """\
import "lib/jobs.aip" as jobs
volume data { size = 1Gi }
template trainer: train from jobs.gpu {
  image = "trainer:1.0"
  env   = { LEVEL = "info", SEED = "1" }
  mount data at "/data" readonly
}
train model from trainer {
  env = { SEED = "7" }
  resources { gpu = 2 }
  mount data at "/data"
}
"""
TEMPLATE_LIBRARY = {"lib/jobs.aip": "template gpu: train {\n  resources { gpu = 1  memory = 16Gi  shm = 2Gi }\n"
                                    "  timeout = 1h\n}\n"}
MERGED_ENV = [{"name": "LEVEL", "value": "info"}, {"name": "SEED", "value": "7"}, {"name": "HOME", "value": "/tmp"},
              {"name": "USER", "value": "nonroot"}]
MERGED_RESOURCES = {"requests": {"cpu": "500m", "memory": "16Gi"},
                    "limits": {"cpu": "2", "memory": "16Gi", "nvidia.com/gpu": 2}}

# Values per instance (GPUs, a path with the instance's name), a name hashed for a
# value ending in `.`, fan-in, no max_parallel, and a matrix of serve stages.
MATRIX = """\
pipeline "grid" { image = "trainer:1.0" }
volume out { size = 1Gi  access = rwx }
data prep { command = ["prep"] }
train fit {
  matrix  { gpus = [1, 2]  opt = ["adam", "sgd."] }
  after   = [prep]
  command = ["fit", "--opt", "${matrix.opt}", "--out", "/out/${stage.name}"]
  resources { gpu = "${matrix.gpus}"  memory = 8Gi }
  mount out at "/out"
}
eval report { after = [fit]  mount out at "/out" readonly }
serve api {
  matrix = { port = [8080, 8081] }
  port   = "${matrix.port}"
  after  = [prep]
}
"""
# (instance, GPUs, optimizer); `fit-1-sgd-` would end with `-`: named by a hash of its coordinates
GRID = [("fit-1-adam", 1, "adam"), ("fit-2-adam", 2, "adam"), ("fit-73bef9df", 1, "sgd."),
        ("fit-28e0b913", 2, "sgd.")]

CASES = {
    **EXAMPLE_CASES,
    "templates": Case(TEMPLATES, files=TEMPLATE_LIBRARY, facts={
        "compose": [
            (f"{svc('model')}.environment", ["LEVEL=info", "SEED=7", *HOME_USER]),  # env merged key by key
            (f"{svc('model')}.volumes", ["data:/data:nocopy"]),  # the stage's mount at the template's path replaces it
            gpus_compose("model", "nvidia", 2),  # resources merged: gpu from the stage, the rest kept
            (f"{svc('model')}.deploy.resources.limits", {"cpus": "2", "memory": "16g"}),  # the default cpu
            (f"{svc('model')}.shm_size", "2g"),
            Warns("B101", 3, 3, in_file="lib/jobs.aip"),  # the imported template's timeout
        ],
        "k8s": [
            Quiet(),
            (f"{ctr('Job', 't-model')}.env", MERGED_ENV),
            (f"{ctr('Job', 't-model')}.resources", MERGED_RESOURCES),
            (f"{ctr('Job', 't-model')}.volumeMounts[name=data].readOnly", ABSENT),
            (f"{obj('Job', 't-model')}.spec.activeDeadlineSeconds", 3600),
            *shm_pod(pod("Job", "t-model"), ctr("Job", "t-model"), "2Gi"),
        ],
        "argo": [
            (f"{tpl('model')}.container.env", MERGED_ENV),
            (f"{tpl('model')}.container.resources", MERGED_RESOURCES),
            (f"{tpl('model')}.activeDeadlineSeconds", 3600),
        ],
    }),
    "matrix": Case(MATRIX, facts={
        "compose": [
            Quiet(),
            *[fact for name, gpus, opt in GRID for fact in (
                (f"{svc(name)}.command", ["--opt", opt, "--out", f"/out/{name}"]),
                gpus_compose(name, "nvidia", gpus),
                (f"{svc(name)}.depends_on", {**SETUP, "prep": COMPLETED}),  # no window without max_parallel
                (f"{svc(name)}.labels[aipc.dev/matrix-coordinates]", f'{{"gpus": {gpus}, "opt": "{opt}"}}'),
            )],
            (f"{svc('report')}.depends_on", {name: COMPLETED for name, _, _ in GRID}),
            (f"{svc('api-8080')}.ports", [Re(r"(.*:)?8080:8080")]),
            (f"{svc('api-8081')}.ports", [Re(r"(.*:)?8081:8081")]),
            (f"{svc('prep')}.labels[aipc.dev/matrix]", ABSENT),
            *hardened_compose(*[name for name, _, _ in GRID], "api-8080", "api-8081"),
        ],
        "k8s": [
            Quiet(),
            *[fact for name, gpus, opt in GRID for fact in (
                (f"{ctr('Job', 'grid-' + name)}.resources.limits[nvidia.com/gpu]", gpus),
                (f"{ctr('Job', 'grid-' + name)}.command", ["fit", "--opt", opt, "--out", f"/out/{name}"]),
                (f"{obj('Job', 'grid-' + name)}.metadata.annotations[aipc.dev/matrix-coordinates]",
                 f'{{"gpus": {gpus}, "opt": "{opt}"}}'),
                (f"{obj('Job', 'grid-' + name)}.metadata.annotations[aipc.dev/max-parallel]", ABSENT),
            )],
            (f"{obj('Job', 'grid-report')}.metadata.annotations[aipc.dev/depends-on]",
             ",".join(f"Job/grid-{name}" for name in sorted(name for name, _, _ in GRID))),
            (f"{ctr('Deployment', 'grid-api-8081')}.ports[0].containerPort", 8081),
            (f"{obj('Service', 'grid-api-8081')}.spec.ports[0].port", 8081),
            (f"{obj('Deployment', 'grid-api-8080')}.metadata.labels[aipc.dev/matrix]", "api"),
            *hardened_k8s("grid", jobs=[name for name, _, _ in GRID], deployments=("api-8080", "api-8081")),
        ],
        "argo": [
            Quiet(),
            ("spec.templates[name=fit]", ABSENT),  # no max_parallel: the instances are the entrypoint's tasks
            *[fact for name, gpus, opt in GRID for fact in (
                (f"{task(name)}.dependencies", ["prep"]),
                (f"{tpl(name)}.container.resources.limits[nvidia.com/gpu]", gpus),
                (f"{tpl(name)}.container.command", ["fit", "--opt", opt, "--out", f"/out/{name}"]),
            )],
            (f"{task('report')}.dependencies", sorted(name for name, _, _ in GRID)),
            (f"{applied('api-8081')}spec.template.spec.containers[0].ports[0].containerPort", 8081),
            *hardened_argo(batch=[name for name, _, _ in GRID], serve=("api-8080", "api-8081")),
        ],
    }),
    "gpus": Case(GPUS, facts={
        "compose": [
            gpus_compose("cuda", "nvidia", 2),
            gpus_compose("rocm", "amd", 1),
            (f"{svc('arc')}.devices", Has(Re(r"/dev/dri(:.*)?"))),  # Intel: the host's render nodes
            Warns("B101", 3, 42),  # compose cannot count Intel GPUs
            Warns("B101", 1, 51),  # nor select a model
            Warns("B101", 3, 71),
            (f"{svc('plain')}.deploy.resources.reservations.devices", ABSENT),
        ],
        "k8s": [
            *gpus_pod(pod("Job", "t-cuda"), ctr("Job", "t-cuda"), "nvidia.com/gpu", 2, NVIDIA_TAINT, A100),
            *gpus_pod(pod("Job", "t-rocm"), ctr("Job", "t-rocm"), "amd.com/gpu", 1, AMD_TAINT),
            *gpus_pod(pod("Job", "t-arc"), ctr("Job", "t-arc"), "gpu.intel.com/i915", 1, INTEL_TAINT, ARC),
            (f"{pod('Job', 't-plain')}.tolerations", ABSENT),
            (f"{ctr('Job', 't-plain')}.resources.limits[nvidia.com/gpu]", ABSENT),
        ],
        "argo": [
            *gpus_pod(tpl("cuda"), f"{tpl('cuda')}.container", "nvidia.com/gpu", 2, NVIDIA_TAINT, A100),
            *gpus_pod(tpl("rocm"), f"{tpl('rocm')}.container", "amd.com/gpu", 1, AMD_TAINT),
            *gpus_pod(tpl("arc"), f"{tpl('arc')}.container", "gpu.intel.com/i915", 1, INTEL_TAINT, ARC),
            (f"{tpl('plain')}.tolerations", ABSENT),
        ],
    }),
    "resources": Case(RESOURCES, facts={
        "compose": [
            (f"{svc('model')}.deploy.resources.limits", {"cpus": "2", "memory": "4g"}),
            (f"{svc('model')}.deploy.resources.reservations", {"cpus": "0.5", "memory": "1g"}),
            (f"{svc('model')}.shm_size", "2g"),
            Warns("B101", 3, 60),  # disk: compose cannot limit local storage
        ],
        "k8s": [
            Quiet(),
            (f"{ctr('Job', 't-model')}.resources",
             {"requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "10Gi"},
              "limits": {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi"}}),
            *shm_pod(pod("Job", "t-model"), ctr("Job", "t-model"), "2Gi"),
        ],
        "argo": [
            (f"{tpl('model')}.container.resources",
             {"requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "10Gi"},
              "limits": {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi"}}),
            *shm_pod(tpl("model"), f"{tpl('model')}.container", "2Gi"),
        ],
    }),
    "retries-and-timeout": Case(RETRIES_AND_TIMEOUT, facts={
        "compose": [
            (f"{svc('flaky')}.restart", "on-failure:3"),
            Warns("B101", 1, 42),  # timeout: compose has no deadline
            (f"{svc('once')}.restart", "no"),
        ],
        "k8s": [
            Quiet(),
            (f"{obj('Job', 't-flaky')}.spec.backoffLimit", 3),
            (f"{obj('Job', 't-flaky')}.spec.activeDeadlineSeconds", 5400),
            (f"{pod('Job', 't-flaky')}.restartPolicy", "Never"),
            (f"{obj('Job', 't-once')}.spec.backoffLimit", 0),
            (f"{obj('Job', 't-once')}.spec.activeDeadlineSeconds", ABSENT),
        ],
        "argo": [
            (f"{tpl('flaky')}.retryStrategy.limit", 3),
            (f"{tpl('flaky')}.activeDeadlineSeconds", 5400),
            (f"{tpl('once')}.retryStrategy", ABSENT),
            (f"{tpl('once')}.activeDeadlineSeconds", ABSENT),
        ],
    }),
    "volumes": Case(VOLUMES, facts={
        "compose": [
            (f"{svc('write')}.volumes", ["one:/one:nocopy", "many:/many:nocopy"]),
            (f"{svc('read')}.volumes",
             ["shared:/shared:ro,nocopy", "one:/one:ro,nocopy", "many:/many:nocopy", "frozen:/frozen:ro,nocopy"]),
            (f"{svc('read')}.depends_on", {**SETUP, "write": COMPLETED}),
            ("volumes.shared", {"external": True, "name": "team-datasets"}),  # an existing volume, not created
            ("volumes.one.external", ABSENT),
            ("volumes.many.labels[app.kubernetes.io/part-of]", "t"),
        ],
        "k8s": [
            Quiet(),
            (f"{obj('PersistentVolumeClaim', 't-one')}.spec",
             {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}),
            (f"{obj('PersistentVolumeClaim', 't-many')}.spec",
             {"accessModes": ["ReadWriteMany"], "storageClassName": "nfs",
              "resources": {"requests": {"storage": "2Gi"}}}),
            (f"{obj('PersistentVolumeClaim', 't-frozen')}.spec.accessModes", ["ReadOnlyMany"]),
            (f"{obj('PersistentVolumeClaim', 't-shared')}", ABSENT),  # a claim is used, not created
            (f"{obj('PersistentVolumeClaim', 'team-datasets')}", ABSENT),
            (f"{pod('Job', 't-read')}.volumes[name=shared].persistentVolumeClaim.claimName", "team-datasets"),
            (f"{pod('Job', 't-read')}.volumes[name=one].persistentVolumeClaim.claimName", "t-one"),
            (f"{ctr('Job', 't-read')}.volumeMounts[name=shared]", {"name": "shared", "mountPath": "/shared",
                                                                   "readOnly": True}),
            (f"{ctr('Job', 't-read')}.volumeMounts[name=one].readOnly", True),
            (f"{ctr('Job', 't-read')}.volumeMounts[name=many].readOnly", ABSENT),
            (f"{ctr('Job', 't-write')}.volumeMounts[name=one].readOnly", ABSENT),
        ],
        "argo": [
            ("spec.volumeClaimTemplates[metadata.name=many].spec.accessModes", ["ReadWriteMany"]),
            ("spec.volumeClaimTemplates[metadata.name=many].spec.storageClassName", "nfs"),
            ("spec.volumeClaimTemplates[metadata.name=one].spec.resources.requests.storage", "1Gi"),
            ("spec.volumeClaimTemplates[metadata.name=frozen].spec.accessModes", ["ReadOnlyMany"]),
            ("spec.volumes[name=shared].persistentVolumeClaim.claimName", "team-datasets"),
            (f"{tpl('read')}.container.volumeMounts[name=shared].readOnly", True),
            (f"{tpl('read')}.container.volumeMounts[name=one].readOnly", True),
            (f"{tpl('read')}.container.volumeMounts[name=many].readOnly", ABSENT),
            (f"{task('read')}.dependencies", Has("write")),
        ],
    }),
    # `access = rox`: many nodes may mount it, read-only. Every target mounts it
    # read-only even where the mount does not say `readonly`.
    "rox-volume": Case(ROX_WITHOUT_READONLY, facts={
        "compose": [(f"{svc('read')}.volumes", ["frozen:/frozen:ro,nocopy"])],
        "k8s": [(f"{obj('PersistentVolumeClaim', 't-frozen')}.spec.accessModes", ["ReadOnlyMany"]),
                (f"{ctr('Job', 't-read')}.volumeMounts[name=frozen].readOnly", True)],
        "argo": [("spec.volumeClaimTemplates[metadata.name=frozen].spec.accessModes", ["ReadOnlyMany"]),
                 (f"{tpl('read')}.container.volumeMounts[name=frozen].readOnly", True)],
    }),
    "host-volume": Case(HOST_VOLUME, facts={
        "compose": [
            (f"{svc('read')}.volumes", [Re(r"(\./|/.*/)data:/data:ro")]),  # a bind mount of the host path
            (f"{svc('write')}.volumes", [Re(r"(\./|/.*/)data:/out")]),
            ("volumes", ABSENT),
        ],
        "k8s": [Fails("B001", (2, 29), (3, 45))],
        "argo": [Fails("B001", (2, 29), (3, 45))],
    }),
    "secrets": Case(SECRETS, env=SECRET_VALUES, facts={
        # names only: the values come from the caller's environment or the cluster
        "compose": [
            (f"{svc('etl')}.environment", ["LOG_LEVEL=debug", *HOME_USER, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                           "DB_PASSWORD"]),
            (f"{svc('api')}.environment", [*HOME_USER, "DB_PASSWORD"]),
        ],
        "k8s": [
            Quiet(),
            (f"{ctr('Job', 't-etl')}.envFrom", [{"secretRef": {"name": "s3"}}, {"secretRef": {"name": "db"}}]),
            (f"{ctr('Job', 't-etl')}.env[name=LOG_LEVEL].value", "debug"),
            (f"{ctr('Deployment', 't-api')}.envFrom", [{"secretRef": {"name": "db"}}]),
            (f"{obj('Secret', 's3')}", ABSENT),  # never generated: the cluster holds it
            (f"{obj('Secret', 'db')}", ABSENT),
        ],
        "argo": [
            (f"{tpl('etl')}.container.envFrom", [{"secretRef": {"name": "s3"}}, {"secretRef": {"name": "db"}}]),
            (f"{applied('api')}spec.template.spec.containers[0].envFrom", [{"secretRef": {"name": "db"}}]),
        ],
    }),
    "containers": Case(CONTAINERS, env=HF_VALUE, facts={
        "compose": [
            Warns("B101", 2, 3),  # pull_secrets: the caller's `docker login` is used
            (f"{svc('fetch')}.entrypoint", ABSENT),
            (f"{svc('fetch')}.command", ["--all"]),
            (f"{svc('fetch')}.pull_policy", "never"),
            (f"{svc('fetch')}.environment", ["HOME=/tmp", "USER=nonroot", "HF_TOKEN=${token}"]),
            (f"{svc('fetch')}.user", "1000:100"),
            (f"{svc('chowner')}.user", "0:0"),
            (f"{svc('chowner')}.cap_add", ["CHOWN"]),
            (f"{svc('chowner')}.read_only", True),
        ],
        "k8s": [
            Quiet(),
            (f"{ctr('Job', 't-fetch')}.command", ABSENT),
            (f"{ctr('Job', 't-fetch')}.args", ["--all"]),
            (f"{ctr('Job', 't-fetch')}.imagePullPolicy", "Never"),
            (f"{ctr('Job', 't-fetch')}.env[name=HF_TOKEN].valueFrom", {"secretKeyRef": {"name": "hf", "key": "token"}}),
            (f"{pod('Job', 't-fetch')}.imagePullSecrets", [{"name": "regcred"}]),
            (f"{pod('Job', 't-fetch')}.securityContext.runAsUser", 1000),
            (f"{pod('Job', 't-fetch')}.securityContext.runAsGroup", 100),
            (f"{pod('Job', 't-fetch')}.securityContext.runAsNonRoot", True),
            (f"{pod('Job', 't-chowner')}.securityContext.runAsUser", 0),
            (f"{pod('Job', 't-chowner')}.securityContext.runAsNonRoot", ABSENT),
            (f"{ctr('Job', 't-chowner')}.securityContext.capabilities.add", ["CHOWN"]),
        ],
        "argo": [
            Quiet(),
            ("spec.imagePullSecrets", [{"name": "regcred"}]),
            (f"{tpl('fetch')}.container.args", ["--all"]),
            (f"{tpl('fetch')}.securityContext.runAsUser", 1000),
            (f"{tpl('chowner')}.securityContext.runAsUser", 0),
            (f"{tpl('chowner')}.container.securityContext.capabilities.add", ["CHOWN"]),
        ],
    }),
    "chain-and-diamond": Case(ORDER, facts={
        "compose": [
            (f"{svc('a')}.depends_on", ABSENT),
            (f"{svc('b')}.depends_on", {"a": COMPLETED}),
            (f"{svc('c')}.depends_on", {"a": COMPLETED}),
            (f"{svc('d')}.depends_on", {"b": COMPLETED, "c": COMPLETED}),
            (f"{svc('e')}.depends_on", {"d": COMPLETED}),
        ],
        "k8s": [
            (f"{obj('Job', 't-a')}.metadata.annotations[aipc.dev/depends-on]", ""),
            (f"{obj('Job', 't-b')}.metadata.annotations[aipc.dev/depends-on]", "Job/t-a"),
            (f"{obj('Job', 't-c')}.metadata.annotations[aipc.dev/depends-on]", "Job/t-a"),
            (f"{obj('Job', 't-d')}.metadata.annotations[aipc.dev/depends-on]", "Job/t-b,Job/t-c"),
            (f"{obj('Job', 't-e')}.metadata.annotations[aipc.dev/depends-on]", "Job/t-d"),
        ],
        "argo": [
            (f"{task('a')}.dependencies", ["network-policy"]),  # applied before any pod starts
            (f"{task('b')}.dependencies", ["a"]),
            (f"{task('c')}.dependencies", ["a"]),
            (f"{task('d')}.dependencies", ["b", "c"]),
            (f"{task('e')}.dependencies", ["d"]),
        ],
    }),
    "services": Case(SERVICES, facts={
        "compose": [
            (f"{svc('db')}.depends_on", {"prep": COMPLETED}),  # a service after a batch stage: its success
            (f"{svc('db')}.restart", "unless-stopped"),
            (f"{svc('db')}.ports", [Re(r"(.*:)?5432:5432")]),
            (f"{svc('db')}.healthcheck", ABSENT),
            (f"{svc('api')}.depends_on", {"db": {"condition": "service_started"}}),  # db has no health check
            (f"{svc('api')}.deploy.replicas", 2),
            (f"{svc('api')}.ports", [Re(r"(.*:)?8080-8081:8080")]),  # one host port per replica
            (f"{svc('api')}.healthcheck.test", Has(Re(r".*http://127\.0\.0\.1:8080/healthz.*"))),
            (f"{svc('api')}.networks.default.aliases", ["t-api"]),
            (f"{svc('web')}.depends_on", {"api": {"condition": "service_healthy"}}),
            *hardened_compose("prep", "db", "api", "web"),
        ],
        "k8s": [
            Quiet(),
            (f"{obj('Deployment', 't-db')}.metadata.annotations[aipc.dev/depends-on]", "Job/t-prep"),
            (f"{obj('Deployment', 't-api')}.metadata.annotations[aipc.dev/depends-on]", "Deployment/t-db"),
            (f"{obj('Deployment', 't-web')}.metadata.annotations[aipc.dev/depends-on]", "Deployment/t-api"),
            (f"{obj('Deployment', 't-db')}.spec.replicas", 1),
            (f"{ctr('Deployment', 't-db')}.readinessProbe.tcpSocket.port", "http"),  # no health path: TCP
            (f"{obj('Deployment', 't-api')}.spec.replicas", 2),
            (f"{ctr('Deployment', 't-api')}.ports", [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]),
            (f"{ctr('Deployment', 't-api')}.startupProbe.httpGet", {"path": "/healthz", "port": "http"}),
            (f"{ctr('Deployment', 't-api')}.readinessProbe.httpGet", {"path": "/healthz", "port": "http"}),
            (f"{ctr('Deployment', 't-api')}.livenessProbe.httpGet", {"path": "/healthz", "port": "http"}),
            (f"{obj('Service', 't-api')}.spec.ports[0].port", 8080),
            (f"{obj('Service', 't-api')}.spec.selector[app.kubernetes.io/name]", "api"),
            (f"{obj('NetworkPolicy', 't-api')}.spec.ingress[0].ports", Has({"protocol": "TCP", "port": 8080})),
            *hardened_k8s("t", jobs=("prep",), deployments=("db", "api", "web")),
        ],
        "argo": [
            (f"{task('db')}.dependencies", ["prep"]),
            (f"{task('api')}.dependencies", ["db"]),
            (f"{task('web')}.dependencies", ["api"]),
            ("spec.templates[name=db-deployment].resource.successCondition",
             Re(r".*status\.availableReplicas > 0.*")),
            ("spec.templates[name=api-deployment].resource.successCondition",
             Re(r".*status\.availableReplicas > 1.*")),
            (f"{applied('api')}spec.replicas", 2),
            (f"{applied('api')}spec.template.spec.containers[0].readinessProbe.httpGet.path", "/healthz"),
            (f"{applied('api')}spec.template.spec.containers[0].livenessProbe.httpGet.path", "/healthz"),
            (f"{applied('api', 'service')}spec.ports[0].port", 8080),
            *hardened_argo(batch=("prep",), serve=("db", "api", "web")),
        ],
    }),
    "addresses": Case(ADDRESSES, facts={
        "compose": [
            Quiet(),
            (f"{svc('db')}.ports", ["127.0.0.1:15432:5432"]),  # expose is the host port
            (f"{svc('db')}.healthcheck.test", ["CMD", "pg_isready"]),
            (f"{svc('db')}.healthcheck.interval", "2s"),
            (f"{svc('db')}.healthcheck.retries", 5),
            (f"{svc('api')}.ports", ["127.0.0.1:80-81:8000", "127.0.0.1:9090-9091:9090"]),
            (f"{svc('api')}.healthcheck.start_period", "2m"),
            (f"{svc('api')}.healthcheck.timeout", "3s"),
            (f"{svc('load')}.depends_on", {"api": {"condition": "service_healthy"},
                                           "db": {"condition": "service_healthy"}}),
            (f"{svc('load')}.command", ["t-db:5432", "http://t-api:8000"]),  # alias and container port
            (f"{svc('db')}.networks.default.aliases", ["t-db"]),
            *hardened_compose("db", "api", "load"),
        ],
        "k8s": [
            Quiet(),
            (f"{obj('Service', 't-db')}.spec.ports", [{"name": "main", "port": 15432, "targetPort": "main",
                                                       "protocol": "TCP"}]),
            (f"{obj('Service', 't-api')}.spec.ports[0]", {"name": "http", "port": 80, "targetPort": "http",
                                                          "protocol": "TCP"}),
            (f"{obj('Service', 't-api')}.spec.ports[1]", {"name": "metrics", "port": 9090, "targetPort": "metrics",
                                                          "protocol": "TCP"}),
            (f"{ctr('Deployment', 't-api')}.startupProbe", {"httpGet": {"path": "/ready", "port": "http"},
                                                            "periodSeconds": 10, "timeoutSeconds": 3,
                                                            "failureThreshold": 12}),
            (f"{ctr('Deployment', 't-db')}.readinessProbe.exec.command", ["pg_isready"]),
            (f"{ctr('Deployment', 't-db')}.livenessProbe.failureThreshold", 5),
            (f"{obj('NetworkPolicy', 't-api')}.spec.ingress[0].ports", [{"protocol": "TCP", "port": 8000},
                                                                        {"protocol": "TCP", "port": 9090}]),
            (f"{obj('Job', 't-load')}.metadata.annotations[aipc.dev/depends-on]", "Deployment/t-api,Deployment/t-db"),
            (f"{ctr('Job', 't-load')}.command", ["load", "t-db:15432", "http://t-api:80"]),  # the Service's
            *hardened_k8s("t", jobs=("load",), deployments=("db", "api")),
        ],
        "argo": [
            (f"{task('load')}.dependencies", ["api", "db"]),
            (f"{tpl('load')}.container.command", ["load", "t-db:15432", "http://t-api:80"]),
            (f"{applied('api', 'service')}spec.ports[0].port", 80),
            (f"{applied('db')}spec.template.spec.containers[0].startupProbe.exec.command", ["pg_isready"]),
            *hardened_argo(batch=("load",), serve=("db", "api")),
        ],
    }),
    "params": Case(PARAMS, params=("epochs=20", "tag=2.0"), facts={
        "compose": [
            (f"{svc('model')}.image", "trainer:2.0"),
            (f"{svc('model')}.entrypoint", ["train"]),
            (f"{svc('model')}.command", ["--epochs=20", "--lr", "3e-4", "--amp=true"]),
            (f"{svc('model')}.environment", ["RUN=t-model", *HOME_USER]),
        ],
        "k8s": [
            Quiet(),
            (f"{ctr('Job', 't-model')}.image", "trainer:2.0"),
            (f"{ctr('Job', 't-model')}.command", ["train", "--epochs=20", "--lr", "3e-4", "--amp=true"]),
            (f"{ctr('Job', 't-model')}.env[name=RUN].value", "t-model"),
        ],
        "argo": [
            # the workflow takes parameters at submission; -p sets their defaults
            ("spec.arguments.parameters[name=epochs].value", "20"),
            ("spec.arguments.parameters[name=lr].value", "3e-4"),
            (f"{tpl('model')}.container.command",
             ["train", "--epochs={{workflow.parameters.epochs}}", "--lr", "{{workflow.parameters.lr}}",
              "--amp={{workflow.parameters.amp}}"]),
            (f"{tpl('model')}.container.image", "trainer:{{workflow.parameters.tag}}"),
            (f"{tpl('model')}.container.env[name=RUN].value", "t-model"),
        ],
    }),
    "gpu-labels-gke": Case(GPU_LABELS, args={"k8s": ("--gpu-labels", "gke"), "argo": ("--gpu-labels", "gke")}, facts={
        "compose": [Warns("B101", 1, 50), Warns("B101", 2, 50), gpus_compose("big", "nvidia", 8)],
        "k8s": [
            gpu_affinity(pod("Job", "t-big"), "cloud.google.com/gke-accelerator", "nvidia-tesla-a100"),
            (f"{pod('Job', 't-raw')}.nodeSelector", {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}),
            (f"{pod('Job', 't-raw')}.affinity", ABSENT),
        ],
        "argo": [
            gpu_affinity(tpl("big"), "cloud.google.com/gke-accelerator", "nvidia-tesla-a100"),
            (f"{tpl('raw')}.nodeSelector", {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}),
        ],
    }),
    "gpu-labels-karpenter": Case(GPU_LABELS, args={"k8s": ("--gpu-labels", "karpenter"),
                                                   "argo": ("--gpu-labels", "karpenter")}, facts={
        "compose": [Warns("B101", 1, 50), gpus_compose("raw", "nvidia", 1)],
        "k8s": [
            (f"{pod('Job', 't-big')}.{GPU_NODES}[0].matchExpressions", [
                {"key": "karpenter.k8s.aws/instance-gpu-name", "operator": "In", "values": ["a100"]},
                {"key": "karpenter.k8s.aws/instance-gpu-memory", "operator": "In", "values": ["40960"]}]),
            (f"{pod('Job', 't-raw')}.nodeSelector", {"karpenter.k8s.aws/instance-gpu-name": "nvidia-tesla-t4"}),
        ],
        "argo": [
            (f"{tpl('big')}.{GPU_NODES}[0].matchExpressions[0].values", ["a100"]),
        ],
    }),
    "gpu-box": Case(GPU_BOX, args={"compose": ("--gpus", "3")}, facts={
        "compose": [
            (f"{svc('a')}.deploy.resources.reservations.devices",
             [{"driver": "nvidia", "device_ids": ["0", "1"], "capabilities": ["gpu"]}]),
            (f"{svc('b')}.deploy.resources.reservations.devices[0].device_ids", ["2"]),
            (f"{svc('both')}.deploy.resources.reservations.devices[0].device_ids", ["0", "1", "2"]),
            (f"{svc('api')}.deploy.resources.reservations.devices[0].device_ids", ["0", "1"]),
            Warns("B101", 4, 83),  # compose replicas share their service's devices
        ],
        "k8s": [(f"{ctr('Job', 't-a')}.resources.limits[nvidia.com/gpu]", 2),
                (f"{ctr('Deployment', 't-api')}.resources.limits[nvidia.com/gpu]", 1)],
        "argo": [(f"{tpl('a')}.container.resources.limits[nvidia.com/gpu]", 2)],
    }),
    "gpu-box-too-small": Case(GPU_BOX, args={"compose": ("--gpus", "2")}, facts={
        "compose": [Fails("B150", (1, 42))],  # `a` and `b` together need 3 (as `both` alone: the first is named)
        "k8s": [(f"{ctr('Job', 't-both')}.resources.limits[nvidia.com/gpu]", 3)],
        "argo": [(f"{tpl('both')}.container.resources.limits[nvidia.com/gpu]", 3)],
    }),
    "hardening": Case(HARDENING, facts={
        "compose": hardened_compose("job", "web"),
        "k8s": [*hardened_k8s("t", jobs=("job",), deployments=("web",)),
                (f"{obj('NetworkPolicy', 't')}.spec.podSelector.matchLabels[app.kubernetes.io/part-of]", "t"),
                # no ingress but to the serve port; egress to DNS, the pipeline, not the metadata service
                (f"{obj('NetworkPolicy', 't')}.spec.policyTypes", ["Ingress", "Egress"]),
                (f"{obj('NetworkPolicy', 't')}.spec.ingress", ABSENT),
                (f"{obj('NetworkPolicy', 't')}.spec.egress", EGRESS),
                (f"{obj('NetworkPolicy', 't-web')}.spec.ingress", [{"ports": [{"protocol": "TCP", "port": 80}]}])],
        "argo": [*hardened_argo(batch=("job",), serve=("web",)),
                 # the same policies, applied before any pod starts and with the serve stage
                 ("spec.templates[name=network-policy].resource.manifest>spec.egress", EGRESS),
                 (f"{task('job')}.dependencies", ["network-policy"]),
                 ("spec.templates[name=web-network-policy].resource.manifest>spec.ingress",
                  [{"ports": [{"protocol": "TCP", "port": 80}]}]),
                 # batch steps run as an account that can only report to Argo; apply steps as another
                 ("spec.serviceAccountName", "t-runner"),
                 (f"{tpl('job')}.serviceAccountName", ABSENT),
                 ("spec.templates[name=web-deployment].serviceAccountName", "t-deployer"),
                 ("spec.templates[name=network-policy].serviceAccountName", "t-deployer")],
    }),
    "docker-socket": Case(DOCKER_SOCKET, facts={
        "compose": [(f"{svc('build')}.volumes", ["/var/run/docker.sock:/var/run/docker.sock"]),
                    Warns("W401", 2, 37)],
        "k8s": [Fails("B001", (2, 37)), Warns("W401", 2, 37)],
        "argo": [Fails("B001", (2, 37)), Warns("W401", 2, 37)],
    }),
    "matrix-security": Case(MATRIX_SECURITY, params=("gpus=4",), facts={
        "compose": [*[gpus_compose(name, "nvidia", 4) for name in FITS],
                    *[(f"{svc(name)}.command", ["--lr", lr_of(name), "--epochs=5"]) for name in FITS],
                    (f"{svc('api-8081')}.environment", Has("GREETING=it's fine"))],
        "k8s": [Quiet(),
                *[(f"{ctr('Job', 'grid-' + name)}.resources.limits[nvidia.com/gpu]", 4) for name in FITS],
                (f"{obj('NetworkPolicy', 'grid')}.spec.egress", egress_of("grid")),
                *[(f"{obj('NetworkPolicy', 'grid-' + name)}.spec.ingress",
                   [{"ports": [{"protocol": "TCP", "port": port}]}])
                  for name, port in (("api-8080", 8080), ("api-8081", 8081))]],
        "argo": [
            # the instances run as the runner (the workflow's account), under the policy applied first
            ("spec.serviceAccountName", "grid-runner"),
            *[(f"{tpl(name)}.serviceAccountName", ABSENT) for name in FITS],
            (f"{task('fit')}.dependencies", ["network-policy"]),  # the DAG of the instances under max_parallel
            (f"{task('api-8080')}.dependencies", ["network-policy"]),
            ("spec.templates[name=network-policy].resource.manifest>spec.egress", egress_of("grid")),
            *[fact for name, port in (("api-8080", 8080), ("api-8081", 8081)) for fact in (
                (f"spec.templates[name={name}-deployment].serviceAccountName", "grid-deployer"),
                (f"spec.templates[name={name}-network-policy].serviceAccountName", "grid-deployer"),
                (f"spec.templates[name={name}-network-policy].resource.manifest>spec.ingress",
                 [{"ports": [{"protocol": "TCP", "port": port}]}]),
                (f"{applied(name)}spec.template.spec.containers[0].env[name=GREETING].value", "it's fine"),
            )],
            # one value everywhere: gpus is fixed in each instance, epochs is offered and followed
            *[fact for name in FITS for fact in (
                (f"{tpl(name)}.container.resources.limits[nvidia.com/gpu]", 4),
                (f"{tpl(name)}.container.command",
                 ["fit", "--lr", lr_of(name), "--epochs={{workflow.parameters.epochs}}"]),
            )],
            ("spec.arguments.parameters", [{"name": "epochs", "value": "5"}]),
            Warns("B101", 9, 22),  # gpus: fixed at the gpu count
            Warns("B101", 14, 25),  # greeting: in the serve instances' manifests
        ],
    }),
    "fixed-params": Case(FIXED_PARAMS, params=("gpus=4",), facts={
        "compose": [gpus_compose("model", "nvidia", 4),
                    (f"{svc('model')}.entrypoint", ["torchrun"]),
                    (f"{svc('model')}.command", ["--nproc-per-node=4", "--epochs=5"]),
                    (f"{svc('api')}.environment", Has("GREETING=it's fine"))],
        "k8s": [Quiet(),
                (f"{ctr('Job', 't-model')}.resources.limits[nvidia.com/gpu]", 4),
                (f"{ctr('Job', 't-model')}.command", ["torchrun", "--nproc-per-node=4", "--epochs=5"]),
                (f"{ctr('Deployment', 't-api')}.env[name=GREETING].value", "it's fine")],
        "argo": [(f"{tpl('model')}.container.resources.limits[nvidia.com/gpu]", 4),
                 (f"{tpl('model')}.container.command",
                  ["torchrun", "--nproc-per-node=4", "--epochs={{workflow.parameters.epochs}}"]),
                 ("spec.arguments.parameters", [{"name": "epochs", "value": "5"}]),
                 (f"{applied('api')}spec.template.spec.containers[0].env[name=GREETING].value", "it's fine"),
                 Warns("B101", 7, 22),  # gpus: fixed at the gpu count
                 Warns("B101", 9, 81)],  # greeting: in the serve stage's manifest
    }),
}


# ------------------------------------------------------------------ the test


def compile_case(case: Case, target: str, tmp_path: Path, capsys, monkeypatch) -> Output:
    """`aipc compile` of the case for ``target``, as a user runs it."""
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    if isinstance(case.program, Path):
        path = case.program
    else:
        path = tmp_path / "t.aip"
        path.write_text(case.program)
        for name, text in case.files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(text)
    params = [arg for param in case.params for arg in ("-p", param)]
    monkeypatch.chdir(path.parent)  # in the project's directory: compose reads host paths from here
    status = cli.main(["compile", str(path), "-t", target, "--format", "json", *params, *case.args.get(target, ())])
    out, err = capsys.readouterr()
    diagnostics = json.loads(err) if err.strip() else []
    documents = [d for d in yaml.safe_load_all(out) if d is not None]
    return Output(status, _root(target, documents), diagnostics, out + err)


def _root(target: str, documents: list):
    if not documents:
        return None
    if target == "compose":
        (document,) = documents
        return document
    if target == "argo":
        (workflow,) = [d for d in documents if d["kind"] == "Workflow"]
        return workflow
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in documents}


ROWS = [
    pytest.param(name, target, id=f"{name}-{target}",
                 marks=[pytest.mark.xfail(strict=True, reason=case.xfail[target])] if target in case.xfail else [])
    for name, case in CASES.items() for target in TARGETS
]


@pytest.mark.parametrize(("name", "target"), ROWS)
def test_target_contains_the_facts(name, target, tmp_path, capsys, monkeypatch):
    case = CASES[name]
    output = compile_case(case, target, tmp_path, capsys, monkeypatch)
    assert output.status in (0, 1), output.text[-2000:]
    if not any(isinstance(f, Fails) for f in case.facts[target]):
        assert output.status == 0, output.text[-2000:]
    problems = failures(output, case.facts[target])
    problems += [f"the value of the secret key {key} appears in the output"
                 for key, value in case.env.items() if value in output.text]
    assert not problems, "\n".join(problems)


def test_the_table_covers_every_example_and_every_target():
    assert set(EXAMPLE_CASES) == {path.stem for path in EXAMPLES}
    for name, case in CASES.items():
        assert set(case.facts) == set(TARGETS), name
        assert all(case.facts[target] for target in TARGETS), name
        assert set(case.xfail) <= set(TARGETS), name


# ---------------------------------------------------------- the facts' own tests

DOCUMENT = {
    "spec": {"containers": [{"name": "a", "resources": {"limits": {"nvidia.com/gpu": 2}}},
                            {"name": "b", "ports": [{"containerPort": 80}]}],
             "manifest": "kind: Deployment\nspec:\n  replicas: 3\n"},
    "metadata": {"annotations": {"aipc.dev/depends-on": "Job/x"}},
}


@pytest.mark.parametrize(("path", "expected"), [
    ("spec.containers[0].resources.limits[nvidia.com/gpu]", 2),
    ("spec.containers[name=b].ports[containerPort=80].containerPort", 80),
    ("spec.containers[-1].name", "b"),
    ("metadata.annotations[aipc.dev/depends-on]", "Job/x"),
    ("spec.manifest>spec.replicas", 3),
])
def test_paths_find_values(path, expected):
    assert resolve(DOCUMENT, path) == expected


@pytest.mark.parametrize("path", ["spec.volumes", "spec.containers[2]", "spec.containers[name=c]",
                                  "spec.containers[0].resources.limits[amd.com/gpu]", "metadata>kind"])
def test_paths_that_lead_nowhere_say_so(path):
    with pytest.raises(Missing):
        resolve(DOCUMENT, path)


def test_a_fact_that_does_not_hold_is_reported():
    output = Output(0, DOCUMENT, [{"severity": "warning", "code": "B101", "line": 3, "column": 5}], "")
    assert failures(output, [("spec.containers[0].name", "a"), ("spec.volumes", ABSENT), Warns("B101", 3, 5),
                             ("spec.containers[1].ports", Has({"containerPort": 80})),
                             ("spec.containers[0].name", Re("[ab]"))]) == []
    wrong = [("spec.containers[0].name", "b"), ("spec.containers", ABSENT), ("spec.volumes", []),
             Warns("B101", 3, 6), Quiet(), Fails("B001", (1, 1)), ("spec.manifest>spec.replicas", "3"),
             ("spec.containers[0].name", Has("a")), ("spec.containers[0].name", Re("b"))]
    assert len(failures(output, wrong)) == len(wrong)
    assert At("spec.volumes", []).check(output) == "spec.volumes: spec has no volumes (keys: containers, manifest)"
