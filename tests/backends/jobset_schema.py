"""A strict JSON schema of a ``jobset.x-k8s.io/v1alpha2`` JobSet, for the tests of
``--multinode jobset`` output (``kubernetes-validate`` knows no CRDs).

Written from the JobSet project's published Go types, kubernetes-sigs/jobset
``api/jobset/v1alpha2/jobset_types.go`` at commit 0336a8fd9fd3ba7a8e5d3e16462138b746e01ec8
(the main branch, the newest copy available: it already has ``restartStrategy:
InPlaceRestart`` and ``volumeClaimPolicies``),
cross-checked with the older copy Kueue vendors
(kubernetes-sigs/kueue ``vendor/sigs.k8s.io/jobset/api/jobset/v1alpha2/jobset_types.go``
at 2a3d9eb93771c785e23f57845d41bc4f46e60804), which has every field aipc writes. The
rules, as controller-gen applies them to these types:

- every Go struct is a closed object (``additionalProperties: false``);
- a field whose json tag has neither ``omitempty`` nor a ``+optional`` marker is required;
- ``+kubebuilder:validation`` markers become ``enum``, ``minimum``, ``maxItems``,
  ``uniqueItems``; ``int32`` fields keep the int32 range.

The embedded Kubernetes types (the ``batch/v1`` JobTemplateSpec of a replicated job,
ObjectMeta, PersistentVolumeClaim) are the strict OpenAPI definitions that
kubernetes-validate ships, so a misspelt field inside the Job template fails too.

Stricter than the CRD, each marked ``aipc:`` below: rules the JobSet webhook enforces
(``pkg/webhooks/jobset_webhook.go`` at 01078527ec4383c3d7289b5af3e0a788324e14ec) and
one the project leaves open, ``failurePolicy.maxRestarts >= 0``: the Go type has no
minimum and the webhook does not check it, but the types say a failed Job restarts the
JobSet only while ``restartsCountTowardsMax < maxRestarts`` (``RestartJobSet``), so a
negative limit means 0, and aipc never writes one.
The list-map keys (``+listType=map``, ``+listMapKey=name``), the webhook's unique
failure-policy rule names and the CRD's one CEL rule (``startupPolicyOrder: InOrder``
excludes ``dependsOn``) are checked by :func:`jobset_errors`, not by the schema.
"""

from __future__ import annotations

import functools
import importlib.resources
import json

import jsonschema
import kubernetes_validate
import referencing

JOBSET_API_VERSION = "jobset.x-k8s.io/v1alpha2"
INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
# aipc: the webhook requires a subdomain to be a DNS-1123 subdomain and a DNS-1035 label
# (it names the headless Service); both hold exactly for this.
DNS_1035_LABEL = {"type": "string", "maxLength": 63, "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$"}
# The job failure reasons the webhook accepts in a failure policy rule (batch/v1 JobReason*).
JOB_FAILURE_REASONS = ["BackoffLimitExceeded", "DeadlineExceeded", "FailedIndexes",
                       "MaxFailedIndexesExceeded", "PodFailurePolicy"]


def _closed(properties: dict, required: tuple[str, ...] = ()) -> dict:
    schema: dict = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def _strings(**extra) -> dict:
    return {"type": "array", "items": {"type": "string"}, **extra}


def _kubernetes(definition: str) -> dict:
    return {"$ref": f"{_kubernetes_definitions()['$id']}#/$defs/{definition}"}


@functools.lru_cache(maxsize=1)
def _kubernetes_definitions() -> dict:
    version = kubernetes_validate.latest_version()
    path = (importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
            / f"v{version}-local-strict" / "_definitions.json")
    return json.loads(path.read_text())


