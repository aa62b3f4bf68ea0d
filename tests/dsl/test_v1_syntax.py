"""The v1 surface syntax: dotted references, `import`, `template`, `KIND NAME from
BASE`, `output` and `input` statements. The programs of LANGUAGE.md's v1 section
parse as written on both parser paths, to the same model, and format to a fixed
point; each new form is a model node with spans; the obvious mistakes get words."""

from __future__ import annotations

import pytest

from aipc.compiler.check import check_source
from aipc.diagnostics import Source
from aipc.dsl import model as m
from aipc.dsl.format import SYNTAX_CODES, format_text, without_spans
from aipc.dsl.parser import parse
from tests.hostile.test_fast_paths import both_parses, nodes

# LANGUAGE.md, "v1 — what the language adds": each program verbatim.
CONTRACT = {
    "images": '''\
pipeline "serving" {
  namespace    = "llm"
  pull_secrets = ["regcred"]           # imagePullSecrets on Kubernetes and Argo
  security     { user = 1000 }         # default for every stage; stages merge over it
}

secret hf { keys = ["token"] }

serve vllm {
  image  = "vllm/vllm-openai:v0.6.3"
  args   = ["--model", "meta-llama/Meta-Llama-3-8B", "--port", "8000"]
  env    = { HUGGING_FACE_HUB_TOKEN = hf.token }     # one key of a secret, renamed
  port   = 8000
  expose = 80                          # Service port on Kubernetes, host port on compose
  ports  = { metrics = 9090 }          # more named ports
  health { http = "/health"  start = 20m  interval = 10s  timeout = 5s  failures = 3 }
  security { user = root  read_only = false }
  pull   = always                      # always | if_missing | never
  resources { gpu = 1  memory = 24Gi  shm = 8Gi }
}

data postgres_ready {
  image = "postgres:16"
  after = [db]                         # a batch stage after a serve stage: starts once `db` is healthy
  command = ["psql", "-h", "${db.host}", "-p", "${db.port}", "-c", "select 1"]
}

serve db {
  image = "postgres:16"
  port  = 5432
  health { command = ["pg_isready", "-U", "postgres"] }
  security { user = root  read_only = false  capabilities = ["CHOWN", "SETUID", "SETGID", "FOWNER", "DAC_OVERRIDE"] }
}
''',
    "scheduling": '''\
pipeline "pretrain" {
  schedule { queue = "team-a"  priority = "batch-high" }     # defaults for every stage
}
train big {
  image = "ghcr.io/acme/trainer:2.1"
  resources { gpu = 8  gpu_model = "H100-80GB"  memory = 900Gi  shm = 128Gi }
  schedule {
    node     = { "cloud.google.com/gke-spot" = "true" }   # node labels that must match
    tolerate = ["ondemand", "spot=true:NoSchedule"]       # KEY, KEY=VALUE, KEY:EFFECT, KEY=VALUE:EFFECT
  }
}
serve api {
  image    = "ghcr.io/acme/api:2.1"
  port     = 8080
  replicas = 2..10                        # a range: autoscaled between 2 and 10
  autoscale { cpu = 70 }                  # target average CPU use, percent; or { metric = "NAME"  target = N }
}
''',
    "multinode": '''\
train pretrain {
  image   = "ghcr.io/acme/trainer:2.1"
  nodes   = 4                           # 4 pods, each with the resources below
  command = ["torchrun", "train.py"]
  resources { gpu = 8  memory = 900Gi  shm = 128Gi }
  retries = 2                           # the whole group restarts
}
''',
    "templates": '''\
import "lib/gpu.aip" as gpu            # a file of templates; `as` defaults to the file's stem

template trainer: train {              # any attributes of a `train` stage; never runs by itself
  image = "pytorch/pytorch:2.3.1-cuda12.1-cudnn8-runtime"
  resources { gpu = 1  memory = 32Gi  shm = 8Gi }
  mount models at "/models"
}

train small from trainer { command = ["python", "train.py", "--size", "small"] }
train large from gpu.h100_trainer {
  command = ["python", "train.py", "--size", "large"]
  resources { gpu = 8 }                # merged: gpu replaced, the rest kept
}
''',
    "sweeps": '''\
train model {
  image   = "ghcr.io/acme/trainer:2.1"
  matrix  { lr = [1e-4, 3e-4]  seed = [1, 2, 3] }
  exclude = [{ lr = 1e-4, seed = 3 }]
  max_parallel = 2
  command = ["python", "train.py", "--lr", "${matrix.lr}", "--seed", "${matrix.seed}"]
  resources { gpu = 1 }
}
eval score {                           # one instance per `model` instance, paired by coordinates
  image  = "ghcr.io/acme/trainer:2.1"
  matrix = model
  after  = [model]
  command = ["python", "eval.py", "--lr", "${matrix.lr}", "--seed", "${matrix.seed}"]
}
eval pick_best {                       # no matrix: waits for every instance of `score`
  image = "ghcr.io/acme/trainer:2.1"
  after = [score]
}
''',
    "artifacts": '''\
pipeline "churn" {
  artifacts { size = 100Gi  class = "standard-rwx"  access = rwx }   # where outputs live on Kubernetes and Argo
}
train model {
  image = "ghcr.io/acme/trainer:2.1"
  output model   at "/out/model"
  output metrics at "/out/metrics"
}
eval evaluate {
  image = "ghcr.io/acme/trainer:2.1"
  input model.model   at "/in/model"           # read-only; implies after = [model]
  input model.metrics at "/in/metrics"
}
''',
    # "v1 — settled details": a template built on another
    "template_from_template": '''\
template base: train { image = "pytorch/pytorch:2.3.1-cuda12.1-cudnn8-runtime" }
template trainer: train from base { resources { gpu = 1 } }
''',
}


