"""Applying the Kubernetes backend's objects to a cluster, in dependency order.

What ``aipc apply`` does, in this order:

1. Server-side apply (``PATCH`` with ``Content-Type: application/apply-patch+yaml``,
   ``fieldManager=aipc``, ``force=true``) of every object that does not run a
   stage, in the backend's order: the Namespace (when emitted), the
   NetworkPolicies, the PersistentVolumeClaims and the Services. ``force``
   takes over fields another manager holds (a previous client-side
   ``kubectl apply``, a manual edit): aipc is the source of truth for the
   objects it emits, as ``kubectl apply --server-side --force-conflicts``.
2. Watches on the Jobs, Deployments and JobSets it will wait for (the watch
   API: one list for the current state, then a stream of changes from that
   version).
3. Each Job, Deployment and JobSet once everything in its ``aipc.dev/depends-on``
   annotation is met: a Job dependency when the Job has completed (an Indexed
   Job of a multi-node stage: every node), a JobSet when it has completed
   (``status.terminalState``), a Deployment dependency when it is available.
   A multi-node stage's headless Service and NetworkPolicy are applied in step 1,
   before its Job. Roots go first. An instance of
   a matrix stage with ``aipc.dev/max-parallel: N`` also waits until fewer
   than N instances of its matrix stage (``aipc.dev/matrix``) are running. A
   Job whose ``aipc.dev/cache-key`` is that of the Job of its name that
   completed in the cluster (listed before anything is applied) is not applied
   again: its stage is cached, done.
4. Waiting ends when every stage has been applied, or with ``wait`` when every
   Job has completed and every Deployment is available. A Job that fails (or a
   Deployment whose rollout stalls) stops everything: no dependant is applied,
   and the error names the stage and the Job's conditions.

With ``dry_run`` every object goes to the server with ``dryRun=All`` in the
backend's order: the server validates and stores nothing, and nothing is
awaited.
"""

from __future__ import annotations

import copy
import json
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aipc.backends.cachekey import CACHE_KEY_ANNOTATION
from aipc.backends.kubernetes import (
    DEPENDS_ON_ANNOTATION, JOBSET_API_VERSION, MATRIX_ANNOTATION, MAX_PARALLEL_ANNOTATION, STAGE_ANNOTATION,
)
from aipc.cluster.connect import ClusterError, Connection, describe_error, status_details, status_message
from aipc.compiler import ir
from aipc.compiler.units import format_duration
from aipc.redact import redact

APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "aipc"
REQUEST_TIMEOUT = (10, 60)  # seconds to connect, to read one answer
WATCH_SECONDS = 240  # a watch request asks the server to end it after this long; it is then renewed
SELECTOR_LABELS = (ir.LABEL_PART_OF, ir.LABEL_MANAGED_BY)

# Kinds the backend may emit, by apiVersion: the typed API class of the official client.
API_CLASSES = {
    "v1": "CoreV1Api",
    "apps/v1": "AppsV1Api",
    "autoscaling/v2": "AutoscalingV2Api",
    "batch/v1": "BatchV1Api",
    "networking.k8s.io/v1": "NetworkingV1Api",
    "policy/v1": "PolicyV1Api",
    "rbac.authorization.k8s.io/v1": "RbacAuthorizationV1Api",
}
# Custom resources the backend may emit, by apiVersion: (group, version, plural), for
# the client's CustomObjectsApi. A JobSet (--multinode jobset) needs the JobSet
# controller and its CRD in the cluster.
CUSTOM_RESOURCES = {JOBSET_API_VERSION: ("jobset.x-k8s.io", "v1alpha2", "jobsets")}
CLUSTER_SCOPED = frozenset({"Namespace", "PersistentVolume", "StorageClass", "ClusterRole",
                            "ClusterRoleBinding", "PriorityClass"})
WORKLOAD_KINDS = ("Job", "Deployment", "JobSet")

PENDING, APPLIED, DONE, FAILED = "pending", "applied", "done", "failed"


class ApplyError(ClusterError):
    """The cluster refused an object, or a stage failed."""


@dataclass(frozen=True, slots=True)
class Ref:
    kind: str
    name: str
    namespace: str | None

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


@dataclass
class Workload:
    """A Job or Deployment: one stage, applied once its dependencies are met."""

    stage: str
    ref: Ref
    document: dict
    depends_on: tuple[Ref, ...]
    matrix: str | None = None  # the matrix stage of an instance
    max_parallel: int | None = None  # how many instances of it may run at once
    state: str = PENDING
    uid: str | None = None  # of the object this apply created or updated
    applied_at: float = 0.0
    detail: str = ""


