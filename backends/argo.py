"""Argo Workflows: one ``argoproj.io/v1alpha1`` Workflow that runs the whole DAG
inside the cluster, built from the Kubernetes backend's builders so that a stage
runs the same way on both targets.

What a program becomes
----------------------
- the pipeline: a Workflow (``generateName: <pipeline>-``, or ``name:
  <pipeline>`` with ``--stable-name``) whose entrypoint is a DAG template
  (``main``); ``podGC: OnPodSuccess`` (failed pods stay for their logs),
  ``ttlStrategy.secondsAfterCompletion`` one day, the pod
  ``securityContext`` of the Kubernetes backend for the hardened default user
  (a template whose stage runs as another ``user`` has its own, which Argo puts
  in place of the workflow's), the header's ``pull_secrets`` as
  ``imagePullSecrets``. Its first task applies the
  Kubernetes backend's NetworkPolicy for every pod of the pipeline (no ingress,
  egress only to DNS, the pipeline's pods and addresses other than the cloud
  metadata service); every other task waits for it, directly or through its
  dependencies;
- least privilege: ``serviceAccountName`` is ``PIPELINE-runner``
  (``--service-account``), the batch steps' account, which needs only what
  Argo's executor does (:data:`EXECUTOR_RULES`); the executor needs that
  account's token, so ``automountServiceAccountToken`` is left on for them. The
  templates that apply objects name ``PIPELINE-deployer``
  (``--deploy-service-account``), which may create those kinds of objects and
  read and patch exactly the objects applied (:func:`deployer_rules`). With
  ``--rbac`` both accounts come first in the output, each with its Role and
  RoleBinding;
- a parameter means one value everywhere. One that only batch stages' strings
  use (command, script, env, image, workdir: every ``ir.Text``) is a Workflow
  ``arguments.parameters`` entry whose value is the default (``-p`` at compile
  time changes it), referred to as ``{{workflow.parameters.NAME}}``, so
  ``argo submit -p epochs=20`` works. One whose value is compiled in anywhere
  (a number, size or duration such as ``gpu``, a mount path, a label:
  ``ir.Param.fixed_at``), or that a serve stage uses (Argo pastes a parameter
  into the applied manifest's YAML text unquoted: ``it's`` breaks it and a
  crafted value adds fields), is fixed at its compiled value everywhere and not
  offered for submission, with a B101 warning saying where; an unused one is not
  offered either. A service address (``${db.url}``) is the Service's, as on
  Kubernetes;
- a batch stage: a container template (the same container, resources, GPUs,
  tolerations, node selector, shm, mounts, env, secret references and
  hardening as the Kubernetes Job, with ``retryStrategy.limit`` = retries and
  ``activeDeadlineSeconds`` = timeout, which Argo applies to each attempt, so
  with retries ``retryStrategy.backoff.maxDuration`` = timeout bounds the whole
  stage) and a DAG task whose ``dependencies`` are the stage's ``after``;
- a serve stage: a DAG task running a steps template that applies, side by
  side, the Deployment (a ``resource`` template that succeeds once every
  replica is updated and available, so a dependant, batch or serve, waits for
  a healthy service), the Service and the NetworkPolicy admitting its port that
  the Kubernetes backend builds, and with ``replicas = MIN..MAX`` its
  HorizontalPodAutoscaler (which the deployer account may then create, get and
  patch, as the rest);
- scheduling as on Kubernetes (node selector, GPU model affinity, tolerations,
  priority class on the container template); a batch stage's pod carries the
  Kueue queue label, for Kueue's pod integration;
- a multi-node stage (``nodes = N``): a steps template applying the
  NetworkPolicy that admits the group's pods to each other and creating the
  Kubernetes backend's headless Service, then creating its Indexed Job (the two
  named after the run and owned by the Workflow), ending with the Job; with
  ``--multinode jobset`` the policy, then the JobSet (:func:`build_group_templates`).
  Their strings take parameters' compiled values, as serve stages' do; the
  deployer may create and get Jobs and Services (JobSets) of any name, since
  their names are the run's;
- a sized volume: a ``volumeClaimTemplates`` entry, created for the run and
  removed with it, unless a serve stage or a multi-node stage mounts it: the Deployment outlives the
  Workflow, so that volume is the Kubernetes backend's PersistentVolumeClaim
  ``<pipeline>-<volume>``, applied by a DAG task ``<volume>-volume`` that the
  first stages mounting it depend on (the only dependencies besides ``after``
  and the network policy's);
- a ``claim`` volume: the existing claim, in ``spec.volumes``; a mounted
  ``host`` volume is an error (B001), as on Kubernetes;
- the cache: each batch stage that may be cached carries the compile-time part
  of its key as the annotation ``aipc.dev/cache-key``, as on Kubernetes, and is
  memoized with it (``memoize``, in the ConfigMap ``<pipeline>-cache``) unless its
  container reads a workflow parameter, whose value is set after compiling, or it
  has outputs: each run's claim is new, so a step skipped would leave them empty;
- outputs: the claim of the header's ``artifacts { }``, a volume claim template
  of the run like a sized volume (applied like one when a serve stage reads an
  output), each output its subPath ``<stage>/<output>``, as on Kubernetes;
- a matrix stage: each instance a stage as above (its coordinates in its pod's
  annotations; the same accounts, network policies and parameter rules); under
  ``max_parallel = N`` (fewer than its instances) they are the tasks of a DAG
  template of their own with ``parallelism: N``, which the entrypoint runs as
  one task (waiting for the network policy like any other): a stage paired with
  them waits for all of them, reported as B101 at ``max_parallel``.

Argo reads ``{{...}}`` in any string of a template as its own expression, so a
string holding ``{{`` gets a B101 warning at its attribute; every string is
written through :class:`ArgoTexts`, which reports it. A Workflow over 1 MiB
(Argo's and etcd's limit) gets a B103 warning.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from aipc import codes
from aipc.backends import Emitted
from aipc.backends import kubernetes as k8s
from aipc.backends.cachekey import CACHE_KEY_ANNOTATION, compile_keys, report_tag_keys
from aipc.compiler import ir
from aipc.diagnostics import Diagnostics, Label

MAX_WORKFLOW_BYTES = 1024 * 1024
ENTRYPOINT = "main"
NETWORK_POLICY_TASK = "network-policy"
# What Argo's executor needs from the API server (>= v3.4: it reports a step's
# outputs as a WorkflowTaskResult): argoproj/argo-workflows docs/workflow-rbac.md
# and manifests/quick-start/base/executor/emissary/executor-role.yaml.
EXECUTOR_RULES = ({"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},)
MEMOIZE_MAX_AGE = "8760h"  # how long a memoized step counts (a year): Argo's schema requires a maxAge


@dataclass(frozen=True)
class Options:
    """What the Argo target lets a user choose (flags in ``add_arguments``)."""

    stable_name: bool = False  # metadata.name instead of generateName
    service_account: str | None = None  # batch steps; default <pipeline>-runner
    deploy_service_account: str | None = None  # the steps that apply objects; default <pipeline>-deployer
    rbac: bool = False  # also emit both accounts with their Roles and RoleBindings
    ttl_seconds_after_completion: int = 86400
    kubernetes: k8s.Options = field(default_factory=k8s.Options)


@dataclass(frozen=True)
class Accounts:
    """The two service accounts of a Workflow's pods: batch steps run as ``runner``,
    which may do only what Argo's executor needs; the steps that apply objects
    (serve stages, served volumes, network policies) run as ``deployer``, which
    may create and change those objects and no others."""

    runner: str
    deployer: str


def accounts(pipeline: ir.Pipeline, options: Options) -> Accounts:
    return Accounts(options.service_account or f"{pipeline.dns_name}-runner",
                    options.deploy_service_account or f"{pipeline.dns_name}-deployer")


def default_filename(pipeline: ir.Pipeline) -> str:
    return f"{pipeline.dns_name}.argo.yaml"


def add_arguments(group) -> None:
    group.add_argument("--stable-name", action="store_true",
                       help="argo: name the Workflow after the pipeline instead of generating a name per run")
    group.add_argument("--service-account", metavar="NAME",
                       help="argo: the service account batch steps run as, allowed only what Argo's executor "
                            "needs (default PIPELINE-runner)")
    group.add_argument("--deploy-service-account", metavar="NAME",
                       help="argo: the service account of the steps that apply serve stages, their volumes and "
                            "network policies (default PIPELINE-deployer)")
    group.add_argument("--rbac", action="store_true",
                       help="argo: also emit both service accounts with Roles and RoleBindings that allow each "
                            "only what its steps need (apply them before submitting the Workflow)")


def options_from(args) -> Options:
    return Options(stable_name=bool(getattr(args, "stable_name", False)),
                   service_account=getattr(args, "service_account", None) or None,
                   deploy_service_account=getattr(args, "deploy_service_account", None) or None,
                   rbac=bool(getattr(args, "rbac", False)),
                   kubernetes=k8s.options_from(args))  # --gpu-labels, --multinode


# -------------------------------------------------------------------- strings


def workflow_parameter(reference: ir.ParamRef) -> str:
    """A parameter as the Workflow's own, so a value given at submission reaches the stage."""
    return "{{workflow.parameters.%s}}" % reference.name


