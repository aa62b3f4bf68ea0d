"""Reaching a Kubernetes cluster through the official client, and saying clearly
why when it cannot be reached.

The kubeconfig is found like ``kubectl`` finds it: ``--kubeconfig``, else the
``KUBECONFIG`` variable (a ``:``-separated list), else ``~/.kube/config``; with
none of them, inside a pod, the pod's service account. ``--context`` picks a
context; its namespace is the default for objects that name none.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from aipc.redact import redact

DEFAULT_KUBECONFIG = "~/.kube/config"
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
PROBE_TIMEOUT = (10, 30)  # seconds to connect, to read


class ClusterError(Exception):
    """A problem with the cluster or the kubeconfig, told to the user (exit 1),
    without the credentials a server URL or a client's error may quote."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


@dataclass
class Connection:
    api_client: Any  # kubernetes.client.ApiClient
    host: str
    context: str | None
    namespace: str  # the context's namespace, or "default"


def kubeconfig_paths(kubeconfig: str | None) -> str:
    """The kubeconfig the client should read: the flag, KUBECONFIG, or the default."""
    return kubeconfig or os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG


def connect(kubeconfig: str | None = None, context: str | None = None) -> Connection:
    """A client for the cluster the kubeconfig names, checked to answer."""
    from kubernetes import client, config

    configuration = client.Configuration()
    paths = kubeconfig_paths(kubeconfig)
    existing = [p for p in paths.split(os.pathsep) if p and os.path.exists(os.path.expanduser(p))]
    if not existing:
        if kubeconfig is None and not os.environ.get("KUBECONFIG") and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return _in_cluster(configuration, context)
        if kubeconfig is not None:
            raise ClusterError(f"the kubeconfig `{kubeconfig}` does not exist")
        where = f"KUBECONFIG={paths}" if os.environ.get("KUBECONFIG") else f"`{DEFAULT_KUBECONFIG}`"
        raise ClusterError(f"no kubeconfig: {where} does not exist; pass --kubeconfig PATH, "
                           "or set KUBECONFIG to the file your cluster's tools wrote")
    try:
        contexts, active = config.list_kube_config_contexts(config_file=paths)
        config.load_kube_config(config_file=paths, context=context, client_configuration=configuration,
                                persist_config=False)
    except config.ConfigException as error:
        raise ClusterError(f"cannot use the kubeconfig {paths}: {error}") from None
    except Exception as error:  # noqa: BLE001 - a malformed file fails anywhere inside the loader
        raise ClusterError(f"cannot read the kubeconfig {paths}: {type(error).__name__}: {error}") from None
    chosen = context or (active or {}).get("name")
    namespace = "default"
    for entry in contexts or []:
        if entry.get("name") == chosen:
            namespace = (entry.get("context") or {}).get("namespace") or "default"
    connection = Connection(client.ApiClient(configuration), configuration.host, chosen, namespace)
    probe(connection)
    return connection


def _in_cluster(configuration, context: str | None) -> Connection:
    from kubernetes import client, config

    if context:
        raise ClusterError("--context needs a kubeconfig; none was found (pass --kubeconfig PATH)")
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException as error:
        raise ClusterError(f"no kubeconfig, and the pod's service account cannot be used: {error}") from None
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as handle:
            namespace = handle.read().strip() or "default"
    except OSError:
        namespace = "default"
    connection = Connection(client.ApiClient(configuration), configuration.host, None, namespace)
    probe(connection)
    return connection


def probe(connection: Connection) -> None:
    """Ask the API server for its version, so that an unreachable cluster is
    reported before anything is applied."""
    from kubernetes import client

    try:
        # The raw answer: reaching the server is the question, not the shape of its version.
        response = client.VersionApi(connection.api_client).get_code(
            _request_timeout=PROBE_TIMEOUT, _preload_content=False)
        response.read()  # to the end, so the connection can be reused
        response.release_conn()
    except Exception as error:
        message = describe_error(error, connection.host)
        if message is None:
            raise
        raise ClusterError(message) from None


def describe_error(error: BaseException, host: str, what: str = "") -> str | None:
    """One line for an exception from the client: HTTP errors with the server's
    own message, network errors with the address that did not answer; None for
    anything else (a bug, to be raised as it is). Credentials in the host or the
    error's text are masked."""
    message = _describe(error, host, f"{what}: " if what else "")
    return redact(message) if message is not None else None


def _describe(error: BaseException, host: str, prefix: str) -> str | None:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error

    if isinstance(error, ApiException):
        message = status_message(error)
        if error.status == 401:
            return f"{prefix}the API server at {host} did not accept the credentials (401 Unauthorized): {message}"
        return f"{prefix}{message} ({error.status} {error.reason or ''})".replace(" )", ")")
    if isinstance(error, (Urllib3Error, OSError)):
        reason = getattr(error, "reason", None) or error
        return f"cannot reach the Kubernetes API server at {host}: {_network_reason(reason)}"
    return None


def _network_reason(reason: object) -> str:
    text = str(reason)
    # urllib3 wraps the OS error: keep its last, most specific part
    if "Connection refused" in text:
        return "connection refused (is the cluster running, and is this the right context?)"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host name"
    if "timed out" in text.lower():
        return "no answer (timed out)"
    return text.split(": ", 1)[-1] if ">: " in text else text


def status_message(error) -> str:
    """The ``message`` of the Status object an API server puts in error bodies."""
    body = getattr(error, "body", None)
    if body:
        try:
            data = json.loads(body)
        except (TypeError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])
        if isinstance(body, (bytes, str)):
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            return text.strip()[:500]
    return str(error.reason or error.status)


def status_details(error) -> dict:
    try:
        data = json.loads(getattr(error, "body", None) or "{}")
    except (TypeError, ValueError):
        return {}
    return data.get("details") or {} if isinstance(data, dict) else {}
