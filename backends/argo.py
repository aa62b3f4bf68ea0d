"""Argo Workflows: one ``argoproj.io/v1alpha1`` Workflow that runs the whole DAG
inside the cluster, built from the Kubernetes backend's builders so that a stage
runs the same way on both targets.

What a program becomes
----------------------
- the pipeline: a Workflow (``generateName: <pipeline>-``, or ``name:
  <pipeline>`` with ``--stable-name``) whose entrypoint is a DAG template
  (``main``); ``podGC: OnPodSuccess`` (failed pods stay for their logs),
  ``ttlStrategy.secondsAfterCompletion`` one day, the pod
  ``securityContext`` of the Kubernetes backend, and ``serviceAccountName``
  (``--service-account``, default ``argo-workflow``: the service account the
  Argo Helm chart creates for workflows). The Argo executor needs that
  account's token, so ``automountServiceAccountToken`` is left on here;
- a parameter: a Workflow ``arguments.parameters`` entry whose value is the
  default (``-p`` at compile time changes it); a stage's strings (command,
  script, env, image, workdir, health: every ``ir.Text``) refer to it as
  ``{{workflow.parameters.NAME}}``, so ``argo submit -p epochs=20`` works.
  A service address (``${db.url}``) is the Service's, as on Kubernetes.
  Numbers, sizes and durations (gpu, memory, timeout...) are fixed when
  compiling;
- a batch stage: a container template (the same container, resources, GPUs,
  tolerations, node selector, shm, mounts, env, secret references and
  hardening as the Kubernetes Job, with ``retryStrategy.limit`` = retries and
  ``activeDeadlineSeconds`` = timeout) and a DAG task whose ``dependencies``
  are the stage's ``after``;
- a serve stage: a DAG task running a steps template that applies, side by
  side, the Deployment (a ``resource`` template that succeeds once every
  replica is updated and available, so a dependant, batch or serve, waits for
  a healthy service)
  and the Service the Kubernetes backend builds. Its RBAC: the workflow's
  service account may get, create and patch Deployments and Services;
- a multi-node stage (``nodes = N``): a steps template creating the
  Kubernetes backend's headless Service, then its Indexed Job, both named after
  the run and owned by the Workflow, ending with the Job; with ``--multinode
  jobset`` one template creating the JobSet (:func:`build_group_templates`);
- a sized volume: a ``volumeClaimTemplates`` entry, created for the run and
  removed with it, unless a serve stage or a multi-node stage mounts it: the Deployment outlives the
  Workflow, so that volume is the Kubernetes backend's PersistentVolumeClaim
  ``<pipeline>-<volume>``, applied by a DAG task ``<volume>-volume`` that the
  first stages mounting it depend on (the only dependencies besides ``after``);
- a ``claim`` volume: the existing claim, in ``spec.volumes``; a mounted
  ``host`` volume is an error (B001), as on Kubernetes;
- a matrix stage: each instance a stage as above (its coordinates in its pod's
  annotations); under ``max_parallel = N`` (fewer than its instances) they are
  the tasks of a DAG template of their own with ``parallelism: N``, which the
  entrypoint runs as one task: a stage paired with them waits for all of them,
  reported as B101 at ``max_parallel``.

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
from aipc.compiler import ir
from aipc.diagnostics import Diagnostics

MAX_WORKFLOW_BYTES = 1024 * 1024
DEFAULT_SERVICE_ACCOUNT = "argo-workflow"
ENTRYPOINT = "main"


@dataclass(frozen=True)
class Options:
    """What the Argo target lets a user choose (flags in ``add_arguments``)."""

    stable_name: bool = False  # metadata.name instead of generateName
    service_account: str = DEFAULT_SERVICE_ACCOUNT
    ttl_seconds_after_completion: int = 86400
    kubernetes: k8s.Options = field(default_factory=k8s.Options)  # uid, default resources


def default_filename(pipeline: ir.Pipeline) -> str:
    return f"{pipeline.dns_name}.argo.yaml"


def add_arguments(group) -> None:
    group.add_argument("--stable-name", action="store_true",
                       help="argo: name the Workflow after the pipeline instead of generating a name per run")
    group.add_argument("--service-account", metavar="NAME", default=DEFAULT_SERVICE_ACCOUNT,
                       help=f"argo: the service account the workflow's pods use (default {DEFAULT_SERVICE_ACCOUNT})")


def options_from(args) -> Options:
    return Options(stable_name=bool(getattr(args, "stable_name", False)),
                   service_account=getattr(args, "service_account", None) or DEFAULT_SERVICE_ACCOUNT,
                   kubernetes=k8s.Options(multinode=getattr(args, "multinode", None) or "job"))


# -------------------------------------------------------------------- strings


def workflow_parameter(reference: ir.ParamRef) -> str:
    """A parameter as the Workflow's own, so a value given at submission reaches the stage."""
    return "{{workflow.parameters.%s}}" % reference.name