def offered_parameters(pipeline: ir.Pipeline) -> frozenset[str]:
    """The parameters the Workflow takes at submission: those the strings of batch
    stages refer to, unless a serve stage refers to them too or their value is
    compiled in somewhere (see the module's docstring)."""
    batch: set[str] = set()
    served: set[str] = set()
    for stage in pipeline.stages:  # a multi-node stage's strings go into a manifest, as a serve stage's
        (batch if stage.is_batch and stage.nodes is None else served).update(ir.param_refs(stage))
    return frozenset(batch - served - {param.name for param in pipeline.params if param.fixed_at})


def report_fixed_parameters(pipeline: ir.Pipeline, offered: frozenset[str], sink: Diagnostics) -> None:
    """One B101 warning per parameter that is used but not offered, at the first
    place that fixes it (the others as labels)."""
    for param in pipeline.params:
        if param.name in offered:
            continue
        places = [(use.span, f"it sets `{use.attribute or use.declaration}` of {use.declaration} `{use.name}`, "
                   "which Argo cannot take from a submitted value") for use in param.fixed_at]
        places += [(text.span, f"{'serve' if not stage.is_batch else 'multi-node'} stage `{stage.name}` uses it, "
                    "and Argo would paste a submitted value into that stage's manifest text unquoted")
                   for stage in pipeline.stages if not stage.is_batch or stage.nodes is not None
                   for text in ir.texts_of(stage)
                   if any(part.__class__ is ir.ParamRef and part.name == param.name for part in text.parts)]
        if not places:
            continue  # unused: not offered, nothing to say
        places.sort(key=lambda place: place[0])
        (span, why), others = places[0], places[1:]
        sink.warning(codes.IGNORED_ON_TARGET, span,
                     f"on Argo the parameter `{param.name}` is fixed at `{param.text}` when compiling: {why}",
                     label=f"fixed at `{param.text}`",
                     related=[Label(other, "also fixed here") for other, _ in others],
                     help=f"the Workflow does not offer `{param.name}` for submission (`argo submit -p "
                     f"{param.name}=...` would change nothing); set it with `aipc compile -p {param.name}=...`")


