"""Serve stages as LANGUAGE.md v1 "Images run as they are" has them, on every target:
ports and `expose`, the `health` block, `${STAGE.host|port|url}`, a batch stage after a
serve stage."""

from __future__ import annotations

import re

import pytest
import yaml

from aipc.backends import get_backend
from aipc.backends.writer import to_yaml
from aipc.compiler import check_source, ir
from aipc.diagnostics import Source
from tests.dsl.test_v1_syntax import CONTRACT as V1_PROGRAMS
from tests.helpers import compile_ok

# LANGUAGE.md, v1, "Images run as they are", verbatim (kept with the other v1 programs).
CONTRACT = V1_PROGRAMS["images"]

# What the other half of issue 13 gives meaning to (security, args, secret keys in
# `env`, pull, pull_secrets): until it has, those lines are taken out.
CONTAINER_HALF = re.compile(r"^\s*(pull_secrets|security|args|pull)\b|hf\.token")


def contract_pipeline() -> ir.Pipeline:
    checked = check_source(CONTRACT, "serving.aip")
    if checked.ir is not None:
        return checked.ir
    mine = "\n".join(line for line in CONTRACT.splitlines() if not CONTAINER_HALF.search(line))
    return compile_ok(mine, path="serving.aip")


def emitted(target: str) -> list[dict]:
    result = get_backend(target).emit(contract_pipeline())
    assert not any(d.is_error for d in result.diagnostics)
    return list(yaml.safe_load_all(to_yaml(result.documents)))


def find(documents: list[dict], kind: str, name: str) -> dict:
    (found,) = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def only_container(workload: dict) -> dict:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def test_the_contract_checks_without_a_warning_about_its_services():
    pipeline = contract_pipeline()
    vllm, db = pipeline.stage("vllm"), pipeline.stage("db")
    assert (vllm.port, vllm.expose, vllm.ports) == (8000, 80, (ir.NamedPort("metrics", 9090),))
    assert (vllm.health.kind, vllm.health.port, vllm.health.start, vllm.health.interval, vllm.health.timeout,
            vllm.health.failures) == (ir.HealthKind.HTTP, 8000, 1200, 10, 5, 3)
    assert db.health.kind is ir.HealthKind.COMMAND and db.health.port is None
    assert [stage.name for stage in pipeline.stages] == ["db", "postgres_ready", "vllm"]
    assert pipeline.stage("postgres_ready").after == ("db",)
    diagnostics = check_source(CONTRACT, "serving.aip").diagnostics
    assert "W120" not in [d.code for d in diagnostics]
    # what the verbatim program still lacks is the other half's, line by line
    lines = CONTRACT.splitlines()
    source = Source("serving.aip", CONTRACT)
    assert all(CONTAINER_HALF.search(lines[source.position(d.span.start).line - 1])
               for d in diagnostics if d.is_error)


def test_kubernetes_service_port_80_targets_8000_and_every_port_is_declared_and_admitted():
    documents = emitted("k8s")
    service = find(documents, "Service", "serving-vllm")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
    ]
    container = only_container(find(documents, "Deployment", "serving-vllm"))
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"},
                                  {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    policy = find(documents, "NetworkPolicy", "serving-vllm")
    assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8000},
                                                    {"protocol": "TCP", "port": 9090}]}]
    # postgres's port is not HTTP: it is not named so (service meshes read `http` as HTTP)
    assert find(documents, "Service", "serving-db")["spec"]["ports"] == [
        {"name": "main", "port": 5432, "targetPort": "main", "protocol": "TCP"}]


def test_kubernetes_probes_have_the_given_timings():
    container = only_container(find(emitted("k8s"), "Deployment", "serving-vllm"))
    handler = {"httpGet": {"path": "/health", "port": "http"}}
    assert container["startupProbe"] == {**handler, "periodSeconds": 10, "timeoutSeconds": 5,
                                         "failureThreshold": 120}  # 20m / 10s
    assert container["readinessProbe"] == {**handler, "periodSeconds": 10, "timeoutSeconds": 5,
                                           "failureThreshold": 3}
    assert container["livenessProbe"] == container["readinessProbe"]
    db = only_container(find(emitted("k8s"), "Deployment", "serving-db"))
    assert db["readinessProbe"] == {"exec": {"command": ["pg_isready", "-U", "postgres"]}, "periodSeconds": 5,
                                    "timeoutSeconds": 4, "failureThreshold": 3}
    assert db["startupProbe"]["failureThreshold"] == 60  # the default start, 5m, in checks of 5s