class ArgoTexts:
    """How this target writes a stage's strings: the one function per stage that
    the Kubernetes builders call for every ``ir.Text`` (see :meth:`renderer`).

    Argo reads ``{{...}}`` in a template as its own expression when the workflow
    runs, and has no way to write the braces literally: every string written here
    that holds them is reported (B101) at the attribute that holds it, once.
    """

    def __init__(self, sink: Diagnostics) -> None:
        self.sink = sink
        self.reported: set[tuple[str, object]] = set()

    def renderer(self, stage: ir.Stage) -> k8s.Render:
        def render(text: ir.Text) -> str:
            literal = text.literal
            if "{{" in (literal if literal is not None else k8s.substituted(text)):
                self.report_braces(stage, text)
            return literal if literal is not None else text.render(param=workflow_parameter,
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


def mounted_volumes(pipeline: ir.Pipeline) -> list[ir.Volume]:
    used = {mount.volume.name for stage in pipeline.stages for mount in stage.mounts}
    return [volume for volume in pipeline.volumes if volume.name in used]


def served_volumes(pipeline: ir.Pipeline) -> list[ir.Volume]:
    """Sized volumes a serve stage mounts (they must outlive the Workflow) or a
    multi-node stage does (its Job's pods are not the Workflow's): claims of their own."""
    served = {mount.volume.name for stage in pipeline.stages if not stage.is_batch or stage.nodes is not None
              for mount in stage.mounts}
    return [v for v in pipeline.volumes if v.name in served and v.kind is ir.VolumeKind.SIZED]


def first_users(pipeline: ir.Pipeline, volume: ir.Volume) -> list[ir.Stage]:
    """The stages that mount ``volume`` with no ancestor that mounts it: waiting
    for the volume there makes every later user wait too."""
    ancestors: dict[str, set[str]] = {}
    for stage in pipeline.stages:  # topological
        ancestors[stage.name] = set(stage.after).union(*(ancestors[name] for name in stage.after))
    users = {stage.name for stage in pipeline.stages if any(m.volume.name == volume.name for m in stage.mounts)}
    return [stage for stage in pipeline.stages if stage.name in users and not ancestors[stage.name] & users]


def build_volume_claim_template(pipeline: ir.Pipeline, volume: ir.Volume) -> dict:
    return {
        "metadata": {"name": k8s.volume_name(volume), "labels": pipeline.labels_for(volume.name, "volume")},
        "spec": k8s.pvc_spec(volume),
    }


def build_claim_reference(pipeline: ir.Pipeline, volume: ir.Volume) -> dict:
    return {"name": k8s.volume_name(volume),
            "persistentVolumeClaim": {"claimName": k8s.claim_name(pipeline, volume)}}


def build_apply_template(name: str, document: dict, success: str | None = None, action: str = "apply") -> dict:
    """A ``resource`` template that applies one object (Argo applies one per template);
    ``create``: an object of this run, owned by the Workflow."""
    from aipc.backends.writer import to_yaml  # YAML only when compiling: `aipc check` stays light

    resource: dict = {"action": action}
    if action == "create":
        resource["setOwnerReference"] = True
    resource["manifest"] = to_yaml([document])
    if success is not None:
        resource["successCondition"] = success
    return {"name": name, "resource": resource}


# ------------------------------------------------------------------ templates


def build_container_template(pipeline: ir.Pipeline, stage: ir.Stage, options: Options, texts: ArgoTexts) -> dict:
    parts = k8s.build_pod_parts(pipeline, stage, options.kubernetes, texts.renderer(stage))
    container = {**parts.container, "name": "main"}  # Argo's name for the stage's container
    template: dict = {"name": task_name(stage), "metadata": {"labels": k8s.stage_labels(pipeline, stage)}}
    annotations = k8s.instance_annotations(stage, limit=False)  # `parallelism` limits instances here
    if annotations:
        template["metadata"]["annotations"] = annotations
    if stage.retries > 0:
        template["retryStrategy"] = {"limit": stage.retries}
    if stage.timeout is not None:
        template["activeDeadlineSeconds"] = stage.timeout
    if parts.node_selector:
        template["nodeSelector"] = parts.node_selector
    if parts.tolerations:
        template["tolerations"] = parts.tolerations
    if parts.scratch_volumes:
        template["volumes"] = parts.scratch_volumes
    template["container"] = container
    return template


def serve_manifests(pipeline: ir.Pipeline, stage: ir.Stage, options: Options,
                    texts: ArgoTexts) -> tuple[dict, dict]:
    """The Kubernetes backend's Deployment and Service, parameters kept symbolic.
    The dependency annotations name Jobs of the Kubernetes output, so they go."""
    deployment = k8s.build_deployment(pipeline, stage, options.kubernetes, texts.renderer(stage))
    _drop_dependency_annotations(deployment)
    return deployment, k8s.build_service(pipeline, stage)


def build_serve_templates(pipeline: ir.Pipeline, stage: ir.Stage, options: Options,
                          names: TemplateNames, texts: ArgoTexts) -> list[dict]:
    deployment, service = serve_manifests(pipeline, stage, options, texts)
    base = task_name(stage)
    deployment_template, service_template = names.add(f"{base}-deployment"), names.add(f"{base}-service")
    ready = stage.replicas - 1
    success = f"status.updatedReplicas > {ready},status.availableReplicas > {ready}"
    return [
        {"name": base,
         "steps": [[{"name": "deployment", "template": deployment_template},
                    {"name": "service", "template": service_template}]]},
        build_apply_template(deployment_template, deployment, success),
        build_apply_template(service_template, service),
    ]


# A multi-node stage's Indexed Job and headless Service are named after the run
# (Argo substitutes global variables in a resource template's manifest), so that
# runs of one pipeline, at once or one after another, never meet.
WORKFLOW_NAME = "{{workflow.name}}"


def build_group_templates(pipeline: ir.Pipeline, stage: ir.Stage, options: Options,
                          names: TemplateNames, texts: ArgoTexts) -> list[dict]:
    """A multi-node stage: a steps template that creates the headless Service, then
    the Indexed Job, and succeeds or fails with the Job. The conditions are label
    selectors on the Job's status (argo-workflows workflow/executor/resource.go):
    done when all N pods succeeded, failed once more pods failed than
    ``backoffLimit`` allows, which is when the Job fails (job.md, "Pod backoff
    failure policy"). Both objects belong to the Workflow (``setOwnerReference``)
    and go with it. With ``--multinode jobset``, one template creating the JobSet
    (which makes its Service), done or failed with its ``status.terminalState``."""
    kube = dataclasses.replace(options.kubernetes, group_prefix=WORKFLOW_NAME)
    base = task_name(stage)
    if kube.multinode == "jobset":
        jobset = k8s.build_jobset(pipeline, stage, kube)
        _drop_dependency_annotations(jobset)
        created = build_apply_template(base, jobset, "status.terminalState == Completed", action="create")
        created["resource"]["failureCondition"] = "status.terminalState == Failed"
        return [created]
    job = k8s.build_job(pipeline, stage, kube, texts.renderer(stage))
    _drop_dependency_annotations(job)
    service = k8s.build_headless_service(pipeline, stage, kube)
    job_template, service_template = names.add(f"{base}-job"), names.add(f"{base}-service")
    created = build_apply_template(job_template, job, f"status.succeeded > {stage.node_count - 1}",
                                   action="create")
    created["resource"]["failureCondition"] = f"status.failed > {stage.retries}"
    if stage.timeout is not None:  # a Job past its deadline may fail with fewer failed pods
        created["timeout"] = f"{stage.timeout}s"
    return [
        {"name": base,
         "steps": [[{"name": "service", "template": service_template}],
                   [{"name": "job", "template": job_template}]]},
        build_apply_template(service_template, service, action="create"),
        created,
    ]


def _drop_dependency_annotations(document: dict) -> None:
    """The dependency annotations name the Kubernetes output's objects: here the DAG orders stages."""
    annotations = document["metadata"]["annotations"]
    for key in (k8s.DEPENDS_ON_ANNOTATION, k8s.LEVEL_ANNOTATION):
        annotations.pop(key, None)


def limited_matrices(pipeline: ir.Pipeline) -> list[ir.Matrix]:
    """The matrix stages whose `max_parallel` keeps some of their instances waiting."""
    return [matrix for matrix in pipeline.matrices
            if matrix.max_parallel is not None and matrix.max_parallel < len(matrix.instances)]


def build_dag(pipeline: ir.Pipeline, volume_tasks: dict[str, str], group_tasks: dict[str, str]) -> list[dict]:
    """The entrypoint: one task per stage, its dependencies the stage's `after`
    (plus the task creating a served volume, for the first stages that mount it);
    then a DAG template per matrix stage of ``group_tasks``, which holds its
    instances under a ``parallelism`` of its `max_parallel` (Template.parallelism:
    "the max total parallel pods that can execute at the same time within the
    boundaries of this template invocation", argoproj/argo-workflows,
    pkg/apis/workflow/v1alpha1/workflow_types.go). The entrypoint runs such a
    template as one task: it waits for what any of the instances waits for, and
    what waits for any instance waits for all of them."""
    waits: dict[str, list[str]] = {}
    tasks: list[dict] = []
    for volume_name, task in volume_tasks.items():
        tasks.append({"name": task, "template": task})
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
    out = [{"name": ENTRYPOINT, "dag": {"tasks": tasks}}]
    for matrix in pipeline.matrices:
        if matrix.stage in group_tasks:
            out.append({"name": group_tasks[matrix.stage], "parallelism": matrix.max_parallel,
                        "dag": {"tasks": inner[matrix.stage]}})
    return out


def pipeline_volume(pipeline: ir.Pipeline, name: str) -> ir.Volume:
    return next(volume for volume in pipeline.volumes if volume.name == name)


# ------------------------------------------------------------------- workflow


def build_parameters(pipeline: ir.Pipeline) -> list[dict]:
    parameters = []
    for param in pipeline.params:
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
    served = served_volumes(pipeline)
    volume_tasks = {volume.name: names.add(f"{k8s.volume_name(volume)}-volume") for volume in served}
    group_tasks = {matrix.stage: names.add(ir.dns_label(matrix.stage)) for matrix in limited_matrices(pipeline)}
    main, *groups = build_dag(pipeline, volume_tasks, group_tasks)
    templates = [{**main, "name": entrypoint}, *groups]
    templates += [build_apply_template(volume_tasks[v.name], k8s.build_pvc(pipeline, v)) for v in served]
    for stage in pipeline.stages:
        if stage.nodes is not None:
            templates += build_group_templates(pipeline, stage, options, names, texts)
        elif stage.is_batch:
            templates.append(build_container_template(pipeline, stage, options, texts))
        else:
            templates += build_serve_templates(pipeline, stage, options, names, texts)

    spec: dict = {"entrypoint": entrypoint}
    if pipeline.params:
        spec["arguments"] = {"parameters": build_parameters(pipeline)}
    spec["serviceAccountName"] = options.service_account
    spec["securityContext"] = k8s.pod_security_context(options.kubernetes)
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


def emit(pipeline: ir.Pipeline, options: Options | None = None) -> Emitted:
    options = options or Options()
    sink = Diagnostics(pipeline.file)
    k8s.check_host_mounts(pipeline, sink, "Argo Workflows")
    # A generated Workflow name is the pipeline's and 6 characters (`-` and 5 random ones).
    k8s.check_group_names(pipeline, options.kubernetes, sink, run_suffix=0 if options.stable_name else 6)
    report_coarse_pairing(pipeline, sink)
    if sink.has_errors:
        return Emitted((), tuple(sink.sorted()))
    workflow = build_workflow(pipeline, options, ArgoTexts(sink))
    size = len(json.dumps(workflow, separators=(",", ":")).encode("utf-8"))
    if size > MAX_WORKFLOW_BYTES:
        sink.warning(
            codes.OUTPUT_TOO_LARGE, pipeline.span if pipeline.span.end > 0 else None,
            f"the Workflow is {size / 1024 / 1024:.1f} MiB; Argo and the API server store at most 1 MiB",
            help="move long scripts into the image and run them with `command`, or split the pipeline",
        )
    return Emitted((workflow,), tuple(sink.sorted()))