class ArgoTexts:
    """How this target writes a stage's strings: the one function per stage that
    the Kubernetes builders call for every ``ir.Text`` (see :meth:`renderer`).
    A parameter the Workflow offers becomes ``{{workflow.parameters.NAME}}``;
    any other its value.

    Argo reads ``{{...}}`` in a template as its own expression when the workflow
    runs, and has no way to write the braces literally: every string written here
    that holds them is reported (B101) at the attribute that holds it, once.
    """

    def __init__(self, sink: Diagnostics, offered: frozenset[str] = frozenset()) -> None:
        self.sink = sink
        self.offered = offered
        self.reported: set[tuple[str, object]] = set()

    def parameter(self, reference: ir.ParamRef) -> str:
        return workflow_parameter(reference) if reference.name in self.offered else reference.value

    def renderer(self, stage: ir.Stage) -> k8s.Render:
        def render(text: ir.Text) -> str:
            literal = text.literal
            if "{{" in (literal if literal is not None else k8s.substituted(text)):
                self.report_braces(stage, text)
            return literal if literal is not None else text.render(param=self.parameter,
                                                                     service=ir.service_address)
        return render

    def report_braces(self, stage: ir.Stage, text: ir.Text) -> None:
        written = stage.attribute_at(text.span)
        if written is None:  # the header's default image: reported there, once
            key: tuple[str, object] = ("", text.span)
            span, where = text.span, f"the default `image` `{stage.name}` uses"
        else:
            key = (stage.name, written[0])
            span, where = written[1], f"`{written[0]}` of `{stage.name}`"
        if key in self.reported:
            return
        self.reported.add(key)
        self.sink.warning(codes.IGNORED_ON_TARGET, span,
                          f"Argo reads `{{{{...}}}}` in {where} as a template expression when the workflow runs",
                          label="evaluated by Argo, not passed as written",
                          help="avoid `{{` in text for the argo target (e.g. split it as `{ {`), or use the "
                          "kubernetes target, which passes it through")


# ---------------------------------------------------------------------- names


class TemplateNames:
    """Template and task names: each stage keeps its own (``_`` becomes ``-``);
    the templates the compiler adds take the first free name from a base."""

    def __init__(self, pipeline: ir.Pipeline) -> None:
        self.taken = {ir.dns_label(stage.name) for stage in pipeline.stages}

    def add(self, base: str) -> str:
        name, number = base, 1
        while name in self.taken:
            number += 1
            name = f"{base}-{number}"
        self.taken.add(name)
        return name


def task_name(stage: ir.Stage) -> str:
    return ir.dns_label(stage.name)


# -------------------------------------------------------------------- volumes


def volumes_of(pipeline: ir.Pipeline) -> list[ir.Volume]:
    """The pipeline's volumes, and the claim of its outputs when it has any."""
    store = k8s.artifact_store(pipeline)
    return [*pipeline.volumes, store] if store is not None else list(pipeline.volumes)


def mounted_names(stage: ir.Stage, store: str) -> set[str]:
    """The names of the volumes a stage mounts: the outputs' claim for its outputs and inputs."""
    names = {mount.volume.name for mount in stage.mounts}
    return names | {store} if stage.outputs or stage.inputs else names


def mounted_volumes(pipeline: ir.Pipeline) -> list[ir.Volume]:
    store = k8s.scratch_names(pipeline).artifacts
    used = {name for stage in pipeline.stages for name in mounted_names(stage, store)}
    return [volume for volume in volumes_of(pipeline) if volume.name in used]


