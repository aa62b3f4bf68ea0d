"""Kubernetes manifests: one multi-document YAML stream a cluster accepts as is.

One builder per emitted kind (``build_job``, ``build_deployment``,
``build_service``, ``build_pvc``, ``build_network_policies``,
``build_namespace``), and the pieces they share (``build_container``,
``build_pod_parts``, ``build_resources``...), which the Argo backend reuses
so that a stage runs the same way on both targets.

What a program becomes
----------------------
- a batch stage: a ``batch/v1`` Job (``restartPolicy: Never``, ``backoffLimit``
  = retries, ``activeDeadlineSeconds`` = timeout, ``ttlSecondsAfterFinished``);
- a multi-node stage (``nodes = N``): a headless Service, a NetworkPolicy
  admitting the group's pods on every port, and an Indexed Job of N pods with
  that Service as ``subdomain`` and the rank from the completion index; with
  ``--multinode jobset`` the NetworkPolicy and a JobSet (see "nodes" below);
- a serve stage: an ``apps/v1`` Deployment and a ``v1`` Service. Its container
  ports are ``port`` (named ``http``, or ``main`` when its health check is
  ``tcp`` or ``command``) and each of ``ports`` under its name; the Service
  maps ``expose`` (default ``port``) to ``port`` and each of ``ports`` to
  itself. Its health check is three probes with the same handler (``httpGet``
  for ``http``, ``tcpSocket`` for ``tcp``, ``exec`` for ``command``; a stage
  without ``health`` gets ``tcpSocket`` on ``port``) and the stage's timings:
  ``periodSeconds`` = ``interval``, ``timeoutSeconds`` = ``timeout``; the
  startup probe allows ``ceil(start / interval)`` failures, the readiness and
  liveness probes ``failures``;
  with ``replicas = MIN..MAX`` an ``autoscaling/v2`` HorizontalPodAutoscaler
  next to the Deployment, which then has no ``replicas`` of its own;
- scheduling: ``schedule.node`` and a ``gpu_model`` written as a label value are
  the ``nodeSelector``; a portable ``gpu_model`` a required node affinity on the
  labels of the convention (``--gpu-labels``, the header's ``gpu_labels``, else
  GPU feature discovery's); GPU stages tolerate their vendor's GPU taint, then
  ``schedule.tolerate``; ``schedule.priority`` is the ``priorityClassName``;
  ``schedule.queue`` Kueue's queue label on the Job;
- a sized volume: a PersistentVolumeClaim ``<pipeline>-<volume>``; a ``claim``
  volume references the existing claim and creates nothing; mounting a
  ``host`` volume is an error (B001) on this target;
- the cache: each batch stage that may be cached carries the compile-time part
  of its key (:func:`aipc.backends.cachekey.compile_keys`) as the annotation
  ``aipc.dev/cache-key``, which `aipc apply` compares with the Jobs that completed
  (B105 when an image with outputs is a tag: the key holds the tag);
- outputs: one PersistentVolumeClaim ``<pipeline>-artifacts`` from the header's
  ``artifacts { }`` (B002 when a stage has an output and there is none; B104 when
  it is ``rwo`` and a stage reads an output), each output the subPath
  ``<stage>/<output>`` of it, mounted read-only by the stages that read it (a
  fan-in mounts each instance's at ``PATH/<instance>``);
- a secret: ``envFrom: [{secretRef: {name: <secret>}}]`` to a Secret named after
  the secret (``_`` becomes ``-``), created by the user; no Secret is generated.
  An ``env`` value ``SECRET.KEY`` is ``valueFrom.secretKeyRef`` (that Secret, key
  KEY). Workloads that read secrets carry a ``checkov.io/skip1`` annotation for
  CKV_K8S_35 ("prefer secrets as files"), with the reason: the language defines
  secret keys as environment variables;
- ``args`` is the container's ``args`` without ``command`` (the image's
  entrypoint runs with them); ``pull`` is ``imagePullPolicy``; the header's
  ``pull_secrets`` are the pod's ``imagePullSecrets``;
- hardening (:data:`aipc.compiler.ir.HARDENED`, relaxed by the stage's
  ``security``): pod ``runAsUser``/``runAsGroup`` (65532, or the stage's
  ``user``), ``runAsNonRoot`` unless that is root, ``fsGroup`` 65532 (makes
  volumes writable), ``seccompProfile: RuntimeDefault``,
  ``automountServiceAccountToken: false``; container ``allowPrivilegeEscalation:
  false`` and ``privileged: false`` (both true for ``privileged = true``),
  ``capabilities.drop: [ALL]`` (``add``: the stage's ``capabilities``),
  ``readOnlyRootFilesystem`` (true unless ``read_only = false``) with an
  ``emptyDir`` at ``/tmp``, and ``HOME`` and ``USER`` unless the stage sets them
  (:meth:`aipc.compiler.ir.Stage.base_env`); a NetworkPolicy named after the
  pipeline for all of its pods that denies ingress and allows egress only to
  DNS, the pipeline's own pods and addresses other than the cloud metadata
  service (169.254.169.254), and one per serve stage admitting TCP traffic to
  its port;
- a container that declares no cpu or memory gets the defaults
  (:data:`aipc.compiler.ir.DEFAULT_CPU`, ``DEFAULT_MEMORY``: 500m..2 cores,
  512Mi..2Gi) so every container has requests and limits; an ``shm`` above the
  memory limit is an error (B003): /dev/shm's memory counts against it.

Strings reach the cluster verbatim: ``$`` is doubled where Kubernetes would
otherwise expand ``$(VAR)`` or ``$$`` in ``command``, ``args`` and ``env``.

Annotations (the contract with ``aipc apply``)
----------------------------------------------
Every Job and Deployment carries:

- ``aipc.dev/stage``: the stage's name as written in the .aip file;
- ``aipc.dev/depends-on``: its direct dependencies as comma-separated
  ``Kind/name`` references to objects of this stream in the same namespace
  (``Job/fraud-detection-ingest,Deployment/recommender-candidates``), sorted;
  the empty string when the stage has no dependencies. A Job dependency is met
  when the Job has completed; a Deployment dependency when it is available;
- ``aipc.dev/level``: the length of the longest dependency chain before the
  stage (``0`` for roots), a decimal string: stages of one level can start
  together once the previous levels are done.

An instance of a matrix stage also carries ``aipc.dev/matrix`` (the matrix
stage's name as written; a label too), ``aipc.dev/matrix-coordinates`` (its
exact coordinates, a JSON object) and, when the matrix stage sets
``max_parallel``, ``aipc.dev/max-parallel``: ``aipc apply`` starts an instance
only while fewer than that many instances of its matrix stage are running.

Documents come in a fixed order: the Namespace (with ``--namespace-object``),
the default-deny NetworkPolicy, the PersistentVolumeClaims by volume name, then
each stage in topological order (Job; or Deployment, Service, NetworkPolicy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from aipc import codes
from aipc.backends import Emitted
from aipc.backends.cachekey import CACHE_KEY_ANNOTATION, compile_keys, report_tag_keys
from aipc.compiler import ir
from aipc.compiler.ir import format_bytes, format_cpu
from aipc.diagnostics import Diagnostics

STAGE_ANNOTATION = "aipc.dev/stage"
DEPENDS_ON_ANNOTATION = "aipc.dev/depends-on"
LEVEL_ANNOTATION = "aipc.dev/level"
MATRIX_ANNOTATION = ir.MATRIX_LABEL
MAX_PARALLEL_ANNOTATION = "aipc.dev/max-parallel"
SECRETS_AS_ENV_SKIP = {
    "checkov.io/skip1": "CKV_K8S_35=the .aip language injects secret keys as environment variables",
}


GPU_RESOURCE = {
    ir.GpuVendor.NVIDIA: "nvidia.com/gpu",
    ir.GpuVendor.AMD: "amd.com/gpu",
    ir.GpuVendor.INTEL: "gpu.intel.com/i915",
}
# Kueue's LocalQueue label on a workload (kubernetes-sigs/kueue
# pkg/controller/constants/constants.go: QueueLabel; the annotation of that name is
# deprecated). Kueue suspends a labelled Job and resumes it once admitted.
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
ACCESS_MODE = {
    ir.Access.RWO: "ReadWriteOnce",
    ir.Access.RWX: "ReadWriteMany",
    ir.Access.ROX: "ReadOnlyMany",
}
PULL_POLICY = {
    ir.PullPolicy.ALWAYS: "Always",
    ir.PullPolicy.IF_MISSING: "IfNotPresent",
    ir.PullPolicy.NEVER: "Never",
}


@dataclass(frozen=True)
class Options:
    """What the Kubernetes target lets a user choose (flags in ``add_arguments``)."""

    namespace_object: bool = False  # also emit the Namespace named in the header
    ttl_seconds_after_finished: int = 86400  # finished Jobs are cleaned up after a day
    multinode: str = "job"  # what a multi-node stage becomes: MULTINODE_FORMS
    # What a multi-node stage's Indexed Job and Service are named after instead of
    # the pipeline: Argo names them after each run (`{{workflow.name}}`).
    group_prefix: str | None = None
    gpu_labels: ir.GpuLabels | None = None  # the node labels that select a GPU model; None: the header's, or gfd


def default_filename(pipeline: ir.Pipeline) -> str:
    return f"{pipeline.dns_name}.k8s.yaml"


def add_arguments(group) -> None:
    group.add_argument("--namespace-object", action="store_true",
                       help="k8s: also emit the Namespace object named by the pipeline header")
    group.add_argument("--multinode", choices=MULTINODE_FORMS, default="job",
                       help="k8s and argo: what a stage with `nodes = N` becomes: an Indexed Job and a headless "
                       "Service (`job`, the default: any cluster), or a JobSet (`jobset`: needs the JobSet "
                       "controller; the whole group restarts on a failure and Kueue admits it as one)")
    group.add_argument("--gpu-labels", choices=[c.value for c in ir.GpuLabels], metavar="CONVENTION",
                       help="k8s and argo: the node labels that select a `gpu_model`: gfd (NVIDIA GPU feature "
                       "discovery, the default), gke (GKE's accelerator label) or karpenter (Karpenter's GPU "
                       "name); overrides the header's `gpu_labels`")


def options_from(args) -> Options:
    labels = getattr(args, "gpu_labels", None)
    return Options(namespace_object=bool(getattr(args, "namespace_object", False)),
                   gpu_labels=ir.GpuLabels(labels) if labels else None,
                   multinode=getattr(args, "multinode", None) or "job")


def gpu_convention(pipeline: ir.Pipeline, options: Options) -> ir.GpuLabels:
    """The command line's choice, else the header's, else GPU feature discovery's labels."""
    return options.gpu_labels or pipeline.gpu_labels or ir.GpuLabels.GFD