@dataclass
class Objects:
    immediate: list[tuple[Ref, dict]] = field(default_factory=list)
    workloads: list[Workload] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.immediate) + len(self.workloads)


def snake_case(kind: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind).lower()


def sort_objects(documents: tuple[dict, ...], namespace: str | None, default_namespace: str) -> Objects:
    """Place every document in its namespace (``namespace`` overrides what the
    pipeline header chose; ``default_namespace`` fills in when neither did) and
    split the documents that run stages from the others."""
    objects = Objects()
    refs: set[Ref] = set()
    for original in documents:
        document = copy.deepcopy(original)
        metadata = document.setdefault("metadata", {})
        kind = document.get("kind", "")
        if kind == "Namespace":
            if namespace:
                metadata["name"] = namespace
            ref = Ref(kind, metadata["name"], None)
        elif kind in CLUSTER_SCOPED:
            ref = Ref(kind, metadata["name"], None)
        else:
            metadata["namespace"] = namespace or metadata.get("namespace") or default_namespace
            ref = Ref(kind, metadata["name"], metadata["namespace"])
        refs.add(ref)
        annotations = metadata.get("annotations") or {}
        if kind in WORKLOAD_KINDS and STAGE_ANNOTATION in annotations:
            depends_on = tuple(_parse_reference(text, ref.namespace)
                               for text in annotations.get(DEPENDS_ON_ANNOTATION, "").split(",") if text)
            limit = annotations.get(MAX_PARALLEL_ANNOTATION)
            objects.workloads.append(Workload(annotations[STAGE_ANNOTATION], ref, document, depends_on,
                                              annotations.get(MATRIX_ANNOTATION), int(limit) if limit else None))
        else:
            objects.immediate.append((ref, document))
    for workload in objects.workloads:
        for dependency in workload.depends_on:
            if dependency not in refs:
                raise AssertionError(f"aipc bug: {workload.ref} depends on {dependency}, which the k8s "
                                     "backend did not emit")
    return objects


def _parse_reference(text: str, namespace: str | None) -> Ref:
    kind, slash, name = text.strip().partition("/")
    if not slash or not name:
        raise AssertionError(f"aipc bug: `{text}` in {DEPENDS_ON_ANNOTATION} is not Kind/name")
    return Ref(kind, name, namespace)


# ------------------------------------------------------------------ reading states