@functools.lru_cache(maxsize=1)
def jobset_schema() -> dict:
    depends_on = _closed({"name": {"type": "string"}, "status": {"enum": ["Ready", "Complete"]}},
                         required=("name", "status"))
    replicated_job = _closed({
        "name": {"type": "string"},
        "groupName": {"type": "string"},  # default "default"
        "template": _kubernetes("io.k8s.api.batch.v1.JobTemplateSpec"),
        "replicas": INT32,  # default 1; the Job names are <jobset>-<replicatedJob>-<index>
        "dependsOn": {"type": "array", "maxItems": 5, "items": depends_on},
    }, required=("name", "template"))
    network = _closed({
        "enableDNSHostnames": {"type": "boolean"},
        "subdomain": DNS_1035_LABEL,
        "publishNotReadyAddresses": {"type": "boolean"},
    })
    success_policy = _closed({"operator": {"enum": ["All", "Any"]}, "targetReplicatedJobs": _strings()},
                             required=("operator",))
    failure_policy_rule = _closed({
        # the types' pattern; aipc: the webhook's length limits
        "name": {"type": "string", "minLength": 1, "maxLength": 128,
                 "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"},
        "action": {"enum": ["FailJobSet", "RestartJobSet", "RestartJobSetAndIgnoreMaxRestarts",
                            "RestartJob", "RestartJobAndIgnoreMaxRestarts"]},
        # aipc: the webhook accepts only these reasons
        "onJobFailureReasons": {"type": "array", "uniqueItems": True, "items": {"enum": JOB_FAILURE_REASONS}},
        "onJobFailureMessagePatterns": _strings(uniqueItems=True),
        "targetReplicatedJobs": _strings(),
    }, required=("name", "action"))
    failure_policy = _closed({
        "maxRestarts": {**INT32, "minimum": 0},  # aipc: see the module docstring
        "restartStrategy": {"enum": ["Recreate", "BlockingRecreate", "InPlaceRestart"]},
        "rules": {"type": "array", "items": failure_policy_rule},
    })
    startup_policy = _closed({"startupPolicyOrder": {"enum": ["AnyOrder", "InOrder"]}},
                             required=("startupPolicyOrder",))
    coordinator = _closed({"replicatedJob": {"type": "string"},
                           "jobIndex": {"type": "integer"}, "podIndex": {"type": "integer"}},
                          required=("replicatedJob",))
    volume_claim_policy = _closed({
        "templates": {"type": "array", "maxItems": 50,
                      "items": _kubernetes("io.k8s.api.core.v1.PersistentVolumeClaim")},
        "retentionPolicy": _closed({"whenDeleted": {"enum": ["Delete", "Retain"]}}),
    })
    spec = _closed({
        "replicatedJobs": {"type": "array", "items": replicated_job},
        "network": network,
        "successPolicy": success_policy,
        "failurePolicy": failure_policy,
        "startupPolicy": startup_policy,
        "suspend": {"type": "boolean"},
        "coordinator": coordinator,
        # a domain-prefixed path such as kueue.x-k8s.io/multikueue, at most 63 characters
        # (aipc: the webhook's rule, approximated by a pattern)
        "managedBy": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/\S+$"},
        "ttlSecondsAfterFinished": {**INT32, "minimum": 0},
        "volumeClaimPolicies": {"type": "array", "maxItems": 50, "items": volume_claim_policy},
    })
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **_closed({
            "apiVersion": {"const": JOBSET_API_VERSION},
            "kind": {"const": "JobSet"},
            "metadata": _kubernetes("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
            "spec": spec,
            "status": {"type": "object"},  # written by the controller, never by aipc
        }, required=("apiVersion", "kind")),
    }


def jobset_errors(document: dict) -> list[str]:
    """Every way ``document`` is not a valid JobSet, as sorted `path: message` lines."""
    definitions = _kubernetes_definitions()
    registry = referencing.Registry().with_resource(
        definitions["$id"], referencing.Resource.from_contents(definitions))
    validator = jsonschema.Draft202012Validator(jobset_schema(), registry=registry)
    lines = {f"{error.json_path}: {error.message[:300]}" for error in validator.iter_errors(document)}
    spec = document.get("spec") if isinstance(document.get("spec"), dict) else {}
    lines.update(_repeated_names(spec.get("replicatedJobs"), "$.spec.replicatedJobs"))
    failure_policy = spec.get("failurePolicy") if isinstance(spec.get("failurePolicy"), dict) else {}
    lines.update(_repeated_names(failure_policy.get("rules"), "$.spec.failurePolicy.rules"))
    # The CRD's CEL rule on JobSetSpec.
    startup = spec.get("startupPolicy") if isinstance(spec.get("startupPolicy"), dict) else {}
    jobs = spec.get("replicatedJobs") if isinstance(spec.get("replicatedJobs"), list) else []
    if startup.get("startupPolicyOrder") == "InOrder" and any(
            isinstance(job, dict) and "dependsOn" in job for job in jobs):
        lines.add("$.spec: StartupPolicy and DependsOn APIs are mutually exclusive")
    return sorted(lines)


def _repeated_names(items, path: str) -> set[str]:
    if not isinstance(items, list):
        return set()
    names = [item.get("name") for item in items if isinstance(item, dict)]
    return {f"{path}: the name {name!r} is used more than once"
            for name in sorted({name for name in names if names.count(name) > 1}, key=str)}