# ----------------------------------------------------------------- strings


# How a stage's strings (ir.Text) are written: the Kubernetes target writes the
# value the parameters gave them; the Argo target passes its own function, which
# writes parameters as `{{workflow.parameters.x}}`.
Render = Callable[[ir.Text], str]


def substituted(text: ir.Text) -> str:
    """A stage's string as this target writes it: each parameter's value in place, each
    service address as its Service's name and port (``expose``). The short name
    resolves in the pods' own namespace whatever the cluster's domain, and the
    objects of a pipeline share one namespace (also when `aipc apply --namespace`
    moves them), so it needs no ``.NAMESPACE.svc.cluster.local``."""
    return text.render(param=ir.param_value, service=ir.service_address)


def no_expansion(text: str) -> str:
    """``text`` as Kubernetes passes it on: it expands ``$(VAR)`` and turns ``$$``
    into ``$`` in command, args and env values, so ``$`` is doubled when either
    appears (``$$`` always yields one ``$``)."""
    if "$(" in text or "$$" in text:
        return text.replace("$", "$$")
    return text


# ------------------------------------------------------------------ metadata


def stage_labels(pipeline: ir.Pipeline, stage: ir.Stage) -> dict:
    return pipeline.labels_for(stage.name, stage.kind.value, stage.labels)


