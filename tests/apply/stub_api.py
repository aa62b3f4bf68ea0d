"""A request-recording stand-in for a Kubernetes API server, in-process on 127.0.0.1.

It answers the requests ``aipc apply`` makes the way an API server does, so the
official client runs its own code paths (kubeconfig loading, request
serialisation, content types, response and watch-stream deserialisation):

- ``GET /version``;
- server-side apply: ``PATCH .../namespaces/NS/PLURAL/NAME`` (and
  ``/api/v1/namespaces/NAME``), checked like a server checks it: the
  ``application/apply-patch+yaml`` content type, a ``fieldManager``, ``dryRun``
  only ``All``, the body's kind, name and namespace matching the path, the
  namespace existing; answered 201 Created or 200 OK with the stored object
  (uid, resourceVersion, generation, managedFields); ``dryRun=All`` stores nothing;
- ``GET .../namespaces/NS/jobs`` and ``.../deployments``: a list with a
  resourceVersion, or with ``watch=true`` a chunked stream of JSON events from
  that version on, which the server ends after ``watch_cap`` seconds (so the
  client must renew it).

A stored Job "runs": after ``job_delay`` seconds it becomes active, then
completes (or fails, for names in ``fail_jobs``, with the conditions the Job
controller writes); an Indexed Job counts all its completions. A JobSet (the
custom resource, at ``/apis/jobset.x-k8s.io/v1alpha2/.../jobsets``, unless
``no_jobset_api``) ends the same way after ``job_delay`` seconds, with the
``terminalState`` and condition the JobSet controller writes. A Deployment becomes available after ``job_delay``. Every
request and every state change is recorded with one sequence number, so tests
can assert what happened before what.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

TOKEN = "stub-token"
KINDS = {  # plural -> (apiVersion, kind)
    "namespaces": ("v1", "Namespace"),
    "persistentvolumeclaims": ("v1", "PersistentVolumeClaim"),
    "services": ("v1", "Service"),
    "jobs": ("batch/v1", "Job"),
    "deployments": ("apps/v1", "Deployment"),
    "networkpolicies": ("networking.k8s.io/v1", "NetworkPolicy"),
    "jobsets": ("jobset.x-k8s.io/v1alpha2", "JobSet"),
    "horizontalpodautoscalers": ("autoscaling/v2", "HorizontalPodAutoscaler"),
}
NAMESPACED = re.compile(r"^/(api/v1|apis/[^/]+/[^/]+)/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?$")
NAMESPACE = re.compile(r"^/api/v1/namespaces/([^/]+)$")
FAILED_CONDITION = {"reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}


@dataclass
class Request:
    seq: int
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: Any

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class Transition:
    """A state the stub's "controllers" gave an object: active, complete, failed, available."""

    seq: int
    kind: str
    name: str
    state: str