def served_volumes(pipeline: ir.Pipeline) -> list[ir.Volume]:
    """Sized volumes a serve stage mounts (the outputs' claim, for its inputs): they must
    outlive the Workflow; and those a multi-node stage mounts (its Job's pods are not
    the Workflow's): claims of their own."""
    store = k8s.scratch_names(pipeline).artifacts
    served = {name for stage in pipeline.stages if not stage.is_batch or stage.nodes is not None
              for name in mounted_names(stage, store)}
    return [v for v in volumes_of(pipeline) if v.name in served and v.kind is ir.VolumeKind.SIZED]


def first_users(pipeline: ir.Pipeline, volume: ir.Volume) -> list[ir.Stage]:
    """The stages that mount ``volume`` with no ancestor that mounts it: waiting
    for the volume there makes every later user wait too."""
    ancestors: dict[str, set[str]] = {}
    for stage in pipeline.stages:  # topological
        ancestors[stage.name] = set(stage.after).union(*(ancestors[name] for name in stage.after))
    store = k8s.scratch_names(pipeline).artifacts
    users = {stage.name for stage in pipeline.stages if volume.name in mounted_names(stage, store)}
    return [stage for stage in pipeline.stages if stage.name in users and not ancestors[stage.name] & users]


def build_volume_claim_template(pipeline: ir.Pipeline, volume: ir.Volume) -> dict:
    return {
        "metadata": {"name": k8s.volume_name(volume), "labels": pipeline.labels_for(volume.name, "volume")},
        "spec": k8s.pvc_spec(volume),
    }


def build_claim_reference(pipeline: ir.Pipeline, volume: ir.Volume) -> dict:
    return {"name": k8s.volume_name(volume),
            "persistentVolumeClaim": {"claimName": k8s.claim_name(pipeline, volume)}}


def build_apply_template(name: str, document: dict, account: str, success: str | None = None,
                         action: str = "apply") -> dict:
    """A ``resource`` template that applies one object (Argo applies one per
    template), as the service account that may; ``create``: an object of this
    run, owned by the Workflow."""
    from aipc.backends.writer import to_yaml  # YAML only when compiling: `aipc check` stays light

    resource: dict = {"action": action}
    if action == "create":
        resource["setOwnerReference"] = True
    resource["manifest"] = to_yaml([document])
    if success is not None:
        resource["successCondition"] = success
    return {"name": name, "serviceAccountName": account, "resource": resource}


# ------------------------------------------------------------------ templates


def build_container_template(pipeline: ir.Pipeline, stage: ir.Stage, options: Options, texts: ArgoTexts,
                             key: str | None = None) -> dict:
    """A batch stage's template; ``key`` the compile-time part of its cache key, when it may be cached."""
    parts = k8s.build_pod_parts(pipeline, stage, options.kubernetes, texts.renderer(stage))
    container = {**parts.container, "name": "main"}  # Argo's name for the stage's container
    # The pod is the workload here: Kueue's pod integration queues it by the label on
    # the template's metadata (kubernetes-sigs/kueue site/content/en/docs/tasks/run/
    # external_workloads/argo_workflow.md, "Targeting a different LocalQueue per template").
    template: dict = {"name": task_name(stage), "metadata": {"labels": k8s.workload_labels(pipeline, stage)}}
    annotations = k8s.instance_annotations(stage, limit=False)  # `parallelism` limits instances here
    if key is not None:
        annotations[CACHE_KEY_ANNOTATION] = key
    if annotations:
        template["metadata"]["annotations"] = annotations
    if key is not None and not uses_parameters(stage, texts.offered) and not stage.outputs:
        template["memoize"] = build_memoize(pipeline, key)
    if stage.retries > 0:
        template["retryStrategy"] = build_retry_strategy(stage)
    if stage.timeout is not None:
        template["activeDeadlineSeconds"] = stage.timeout
    if parts.node_selector:
        template["nodeSelector"] = parts.node_selector
    if parts.affinity:
        template["affinity"] = parts.affinity
    if parts.tolerations:
        template["tolerations"] = parts.tolerations
    if parts.priority_class is not None:
        template["priorityClassName"] = parts.priority_class
    if parts.scratch_volumes:
        template["volumes"] = parts.scratch_volumes
    security = k8s.pod_security_context(stage.security)
    if security != k8s.pod_security_context(ir.HARDENED):
        # Argo uses a template's pod securityContext instead of the workflow's
        # (workflow/controller/workflowpod.go: "if tmpl.SecurityContext != nil").
        template["securityContext"] = security
    template["container"] = container
    return template