def selector_labels(pipeline: ir.Pipeline, stage: ir.Stage) -> dict:
    """The labels that pick one stage's pods (a subset of ``stage_labels``)."""
    return {ir.LABEL_NAME: ir.label_value(stage.name), ir.LABEL_PART_OF: ir.label_value(pipeline.name)}


def metadata(pipeline: ir.Pipeline, name: str, labels: dict, annotations: dict | None = None) -> dict:
    meta: dict = {"name": name}
    if pipeline.namespace:
        meta["namespace"] = pipeline.namespace
    meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return meta


def workload_kind(stage: ir.Stage, options: Options | None = None) -> str:
    if not stage.is_batch:
        return "Deployment"
    if stage.nodes is not None and options is not None and options.multinode == "jobset":
        return "JobSet"
    return "Job"


def stage_annotations(pipeline: ir.Pipeline, stage: ir.Stage, options: Options | None = None) -> dict:
    depends_on = ",".join(
        f"{workload_kind(pipeline.stage(name), options)}/{pipeline.object_name(name)}" for name in stage.after
    )
    annotations = {
        STAGE_ANNOTATION: stage.name,
        DEPENDS_ON_ANNOTATION: depends_on,
        LEVEL_ANNOTATION: str(stage.level),
    }
    annotations.update(instance_annotations(stage))
    if stage.secrets or stage.secret_env:
        annotations.update(SECRETS_AS_ENV_SKIP)
    return annotations


def instance_annotations(stage: ir.Stage, limit: bool = True) -> dict:
    """An instance's matrix stage, its exact coordinates and, with ``limit``, the
    matrix stage's ``max_parallel``; nothing for a stage that is no instance."""
    if stage.instance is None:
        return {}
    matrix = stage.instance.matrix
    annotations = {MATRIX_ANNOTATION: matrix.stage, ir.COORDINATES_ANNOTATION: stage.instance.coordinates_json()}
    if limit and matrix.max_parallel is not None:
        annotations[MAX_PARALLEL_ANNOTATION] = str(matrix.max_parallel)
    return annotations


# ------------------------------------------------------------------ volumes


def volume_name(volume: ir.Volume) -> str:
    """The name of a pipeline volume inside a pod."""
    return ir.dns_label(volume.name)


def claim_name(pipeline: ir.Pipeline, volume: ir.Volume) -> str:
    """The PersistentVolumeClaim a sized or claimed volume is."""
    if volume.kind is ir.VolumeKind.CLAIM:
        return volume.claim or volume.name
    return pipeline.object_name(volume.name)


@dataclass(frozen=True)
class ScratchNames:
    """Names of the emptyDir volumes the compiler adds, clear of every pipeline volume."""

    tmp: str
    shm: str
    artifacts: str  # the claim of every output, `<pipeline>-artifacts` unless a volume has that name


def scratch_names(pipeline: ir.Pipeline) -> ScratchNames:
    taken = {volume_name(v) for v in pipeline.volumes}

    def free(base: str) -> str:
        name, number = base, 1
        while name in taken:
            number += 1
            name = f"{base}-{number}"
        taken.add(name)
        return name

    return ScratchNames(tmp=free("tmp"), shm=free("dshm"), artifacts=free("artifacts"))


def artifact_store(pipeline: ir.Pipeline) -> ir.Volume | None:
    """The claim that holds every stage's outputs, each a subPath ``<stage>/<output>``
    (from the header's ``artifacts { }``), when a stage has an output."""
    store = pipeline.artifacts
    if store is None or not pipeline.outputs():
        return None
    return ir.Volume(scratch_names(pipeline).artifacts, ir.VolumeKind.SIZED, access=store.access, size=store.size,
                     storage_class=store.storage_class, span=store.span)


def pvc_spec(volume: ir.Volume) -> dict:
    spec: dict = {"accessModes": [ACCESS_MODE[volume.access]]}
    if volume.storage_class:
        spec["storageClassName"] = volume.storage_class
    spec["resources"] = {"requests": {"storage": format_bytes(volume.size or 0)}}
    return spec


def build_pvc(pipeline: ir.Pipeline, volume: ir.Volume) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(pipeline, claim_name(pipeline, volume), pipeline.labels_for(volume.name, "volume")),
        "spec": pvc_spec(volume),
    }


# --------------------------------------------------------------- containers


def build_resources(resources: ir.Resources) -> dict:
    cpu = resources.cpu or ir.DEFAULT_CPU
    memory = resources.memory or ir.DEFAULT_MEMORY
    requests = {"cpu": format_cpu(cpu.request), "memory": format_bytes(memory.request)}
    limits = {"cpu": format_cpu(cpu.limit), "memory": format_bytes(memory.limit)}
    if resources.disk is not None:
        requests["ephemeral-storage"] = limits["ephemeral-storage"] = format_bytes(resources.disk)
    if resources.gpu > 0:
        limits[GPU_RESOURCE[resources.gpu_vendor]] = resources.gpu
    return {"requests": requests, "limits": limits}


def build_tolerations(stage: ir.Stage) -> list[dict]:
    """GPU nodes are usually tainted with their resource name; GPU stages tolerate it.
    Then the stage's `schedule.tolerate`, in the order written."""
    resources = stage.resources
    tolerations = []
    if resources.gpu > 0 or resources.gpu_model is not None:
        tolerations.append({"key": GPU_RESOURCE[resources.gpu_vendor], "operator": "Exists", "effect": "NoSchedule"})
    for toleration in stage.schedule.tolerate:
        item = {"key": toleration.key, "operator": toleration.operator}
        if toleration.value is not None:
            item["value"] = toleration.value
        if toleration.effect is not None:
            item["effect"] = toleration.effect
        if item not in tolerations:
            tolerations.append(item)
    return tolerations


def gpu_requirements(stage: ir.Stage, convention: ir.GpuLabels) -> tuple[ir.NodeRequirement, ...]:
    nodes = stage.resources.gpu_nodes
    return nodes.requirements(convention) if nodes is not None else ()