def test_compose_publishes_80_to_8000_on_localhost_with_a_healthcheck_and_waits_for_health():
    (document,) = emitted("compose")
    vllm, db, ready = (document["services"][name] for name in ("vllm", "db", "postgres_ready"))
    assert vllm["ports"] == ["127.0.0.1:80:8000", "127.0.0.1:9090:9090"]
    assert vllm["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "http://127.0.0.1:8000/health" in vllm["healthcheck"]["test"][1]
    assert {key: vllm["healthcheck"][key] for key in ("interval", "timeout", "retries", "start_period")} == {
        "interval": "10s", "timeout": "5s", "retries": 3, "start_period": "20m"}
    assert db["healthcheck"]["test"] == ["CMD", "pg_isready", "-U", "postgres"]
    assert ready["depends_on"] == {"db": {"condition": "service_healthy"}}


@pytest.mark.parametrize("target, host, port", [
    ("compose", "serving-db", "5432"),  # the network alias and the container port
    ("k8s", "serving-db", "5432"),  # the Service, in the pods' own namespace, and its port
    ("argo", "serving-db", "5432"),
])
def test_db_host_and_port_are_rendered_per_target(target, host, port):
    documents = emitted(target)
    if target == "compose":
        program = documents[0]["services"]["postgres_ready"]
        argv = program["entrypoint"] + program["command"]
    elif target == "k8s":
        argv = only_container(find(documents, "Job", "serving-postgres-ready"))["command"]
    else:
        (template,) = [t for t in documents[0]["spec"]["templates"] if t["name"] == "postgres-ready"]
        argv = template["container"]["command"]
    assert argv == ["psql", "-h", host, "-p", port, "-c", "select 1"]
    # the name other stages use is the name the service has there
    if target == "compose":
        assert host in documents[0]["services"]["db"]["networks"]["default"]["aliases"]
    elif target == "k8s":
        assert find(documents, "Service", host)["spec"]["ports"][0]["port"] == int(port)


def test_a_service_port_is_the_exposed_one_in_a_cluster_and_the_container_s_in_a_docker_network():
    text = CONTRACT.replace('"-h", "${db.host}", "-p", "${db.port}"', '"${vllm.url}", "${vllm.port}"')
    pipeline = compile_ok("\n".join(line for line in text.splitlines() if not CONTAINER_HALF.search(line)))
    argv = {target: to_yaml(get_backend(target).emit(pipeline).documents) for target in ("compose", "k8s", "argo")}
    assert "http://serving-vllm:8000" in argv["compose"] and "http://serving-vllm:80\n" not in argv["compose"]
    assert "- http://serving-vllm:80\n" in argv["k8s"] and "- http://serving-vllm:80\n" in argv["argo"]


def test_argo_runs_the_batch_stage_once_the_deployment_is_available():
    (workflow,) = emitted("argo")
    tasks = {task["name"]: task for task in workflow["spec"]["templates"][0]["dag"]["tasks"]}
    assert tasks["postgres-ready"]["dependencies"] == ["db"]
    (deployment,) = [t for t in workflow["spec"]["templates"] if t["name"] == "db-deployment"]
    assert "status.availableReplicas > 0" in deployment["resource"]["successCondition"]
    manifest = yaml.safe_load(deployment["resource"]["manifest"])
    assert manifest["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"][0] == \
        "pg_isready"


def test_three_services_on_one_container_port_share_a_host_through_expose():
    text = "".join(f'serve s{n} {{ image = "a:1"  port = 8000  expose = {8000 + n} }}\n' for n in range(3))
    pipeline = compile_ok(text)
    result = get_backend("compose").emit(pipeline)
    assert [d.code for d in result.diagnostics] == []  # no B102: the host ports differ
    services = result.documents[0]["services"]
    assert [services[f"s{n}"]["ports"] for n in range(3)] == [
        ["127.0.0.1:8000:8000"], ["127.0.0.1:8001:8000"], ["127.0.0.1:8002:8000"]]
    # without expose they would collide, and say so
    clash = get_backend("compose").emit(compile_ok(text.replace("  expose = 8001", "")))
    assert [d.code for d in clash.diagnostics] == ["B102"]


def test_host_port_overlaps_count_expose_and_extra_ports():
    text = ('serve a { image = "a:1"  port = 8000  expose = 9000  replicas = 2 }\n'
            'serve b { image = "b:1"  port = 7000  ports = { metrics = 9001 } }\n')
    diagnostics = get_backend("compose").emit(compile_ok(text)).diagnostics
    assert [(d.code, d.message) for d in diagnostics] == [
        ("B102", "the host ports of `b` `metrics` (9001) overlap those of `a` (9000-9001)")]
    assert text[diagnostics[0].span.start:diagnostics[0].span.end].startswith("ports")
    assert Source("t.aip", text).position(diagnostics[0].related[0].span.start) == (1, 39)  # a's `expose`


def test_health_block_forms_on_kubernetes():
    pipeline = compile_ok('''
serve a { image = "a:1"  port = 8000  ports = { admin = 8081 }  health { tcp = true  port = admin } }
serve b { image = "b:1"  port = 8000  health { http = "/ready"  port = 8001  start = 1m  interval = 7s } }
''')
    documents = list(yaml.safe_load_all(to_yaml(get_backend("k8s").emit(pipeline).documents)))
    a = only_container(find(documents, "Deployment", "test-a"))
    b = only_container(find(documents, "Deployment", "test-b"))
    assert a["readinessProbe"]["tcpSocket"] == {"port": "admin"}  # a declared port, by its name
    assert [port["name"] for port in a["ports"]] == ["main", "admin"]  # tcp health: `port` is not HTTP
    assert b["startupProbe"] == {"httpGet": {"path": "/ready", "port": 8001}, "periodSeconds": 7,
                                 "timeoutSeconds": 4, "failureThreshold": 9}  # ceil(60 / 7)