def syntax_errors(text: str) -> list[str]:
    return [f"{d.code} {d.message}" for d in parse(text, "t.aip").diagnostics if d.code in SYNTAX_CODES]


@pytest.mark.parametrize("name", CONTRACT)
def test_the_contract_s_v1_programs_parse_alike_on_both_paths_and_format_to_a_fixed_point(name):
    text = CONTRACT[name]
    assert syntax_errors(text) == []
    (lark_model, lark_problems), (fast_model, fast_problems) = both_parses(text)
    assert fast_model is not None and fast_model == lark_model and repr(fast_model) == repr(lark_model)
    assert fast_problems == lark_problems == []
    formatted = format_text(text, "t.aip").text
    assert formatted is not None
    assert without_spans(parse(formatted, "t.aip").program) == without_spans(parse(text, "t.aip").program)
    assert format_text(formatted, "t.aip").text == formatted
    # the checker reads them without a syntax error or a traceback
    assert not [d for d in check_source(text, "t.aip").diagnostics if d.code in SYNTAX_CODES]


def test_the_new_nodes_are_built_as_pydantic_builds_them():
    program = parse("\n".join(CONTRACT.values()), "t.aip").program
    kinds = set()
    for node in nodes(program):
        kinds.add(type(node))
        reference = type(node).model_construct(**node.__dict__)
        assert list(node.__dict__) == list(type(node).model_fields)  # every field, in order
        assert node == reference and repr(node) == repr(reference)
        assert node.model_dump() == reference.model_dump()
    assert {m.Reference, m.ImportDecl, m.TemplateDecl, m.Output, m.Input} <= kinds


def declarations(text: str):
    parsed = parse(text, "t.aip")
    assert syntax_errors(text) == []
    return parsed.program.declarations


def spanned(text: str, node) -> str:
    return text[node.span.start:node.span.end]


def test_a_dotted_value_is_a_reference_with_a_span_per_part():
    text = 'data a { env = { T = hf.token, R = lo..hi, N = 3.5, W = hf } }'
    (stage,) = declarations(text)
    env = {entry.key: entry.value for entry in stage.items[0].value.entries}
    reference = env["T"]
    assert isinstance(reference, m.Reference) and reference.dotted == "hf.token"
    assert [(p.value, spanned(text, p)) for p in reference.parts] == [("hf", "hf"), ("token", "token")]
    assert spanned(text, reference) == "hf.token"
    # a range of words and a number lex as before; a bare name stays a word
    assert isinstance(env["R"], m.RangeValue) and (env["R"].low.value, env["R"].high.value) == ("lo", "hi")
    assert isinstance(env["N"], m.Number) and env["N"].value == 3.5
    assert isinstance(env["W"], m.Word)