def build_node_selector(stage: ir.Stage, convention: ir.GpuLabels) -> dict:
    """``schedule.node``, and a ``gpu_model`` written as a label value: the label of
    the convention (feature discovery's product label, GKE's accelerator...)."""
    selector = dict(stage.schedule.node)
    nodes = stage.resources.gpu_nodes
    if nodes is not None and not nodes.portable:
        for requirement in nodes.requirements(convention):
            selector.setdefault(requirement.key, requirement.values[0])
    return selector


def build_affinity(stage: ir.Stage, convention: ir.GpuLabels) -> dict:
    """A portable ``gpu_model`` matches several label values (every product string of
    the model), which a node selector cannot say: a required node affinity does."""
    nodes = stage.resources.gpu_nodes
    if nodes is None or not nodes.portable or not nodes.requirements(convention):
        return {}
    term = {"matchExpressions": [r.match_expression() for r in nodes.requirements(convention)]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


def container_security_context(security: ir.Security) -> dict:
    """The container's part of the hardening; each relaxation of ``security`` is
    the one field that says it (a privileged container must be allowed to escalate:
    the API server refuses ``privileged`` with ``allowPrivilegeEscalation: false``)."""
    context: dict = {
        "allowPrivilegeEscalation": security.privileged,
        "privileged": security.privileged,
        "readOnlyRootFilesystem": security.read_only,
    }
    if not security.is_root:
        context["runAsNonRoot"] = True
    capabilities: dict = {"drop": ["ALL"]}
    if security.capabilities:
        capabilities["add"] = list(security.capabilities)
    context["capabilities"] = capabilities
    return context


def pod_security_context(security: ir.Security) -> dict:
    """Who the pod's processes are: the stage's user (``runAsNonRoot`` unless root),
    and the group that owns its volumes (``fsGroup``), the same for every stage."""
    context: dict = {}
    if not security.is_root:
        context["runAsNonRoot"] = True
    context.update({
        "runAsUser": security.uid,
        "runAsGroup": security.gid,
        "fsGroup": ir.VOLUME_GROUP,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    })
    return context


def build_program(stage: ir.Stage, render: Render) -> dict:
    """``command`` is the whole argv (it replaces the image's entrypoint); ``args``
    are appended to the image's entrypoint (no ``command``); a ``script`` runs with
    ``sh -c``; with none of them the image's own entrypoint and command run."""
    if stage.script is not None:
        return {"command": ["sh", "-c"], "args": [no_expansion(render(stage.script))]}
    if stage.command:
        return {"command": [no_expansion(render(argument)) for argument in stage.command]}
    if stage.args:
        return {"args": [no_expansion(render(argument)) for argument in stage.args]}
    return {}


def build_env(stage: ir.Stage, render: Render, master: str | None = None) -> list[dict]:
    """``env``, each ``SECRET.KEY`` value read from that Secret, a node's variables
    (``master``: node 0's name, for a multi-node stage), then HOME and USER."""
    env = [{"name": name, "value": no_expansion(render(value))} for name, value in stage.env]
    env += [{"name": name, "valueFrom": {"secretKeyRef": {"name": ir.dns_label(key.secret), "key": key.key}}}
            for name, key in stage.secret_env]
    if master is not None:
        env += build_node_env(stage, master)
    env += [{"name": name, "value": value} for name, value in stage.base_env()]
    return env


def build_probes(stage: ir.Stage, render: Render) -> dict:
    """Startup, readiness and liveness probes: one handler, the stage's timings. The
    startup probe holds the others back until it passes, for up to ``start``."""
    health = stage.health if stage.health is not None else ir.Health(ir.HealthKind.TCP, port=stage.port)
    handler = build_probe_handler(stage, health, render)
    timing = {"periodSeconds": health.interval, "timeoutSeconds": health.timeout}
    return {
        "startupProbe": {**handler, **timing, "failureThreshold": health.start_checks},
        "readinessProbe": {**handler, **timing, "failureThreshold": health.failures},
        "livenessProbe": {**handler, **timing, "failureThreshold": health.failures},
    }


def build_probe_handler(stage: ir.Stage, health: ir.Health, render: Render) -> dict:
    if health.kind is ir.HealthKind.COMMAND:
        return {"exec": {"command": [render(argument) for argument in health.command or ()]}}
    names = {named.port: named.name for named in stage.named_ports()}
    port = names.get(health.port or 0, health.port)  # a declared port by its name
    if health.kind is ir.HealthKind.HTTP:
        return {"httpGet": {"path": render(health.path) if health.path else "/", "port": port}}
    return {"tcpSocket": {"port": port}}


def build_volume_mounts(stage: ir.Stage, scratch: ScratchNames) -> list[dict]:
    mounts = []
    for mount in stage.mounts:
        item: dict = {"name": volume_name(mount.volume), "mountPath": mount.path}
        if mount.read_only:
            item["readOnly"] = True
        mounts.append(item)
    for artifact in stage.artifact_mounts():  # its outputs, then its inputs read-only
        item = {"name": scratch.artifacts, "mountPath": artifact.path, "subPath": artifact.sub_path}
        if artifact.read_only:
            item["readOnly"] = True
        mounts.append(item)
    if not stage.mounts_at("/tmp"):
        mounts.append({"name": scratch.tmp, "mountPath": "/tmp"})
    if stage.resources.shm is not None:
        mounts.append({"name": scratch.shm, "mountPath": "/dev/shm"})
    return mounts


def build_container(pipeline: ir.Pipeline, stage: ir.Stage, options: Options, render: Render) -> dict:
    container: dict = {"name": ir.dns_label(stage.name), "image": render(stage.image)}
    if stage.pull is not None:
        container["imagePullPolicy"] = PULL_POLICY[stage.pull]
    container.update(build_program(stage, render))
    if stage.workdir is not None:
        container["workingDir"] = render(stage.workdir)
    container["env"] = build_env(stage, render, master_address(pipeline, stage, options))
    if stage.secrets:
        container["envFrom"] = [{"secretRef": {"name": ir.dns_label(s.name)}} for s in stage.secrets]
    if not stage.is_batch and stage.port is not None:
        container["ports"] = [{"name": named.name, "containerPort": named.port, "protocol": "TCP"}
                              for named in stage.named_ports()]
        container.update(build_probes(stage, render))
    container["resources"] = build_resources(stage.resources)
    container["securityContext"] = container_security_context(stage.security)
    container["volumeMounts"] = build_volume_mounts(stage, scratch_names(pipeline))
    return container


def image_pull_secrets(pipeline: ir.Pipeline) -> list[dict]:
    return [{"name": name} for name in pipeline.pull_secrets]


def scratch_volumes(pipeline: ir.Pipeline, stage: ir.Stage) -> list[dict]:
    """The emptyDirs every pod gets: a writable /tmp, and /dev/shm sized by `shm`."""
    scratch = scratch_names(pipeline)
    volumes: list[dict] = []
    if not stage.mounts_at("/tmp"):
        volumes.append({"name": scratch.tmp, "emptyDir": {}})
    if stage.resources.shm is not None:
        volumes.append({"name": scratch.shm, "emptyDir": {"medium": "Memory", "sizeLimit": format_bytes(stage.resources.shm)}})
    return volumes


def claim_volumes(pipeline: ir.Pipeline, stage: ir.Stage) -> list[dict]:
    """The stage's pipeline volumes as PersistentVolumeClaim references."""
    volumes = []
    for mount in stage.mounts:
        source = {"claimName": claim_name(pipeline, mount.volume)}
        volumes.append({"name": volume_name(mount.volume), "persistentVolumeClaim": source})
    store = artifact_store(pipeline) if stage.outputs or stage.inputs else None
    if store is not None:
        volumes.append({"name": volume_name(store), "persistentVolumeClaim": {"claimName": claim_name(pipeline, store)}})
    return volumes


@dataclass(frozen=True)
class PodParts:
    """What one stage's pod is made of, for a pod spec here or an Argo template."""

    container: dict
    scratch_volumes: list
    claim_volumes: list
    node_selector: dict
    affinity: dict
    tolerations: list
    priority_class: str | None


def build_pod_parts(pipeline: ir.Pipeline, stage: ir.Stage, options: Options, render: Render) -> PodParts:
    convention = gpu_convention(pipeline, options)
    return PodParts(
        container=build_container(pipeline, stage, options, render),
        scratch_volumes=scratch_volumes(pipeline, stage),
        claim_volumes=claim_volumes(pipeline, stage),
        node_selector=build_node_selector(stage, convention),
        affinity=build_affinity(stage, convention),
        tolerations=build_tolerations(stage),
        priority_class=stage.schedule.priority,
    )


def build_pod_spec(pipeline: ir.Pipeline, stage: ir.Stage, options: Options, render: Render,
                   subdomain: str | None = None) -> dict:
    parts = build_pod_parts(pipeline, stage, options, render)
    spec: dict = {}
    if stage.is_batch:
        spec["restartPolicy"] = "Never"
    if subdomain is not None:
        spec["subdomain"] = subdomain
    spec["automountServiceAccountToken"] = False
    spec["securityContext"] = pod_security_context(stage.security)
    if pipeline.pull_secrets:
        spec["imagePullSecrets"] = image_pull_secrets(pipeline)
    if parts.node_selector:
        spec["nodeSelector"] = parts.node_selector
    if parts.affinity:
        spec["affinity"] = parts.affinity
    if parts.tolerations:
        spec["tolerations"] = parts.tolerations
    if parts.priority_class is not None:
        spec["priorityClassName"] = parts.priority_class
    spec["containers"] = [parts.container]
    spec["volumes"] = parts.claim_volumes + parts.scratch_volumes
    return spec


# ---------------------------------------------------------------- workloads


def workload_labels(pipeline: ir.Pipeline, stage: ir.Stage) -> dict:
    """A batch workload's own labels: the stage's, and its Kueue queue (on the
    workload, where Kueue reads it, not on its pods)."""
    labels = stage_labels(pipeline, stage)
    if stage.schedule.queue is not None:
        labels[QUEUE_LABEL] = stage.schedule.queue
    return labels


def build_job(pipeline: ir.Pipeline, stage: ir.Stage, options: Options, key: str | None = None,
              render: Render = substituted) -> dict:
    """A batch stage's Job; ``key`` the compile-time part of its cache key, when it may
    be cached. A multi-node stage's is an Indexed Job of ``nodes`` pods at once, whose
    pods take the group's headless Service as their ``subdomain``."""
    labels = stage_labels(pipeline, stage)
    name = group_name(pipeline, stage, options)
    annotations = stage_annotations(pipeline, stage, options)
    if key is not None:
        annotations[CACHE_KEY_ANNOTATION] = key
    spec: dict = {}
    if stage.nodes is not None:
        spec.update(completionMode="Indexed", completions=stage.nodes, parallelism=stage.nodes)
    spec["backoffLimit"] = stage.retries  # a multi-node stage's: failed pods of the group (each replaced alone)
    if stage.timeout is not None:
        spec["activeDeadlineSeconds"] = stage.timeout
    spec["ttlSecondsAfterFinished"] = options.ttl_seconds_after_finished
    spec["template"] = {
        "metadata": {"labels": labels},
        "spec": build_pod_spec(pipeline, stage, options, render, name if stage.nodes is not None else None),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(pipeline, name, workload_labels(pipeline, stage), annotations),
        "spec": spec,
    }


# ----------------------------------------------------------------- nodes
# A stage with `nodes = N` (docs/research/v1-facts.md, "Kubernetes Indexed Jobs"
# and "JobSet"). As an Indexed Job, pod i has the hostname `<job>-i`; with the pod
# `subdomain` naming a headless Service (`clusterIP: None`) that selects the pods,
# it resolves as `<job>-i.<service>` in the namespace (K8s OpenAPI,
# JobSpec.completionMode and PodSpec.subdomain), before the pod is Ready only with
# `publishNotReadyAddresses` (kubernetes/website dns-pod-service.md). A JobSet makes
# that Service itself; its pods are `<jobset>-<replicatedJob>-<jobIndex>-<podIndex>`
# (jobset_types.go, Network).

MULTINODE_FORMS = ("job", "jobset")
# The annotation an Indexed Job's pod carries its index in (batch/v1, since 1.21;
# the downward API reads it as kubernetes/website's indexed-parallel-processing-static does).
COMPLETION_INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
JOBSET_REPLICATED_JOB = "node"  # the one replicated job of a multi-node stage's JobSet
JOBSET_API_VERSION = "jobset.x-k8s.io/v1alpha2"


def group_name(pipeline: ir.Pipeline, stage: ir.Stage, options: Options) -> str:
    """The name of a stage's workload, and of a multi-node stage's Service."""
    if options.group_prefix is not None and stage.nodes is not None:
        return f"{options.group_prefix}-{ir.dns_label(stage.name)}"
    return pipeline.object_name(stage.name)


def master_address(pipeline: ir.Pipeline, stage: ir.Stage, options: Options) -> str | None:
    """Node 0's name: its hostname and subdomain, which its namespace resolves; None
    for a stage that is no group."""
    if stage.nodes is None:
        return None
    name = group_name(pipeline, stage, options)
    if options.multinode == "jobset":
        return f"{name}-{JOBSET_REPLICATED_JOB}-0-0.{name}"
    if options.group_prefix is not None:
        return f"{name}-0.{name}"
    return ir.node_host(pipeline.name, stage.name, 0)


def build_node_env(stage: ir.Stage, master: str) -> list[dict]:
    """The group's variables; the rank is the pod's completion index."""
    return [{"name": name, "value": value} if value is not None
            else {"name": name, "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX_FIELD}}}
            for name, value in ir.node_environment(stage, master, None)]


def build_headless_service(pipeline: ir.Pipeline, stage: ir.Stage, options: Options) -> dict:
    """The Service that gives each node of a multi-node stage its DNS name, before
    any is ready (training pods have no readiness probe)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(pipeline, group_name(pipeline, stage, options), stage_labels(pipeline, stage)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector_labels(pipeline, stage),
        },
    }


def build_allow_group(pipeline: ir.Pipeline, stage: ir.Stage) -> dict:
    """Admit traffic between the nodes of a multi-node stage on every port: the
    rendezvous port and the ports NCCL picks (an ingress rule without ``ports``
    matches all; K8s OpenAPI, NetworkPolicyIngressRule)."""
    selector = selector_labels(pipeline, stage)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(pipeline, pipeline.object_name(stage.name), stage_labels(pipeline, stage)),
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": selector}}]}],
        },
    }


def build_jobset(pipeline: ir.Pipeline, stage: ir.Stage, options: Options) -> dict:
    """A multi-node stage as one JobSet: one replicated Job of ``nodes`` pods, which
    fails at its first failed pod (``backoffLimit: 0``, ``restartPolicy: Never``),
    so that the JobSet restarts the whole group, ``retries`` times at most
    (``failurePolicy.maxRestarts``). The JobSet makes the headless Service its
    ``network.subdomain`` names."""
    labels = stage_labels(pipeline, stage)
    name = group_name(pipeline, stage, options)
    job: dict = {"completionMode": "Indexed", "completions": stage.nodes, "parallelism": stage.nodes,
                 "backoffLimit": 0}
    if stage.timeout is not None:
        job["activeDeadlineSeconds"] = stage.timeout  # per attempt of the group
    job["template"] = {"metadata": {"labels": labels},
                       "spec": build_pod_spec(pipeline, stage, options, substituted)}
    return {
        "apiVersion": JOBSET_API_VERSION,
        "kind": "JobSet",
        "metadata": metadata(pipeline, name, workload_labels(pipeline, stage),  # Kueue admits the JobSet
                             stage_annotations(pipeline, stage, options)),
        "spec": {
            "failurePolicy": {"maxRestarts": stage.retries},
            "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True, "subdomain": name},
            "replicatedJobs": [{"name": JOBSET_REPLICATED_JOB, "replicas": 1,
                                "template": {"metadata": {"labels": labels}, "spec": job}}],
            "ttlSecondsAfterFinished": options.ttl_seconds_after_finished,
        },
    }


def check_group_names(pipeline: ir.Pipeline, options: Options, sink: Diagnostics, run_suffix: int = 0) -> None:
    """The hostname of a multi-node stage's last pod is a DNS label: `<job>-<N-1>`
    of an Indexed Job; a JobSet's webhook also counts a 5-character suffix on
    `<jobset>-node-0-<N-1>` (jobset_webhook.go). E110 where it is too long. Argo
    names the Job after its run, the pipeline's name and ``run_suffix`` characters."""
    for stage in pipeline.stages:
        if stage.nodes is None:
            continue
        prefix = pipeline.dns_name + ("-" + "x" * (run_suffix - 1) if run_suffix else "")
        name = f"{prefix}-{ir.dns_label(stage.name)}"
        last = (f"{name}-{JOBSET_REPLICATED_JOB}-0-{stage.nodes - 1}-xxxxx" if options.multinode == "jobset"
                else f"{name}-{stage.nodes - 1}")
        if len(last) > ir.MAX_OBJECT_NAME:
            shown = last.replace(prefix, pipeline.dns_name + "-xxxxx", 1) if run_suffix else last
            sink.error(codes.NAME_TOO_LONG, stage.span_of("nodes"),
                       f"the last node of `{stage.name}` is named `{shown}`, {len(last)} characters; "
                       f"Kubernetes allows {ir.MAX_OBJECT_NAME} in a hostname",
                       label=f"{len(last) - ir.MAX_OBJECT_NAME} characters too many",
                       help="shorten the stage name or the pipeline name")


def group_documents(pipeline: ir.Pipeline, stage: ir.Stage, options: Options, key: str | None = None) -> list[dict]:
    """A multi-node stage's objects, in the order they are created: its name first
    (the headless Service, which a JobSet makes itself), the policy, the workload."""
    if options.multinode == "jobset":
        return [build_allow_group(pipeline, stage), build_jobset(pipeline, stage, options)]
    return [build_headless_service(pipeline, stage, options), build_allow_group(pipeline, stage),
            build_job(pipeline, stage, options, key)]


def build_deployment(pipeline: ir.Pipeline, stage: ir.Stage, options: Options, render: Render) -> dict:
    labels = stage_labels(pipeline, stage)
    spec: dict = {}
    if stage.autoscale is None:  # else the autoscaler sets it, and applying again must not reset it
        spec["replicas"] = stage.replicas
    spec["selector"] = {"matchLabels": selector_labels(pipeline, stage)}
    spec["template"] = {"metadata": {"labels": labels}, "spec": build_pod_spec(pipeline, stage, options, render)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(pipeline, pipeline.object_name(stage.name), labels,
                             stage_annotations(pipeline, stage, options)),
        "spec": spec,
    }


def build_autoscaler(pipeline: ir.Pipeline, stage: ir.Stage) -> dict:
    """An ``autoscaling/v2`` HorizontalPodAutoscaler of the stage's Deployment.

    CPU use is a ``Resource`` metric in percent of the pods' CPU requests (every
    container here has one); a custom metric a ``Pods`` metric whose per-pod average
    is kept at ``target``. ``minReplicas: 0`` is accepted only with an ``Object`` or
    ``External`` metric (and the HPAScaleToZero feature gate), so a range from 0 names
    its metric as ``External``, averaged over the pods (K8s OpenAPI, autoscaling/v2
    HorizontalPodAutoscalerSpec, MetricSpec; docs/research/v1-facts.md)."""
    autoscale = stage.autoscale
    assert autoscale is not None
    if autoscale.metric is None:
        metric: dict = {"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": autoscale.cpu}}}
    else:
        kind = "External" if autoscale.minimum == 0 else "Pods"
        metric = {"type": kind, kind.lower(): {"metric": {"name": autoscale.metric}, "target": {
            "type": "AverageValue", "averageValue": str(autoscale.target)}}}
    name = pipeline.object_name(stage.name)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(pipeline, name, stage_labels(pipeline, stage)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": autoscale.minimum,
            "maxReplicas": autoscale.maximum,
            "metrics": [metric],
        },
    }