def build_retry_strategy(stage: ir.Stage) -> dict:
    """``retries`` extra attempts. A template's ``activeDeadlineSeconds`` (and its
    ``timeout``) bound one attempt, so with a ``timeout`` the attempts together are
    bounded too: ``backoff.maxDuration`` counts from the first attempt's start, no
    attempt starts after it, and a later attempt's pod gets what remains of it as
    its deadline (argoproj/argo-workflows workflow/controller/operator.go,
    ``processNodeRetries``: ``maxDurationDeadline``, ``opts.executionDeadline``).
    A backoff needs a base ``duration``: none, so a retry starts at once, as it
    does without a timeout."""
    strategy: dict = {"limit": stage.retries}
    if stage.timeout is not None:
        strategy["backoff"] = {"duration": "0s", "maxDuration": f"{stage.timeout}s"}
    return strategy


def uses_parameters(stage: ir.Stage, offered: frozenset[str]) -> bool:
    """Whether a stage's container reads a parameter the Workflow offers: its value is
    set when the Workflow is submitted, after the key was computed, so such a stage is
    not memoized."""
    return not ir.param_refs(stage).isdisjoint(offered)


def build_memoize(pipeline: ir.Pipeline, key: str) -> dict:
    """Argo's memoization (docs/memoization.md): a step whose key was recorded in the
    cache ConfigMap (made by the controller when missing) is not run again."""
    return {"key": key, "maxAge": MEMOIZE_MAX_AGE, "cache": {"configMap": {"name": pipeline.object_name("cache")}}}


def serve_manifests(pipeline: ir.Pipeline, stage: ir.Stage, options: Options,
                    texts: ArgoTexts) -> tuple[dict, dict]:
    """The Kubernetes backend's Deployment and Service, parameters kept symbolic.
    The dependency annotations name Jobs of the Kubernetes output, so they go."""
    deployment = k8s.build_deployment(pipeline, stage, options.kubernetes, texts.renderer(stage))
    _drop_dependency_annotations(deployment)
    return deployment, k8s.build_service(pipeline, stage)


def build_serve_templates(pipeline: ir.Pipeline, stage: ir.Stage, options: Options,
                          names: TemplateNames, texts: ArgoTexts) -> list[dict]:
    """A steps template applying, side by side, the stage's Deployment (done once
    ``replicas`` of it are available: with autoscaling its minimum, at least 1),
    Service, the NetworkPolicy admitting traffic to its port and, when it
    autoscales, its HorizontalPodAutoscaler, as on Kubernetes."""
    deployment, service = serve_manifests(pipeline, stage, options, texts)
    base = task_name(stage)
    deployment_template, service_template = names.add(f"{base}-deployment"), names.add(f"{base}-service")
    policy_template = names.add(f"{base}-network-policy")
    deployer = accounts(pipeline, options).deployer
    ready = stage.replicas - 1
    success = f"status.updatedReplicas > {ready},status.availableReplicas > {ready}"
    steps = [{"name": "deployment", "template": deployment_template},
             {"name": "service", "template": service_template},
             {"name": "network-policy", "template": policy_template}]
    templates = [build_apply_template(deployment_template, deployment, deployer, success),
                 build_apply_template(service_template, service, deployer),
                 build_apply_template(policy_template, k8s.build_allow_port(pipeline, stage), deployer)]
    if stage.autoscale is not None:
        autoscaler_template = names.add(f"{base}-autoscaler")
        steps.append({"name": "autoscaler", "template": autoscaler_template})
        templates.append(build_apply_template(autoscaler_template, k8s.build_autoscaler(pipeline, stage), deployer))
    return [{"name": base, "steps": [steps]}, *templates]


# A multi-node stage's Indexed Job and headless Service are named after the run
# (Argo substitutes global variables in a resource template's manifest), so that
# runs of one pipeline, at once or one after another, never meet.
WORKFLOW_NAME = "{{workflow.name}}"


