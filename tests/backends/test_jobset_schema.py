"""The JobSet schema (tests/backends/jobset_schema.py, derived from
kubernetes-sigs/jobset api/jobset/v1alpha2/jobset_types.go at 0336a8fd): the JobSets
``--multinode jobset`` should write pass, and wrong ones fail where they are wrong."""

from __future__ import annotations

import copy

import pytest

from tests.backends.jobset_schema import jobset_errors


def minimal_jobset() -> dict:
    """The shape LANGUAGE.md's 4-node `pretrain` stage takes as a JobSet."""
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": "pretrain", "namespace": "ml",
                     "labels": {"kueue.x-k8s.io/queue-name": "team-a"}},
        "spec": {
            "failurePolicy": {"maxRestarts": 2},
            "network": {"enableDNSHostnames": True, "subdomain": "pretrain", "publishNotReadyAddresses": True},
            "replicatedJobs": [{
                "name": "node",
                "replicas": 1,
                "template": {"spec": {
                    "completionMode": "Indexed", "completions": 4, "parallelism": 4, "backoffLimit": 0,
                    "template": {"spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "main", "image": "ghcr.io/acme/trainer:2.1",
                                        "command": ["torchrun", "train.py"],
                                        "resources": {"limits": {"nvidia.com/gpu": 8, "memory": "900Gi"}}}],
                    }},
                }},
            }],
        },
    }


def every_field_jobset() -> dict:
    """Every field of JobSetSpec the types declare, each with a valid value."""
    jobset = minimal_jobset()
    spec = jobset["spec"]
    driver = copy.deepcopy(spec["replicatedJobs"][0])
    driver.update(name="driver", groupName="default")
    workers = copy.deepcopy(driver)
    workers.update(name="workers", replicas=2, dependsOn=[{"name": "driver", "status": "Ready"}])
    spec["replicatedJobs"] = [driver, workers]
    spec.update(
        successPolicy={"operator": "All", "targetReplicatedJobs": ["workers"]},
        failurePolicy={"maxRestarts": 3, "restartStrategy": "BlockingRecreate", "rules": [
            {"name": "fail_on_config", "action": "FailJobSet", "onJobFailureReasons": ["PodFailurePolicy"],
             "onJobFailureMessagePatterns": [".*config.*"], "targetReplicatedJobs": ["driver"]}]},
        startupPolicy={"startupPolicyOrder": "AnyOrder"},
        suspend=True,
        coordinator={"replicatedJob": "driver", "jobIndex": 0, "podIndex": 0},
        managedBy="kueue.x-k8s.io/multikueue",
        ttlSecondsAfterFinished=600,
        volumeClaimPolicies=[{
            "templates": [{"metadata": {"name": "cache"},
                           "spec": {"accessModes": ["ReadWriteMany"],
                                    "resources": {"requests": {"storage": "10Gi"}}}}],
            "retentionPolicy": {"whenDeleted": "Retain"},
        }],
    )
    return jobset


@pytest.mark.parametrize("build", [minimal_jobset, every_field_jobset])
def test_valid_jobsets_pass(build):
    assert jobset_errors(build()) == []


def spec_of(jobset):
    return jobset["spec"]


def job_of(jobset):
    return jobset["spec"]["replicatedJobs"][0]


@pytest.mark.parametrize("change, path", [
    (lambda js: spec_of(js).update(replicas=4), "$.spec"),  # unknown field
    (lambda js: spec_of(js)["network"].update(dnsHostnames=True), "$.spec.network"),
    (lambda js: job_of(js)["template"]["spec"].update(completion=4), "$.spec.replicatedJobs[0].template.spec"),
    (lambda js: job_of(js).update(replicas="1"), "$.spec.replicatedJobs[0].replicas"),  # wrong type
    (lambda js: spec_of(js)["network"].update(enableDNSHostnames="true"), "$.spec.network.enableDNSHostnames"),
    (lambda js: spec_of(js)["failurePolicy"].update(maxRestarts=-1), "$.spec.failurePolicy.maxRestarts"),
    (lambda js: spec_of(js)["failurePolicy"].update(maxRestarts=2**31), "$.spec.failurePolicy.maxRestarts"),
    (lambda js: spec_of(js)["failurePolicy"].update(restartStrategy="Always"),
     "$.spec.failurePolicy.restartStrategy"),
    (lambda js: job_of(js).pop("template"), "$.spec.replicatedJobs[0]"),  # required
    (lambda js: js.update(kind="Jobset"), "$.kind"),
    (lambda js: js.update(apiVersion="jobset.x-k8s.io/v1alpha1"), "$.apiVersion"),
    (lambda js: spec_of(js)["network"].update(subdomain="Pretrain.ml"), "$.spec.network.subdomain"),
    (lambda js: spec_of(js).update(ttlSecondsAfterFinished=-5), "$.spec.ttlSecondsAfterFinished"),
    (lambda js: spec_of(js).update(successPolicy={"targetReplicatedJobs": ["node"]}), "$.spec.successPolicy"),
    (lambda js: spec_of(js)["failurePolicy"].update(rules=[{"name": "r", "action": "Restart"}]),
     "$.spec.failurePolicy.rules[0].action"),
    (lambda js: spec_of(js)["failurePolicy"].update(rules=[
        {"name": "r", "action": "FailJobSet", "onJobFailureReasons": ["OOMKilled"]}]),
     "$.spec.failurePolicy.rules[0].onJobFailureReasons[0]"),
    (lambda js: spec_of(js)["replicatedJobs"].append(copy.deepcopy(job_of(js))),
     "$.spec.replicatedJobs: the name 'node' is used more than once"),
    (lambda js: (spec_of(js).update(startupPolicy={"startupPolicyOrder": "InOrder"}),
                 job_of(js).update(dependsOn=[{"name": "x", "status": "Complete"}])),
     "$.spec: StartupPolicy and DependsOn APIs are mutually exclusive"),
    (lambda js: job_of(js)["template"]["spec"]["template"]["spec"]["containers"][0].update(gpus=8),
     "$.spec.replicatedJobs[0].template.spec.template.spec.containers[0]"),
])
def test_wrong_jobsets_fail_where_they_are_wrong(change, path):
    jobset = minimal_jobset()
    change(jobset)
    errors = jobset_errors(jobset)
    assert errors, "accepted a wrong JobSet"
    assert any(error.startswith(path) for error in errors), errors