def build_service(pipeline: ir.Pipeline, stage: ir.Stage) -> dict:
    """A ClusterIP Service named like the Deployment (the pipeline prefix starts
    with a letter, so the name is also a DNS-1035 label)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(pipeline, pipeline.object_name(stage.name), stage_labels(pipeline, stage)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(pipeline, stage),
            "ports": [{"name": named.name, "port": stage.service_port if index == 0 else named.port,
                       "targetPort": named.name, "protocol": "TCP"}
                      for index, named in enumerate(stage.named_ports())],
        },
    }


# ----------------------------------------------------------------- network


# Where clouds serve instance metadata, with the node's credentials: AWS (IMDS,
# and fd00:ec2::254 on IPv6), Google Cloud, Azure, Oracle and others all answer at
# 169.254.169.254. A pod that reaches it may act as the node.
METADATA_ADDRESSES = {"0.0.0.0/0": "169.254.169.254/32", "::/0": "fd00:ec2::254/128"}


def pipeline_selector(pipeline: ir.Pipeline) -> dict:
    """The labels that pick every pod of the pipeline."""
    return {"matchLabels": {ir.LABEL_PART_OF: ir.label_value(pipeline.name)}}


def build_egress(pipeline: ir.Pipeline) -> list[dict]:
    """Where the pipeline's pods may connect: DNS, wherever the cluster's resolver
    is (a node-local cache listens on a link-local address); the pipeline's own
    pods; and every other address but the cloud metadata service."""
    return [
        {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
        {"to": [{"podSelector": pipeline_selector(pipeline)}]},
        {"to": [{"ipBlock": {"cidr": cidr, "except": [metadata_address]}}
                for cidr, metadata_address in METADATA_ADDRESSES.items()]},
    ]


def build_default_deny(pipeline: ir.Pipeline) -> dict:
    """No ingress to any of the pipeline's pods unless another policy admits it, and
    egress only as :func:`build_egress` says."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(pipeline, pipeline.dns_name, pipeline.labels_for(pipeline.name, "network-policy")),
        "spec": {
            "podSelector": pipeline_selector(pipeline),
            "policyTypes": ["Ingress", "Egress"],
            "egress": build_egress(pipeline),
        },
    }


