"""The container half of LANGUAGE.md v1 "Images run as they are", on every target:
`args`, the `security` block (header and stage, merged key by key), `env` values
`SECRET.KEY`, `pull` and `pull_secrets`, and the one hardened default."""

from __future__ import annotations

import yaml

from aipc.backends import get_backend
from aipc.backends.writer import to_yaml
from aipc.compiler import check_source, ir
from tests.dsl.test_v1_syntax import CONTRACT as V1_PROGRAMS
from tests.helpers import compile_ok

CONTRACT = V1_PROGRAMS["images"]  # verbatim
ARGS = ["--model", "meta-llama/Meta-Llama-3-8B", "--port", "8000"]
DB_CAPABILITIES = ["CHOWN", "SETUID", "SETGID", "FOWNER", "DAC_OVERRIDE"]


def emitted(target: str, text: str = CONTRACT) -> tuple[list[dict], list]:
    result = get_backend(target).emit(compile_ok(text, path="serving.aip"))
    assert not any(d.is_error for d in result.diagnostics)
    return list(yaml.safe_load_all(to_yaml(result.documents))), list(result.diagnostics)


def find(documents: list[dict], kind: str, name: str) -> dict:
    (found,) = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def pod_of(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def test_the_contract_checks_clean_as_written():
    checked = check_source(CONTRACT, "serving.aip")
    assert checked.diagnostics == [] and checked.ir is not None
    pipeline = checked.ir
    vllm, db, ready = pipeline.stage("vllm"), pipeline.stage("db"), pipeline.stage("postgres_ready")
    assert [argument.render(param=ir.param_value, service=ir.container_address) for argument in vllm.args] == ARGS
    assert vllm.command is None and vllm.pull is ir.PullPolicy.ALWAYS
    assert vllm.secret_env == (("HUGGING_FACE_HUB_TOKEN", ir.SecretKey("hf", "token", vllm.secret_env[0][1].span)),)
    # the header's `user = 1000` is every stage's default; a stage's keys replace it key by key
    assert (vllm.security.uid, vllm.security.read_only) == (0, False)
    assert (db.security.uid, db.security.capabilities) == (0, tuple(DB_CAPABILITIES))
    assert (ready.security.uid, ready.security.gid, ready.security.read_only) == (1000, 1000, True)
    assert pipeline.pull_secrets == ("regcred",)


def test_kubernetes():
    documents, diagnostics = emitted("k8s")
    assert diagnostics == []
    vllm = pod_of(find(documents, "Deployment", "serving-vllm"))
    (container,) = vllm["containers"]
    assert "command" not in container and container["args"] == ARGS
    assert container["imagePullPolicy"] == "Always"
    assert {"name": "HUGGING_FACE_HUB_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}} \
        in container["env"]
    assert vllm["imagePullSecrets"] == [{"name": "regcred"}]
    # user = root: runAsUser 0 and no runAsNonRoot anywhere; read_only = false
    assert vllm["securityContext"]["runAsUser"] == 0 and "runAsNonRoot" not in vllm["securityContext"]
    assert "runAsNonRoot" not in container["securityContext"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    db = pod_of(find(documents, "Deployment", "serving-db"))
    assert db["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": DB_CAPABILITIES}
    ready = pod_of(find(documents, "Job", "serving-postgres-ready"))
    assert {key: ready["securityContext"][key] for key in ("runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup")} \
        == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 65532}
    assert ready["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert ready["imagePullSecrets"] == [{"name": "regcred"}]
    env = {item["name"]: item.get("value") for item in ready["containers"][0]["env"]}
    assert env["HOME"] == "/tmp" and env["USER"] == "nonroot"  # the image may not know uid 1000


def test_argo():
    (workflow,), diagnostics = emitted("argo")
    assert diagnostics == []
    spec = workflow["spec"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    ready = next(t for t in spec["templates"] if t["name"] == "postgres-ready")
    # a template whose user differs from the workflow's default has its own pod securityContext
    assert ready["securityContext"]["runAsUser"] == 1000 and spec["securityContext"]["runAsUser"] == 65532
    vllm = next(t for t in spec["templates"] if t["name"] == "vllm-deployment")
    deployment = pod_of(yaml.safe_load(vllm["resource"]["manifest"]))
    assert deployment["containers"][0]["args"] == ARGS
    assert deployment["securityContext"]["runAsUser"] == 0 and deployment["imagePullSecrets"] == [{"name": "regcred"}]


def test_compose():
    (document,), diagnostics = emitted("compose")
    assert [(d.code, "pull_secrets" in d.message) for d in diagnostics] == [("B101", True)]
    services = document["services"]
    vllm, db, ready = services["vllm"], services["db"], services["postgres_ready"]
    assert "entrypoint" not in vllm and vllm["command"] == ARGS and vllm["pull_policy"] == "always"
    assert "HUGGING_FACE_HUB_TOKEN=${token}" in vllm["environment"]  # compose fills it in from the caller's `token`
    assert (vllm["user"], vllm["read_only"], "cap_add" in vllm) == ("0:0", False, False)
    assert (db["user"], db["read_only"], db["cap_add"], db["cap_drop"]) == ("0:0", False, DB_CAPABILITIES, ["ALL"])
    assert (ready["user"], ready["read_only"], ready["group_add"]) == ("1000:1000", True, ["65532"])
    assert "HOME=/tmp" in ready["environment"] and "USER=nonroot" in ready["environment"]


def test_privileged_is_warned_about_and_expressed_where_each_target_says_it():
    text = 'train probe { image = "tools:1.0"  security { privileged = true } }\n'
    assert [d.code for d in check_source(text, "p.aip").diagnostics] == ["W260"]
    documents, _ = emitted("k8s", text)
    context = pod_of(find(documents, "Job", "serving-probe"))["containers"][0]["securityContext"]
    # the API server refuses privileged without allowPrivilegeEscalation
    assert (context["privileged"], context["allowPrivilegeEscalation"]) == (True, True)
    (document,), _ = emitted("compose", text)
    service = document["services"]["probe"]
    assert service["privileged"] is True and "security_opt" not in service


def test_a_stage_key_replaces_the_header_key_and_keeps_the_others():
    pipeline = compile_ok('pipeline "p" { security { user = "1000:100"  read_only = false } }\n'
                          'data a { image = "e:1"  security { user = 2000 } }\n'
                          'data b { image = "e:1" }\n')
    a, b = pipeline.stage("a").security, pipeline.stage("b").security
    assert (a.uid, a.gid, a.read_only) == (2000, 2000, False)
    assert (b.uid, b.gid, b.read_only) == (1000, 100, False)
    assert compile_ok('data c { image = "e:1" }').stage("c").security == ir.HARDENED


def test_an_explicit_user_gets_home_and_user_only_where_the_stage_sets_none():
    pipeline = compile_ok('data a { image = "e:1"  env = { HOME = "/data" }  security { user = 1000 } }')
    assert pipeline.stage("a").base_env() == (("USER", "nonroot"),)


def test_shm_above_the_memory_limit_is_an_error_where_dev_shm_counts_against_it():
    text = 'train model { image = "t:1.0"  resources { gpu = 4  shm = 16Gi } }\n'
    pipeline = compile_ok(text)  # W261 (no memory) only: compose and `aipc run` size /dev/shm apart
    for target in ("k8s", "argo"):
        result = get_backend(target).emit(pipeline)
        (error,) = [d for d in result.diagnostics if d.is_error]
        assert error.code == "B003" and "2Gi (the default" in error.message and "memory" in error.help
        assert result.documents == ()
    assert not any(d.is_error for d in get_backend("compose").emit(pipeline).diagnostics)
    fixed = compile_ok(text.replace("shm = 16Gi", "shm = 16Gi  memory = 64Gi"))
    assert not any(d.is_error for d in get_backend("k8s").emit(fixed).diagnostics)


def test_pull_is_each_target_s_pull_policy():
    for pull, k8s_policy, compose_policy in (("always", "Always", "always"), ("if_missing", "IfNotPresent",
                                                                             "if_not_present"),
                                             ("never", "Never", "never")):
        text = f'data a {{ image = "e:1"  pull = {pull} }}\n'
        documents, _ = emitted("k8s", text)
        assert pod_of(find(documents, "Job", "serving-a"))["containers"][0]["imagePullPolicy"] == k8s_policy
        (document,), _ = emitted("compose", text)
        assert document["services"]["a"]["pull_policy"] == compose_policy
    documents, _ = emitted("k8s", 'data a { image = "e:1" }\n')
    assert "imagePullPolicy" not in pod_of(find(documents, "Job", "serving-a"))["containers"][0]  # the cluster's rule


def test_gpus_without_memory_are_warned_about_once_and_not_when_memory_is_wrong():
    assert [d.code for d in check_source('train a { image = "t:1"  resources { gpu = 1 } }', "p.aip").diagnostics] \
        == ["W261"]
    wrong = check_source('train a { image = "t:1"  resources { gpu = 1  memory = 64 } }', "p.aip")
    assert [d.code for d in wrong.diagnostics] == ["E201"]  # the memory is written, wrongly: that is the error
    swept = check_source('train a { image = "t:1"  matrix { lr = [1, 2] }  resources { gpu = 1 } }', "p.aip")
    assert [d.code for d in swept.diagnostics] == ["W261"]  # once for the matrix stage, not per instance