@dataclass
class StubCluster:
    fail_jobs: frozenset[str] = frozenset()
    no_jobset_api: bool = False  # a cluster without the JobSet CRD
    stall_deployments: frozenset[str] = frozenset()
    reject: dict[str, tuple[int, str]] = field(default_factory=dict)  # object name -> (HTTP code, message)
    missing_namespaces: frozenset[str] = frozenset()
    job_delay: float = 0.02
    watch_cap: float = 0.5

    def __post_init__(self) -> None:
        self.condition = threading.Condition()
        self.sequence = itertools.count(1)
        self.version = 1000
        self.objects: dict[tuple[str, str | None, str], dict] = {}  # (plural, namespace, name)
        self.events: list[tuple[int, str, str | None, dict]] = []  # (version, plural, namespace, event)
        self.log: list[Request | Transition] = []
        self.closing = False
        self.timers: list[threading.Timer] = []
        self.uids = itertools.count(1)

    # -- what tests read

    @property
    def requests(self) -> list[Request]:
        return [entry for entry in self.log if isinstance(entry, Request)]

    @property
    def patches(self) -> list[Request]:
        return [r for r in self.requests if r.method == "PATCH"]

    def transitions(self, state: str | None = None) -> list[Transition]:
        return [e for e in self.log if isinstance(e, Transition) and (state is None or e.state == state)]

    # -- state changes (called with the condition held)

    def _bump(self) -> str:
        self.version += 1
        return str(self.version)

    def _event(self, plural: str, namespace: str | None, kind: str, obj: dict) -> None:
        obj["metadata"]["resourceVersion"] = self._bump()
        self.events.append((self.version, plural, namespace, {"type": kind, "object": json.loads(json.dumps(obj))}))
        self.condition.notify_all()

    def _later(self, delay: float, action, *args) -> None:
        timer = threading.Timer(delay, self._locked, args=(action, *args))
        timer.daemon = True
        self.timers.append(timer)
        timer.start()

    def _locked(self, action, *args) -> None:
        with self.condition:
            if not self.closing:
                action(*args)

    def _record_transition(self, kind: str, name: str, state: str) -> None:
        self.log.append(Transition(next(self.sequence), kind, name, state))

    def _job_active(self, key) -> None:
        job = self.objects[key]
        job["status"] = {"active": 1, "ready": 0, "startTime": "2024-12-22T00:00:00Z"}
        self._record_transition("Job", key[2], "active")
        self._event(key[0], key[1], "MODIFIED", job)
        self._later(self.job_delay, self._job_finished, key)

    def _job_finished(self, key) -> None:
        job = self.objects[key]
        name = key[2]
        if name in self.fail_jobs:
            job["status"] = {"failed": 1, "startTime": "2024-12-22T00:00:00Z", "conditions": [
                {"type": "FailureTarget", "status": "True", **FAILED_CONDITION},
                {"type": "Failed", "status": "True", **FAILED_CONDITION},
            ]}
            self._record_transition("Job", name, "failed")
        else:
            job["status"] = {"succeeded": job["spec"].get("completions", 1), "startTime": "2024-12-22T00:00:00Z",
                             "completionTime": "2024-12-22T00:01:00Z", "conditions": [
                                 {"type": "SuccessCriteriaMet", "status": "True"},
                                 {"type": "Complete", "status": "True"},
                             ]}
            self._record_transition("Job", name, "complete")
        self._event(key[0], key[1], "MODIFIED", job)

    def _jobset_finished(self, key) -> None:
        jobset = self.objects[key]
        name = key[2]
        if name in self.fail_jobs:
            jobset["status"] = {"terminalState": "Failed", "restarts": 2, "conditions": [
                {"type": "Failed", "status": "True", "reason": "ReachedMaxRestarts",
                 "message": "jobset failed due to reaching max number of restarts"}]}
            self._record_transition("JobSet", name, "failed")
        else:
            jobset["status"] = {"terminalState": "Completed", "restarts": 0, "conditions": [
                {"type": "Completed", "status": "True", "reason": "AllJobsCompleted",
                 "message": "jobset completed successfully"}]}
            self._record_transition("JobSet", name, "completed")
        self._event(key[0], key[1], "MODIFIED", jobset)

    def _deployment_rollout(self, key) -> None:
        deployment = self.objects[key]
        replicas = deployment["spec"].get("replicas", 1)
        generation = deployment["metadata"]["generation"]
        if key[2] in self.stall_deployments:
            deployment["status"] = {"observedGeneration": generation, "replicas": replicas, "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": f'ReplicaSet "{key[2]}-abc" has timed out progressing.'}]}
            self._record_transition("Deployment", key[2], "stalled")
        else:
            deployment["status"] = {
                "observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
                "readyReplicas": replicas, "availableReplicas": replicas,
                "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                               {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}
            self._record_transition("Deployment", key[2], "available")
        self._event(key[0], key[1], "MODIFIED", deployment)

    # -- the API

    def apply(self, plural: str, namespace: str | None, name: str, body: dict, dry_run: bool,
              manager: str) -> tuple[int, dict]:
        key = (plural, namespace, name)
        existing = self.objects.get(key)
        obj = normalise_quantities(json.loads(json.dumps(body)))
        metadata = obj["metadata"]
        if existing is not None:
            old = existing["metadata"]
            metadata.update(uid=old["uid"], creationTimestamp=old["creationTimestamp"],
                            generation=old["generation"] + (existing.get("spec") != obj.get("spec")))
            obj["status"] = existing.get("status", {})
        else:
            metadata.update(uid=f"uid-{next(self.uids)}", creationTimestamp="2024-12-22T00:00:00Z", generation=1)
            obj["status"] = {}
        metadata["managedFields"] = [{"manager": manager, "operation": "Apply", "apiVersion": obj["apiVersion"]}]
        if dry_run:
            metadata["resourceVersion"] = existing["metadata"]["resourceVersion"] if existing else ""
            return (200 if existing else 201), obj
        self.objects[key] = obj
        self._event(plural, namespace, "MODIFIED" if existing else "ADDED", obj)
        if existing is None and plural == "jobs":
            self._later(self.job_delay, self._job_active, key)
        if existing is None and plural == "jobsets":
            self._later(self.job_delay, self._jobset_finished, key)
        if plural == "deployments":
            self._later(self.job_delay, self._deployment_rollout, key)
        return (200 if existing else 201), obj


def normalise_quantities(value: Any, inside: str = "") -> Any:
    """Quantities come back as strings, as an API server writes them (``gpu: 2`` -> ``"2"``)."""
    if isinstance(value, dict):
        return {k: (str(v) if inside in ("requests", "limits", "capacity") and not isinstance(v, (dict, list))
                    else normalise_quantities(v, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise_quantities(item, inside) for item in value]
    return value


def status(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    data = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if details:
        data["details"] = details
    return data


def selector_matches(selector: str | None, labels: dict) -> bool:
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, with no delayed-ACK pause
    cluster: StubCluster  # set on the subclass each server makes

    def log_message(self, *args) -> None:  # quiet
        pass

    def _read(self) -> tuple[Request, bytes]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        body = yaml.safe_load(raw.decode("utf-8")) if raw else None
        with self.cluster.condition:
            request = Request(next(self.cluster.sequence), self.command, url.path, parse_qs(url.query),
                              {k.lower(): v for k, v in self.headers.items()}, body)
            self.cluster.log.append(request)
        return request, raw

    def _send(self, code: int, data: dict) -> None:
        payload = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _authorised(self, request: Request) -> bool:
        if request.headers.get("authorization") == f"Bearer {TOKEN}":
            return True
        self._send(401, status(401, "Unauthorized", "Unauthorized"))
        return False

    def do_GET(self) -> None:
        request, _ = self._read()
        if not self._authorised(request):
            return
        if request.path in ("/version", "/version/"):
            self._send(200, {"major": "1", "minor": "31", "emulationMajor": "1", "emulationMinor": "31",
                             "gitVersion": "v1.31.0", "gitCommit": "0" * 40, "gitTreeState": "clean",
                             "buildDate": "2024-08-13T07:28:49Z", "goVersion": "go1.22.5",
                             "compiler": "gc", "platform": "linux/amd64"})
            return
        match = NAMESPACED.match(request.path)
        if not match or match.group(4) or match.group(3) not in ("jobs", "deployments", "jobsets") \
                or (match.group(3) == "jobsets" and self.cluster.no_jobset_api):
            self._send(404, status(404, "NotFound", "the server could not find the requested resource"))
            return
        namespace, plural = match.group(2), match.group(3)
        selector = request.param("labelSelector")
        if request.param("watch") in ("true", "1", "True"):
            self._watch(plural, namespace, selector, int(request.param("resourceVersion") or 0),
                        float(request.param("timeoutSeconds") or 60))
            return
        with self.cluster.condition:
            items = [obj for (p, ns, _), obj in sorted(self.cluster.objects.items())
                     if p == plural and ns == namespace and selector_matches(selector, obj["metadata"].get("labels", {}))]
            api_version, kind = KINDS[plural]
            self._send(200, {"kind": f"{kind}List", "apiVersion": api_version,
                             "metadata": {"resourceVersion": str(self.cluster.version)}, "items": items})

    def _watch(self, plural: str, namespace: str, selector: str | None, version: int, timeout: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + min(timeout, self.cluster.watch_cap)
        cluster = self.cluster
        try:
            while True:
                with cluster.condition:
                    fresh = [event for v, p, ns, event in cluster.events
                             if v > version and p == plural and ns == namespace
                             and selector_matches(selector, event["object"]["metadata"].get("labels", {}))]
                    version = cluster.version
                    remaining = deadline - time.monotonic()
                    if not fresh:
                        if remaining <= 0 or cluster.closing:
                            break
                        cluster.condition.wait(timeout=remaining)
                        continue
                for event in fresh:
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def do_PATCH(self) -> None:
        request, _ = self._read()
        if not self._authorised(request):
            return
        cluster = self.cluster
        namespace_match = NAMESPACE.match(request.path)
        match = NAMESPACED.match(request.path)
        if namespace_match:
            plural, namespace, name = "namespaces", None, namespace_match.group(1)
        elif match and match.group(4):
            plural, namespace, name = match.group(3), match.group(2), match.group(4)
        else:
            self._send(404, status(404, "NotFound", "the server could not find the requested resource"))
            return
        content_type = request.headers.get("content-type", "")
        if content_type != "application/apply-patch+yaml":
            self._send(415, status(415, "UnsupportedMediaType", f"the body of the request was in an unknown "
                                                                 f"format - accepted media types include: ..., got {content_type}"))
            return
        manager = request.param("fieldManager")
        if not manager:
            self._send(422, status(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: "
                                                   "Required value: is required for apply patch"))
            return
        dry_run = request.param("dryRun")
        if dry_run not in (None, "All"):
            self._send(400, status(400, "BadRequest", f"dryRun: Unsupported value: \"{dry_run}\""))
            return
        body = request.body
        api_version, kind = KINDS.get(plural, (None, None))
        if not isinstance(body, dict) or body.get("kind") != kind or body.get("apiVersion") != api_version \
                or body.get("metadata", {}).get("name") != name:
            self._send(400, status(400, "BadRequest", "the name or kind of the object does not match the request"))
            return
        if namespace is not None and body["metadata"].get("namespace") not in (None, namespace):
            self._send(400, status(400, "BadRequest", "the namespace of the provided object does not match "
                                                      "the namespace sent on the request"))
            return
        if plural == "jobsets" and cluster.no_jobset_api:
            self._send(404, status(404, "NotFound", "the server could not find the requested resource"))
            return
        if namespace in cluster.missing_namespaces:
            self._send(404, status(404, "NotFound", f'namespaces "{namespace}" not found',
                                   {"name": namespace, "kind": "namespaces"}))
            return
        if name in cluster.reject:
            code, message = cluster.reject[name]
            self._send(code, status(code, "Invalid", message, {"name": name, "kind": plural}))
            return
        with cluster.condition:
            code, obj = cluster.apply(plural, namespace, name, body, dry_run == "All", manager)
        self._send(code, obj)


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client closing a kept-alive connection is not an error worth printing."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class StubServer:
    """The stub on a free port, with a kubeconfig that points at it."""

    def __init__(self, cluster: StubCluster, directory: Path) -> None:
        self.cluster = cluster
        handler = type("BoundHandler", (Handler,), {"cluster": cluster})
        self.server = QuietServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="stub-api", daemon=True)
        self.kubeconfig = directory / "kubeconfig"
        self.kubeconfig.write_text(kubeconfig(self.url))

    def __enter__(self) -> "StubServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        with self.cluster.condition:
            self.cluster.closing = True
            self.cluster.condition.notify_all()
        for timer in self.cluster.timers:
            timer.cancel()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def kubeconfig(url: str, token: str = TOKEN, namespace: str = "from-context") -> str:
    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stub", "cluster": {"server": url}}],
        "users": [{"name": "stub-user", "user": {"token": token}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub-user", "namespace": namespace}},
                     {"name": "other", "context": {"cluster": "stub", "user": "stub-user"}}],
        "current-context": "stub",
    })