def build_allow_port(pipeline: ir.Pipeline, stage: ir.Stage) -> dict:
    """Admit TCP traffic to each of a serve stage's ports, from anywhere. A policy
    names the pod's ports (the Service's targets), not the Service's."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(pipeline, pipeline.object_name(stage.name), stage_labels(pipeline, stage)),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(pipeline, stage)},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": named.port} for named in stage.named_ports()]}],
        },
    }


def build_namespace(pipeline: ir.Pipeline) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": pipeline.namespace, "labels": pipeline.labels_for(pipeline.namespace or "", "namespace")},
    }


# -------------------------------------------------------------------- emit


def check_host_mounts(pipeline: ir.Pipeline, sink: Diagnostics, target: str) -> None:
    """A host path exists on one Docker host, not on a cluster's nodes (B001)."""
    for stage in pipeline.stages:
        for mount in stage.mounts:
            if mount.volume.kind is ir.VolumeKind.HOST:
                sink.error(
                    codes.NOT_PORTABLE, mount.span,
                    f"stage `{stage.name}` mounts the host volume `{mount.volume.name}`, which {target} cannot provide",
                    label="a host path exists only on one Docker host",
                    help=f"give `{mount.volume.name}` a `size` (a new claim) or a `claim` (an existing one); "
                    "host volumes are for --target compose",
                )