def build_group_templates(pipeline: ir.Pipeline, stage: ir.Stage, options: Options,
                          names: TemplateNames, texts: ArgoTexts) -> list[dict]:
    """A multi-node stage: a steps template that applies the NetworkPolicy letting
    the group's pods reach each other (the Workflow's policy denies ingress) and
    creates the headless Service, then creates the Indexed Job, and succeeds or
    fails with the Job. The conditions are label selectors on the Job's status
    (argo-workflows workflow/executor/resource.go): done when all N pods
    succeeded, failed once more pods failed than ``backoffLimit`` allows, which is
    when the Job fails (job.md, "Pod backoff failure policy"). The Service and
    the Job belong to the Workflow (``setOwnerReference``) and go with it. With
    ``--multinode jobset``, the JobSet (which makes its Service) instead of both,
    done or failed with its ``status.terminalState``."""
    kube = dataclasses.replace(options.kubernetes, group_prefix=WORKFLOW_NAME)
    deployer = accounts(pipeline, options).deployer
    base = task_name(stage)
    policy_template = names.add(f"{base}-network-policy")
    policy = build_apply_template(policy_template, k8s.build_allow_group(pipeline, stage), deployer)
    if kube.multinode == "jobset":
        jobset = k8s.build_jobset(pipeline, stage, kube)
        _drop_dependency_annotations(jobset)
        jobset_template = names.add(f"{base}-jobset")
        created = build_apply_template(jobset_template, jobset, deployer, "status.terminalState == Completed",
                                       action="create")
        created["resource"]["failureCondition"] = "status.terminalState == Failed"
        first, objects = [{"name": "network-policy", "template": policy_template}], [policy, created]
        second = [{"name": "jobset", "template": jobset_template}]
    else:
        job = k8s.build_job(pipeline, stage, kube, render=texts.renderer(stage))
        _drop_dependency_annotations(job)
        service = k8s.build_headless_service(pipeline, stage, kube)
        job_template, service_template = names.add(f"{base}-job"), names.add(f"{base}-service")
        created = build_apply_template(job_template, job, deployer, f"status.succeeded > {stage.node_count - 1}",
                                       action="create")
        created["resource"]["failureCondition"] = f"status.failed > {stage.retries}"
        first = [{"name": "network-policy", "template": policy_template},
                 {"name": "service", "template": service_template}]
        second = [{"name": "job", "template": job_template}]
        objects = [policy, build_apply_template(service_template, service, deployer, action="create"), created]
    if stage.timeout is not None:  # a Job past its deadline may fail with fewer failed pods
        created["timeout"] = f"{stage.timeout}s"
    return [{"name": base, "steps": [first, second]}, *objects]


def _drop_dependency_annotations(document: dict) -> None:
    """The dependency annotations name the Kubernetes output's objects: here the DAG orders stages."""
    annotations = document["metadata"]["annotations"]
    for key in (k8s.DEPENDS_ON_ANNOTATION, k8s.LEVEL_ANNOTATION):
        annotations.pop(key, None)


def limited_matrices(pipeline: ir.Pipeline) -> list[ir.Matrix]:
    """The matrix stages whose `max_parallel` keeps some of their instances waiting."""
    return [matrix for matrix in pipeline.matrices
            if matrix.max_parallel is not None and matrix.max_parallel < len(matrix.instances)]


def build_dag(pipeline: ir.Pipeline, volume_tasks: dict[str, str], policy_task: str,
              group_tasks: dict[str, str]) -> list[dict]:
    """The entrypoint: the task applying the pipeline's NetworkPolicy, which every
    other task waits for (directly, or through its dependencies); then one task per
    stage, its dependencies the stage's `after` (plus the task creating a served
    volume, for the first stages that mount it); then a DAG template per matrix
    stage of ``group_tasks``, which holds its instances under a ``parallelism`` of
    its `max_parallel` (Template.parallelism: "the max total parallel pods that can
    execute at the same time within the boundaries of this template invocation",
    argoproj/argo-workflows, pkg/apis/workflow/v1alpha1/workflow_types.go). The
    entrypoint runs such a template as one task: it waits for what any of the
    instances waits for, and what waits for any instance waits for all of them."""
    waits: dict[str, list[str]] = {}
    tasks: list[dict] = [{"name": policy_task, "template": policy_task}]
    for volume_name, task in volume_tasks.items():
        tasks.append({"name": task, "template": task, "dependencies": [policy_task]})
        for stage in first_users(pipeline, pipeline_volume(pipeline, volume_name)):
            waits.setdefault(stage.name, []).append(task)

    def task_of(stage: ir.Stage) -> str:
        return group_tasks.get(stage.group, task_name(stage)) if stage.instance is not None else task_name(stage)

    grouped: dict[str, dict] = {}  # the entrypoint's task of each matrix stage of group_tasks
    inner: dict[str, list[dict]] = {group: [] for group in group_tasks}
    for stage in pipeline.stages:
        own = task_of(stage)
        dependencies = [task_of(pipeline.stage(name)) for name in stage.after] + waits.get(stage.name, [])
        if stage.instance is not None and stage.group in group_tasks:
            inner[stage.group].append({"name": task_name(stage), "template": task_name(stage)})
            task = grouped.get(own)
            if task is None:
                task = grouped[own] = {"name": own, "template": own}
                tasks.append(task)
        else:
            task = {"name": own, "template": own}
            tasks.append(task)
        merged = task.get("dependencies", []) + [d for d in dependencies if d != own]
        if merged:
            task["dependencies"] = list(dict.fromkeys(merged))
    for task in tasks[1:]:
        task.setdefault("dependencies", [policy_task])
    out = [{"name": ENTRYPOINT, "dag": {"tasks": tasks}}]
    for matrix in pipeline.matrices:
        if matrix.stage in group_tasks:
            out.append({"name": group_tasks[matrix.stage], "parallelism": matrix.max_parallel,
                        "dag": {"tasks": inner[matrix.stage]}})
    return out


def pipeline_volume(pipeline: ir.Pipeline, name: str) -> ir.Volume:
    return next(volume for volume in volumes_of(pipeline) if volume.name == name)


# ------------------------------------------------------------------- workflow


