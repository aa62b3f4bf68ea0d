"""A stage's strings are ir.Text, which every target must render: literal parts as
written and each parameter and service address as that target writes it. A
string a backend forgot cannot reach the output, so what holds for one string
holds for all."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from aipc.backends import TARGETS, get_backend
from aipc.backends.writer import NotData, to_yaml
from aipc.compiler import ir, schema
from aipc.diagnostics import Source, Span
from aipc.compiler import check_source
from tests.helpers import compile_ok

# Every string attribute of a stage holds the parameter `p` (and `{{` for Argo's
# warning, except `image`: braces are no part of an image reference, E403).
EVERY_STRING = '''
param p: string = "VALUE"
data a {
  image   = "e:1-${p}"
  command = ["${p}", "x${p}{{x}}"]
  workdir = "/${p}{{x}}"
  env     = { A = "${p}{{x}}", B = "plain" }
}
data b { image = "e:1"  script = "echo ${p} {{x}}" }
serve s { image = "e:1"  port = 8080  health = "/${p}{{x}}" }
serve c { image = "e:1"  port = 8081  health { command = ["probe", "${p}{{x}}"] } }
'''

TEXT_FIELDS = sorted(f.name for f in dataclasses.fields(ir.Stage) if "Text" in str(f.type))
HEALTH_TEXT_FIELDS = sorted(f.name for f in dataclasses.fields(ir.Health) if "Text" in str(f.type))


def texts_of(pipeline: ir.Pipeline) -> list[ir.Text]:
    """Every Text of every stage: its own fields and its health check's."""
    values = [getattr(stage, name) for stage in pipeline.stages for name in TEXT_FIELDS]
    values += [getattr(stage.health, name) for stage in pipeline.stages if stage.health
               for name in HEALTH_TEXT_FIELDS]
    flat = [t for value in values if value for t in (value if isinstance(value, tuple) else (value,))]
    return [t[1] if isinstance(t, tuple) else t for t in flat]


def test_every_text_field_of_a_stage_is_exercised_here():
    pipeline = compile_ok(EVERY_STRING)
    assert TEXT_FIELDS == ["command", "env", "image", "script", "workdir"]
    assert HEALTH_TEXT_FIELDS == ["command", "path"]
    for name in TEXT_FIELDS:
        assert any(getattr(stage, name) for stage in pipeline.stages), name
    for name in HEALTH_TEXT_FIELDS:
        assert any(stage.health and getattr(stage.health, name) for stage in pipeline.stages), name
    # and each one is a Text with the parameter among its parts
    flat = texts_of(pipeline)
    assert all(isinstance(t, ir.Text) for t in flat)
    assert sum(any(isinstance(p, ir.ParamRef) for p in t.parts) for t in flat) == 8


# The same strings with a service address in each but the image (which names no
# address): `${s.url}` is the Service's (port 80, `expose`) on Kubernetes and Argo,
# the container port on compose.
EVERY_ADDRESS = EVERY_STRING.replace('"e:1-${p}"', '"e:1"').replace("${p}", "${s.url}") \
    .replace("{{x}}", "").replace('port = 8080', 'port = 8080  expose = 80') \
    .replace("param p: string = \"VALUE\"", "")


def test_every_text_field_holds_service_addresses():
    flat = texts_of(compile_ok(EVERY_ADDRESS))
    assert sum(any(isinstance(p, ir.ServiceRef) for p in t.parts) for t in flat) == 7


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_renders_every_service_address(target):
    text = to_yaml(get_backend(target).emit(compile_ok(EVERY_ADDRESS)).documents)
    assert "${s.url}" not in text
    url = "http://test-s:8080" if target == "compose" else "http://test-s:80"
    assert text.count(url) >= 7, text


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_renders_every_string(target):
    # On Argo a serve stage fixes its parameters (it is applied as manifest text), so
    # `p` has its value in every string, as on the other targets.
    emitted = get_backend(target).emit(compile_ok(EVERY_STRING, {"p": "OVERRIDDEN"}))
    text = to_yaml(emitted.documents)
    assert "VALUE" not in text
    assert text.count("OVERRIDDEN") >= 8 and "{{workflow" not in text  # health is in three probes


def test_argo_keeps_the_parameters_of_batch_stages_the_workflows_own():
    batch_only = EVERY_STRING[:EVERY_STRING.index("serve s")]
    text = to_yaml(get_backend("argo").emit(compile_ok(batch_only, {"p": "OVERRIDDEN"})).documents)
    assert text.count("OVERRIDDEN") == 1  # the argument's default
    assert text.count("{{workflow.parameters.p}}") >= 6


def test_the_writer_refuses_what_a_backend_did_not_render():
    text = ir.Text(("x", ir.ParamRef("p", "1")), Span(0, 1))
    with pytest.raises(NotData, match="ir.Text"):
        to_yaml([{"image": text}])
    with pytest.raises(NotData):
        to_yaml([{"kind": [ir.StageKind.DATA]}])
    with pytest.raises(TypeError, match="render"):
        f"{text}"
    assert text.render(param=lambda ref: f"<{ref.name}>", service=ir.service_address) == "x<p>"
    address = ir.ServiceRef("db", "url", "p-db", 5432, 15432)
    both = ir.Text((address, "/x?", ir.ParamRef("p", "1")), Span(0, 1))
    assert both.render(param=ir.param_value, service=ir.container_address) == "http://p-db:5432/x?1"
    assert both.render(param=ir.param_value, service=ir.service_address) == "http://p-db:15432/x?1"
    with pytest.raises(NotData, match="ir.Text"):
        to_yaml([{"env": both}])
    assert yaml.safe_load(to_yaml([{"a": 1.5, "b": (1, 2)}])) == {"a": 1.5, "b": [1, 2]}  # still data


def test_argo_warns_about_braces_in_every_string_attribute():
    """Every attribute that holds text reaches Argo through one function, so each
    one holding `{{` is reported at the attribute, once (health was missed once)."""
    emitted = get_backend("argo").emit(compile_ok(EVERY_STRING))
    source = Source("t.aip", EVERY_STRING)
    warned = sorted(EVERY_STRING[d.span.start:d.span.end].split(" ")[0] for d in emitted.diagnostics
                    if d.code == "B101" and "template expression" in d.message and "of `c`" not in d.message)
    written = sorted(name for name, spec in schema.STAGE.items()
                     if spec.type in (schema.Type.STRING, schema.Type.PATH, schema.Type.STRING_LIST,
                                      schema.Type.STRING_MAP) and name not in ("labels", "image"))
    assert warned == written == ["command", "env", "health", "script", "workdir"]
    assert len([d for d in emitted.diagnostics if "`health.command` of `c`" in d.message]) == 1
    health = next(d for d in emitted.diagnostics if "`health`" in d.message)
    assert source.position(health.span.start).line == 10 and "`s`" in health.message


def test_braces_in_a_default_image_are_one_error_at_the_header():
    """No registry accepts `{{` in a reference, so Argo never sees one in an image."""
    text = 'pipeline "p" { image = "e:{{x}}" }\ndata a { }\ndata b { }\n'
    checked = check_source(text, "t.aip")
    (error,) = checked.diagnostics
    assert error.code == "E403" and text[error.span.start:error.span.end] == '"e:{{x}}"'
    assert checked.ir is None
