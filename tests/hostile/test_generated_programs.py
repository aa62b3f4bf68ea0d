"""Generated programs: the checker and every backend never raise, valid
programs compile on every target, and the YAML says what the program asked
for and nothing else (fixed seed, bounded number of examples)."""

from __future__ import annotations

import re

import yaml
from hypothesis import HealthCheck, given, settings

from aipc.backends import TARGETS, get_backend
from aipc.backends.writer import to_yaml
from aipc.compiler import ir
from aipc.compiler.check import check_source
from tests.helpers import strings_in
from tests.hostile.programs import Program, grammar_programs, valid_programs

SYNTAX_ERRORS = {"E002", "E003", "E004", "E008"}


def fuzz(examples: int):
    return settings(derandomize=True, deadline=None, max_examples=examples,
                    suppress_health_check=list(HealthCheck))


def written_and_read_back(documents) -> list:
    text = to_yaml(documents)
    back = list(yaml.safe_load_all(text))  # the safe loader: a tag in the text would fail here
    assert back == list(documents), text
    return back


@fuzz(80)
@given(grammar_programs())
def test_programs_from_the_grammar_have_no_syntax_errors_and_break_nothing(text):
    checked = check_source(text, "gen.aip")
    assert not SYNTAX_ERRORS & {d.code for d in checked.diagnostics}, text
    if checked.ir is not None:
        for target in TARGETS:
            emitted = get_backend(target).emit(checked.ir)
            written_and_read_back(emitted.documents)


def asked_for(target: str, program: Program, pipeline: ir.Pipeline, documents: list[dict]) -> None:
    """Every object in the output comes from a declaration, and every stage is there."""
    stages, volumes = program.stages, program.volumes
    name = pipeline.object_name
    if target == "compose":
        (document,) = documents
        assert set(document) <= {"services", "volumes"}
        assert set(document["services"]) == set(stages)
        assert set(document.get("volumes", {})) == {v for v, kind in volumes.items() if kind != "host"}
    elif target == "k8s":
        allowed = {("NetworkPolicy", pipeline.dns_name)} if stages else set()
        allowed |= {("PersistentVolumeClaim", name(v)) for v, kind in volumes.items() if kind == "sized"}
        for stage, kind in stages.items():
            workloads = ["Job"] if kind != "serve" else ["Deployment", "Service", "NetworkPolicy"]
            allowed |= {(workload, name(stage)) for workload in workloads}
        found = [(d["kind"], d["metadata"]["name"]) for d in documents]
        assert len(found) == len(set(found)) and set(found) <= allowed
        assert {("Job" if kind != "serve" else "Deployment", name(s)) for s, kind in stages.items()} <= set(found)
        for document in documents:
            labels = document["metadata"]["labels"]
            assert labels["app.kubernetes.io/managed-by"] == "aipc"
            assert labels["app.kubernetes.io/part-of"] == program.pipeline
    else:
        (workflow,) = documents
        assert workflow["kind"] == "Workflow"
        stage_templates = {ir.dns_label(s) for s in stages}
        allowed = {"main", "network-policy"} | stage_templates
        allowed |= {f"{ir.dns_label(s)}-{part}" for s, k in stages.items() if k == "serve"
                    for part in ("deployment", "service", "network-policy")}
        allowed |= {f"{ir.dns_label(v)}-volume" for v in volumes}
        templates = {t["name"] for t in workflow["spec"]["templates"]}
        assert {re.sub(r"-\d+$", "", t) for t in templates} <= allowed | {re.sub(r"-\d+$", "", t) for t in allowed}
        assert stage_templates <= templates | {t + "-deployment" for t in stage_templates}


@fuzz(120)
@given(valid_programs())
def test_valid_programs_compile_on_every_target(program):
    checked = check_source(program.text, "gen.aip")
    assert checked.ir is not None, [f"{d.code} {d.message}" for d in checked.diagnostics if d.is_error]
    for target in TARGETS:
        emitted = get_backend(target).emit(checked.ir)
        errors = {d.code for d in emitted.diagnostics if d.is_error}
        if program.host_mounted and target in ("k8s", "argo"):
            assert errors == {"B001"}  # a host path exists on one Docker host, not on a cluster
            continue
        assert not errors, (target, program.text)
        documents = written_and_read_back(emitted.documents)
        asked_for(target, program, checked.ir, documents)
        if target == "argo":  # a serve stage's objects are manifests inside the Workflow: read them too
            documents = documents + [yaml.safe_load(t["resource"]["manifest"])
                                     for t in documents[0]["spec"]["templates"] if "resource" in t]
        found = set(strings_in(documents))
        for text in program.planted:  # look-alikes stay the strings they were
            assert text in found or f"NOTE={text}" in found, (target, text)