def build_parameters(pipeline: ir.Pipeline, offered: frozenset[str]) -> list[dict]:
    parameters = []
    for param in pipeline.params:
        if param.name not in offered:
            continue
        item: dict = {"name": param.name, "value": param.text}
        if param.type is ir.ParamType.BOOL:
            item["enum"] = ["true", "false"]
        parameters.append(item)
    return parameters


def build_workflow_metadata(pipeline: ir.Pipeline, options: Options) -> dict:
    meta: dict = {}
    if options.stable_name:
        meta["name"] = pipeline.dns_name
    else:
        meta["generateName"] = f"{pipeline.dns_name}-"
    if pipeline.namespace:
        meta["namespace"] = pipeline.namespace
    meta["labels"] = pipeline.labels_for(pipeline.name, "workflow")
    if pipeline.description:
        meta["annotations"] = {"workflows.argoproj.io/description": pipeline.description}
    return meta


def build_workflow(pipeline: ir.Pipeline, options: Options, texts: ArgoTexts) -> dict:
    names = TemplateNames(pipeline)
    entrypoint = names.add(ENTRYPOINT)
    policy_task = names.add(NETWORK_POLICY_TASK)
    served = served_volumes(pipeline)
    volume_tasks = {volume.name: names.add(f"{k8s.volume_name(volume)}-volume") for volume in served}
    deployer = accounts(pipeline, options).deployer
    group_tasks = {matrix.stage: names.add(ir.dns_label(matrix.stage)) for matrix in limited_matrices(pipeline)}
    main, *groups = build_dag(pipeline, volume_tasks, policy_task, group_tasks)
    templates = [{**main, "name": entrypoint}, *groups,
                 build_apply_template(policy_task, k8s.build_default_deny(pipeline), deployer)]
    templates += [build_apply_template(volume_tasks[v.name], k8s.build_pvc(pipeline, v), deployer) for v in served]
    keys = compile_keys(pipeline)
    report_tag_keys(pipeline, keys, texts.sink, "Argo Workflows")
    for stage in pipeline.stages:
        if stage.nodes is not None:
            templates += build_group_templates(pipeline, stage, options, names, texts)
        elif stage.is_batch:
            templates.append(build_container_template(pipeline, stage, options, texts, keys.get(stage.name)))
        else:
            templates += build_serve_templates(pipeline, stage, options, names, texts)

    spec: dict = {"entrypoint": entrypoint}
    if texts.offered:
        spec["arguments"] = {"parameters": build_parameters(pipeline, texts.offered)}
    spec["serviceAccountName"] = accounts(pipeline, options).runner
    spec["securityContext"] = k8s.pod_security_context(ir.HARDENED)
    if pipeline.pull_secrets:
        spec["imagePullSecrets"] = k8s.image_pull_secrets(pipeline)
    spec["podGC"] = {"strategy": "OnPodSuccess"}
    spec["ttlStrategy"] = {"secondsAfterCompletion": options.ttl_seconds_after_completion}
    mounted = mounted_volumes(pipeline)
    claim_templates = [build_volume_claim_template(pipeline, v) for v in mounted
                       if v.kind is ir.VolumeKind.SIZED and v not in served]
    if claim_templates:
        spec["volumeClaimTemplates"] = claim_templates
    references = [build_claim_reference(pipeline, v) for v in mounted
                  if v.kind is ir.VolumeKind.CLAIM or v in served]
    if references:
        spec["volumes"] = references
    spec["templates"] = templates
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": build_workflow_metadata(pipeline, options),
        "spec": spec,
    }


def report_coarse_pairing(pipeline: ir.Pipeline, sink: Diagnostics) -> None:
    """A matrix stage whose instances run in a DAG template of their own (under
    `max_parallel`) pairs with no other stage's instances one to one: the
    entrypoint's dependencies are on the whole template."""
    for matrix in limited_matrices(pipeline):
        later = [other.stage for other in pipeline.matrices if matrix.stage in other.pairs]
        if not later and not matrix.pairs:
            continue
        first = pipeline.stage(matrix.instances[0])
        waits = [f"each instance of `{name}` waits for all of them" for name in later]
        waits += [f"they wait for every instance of `{name}`" for name in matrix.pairs]
        sink.warning(codes.IGNORED_ON_TARGET, first.span_of("max_parallel"),
                     f"Argo runs the instances of `{matrix.stage}` in a DAG of their own, at most "
                     f"{matrix.max_parallel} at a time: {' and '.join(waits)}, not only for the one of "
                     "equal coordinates",
                     label="pairing is by the whole matrix stage on argo",
                     help="the order is kept and nothing runs early, only later than it could; the kubernetes "
                     "target and `aipc run` pair instances one to one under `max_parallel`")


# ----------------------------------------------------------------------- RBAC