def test_import_template_from_output_and_input_are_nodes_with_spans():
    text = CONTRACT["templates"] + 'import "lib/cpu.aip"\n' + CONTRACT["artifacts"]
    found = declarations(text)
    first, second = [d for d in found if isinstance(d, m.ImportDecl)]
    assert first.path.literal == "lib/gpu.aip" and first.alias.value == "gpu" and spanned(text, first.alias) == "gpu"
    assert spanned(text, first) == 'import "lib/gpu.aip" as gpu'
    assert second.alias is None and spanned(text, second) == 'import "lib/cpu.aip"'
    (template,) = [d for d in found if isinstance(d, m.TemplateDecl)]
    assert (template.name.value, template.kind, spanned(text, template)[:25]) == (
        "trainer", "train", "template trainer: train {")
    assert text[template.kind_span.start:template.kind_span.end] == "train" and template.base is None
    assert {type(item) for item in template.items} == {m.Attribute, m.Block, m.Mount}  # a stage body
    stages = {d.name.value: d for d in found if isinstance(d, m.StageDecl)}
    assert stages["small"].base.dotted == "trainer" and len(stages["small"].base.parts) == 1
    assert stages["large"].base.dotted == "gpu.h100_trainer"
    assert text[stages["large"].from_span.start:stages["large"].from_span.end] == "from"
    assert stages["model"].base is None and stages["model"].from_span is None
    outputs = [item for item in stages["model"].items if isinstance(item, m.Output)]
    assert [(o.name.value, o.path.literal, spanned(text, o)) for o in outputs] == [
        ("model", "/out/model", 'output model   at "/out/model"'),
        ("metrics", "/out/metrics", 'output metrics at "/out/metrics"')]
    inputs = [item for item in stages["evaluate"].items if isinstance(item, m.Input)]
    assert [(i.source.dotted, i.path.literal, spanned(text, i.source)) for i in inputs] == [
        ("model.model", "/in/model", "model.model"), ("model.metrics", "/in/metrics", "model.metrics")]


def test_the_new_keywords_are_soft():
    """A stage may still be called `from`, `input`, `output`, `template`, `import` or `as`."""
    words = ["from", "input", "output", "template", "import", "as"]
    text = "\n".join(f'data {word} {{ image = "i:1"  after = [{word}] }}' for word in words)
    text += '\ntrain t from from { labels = { import = "x" } }\nvolume as { size = 1Gi }\n'
    text += 'data m { mount as at "/as"  output template at "/o"  input from.import at "/i" }\n'
    found = declarations(text)
    assert [d.name.value for d in found[:6]] == words
    assert found[6].base.dotted == "from" and found[6].items[0].value.entries[0].key == "import"
    assert found[7].name.value == "as"
    mount, output, source = found[8].items
    assert (mount.volume.value, output.name.value, source.source.dotted) == ("as", "template", "from.import")


def test_the_new_forms_format_canonically():
    text = '''\
import   "lib/gpu.aip"   as   gpu
import "lib/cpu.aip"
template   trainer : train   from gpu . base {
  image="i:1"
  mount models at "/models"
  output model at "/out/model"
  input prep.features at "/in"   # a comment
}
train small   from   trainer { env = { T = hf . token } }
'''
    assert format_text(text, "t.aip").text == '''\
import "lib/gpu.aip" as gpu
import "lib/cpu.aip"

template trainer: train from gpu.base {
  image = "i:1"
  mount models        at "/models"
  output model        at "/out/model"
  input prep.features at "/in"  # a comment
}

train small from trainer { env = { T = hf.token } }
'''


def first_error(text: str):
    diagnostics = [d for d in parse(text, "t.aip").diagnostics if d.code in SYNTAX_CODES]
    assert diagnostics, text
    position = Source("t.aip", text).position(diagnostics[0].span.start)
    return diagnostics, position


@pytest.mark.parametrize("text, where, help", [
    ('data a { env = { T = hf.token.x } }', (1, 30), "a reference has two parts, `NAME.NAME`"),
    ('data a from a.b.c { }', (1, 16), "a reference has two parts, `NAME.NAME`"),
    ('data a { image = "i:1" }\ndata b { command = hf. }', (2, 24), None),
    ('template t { }', (1, 12), "a template names the kind of stage it is for: `template trainer: train { ... }`"),
    ('import gpu as g', (1, 8), 'the path is a string: `import "lib/gpu.aip" as gpu`'),
    ('data a { output o at "/o" readonly }', (1, 27), "an output is the directory its stage writes"),
    ('data a { input b.o at "/i" readonly }', (1, 28), "an input is always mounted read-only"),
    ('data a { output o.p at "/o" }', (1, 18), "`.` joins the two parts of a reference"),
])
def test_the_obvious_mistakes_get_words(text, where, help):
    diagnostics, position = first_error(text)
    assert position == where
    if help is not None:
        assert diagnostics[0].help.startswith(help), diagnostics[0].help
    assert len(diagnostics) == 1, [d.message for d in diagnostics]  # one mistake, one error


def test_a_third_part_is_dropped_with_its_dot_and_the_rest_is_read():
    text = 'data a {\n  image = "i:1"\n  env = { T = hf.token.x }\n  retries = 2\n  resources { gpu = -1 }\n}\n'
    codes = [d.code for d in check_source(text, "t.aip").diagnostics]
    assert codes == ["E104", "E002", "E208"]  # `hf` is no secret here, the third part, and the gpu after it