def check_shared_memory(pipeline: ir.Pipeline, sink: Diagnostics, target: str) -> None:
    """/dev/shm is a memory-backed emptyDir, whose pages count against the
    container's memory limit; the kubelet caps its size there (the API reference of
    ``EmptyDirVolumeSource.sizeLimit``: "the minimum value between the SizeLimit
    specified here and the sum of memory limits of all containers in a pod"). An
    ``shm`` above that limit cannot be had (B003)."""
    for stage in pipeline.stages:
        resources = stage.resources
        memory = resources.memory or ir.DEFAULT_MEMORY
        if resources.shm is None or resources.shm <= memory.limit:
            continue
        shm, limit = format_bytes(resources.shm), format_bytes(memory.limit)
        default = " (the default: the stage sets no `memory`)" if resources.memory is None else ""
        sink.error(codes.SHM_ABOVE_MEMORY, stage.span_of("shm"),
                   f"`shm = {shm}` of `{stage.name}` is above its memory limit, {limit}{default}: on {target} "
                   "/dev/shm is memory that counts against that limit",
                   label=f"more than the {limit} the container may use",
                   help=f"set `memory` to at least {shm} plus what the process itself needs, e.g. "
                   f"`memory = {format_bytes(resources.shm * 2)}`")


def check_artifact_store(pipeline: ir.Pipeline, sink: Diagnostics, target: str) -> None:
    """Outputs need the header's `artifacts { }` on a cluster (B002); on an `rwo` claim
    a stage that reads an output may land on another node than its writer (B104)."""
    outputs = pipeline.outputs()
    if not outputs:
        return
    if pipeline.artifacts is None:
        first = outputs[0]
        stage = pipeline.stage(first.producer)
        output = next(o for o in stage.outputs if o.name == first.output)
        sink.error(codes.NO_ARTIFACT_STORE, output.span,
                   f"`{stage.group}` has an output, `{first.output}`, and the pipeline says nowhere to keep outputs "
                   f"on {target}", label=f"needs `artifacts {{ }}` on {target}",
                   help="add to the `pipeline` header the claim that holds every output, each a subPath: "
                   "`artifacts { size = 100Gi  access = rwx }`")
        return
    if pipeline.artifacts.access is ir.Access.RWO and any(stage.inputs for stage in pipeline.stages):
        sink.warning(codes.SINGLE_NODE_ARTIFACTS, pipeline.artifacts.span,
                     f"the outputs live on an `rwo` claim, which one node at a time may mount: on {target}, "
                     "a stage that reads an output waits if it lands on another node than the pod holding it",
                     label="`access` is `rwo`",
                     help="write `access = rwx` with a storage class that offers it, so that stages on any "
                     "node read and write their outputs at once")