def job_outcome(job: dict) -> tuple[str, str] | None:
    """``(DONE, "")`` for a completed Job, ``(FAILED, conditions)`` for a failed one."""
    conditions = [c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    if any(c.get("type") == "Complete" for c in conditions):
        return DONE, ""
    failed = [c for c in conditions if c.get("type") == "Failed"]
    if failed:
        # the Failed condition, then any other true condition that says something else
        # (FailureTarget usually repeats it)
        said = {(c.get("reason"), c.get("message")) for c in failed}
        others = [c for c in conditions if c.get("type") != "Failed" and (c.get("reason"), c.get("message")) not in said]
        return FAILED, "; ".join(describe_condition(c) for c in failed + others)
    return None


def deployment_outcome(deployment: dict) -> tuple[str, str] | None:
    """``DONE`` once every replica of the current generation is available;
    ``FAILED`` when the rollout missed its progress deadline."""
    status = deployment.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("status") == "False" \
                and condition.get("reason") == "ProgressDeadlineExceeded":
            return FAILED, describe_condition(condition)
    replicas = (deployment.get("spec") or {}).get("replicas")
    desired = 1 if replicas is None else replicas
    generation = (deployment.get("metadata") or {}).get("generation") or 0
    if (status.get("observedGeneration") or 0) >= generation and (status.get("updatedReplicas") or 0) >= desired \
            and (status.get("availableReplicas") or 0) >= desired:
        return DONE, ""
    return None


def jobset_outcome(jobset: dict) -> tuple[str, str] | None:
    """``DONE`` once the JobSet completed, ``FAILED`` once it failed (after its
    restarts): ``status.terminalState``, and the condition of the same type
    (kubernetes-sigs/jobset api/jobset/v1alpha2/jobset_types.go, JobSetStatus)."""
    status = jobset.get("status") or {}
    conditions = [c for c in status.get("conditions") or [] if c.get("status") == "True"]
    if status.get("terminalState") == "Completed" or any(c.get("type") == "Completed" for c in conditions):
        return DONE, ""
    failed = [c for c in conditions if c.get("type") == "Failed"]
    if status.get("terminalState") == "Failed" or failed:
        return FAILED, "; ".join(describe_condition(c) for c in failed) or "Failed"
    return None


def describe_condition(condition: dict) -> str:
    text = str(condition.get("type"))
    if condition.get("reason"):
        text += f" ({condition['reason']})"
    if condition.get("message"):
        text += f": {condition['message']}"
    return text


OUTCOMES: dict[str, Callable[[dict], tuple[str, str] | None]] = {
    "Job": job_outcome, "Deployment": deployment_outcome, "JobSet": jobset_outcome}


# ------------------------------------------------------------------ talking to the API server


def read_json(response) -> dict:
    """The JSON body of a raw (``_preload_content=False``) answer, read to the end
    so that its connection goes back to the pool."""
    try:
        body = response.read()
    finally:
        response.release_conn()
    return json.loads(body or b"{}")


class Applier:
    """Server-side apply of one object through the client's typed API."""

    def __init__(self, connection: Connection, dry_run: bool) -> None:
        self.connection = connection
        self.dry_run = dry_run
        self._apis: dict[str, Any] = {}

    def api(self, class_name: str):
        if class_name not in self._apis:
            from kubernetes import client

            self._apis[class_name] = getattr(client, class_name)(self.connection.api_client)
        return self._apis[class_name]

    def apply(self, ref: Ref, document: dict) -> tuple[bool, Any]:
        """Apply; return whether the object was created, and the server's copy."""
        api_version = document.get("apiVersion", "")
        class_name = API_CLASSES.get(api_version)
        scope = "patch_namespaced_" if ref.namespace is not None else "patch_"
        arguments: dict[str, Any] = {}
        if api_version in CUSTOM_RESOURCES and ref.namespace is not None:
            group, version, plural = CUSTOM_RESOURCES[api_version]
            method = self.api("CustomObjectsApi").patch_namespaced_custom_object_with_http_info
            arguments.update(group=group, version=version, plural=plural)
        else:
            method = getattr(self.api(class_name), f"{scope}{snake_case(ref.kind)}_with_http_info", None) \
                if class_name else None
        if method is None:
            raise AssertionError(f"aipc bug: aipc apply cannot apply {document.get('apiVersion')} {ref.kind}")
        arguments.update({
            "name": ref.name, "body": document, "field_manager": FIELD_MANAGER, "force": True,
            "_content_type": APPLY_PATCH, "_request_timeout": REQUEST_TIMEOUT,
        })
        if ref.namespace is not None:
            arguments["namespace"] = ref.namespace
        if self.dry_run:
            arguments["dry_run"] = "All"
        try:
            # The raw answer: only its status and metadata matter here, and a dict
            # does not depend on the client's models matching the server's version.
            response = method(**arguments, _preload_content=False)
            data = read_json(response)
        except Exception as error:
            raise ApplyError(self.explain(ref, error)) from None
        return response.status == 201, data

    def explain(self, ref: Ref, error: BaseException) -> str:
        from kubernetes.client.exceptions import ApiException

        host = self.connection.host
        if isinstance(error, ApiException):
            details = status_details(error)
            if error.status == 404 and details.get("kind") == "namespaces":
                return (f"cannot apply {ref}: the namespace `{ref.namespace}` does not exist; create it "
                        f"(`kubectl create namespace {ref.namespace}`), apply with --namespace-object, "
                        "or choose another with --namespace")
            if error.status == 404 and ref.kind == "JobSet" and details.get("kind") != "namespaces":
                return f"cannot apply {ref}: {NO_JOBSET_API}"
            if error.status == 422 and ref.kind == "Job" and "immutable" in status_message(error):
                return (f"cannot apply {ref}: {status_message(error)}; a Job cannot be changed once it "
                        f"exists: delete it first (`kubectl delete job {ref.name} -n {ref.namespace}`)")
        message = describe_error(error, host, f"cannot apply {ref}")
        if message is None:
            raise error
        return message


NO_JOBSET_API = ("this cluster has no JobSet API; install the JobSet controller (https://jobset.sigs.k8s.io), "
                 "or apply without `--multinode jobset` to run each multi-node stage as an Indexed Job")


class Watcher(threading.Thread):
    """Lists, then watches, one kind of object in one namespace, and puts what it
    sees on a queue as plain dicts: ``("object", kind, obj, deleted)`` or
    ``("error", kind, message)``.
    Renews the watch when the server ends it, and lists again after 410 Gone."""

    def __init__(self, list_function, kind: str, namespace: str, selector: str | None,
                 events: queue.Queue, host: str) -> None:
        super().__init__(name=f"aipc-watch-{kind.lower()}s", daemon=True)
        self.list_function = list_function
        self.kind = kind
        self.namespace = namespace
        self.selector = selector
        self.events = events
        self.host = host
        self.stopped = threading.Event()
        self.current = None  # the kubernetes.watch.Watch streaming now

    def run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        options: dict[str, Any] = {"namespace": self.namespace}
        if self.selector:
            options["label_selector"] = self.selector
        try:
            while not self.stopped.is_set():
                listing = read_json(self.list_function(**options, _request_timeout=REQUEST_TIMEOUT,
                                                       _preload_content=False))
                for item in listing.get("items") or []:
                    self.events.put(("object", self.kind, item, False))
                version = (listing.get("metadata") or {}).get("resourceVersion")
                while not self.stopped.is_set():
                    self.current = watch.Watch()
                    try:
                        for event in self.current.stream(
                                self.list_function, **options, resource_version=version,
                                timeout_seconds=WATCH_SECONDS, _request_timeout=(10, WATCH_SECONDS + 30)):
                            if self.stopped.is_set():
                                return
                            if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                                self.events.put(("object", self.kind, event["raw_object"],
                                                 event["type"] == "DELETED"))
                        version = self.current.resource_version or version
                    except ApiException as error:
                        if error.status == 410:  # the version is too old: list again
                            break
                        raise
        except Exception as error:  # noqa: BLE001 - every failure goes to the main thread
            if not self.stopped.is_set():
                what = f"cannot watch {self.kind.lower()}s in namespace `{self.namespace}`"
                if self.kind == "JobSet" and getattr(error, "status", None) == 404:
                    self.events.put(("error", self.kind, f"{what}: {NO_JOBSET_API}"))
                    return
                message = describe_error(error, self.host, what)
                self.events.put(("error", self.kind, message or f"{type(error).__name__}: {error}"))

    def stop(self) -> None:
        self.stopped.set()
        if self.current is not None:
            self.current.stop()


# ------------------------------------------------------------------ the run


@dataclass
class Report:
    """Where progress goes: one line per event, flushed at once."""

    write: Callable[[str], None]

    def line(self, text: str) -> None:
        self.write(redact(text) + "\n")  # a server URL may carry credentials


class ApplyRun:
    def __init__(self, objects: Objects, applier: Applier, report: Report, wait: bool = False,
                 timeout: float | None = None) -> None:
        self.objects = objects
        self.applier = applier
        self.report = report
        self.wait = wait
        self.timeout = timeout
        self.by_ref = {w.ref: w for w in objects.workloads}
        self.latest: dict[Ref, tuple[Any, bool]] = {}
        self.events: queue.Queue = queue.Queue()
        self.watchers: list[Watcher] = []
        self.started = time.monotonic()

    # -- the whole run

    def execute(self) -> None:
        """Apply everything; raises ApplyError on the first failure or the timeout."""
        try:
            for ref, document in self.objects.immediate:
                self._apply(ref, document)
            if self.applier.dry_run:
                for workload in self.objects.workloads:
                    self._apply(workload.ref, workload.document)
                return
            self._find_completed()
            self._start_watchers()
            self._apply_ready()
            while not self._finished():
                self._handle(self._next_event())
                self._apply_ready()
        finally:
            self._stop_watchers()

    def _finished(self) -> bool:
        if self.wait:
            return all(w.state == DONE for w in self.objects.workloads)
        return all(w.state != PENDING for w in self.objects.workloads)

    # -- applying

    def _apply(self, ref: Ref, document: dict, stage: str | None = None):
        created, data = self.applier.apply(ref, document)
        verb = "valid (dry run)" if self.applier.dry_run else "created" if created else "configured"
        self.report.line(f"  {ref} {verb}" + (f": stage {stage} started" if stage else ""))
        return data

    def _apply_ready(self) -> None:
        progress = True
        while progress:
            progress = False
            running = self._running_instances()  # counted once a pass: it stays linear in the workloads
            for workload in self.objects.workloads:
                if workload.state == PENDING and all(self.by_ref[d].state == DONE for d in workload.depends_on
                                                     if d in self.by_ref) and self._window_open(workload, running):
                    if self._completed_before(workload):
                        workload.state = DONE
                        self.report.line(f"  {workload.ref} cached: stage {workload.stage} completed before "
                                         "with the same key")
                        progress = True
                        continue
                    data = self._apply(workload.ref, workload.document, workload.stage)
                    workload.state, workload.applied_at = APPLIED, time.monotonic()
                    workload.uid = (data.get("metadata") or {}).get("uid")
                    self.latest[workload.ref] = (data, False)
                    if workload.max_parallel is not None:
                        running[workload.matrix] = running.get(workload.matrix, 0) + 1
                    self._evaluate(workload)
                    progress = True

    def _find_completed(self) -> None:
        """The cache keys of the Jobs of these names that completed in the cluster (one
        list a namespace): a Job whose key matches is not applied again."""
        self.completed: dict[Ref, str] = {}
        jobs = [w for w in self.objects.workloads if w.ref.kind == "Job" and cache_key(w.document)]
        api = self.applier.api("BatchV1Api") if jobs else None
        for namespace in sorted({w.ref.namespace for w in jobs}):
            members = [w for w in jobs if w.ref.namespace == namespace]
            try:
                response = api.list_namespaced_job(namespace, label_selector=common_selector(members),
                                                   _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
                items = read_json(response).get("items") or []
            except Exception as error:
                raise ApplyError(self.applier.explain(members[0].ref, error)) from None
            for job in items:
                key = cache_key(job)
                if key is not None and job_outcome(job) == (DONE, ""):
                    self.completed[Ref("Job", job["metadata"]["name"], namespace)] = key

    def _completed_before(self, workload: Workload) -> bool:
        key = cache_key(workload.document)
        return key is not None and self.completed.get(workload.ref) == key

    def _running_instances(self) -> dict[str | None, int]:
        """How many instances of each matrix stage with `max_parallel` run (applied, not done)."""
        running: dict[str | None, int] = {}
        for workload in self.objects.workloads:
            if workload.max_parallel is not None and workload.state == APPLIED:
                running[workload.matrix] = running.get(workload.matrix, 0) + 1
        return running

    @staticmethod
    def _window_open(workload: Workload, running: dict[str | None, int]) -> bool:
        """Whether an instance may start under its matrix stage's `max_parallel`."""
        return workload.max_parallel is None or running.get(workload.matrix, 0) < workload.max_parallel

    # -- watching

    def _needed_kinds(self) -> set[str]:
        kinds = {d.kind for w in self.objects.workloads for d in w.depends_on}
        kinds |= {w.ref.kind for w in self.objects.workloads if self.wait or w.max_parallel is not None}
        return kinds & set(WORKLOAD_KINDS)

    def _start_watchers(self) -> None:
        lists = {"Job": ("BatchV1Api", "list_namespaced_job"),
                 "Deployment": ("AppsV1Api", "list_namespaced_deployment")}
        for kind in sorted(self._needed_kinds()):
            workloads = [w for w in self.objects.workloads if w.ref.kind == kind]
            for namespace in sorted({w.ref.namespace for w in workloads}):
                members = [w for w in workloads if w.ref.namespace == namespace]
                if kind in lists:
                    class_name, function = lists[kind]
                    listing = getattr(self.applier.api(class_name), function)
                else:
                    listing = self._custom_listing(members[0].document["apiVersion"])
                watcher = Watcher(listing, kind, namespace,
                                  common_selector(members), self.events, self.applier.connection.host)
                self.watchers.append(watcher)
                watcher.start()

    def _custom_listing(self, api_version: str):
        """The list (and watch) call of a custom resource, as the typed APIs' are called.
        A plain function: the client's watch reads no return type from it and hands
        each event's object over as it came (``raw_object``)."""
        group, version, plural = CUSTOM_RESOURCES[api_version]
        api = self.applier.api("CustomObjectsApi")

        def list_custom(namespace: str, **options):
            return api.list_namespaced_custom_object(group, version, namespace, plural, **options)

        return list_custom

    def _stop_watchers(self) -> None:
        for watcher in self.watchers:
            watcher.stop()
        for watcher in self.watchers:
            watcher.join(timeout=5)

    def _next_event(self):
        if self.timeout is None:
            return self.events.get()
        remaining = self.started + self.timeout - time.monotonic()
        try:
            return self.events.get(timeout=max(remaining, 0))
        except queue.Empty:
            raise ApplyError(self._timeout_message()) from None

    def _handle(self, event) -> None:
        if event[0] == "error":
            raise ApplyError(event[2])
        _, kind, obj, deleted = event
        metadata = obj.get("metadata") or {}
        workload = self.by_ref.get(Ref(kind, metadata.get("name", ""), metadata.get("namespace")))
        if workload is None:
            return
        if workload.uid is not None and metadata.get("uid") != workload.uid:
            return  # an older object of the same name, gone or replaced
        self.latest[workload.ref] = (obj, deleted)
        if workload.state == APPLIED:
            self._evaluate(workload)

    def _evaluate(self, workload: Workload) -> None:
        obj, deleted = self.latest.get(workload.ref, (None, False))
        if deleted:
            outcome: tuple[str, str] | None = (FAILED, "deleted before it finished")
        else:
            outcome = OUTCOMES[workload.ref.kind](obj) if obj is not None else None
        if outcome is None:
            return
        workload.state, workload.detail = outcome
        elapsed = format_duration(int(time.monotonic() - workload.applied_at))
        if workload.state == DONE:
            verb = "available" if workload.ref.kind == "Deployment" else "completed"
            self.report.line(f"  stage {workload.stage} {verb} after {elapsed}")
            return
        raise ApplyError(self._failure_message(workload))

    # -- messages

    def _failure_message(self, workload: Workload) -> str:
        lines = [f"stage `{workload.stage}` failed: {workload.ref}: {workload.detail}"]
        waiting = self._dependants(workload)
        if waiting:
            lines.append(f"not started, as they wait for `{workload.stage}`: " + ", ".join(waiting))
        running = [w.stage for w in self.objects.workloads if w.state == APPLIED and w is not workload]
        if running:
            lines.append("still running in the cluster: " + ", ".join(running))
        if workload.ref.kind == "JobSet":
            ns = workload.ref.namespace
            lines.append(f"see `kubectl describe jobset/{workload.ref.name} -n {ns}`; delete it (`kubectl delete "
                         f"jobset {workload.ref.name} -n {ns}`) before applying again")
        if workload.ref.kind == "Job":
            ns = workload.ref.namespace
            lines.append(f"see `kubectl logs job/{workload.ref.name} -n {ns}`; a failed Job stays failed: "
                         f"delete it (`kubectl delete job {workload.ref.name} -n {ns}`) before applying again")
        return "\n".join(lines)

    def _dependants(self, failed: Workload) -> list[str]:
        names: list[str] = []
        blocked = {failed.ref}
        for workload in self.objects.workloads:  # documents are in topological order
            if workload.state == PENDING and blocked & set(workload.depends_on):
                blocked.add(workload.ref)
                names.append(workload.stage)
        return names

    def _timeout_message(self) -> str:
        running = [f"{w.stage} ({w.ref})" for w in self.objects.workloads if w.state == APPLIED]
        pending = [w.stage for w in self.objects.workloads if w.state == PENDING]
        message = f"timed out after {format_duration(int(self.timeout or 0))}"
        if running:
            message += "; still running in the cluster: " + ", ".join(running)
        if pending:
            message += "; not started: " + ", ".join(pending)
        return message

    def summary(self) -> str:
        elapsed = format_duration(int(time.monotonic() - self.started))
        if self.applier.dry_run:
            return f"dry run: the server accepted all {self.objects.count} objects; nothing was changed"
        running = [w.stage for w in self.objects.workloads if w.state == APPLIED]
        text = f"applied {self.objects.count} objects in {elapsed}"
        if running:
            text += "; still running: " + ", ".join(running)
        elif self.objects.workloads:
            text += "; every stage is done" if self.wait else ""
        return text


def cache_key(document: dict) -> str | None:
    """The compile-time part of a stage's cache key, which the backend writes on its Job."""
    return ((document.get("metadata") or {}).get("annotations") or {}).get(CACHE_KEY_ANNOTATION)


def common_selector(workloads: list[Workload]) -> str | None:
    """A label selector every one of these objects matches, to watch only them."""
    pairs = []
    for key in SELECTOR_LABELS:
        values = {(w.document["metadata"].get("labels") or {}).get(key) for w in workloads}
        if len(values) == 1 and None not in values:
            pairs.append(f"{key}={values.pop()}")
    return ",".join(pairs) or None