def applied_objects(pipeline: ir.Pipeline) -> dict[tuple[str, str], list[str]]:
    """What the Workflow's resource templates apply: (API group, resource) ->
    object names, from the same builders the templates use."""
    objects: dict[tuple[str, str], list[str]] = {("networking.k8s.io", "networkpolicies"): [pipeline.dns_name]}
    for volume in served_volumes(pipeline):
        objects.setdefault(("", "persistentvolumeclaims"), []).append(k8s.claim_name(pipeline, volume))
    for stage in pipeline.stages:
        if not stage.is_batch:
            name = pipeline.object_name(stage.name)
            objects.setdefault(("apps", "deployments"), []).append(name)
            objects.setdefault(("", "services"), []).append(name)
            objects[("networking.k8s.io", "networkpolicies")].append(name)
            if stage.autoscale is not None:
                objects.setdefault(("autoscaling", "horizontalpodautoscalers"), []).append(name)
        elif stage.nodes is not None:
            objects[("networking.k8s.io", "networkpolicies")].append(pipeline.object_name(stage.name))
    return objects


def created_kinds(pipeline: ir.Pipeline, multinode: str) -> list[tuple[str, str]]:
    """(API group, resource) of the objects multi-node stages create, named after the run."""
    if not any(stage.nodes is not None for stage in pipeline.stages):
        return []
    if multinode == "jobset":
        return [("jobset.x-k8s.io", "jobsets")]
    return [("", "services"), ("batch", "jobs")]


def deployer_rules(pipeline: ir.Pipeline, multinode: str = "job") -> list[dict]:
    """The executor's rules, and for each kind of object the Workflow applies:
    `create` (which RBAC cannot restrict by name), and `get` and `patch` (what
    `kubectl apply` and the success condition need) on exactly those objects.
    What multi-node stages create is named after the run, unknown here: `create`
    and `get` (the success condition) on that kind, as `create` allows any name anyway."""
    rules = [dict(rule) for rule in EXECUTOR_RULES]
    for (group, resource), object_names in applied_objects(pipeline).items():
        rules.append({"apiGroups": [group], "resources": [resource], "verbs": ["create"]})
        rules.append({"apiGroups": [group], "resources": [resource], "resourceNames": sorted(set(object_names)),
                      "verbs": ["get", "patch"]})
    for group, resource in created_kinds(pipeline, multinode):
        rules.append({"apiGroups": [group], "resources": [resource], "verbs": ["create", "get"]})
    return rules


def build_account(pipeline: ir.Pipeline, name: str, component: str, rules: list[dict]) -> list[dict]:
    """A ServiceAccount, a Role of ``rules`` and the RoleBinding between them, all named ``name``."""
    labels = pipeline.labels_for(name, component)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": k8s.metadata(pipeline, name, labels)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": k8s.metadata(pipeline, name, labels), "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": k8s.metadata(pipeline, name, labels),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         # Without a namespace the subject is the account in the binding's own namespace,
         # wherever it is applied (kubernetes pkg/registry/rbac/validation/rule.go, appliesToUser).
         "subjects": [{"kind": "ServiceAccount", "name": name,
                       **({"namespace": pipeline.namespace} if pipeline.namespace else {})}]},
    ]


def build_rbac(pipeline: ir.Pipeline, options: Options) -> list[dict]:
    names = accounts(pipeline, options)
    return (build_account(pipeline, names.runner, "runner", [dict(rule) for rule in EXECUTOR_RULES])
            + build_account(pipeline, names.deployer, "deployer",
                            deployer_rules(pipeline, options.kubernetes.multinode)))


def emit(pipeline: ir.Pipeline, options: Options | None = None) -> Emitted:
    options = options or Options()
    sink = Diagnostics(pipeline.file)
    k8s.check_host_mounts(pipeline, sink, "Argo Workflows")
    k8s.check_shared_memory(pipeline, sink, "Argo Workflows")
    # A generated Workflow name is the pipeline's and 6 characters (`-` and 5 random ones).
    k8s.check_group_names(pipeline, options.kubernetes, sink, run_suffix=0 if options.stable_name else 6)
    k8s.check_scheduling(pipeline, options.kubernetes, sink, "Argo Workflows")
    k8s.check_artifact_store(pipeline, sink, "Argo Workflows")
    report_coarse_pairing(pipeline, sink)
    if sink.has_errors:
        return Emitted((), tuple(sink.sorted()))
    offered = offered_parameters(pipeline)
    report_fixed_parameters(pipeline, offered, sink)
    workflow = build_workflow(pipeline, options, ArgoTexts(sink, offered))
    size = len(json.dumps(workflow, separators=(",", ":")).encode("utf-8"))
    if size > MAX_WORKFLOW_BYTES:
        sink.warning(
            codes.OUTPUT_TOO_LARGE, pipeline.span if pipeline.span.end > 0 else None,
            f"the Workflow is {size / 1024 / 1024:.1f} MiB; Argo and the API server store at most 1 MiB",
            help="move long scripts into the image and run them with `command`, or split the pipeline",
        )
    rbac = build_rbac(pipeline, options) if options.rbac else []
    return Emitted((*rbac, workflow), tuple(sink.sorted()))