def check_scheduling(pipeline: ir.Pipeline, options: Options, sink: Diagnostics, target: str) -> None:
    """What the node label convention cannot select (B001), a node label asked for
    twice with two values (E204), and scaling from zero's demands (B101)."""
    convention = gpu_convention(pipeline, options)
    for stage in pipeline.stages:
        nodes = stage.resources.gpu_nodes
        if nodes is not None and nodes.portable and not nodes.requirements(convention):
            sink.error(codes.NOT_PORTABLE, stage.span_of("gpu_model"),
                       f"no node of the `{convention.value}` label convention has the GPU model "
                       f"`{stage.resources.gpu_model}` of `{stage.name}`",
                       label=f"not offered under --gpu-labels {convention.value}",
                       help="choose a model the cloud offers, or the convention of your cluster "
                       "(`--gpu-labels gfd` selects by NVIDIA GPU feature discovery's product label)")
        if nodes is not None and not nodes.portable:
            for requirement in nodes.requirements(convention):
                written = dict(stage.schedule.node).get(requirement.key)
                if written is not None and written != requirement.values[0]:
                    sink.error(codes.CONFLICTING_ATTRIBUTES, stage.schedule.span_of("node") or stage.span,
                               f"`schedule.node` of `{stage.name}` asks for `{requirement.key}` = "
                               f"`{written}`, its `gpu_model` for `{requirement.values[0]}`",
                               label="conflicts", help="keep one of them: no node has both")
        autoscale = stage.autoscale
        if autoscale is not None and autoscale.minimum == 0:
            sink.warning(codes.IGNORED_ON_TARGET, autoscale.span,
                         f"{target} scales `{stage.name}` to zero only with the HPAScaleToZero feature gate, "
                         f"and reads `{autoscale.metric}` as an External metric",
                         label="minReplicas: 0",
                         help="the API server refuses `minReplicas: 0` without the gate; an external metrics "
                         "adapter (KEDA, prometheus-adapter) must serve the metric; or start from 1")


def emit(pipeline: ir.Pipeline, options: Options | None = None) -> Emitted:
    options = options or Options()
    sink = Diagnostics(pipeline.file)
    check_host_mounts(pipeline, sink, "Kubernetes")
    check_shared_memory(pipeline, sink, "Kubernetes")
    check_group_names(pipeline, options, sink)
    check_artifact_store(pipeline, sink, "Kubernetes")
    check_scheduling(pipeline, options, sink, "Kubernetes")
    if sink.has_errors:
        return Emitted((), tuple(sink.sorted()))
    documents: list[dict] = []
    if options.namespace_object and pipeline.namespace:
        documents.append(build_namespace(pipeline))
    if pipeline.stages:
        documents.append(build_default_deny(pipeline))
    documents += [build_pvc(pipeline, v) for v in pipeline.volumes if v.kind is ir.VolumeKind.SIZED]
    store = artifact_store(pipeline)
    if store is not None:
        documents.append(build_pvc(pipeline, store))
    keys = compile_keys(pipeline)
    report_tag_keys(pipeline, keys, sink, "Kubernetes")
    for stage in pipeline.stages:
        if stage.nodes is not None:
            documents += group_documents(pipeline, stage, options, keys.get(stage.name))
        elif stage.is_batch:
            documents.append(build_job(pipeline, stage, options, keys.get(stage.name)))
        else:
            documents.append(build_deployment(pipeline, stage, options, substituted))
            if stage.autoscale is not None:
                documents.append(build_autoscaler(pipeline, stage))
            documents += [build_service(pipeline, stage), build_allow_port(pipeline, stage)]
    return Emitted(tuple(documents), tuple(sink.sorted()))
