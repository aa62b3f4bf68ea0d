"""Templates and imports (LANGUAGE.md v1, "Templates and imports"): the contract's
program, each merge rule, chains, the errors at the right line of the right file,
and late binding, one error per failing use."""

from __future__ import annotations

import json
import re

import pytest

from aipc.backends import TARGETS, get_backend
from aipc.backends.writer import to_yaml
from aipc.compiler import check_source, schema
from aipc.compiler.schema import Type
from aipc.compiler.sources import Unreadable
from aipc.compiler.templates import MERGE_BY_TYPE, Merge, merge_items, merge_rule
from aipc.diagnostics import Source, render_human, render_json
from aipc.dsl import model as m
from aipc.dsl.parser import parse
from aipc.viz.graph import to_dot, to_mermaid
from aipc.viz.plan import plan_pipeline, to_json
from tests.dsl.test_v1_syntax import CONTRACT as CONTRACT_PROGRAMS
from tests.helpers import ROOT, plain

# LANGUAGE.md, "Templates and imports", verbatim (the syntax tests hold it).
CONTRACT = CONTRACT_PROGRAMS["templates"]
# The contract's templates mount `models`, which its fragment does not declare: a
# name a template uses is the pipeline's to declare.
CONTRACT_VOLUME = "volume models { size = 100Gi  access = rwx }\n"
GPU_LIBRARY = '''\
# H100 training, shared by the team's pipelines.
template h100_trainer: train {
  image = "ghcr.io/acme/trainer:2.1"
  resources { gpu = 4  gpu_model = "H100-80GB"  memory = 900Gi  shm = 128Gi }
  mount models at "/models"
  timeout = 12h
}
'''


def reader(files: dict[str, str]):
    """``read`` for check_source: files by path, as the checker names them."""
    def read(path: str) -> str:
        if path not in files:
            raise Unreadable(f"cannot read `{path}`: no such file", "check the path")
        return files[path]
    return read


def check(files: dict[str, str], root: str = "p.aip", params=None):
    return check_source(files[root], root, params, read=reader(files))


def ok(files: dict[str, str], root: str = "p.aip"):
    checked = check(files, root)
    assert not [d for d in checked.diagnostics if d.is_error], render(checked, files, root)
    return checked.ir


def render(checked, files: dict[str, str], root: str = "p.aip") -> str:
    return render_human(checked.diagnostics, {path: Source(path, text) for path, text in files.items()})


def found(checked, files: dict[str, str]) -> list[tuple]:
    """(code, file, line, column, the text at the span) of every diagnostic."""
    out = []
    for d in checked.diagnostics:
        source = Source(d.file, files[d.file])
        out.append((d.code, d.file, *source.position(d.span.start), files[d.file][d.span.start:d.span.end]))
    return out


def stage(pipeline, name: str):
    return pipeline.stage(name)


# ------------------------------------------------------------------ the contract


def test_the_contract_s_program_works_as_written():
    pipeline = ok({"p.aip": CONTRACT + CONTRACT_VOLUME, "lib/gpu.aip": GPU_LIBRARY})
    small, large = stage(pipeline, "small"), stage(pipeline, "large")
    assert plain(small.image) == "pytorch/pytorch:2.3.1-cuda12.1-cudnn8-runtime"
    assert plain(small.command) == ("python", "train.py", "--size", "small")
    assert (small.resources.gpu, small.resources.memory.limit, small.resources.shm) == (1, 32 * 2**30, 8 * 2**30)
    assert [(mount.volume.name, mount.path) for mount in small.mounts] == [("models", "/models")]
    # `large` from the imported template: gpu replaced, the rest kept
    assert plain(large.image) == "ghcr.io/acme/trainer:2.1"
    assert plain(large.command) == ("python", "train.py", "--size", "large")
    assert (large.resources.gpu, large.resources.gpu_model, large.resources.memory.limit) == (
        8, "H100-80GB", 900 * 2**30)
    assert large.timeout == 12 * 3600
    assert [(mount.volume.name, mount.path) for mount in large.mounts] == [("models", "/models")]


def test_the_contract_s_program_alone_names_the_volume_its_template_uses_at_the_template():
    files = {"p.aip": CONTRACT, "lib/gpu.aip": GPU_LIBRARY}
    checked = check(files)
    assert [(code, file, line) for code, file, line, *_ in found(checked, files)] == [
        ("E103", "lib/gpu.aip", 5), ("E103", "p.aip", 6)]
    library_error = checked.diagnostics[0]
    assert [(label.message, label.file) for label in library_error.related] == [("used here", "p.aip")]


# ------------------------------------------------------------------ merge rules

BASE = '''\
volume data   { size = 10Gi  access = rwx }
volume models { size = 10Gi  access = rwx }
template base: train {
  image   = "trainer:1.0"
  command = ["python", "train.py"]
  env     = { LEVEL = "info", SEED = "1" }
  labels  = { team = "ml" }
  retries = 2
  resources { cpu = 2  memory = 8Gi  gpu = 1 }
  mount data   at "/data" readonly
  mount models at "/models"
}
'''


def merged(stage_text: str) -> object:
    return stage(ok({"p.aip": BASE + stage_text}), "s")


def test_a_scalar_in_the_stage_replaces_the_template_s():
    s = merged('train s from base { image = "trainer:2.0"  retries = 0 }')
    assert (plain(s.image), s.retries) == ("trainer:2.0", 0)


def test_a_list_in_the_stage_replaces_the_template_s():
    s = merged('train s from base { command = ["python", "other.py", "--fast"] }')
    assert plain(s.command) == ("python", "other.py", "--fast")


def test_a_script_replaces_the_template_s_command_and_a_command_its_script():
    s = merged('train s from base { script = "python other.py" }')
    assert (s.command, plain(s.script)) == (None, "python other.py")
    files = {"p.aip": 'template t: data { image = "i:1"  script = "run" }\ndata s from t { command = ["go"] }\n'}
    s = stage(ok(files), "s")
    assert (plain(s.command), s.script) == (("go",), None)


def test_env_and_labels_merge_key_by_key_the_stage_winning():
    s = merged('train s from base { env = { SEED = "7", EXTRA = "x" }  labels = { tier = "gpu" } }')
    assert plain(s.env) == (("LEVEL", "info"), ("SEED", "7"), ("EXTRA", "x"))
    assert s.labels == (("team", "ml"), ("tier", "gpu"))


def test_resources_merge_key_by_key_written_as_a_block_or_a_map():
    for written in ("resources { memory = 32Gi  shm = 1Gi }", "resources = { memory = 32Gi, shm = 1Gi }"):
        s = merged(f"train s from base {{ {written} }}")
        resources = s.resources
        assert (resources.cpu.limit, resources.memory.limit, resources.gpu, resources.shm) == (
            2000, 32 * 2**30, 1, 2**30), written


def test_a_mount_is_added_and_one_at_the_same_path_replaces_the_template_s():
    s = merged('volume extra { size = 1Gi }\ntrain s from base { mount extra at "/extra"  mount models at "/models/" readonly }')
    assert [(m.volume.name, m.path, m.read_only) for m in s.mounts] == [
        ("data", "/data", True), ("models", "/models", True), ("extra", "/extra", False)]


def test_ports_merge_key_by_key_and_a_health_block_too_its_kind_of_check_replaced():
    files = {"p.aip": '''\
template api: serve {
  image = "api:1.0"
  port  = 8080
  ports = { metrics = 9090, admin = 9091 }
  health { http = "/healthz"  start = 2m  interval = 10s }
}
serve a from api { ports = { admin = 9100, debug = 9200 }  health { interval = 5s } }
serve b from api { health { tcp = true } }
'''}
    pipeline = ok(files)
    a, b = pipeline.stage("a"), pipeline.stage("b")
    assert [(p.name, p.port) for p in a.ports] == [("metrics", 9090), ("admin", 9100), ("debug", 9200)]
    assert (a.health.kind.value, plain(a.health.path), a.health.start, a.health.interval) == ("http", "/healthz", 120, 5)
    assert (b.health.kind.value, b.health.path, b.health.start, b.health.interval) == ("tcp", None, 120, 10)


def test_health_as_a_path_is_the_block_with_that_http_check_when_merged():
    files = {"p.aip": '''\
template short: serve { image = "api:1.0"  port = 8080  health = "/healthz" }
template long: serve { image = "api:1.0"  port = 8080  health { http = "/ready"  start = 30m } }
serve a from short { health { start = 2m } }
serve b from long { health = "/live" }
serve c from short { health = "/live" }
'''}
    pipeline = ok(files)
    a, b, c = (pipeline.stage(name) for name in "abc")
    assert (a.health.kind.value, plain(a.health.path), a.health.start) == ("http", "/healthz", 120)
    assert (b.health.kind.value, plain(b.health.path), b.health.start) == ("http", "/live", 1800)
    assert (plain(c.health.path), c.health.start) == ("/live", ok({"p.aip": 'serve d { image = "api:1.0"  port = 8080  '
                                                                      'health = "/live" }'}).stage("d").health.start)


def test_inside_a_merged_block_a_map_value_is_replaced_whole():
    """`schedule.node` and any map inside a block: the stage's map wins whole."""
    template = parse('template t: train { schedule { node = { a = "1", b = "2" }  queue = "q" } }', "t.aip")
    stage_ = parse('train s from t { schedule { node = { c = "3" } } }', "t.aip")
    (block,) = merge_items(template.program.declarations[0].items, stage_.program.declarations[0].items)
    node, queue = block.items
    assert [e.key for e in node.value.entries] == ["c"] and queue.name == "queue"


def test_every_attribute_block_and_statement_of_a_stage_has_a_merge_rule():
    """The rules are read from the schema: a new type must be given one here."""
    assert set(MERGE_BY_TYPE) == set(Type)
    maps = {Type.STRING_MAP, Type.PORT_MAP}  # env, labels, ports
    assert {t for t, rule in MERGE_BY_TYPE.items() if rule is Merge.KEYS} == maps
    for name, spec in schema.STAGE.items():
        expected = Merge.KEYS if spec.type in maps else Merge.REPLACE
        assert merge_rule(name) is (Merge.KEYS if name in schema.STAGE_BLOCKS else expected), name
    for name in schema.STAGE_BLOCKS:
        assert merge_rule(name) is Merge.KEYS
    for keyword in schema.STATEMENTS:
        assert merge_rule(keyword) is Merge.ADD


def test_header_template_stage_order():
    header = 'pipeline "p" { image = "header:1.0" }\n'
    files = {"p.aip": header + 'template t: data { command = ["t"] }\ntemplate u: data { image = "u:1.0" }\n'
                               'data a from t { }\ndata b from u { }\ndata c from u { image = "c:1.0" }\n'}
    pipeline = ok(files)
    assert [plain(stage(pipeline, n).image) for n in "abc"] == ["header:1.0", "u:1.0", "c:1.0"]


def test_a_chain_of_three_templates_merges_from_the_farthest():
    files = {"p.aip": '''\
template one: train { image = "one:1"  env = { A = "1", B = "1", C = "1" }  retries = 1 }
template two: train from one { env = { B = "2" }  timeout = 1h }
template three: train from two { env = { C = "3" }  retries = 3 }
train s from three { env = { D = "4" } }
'''}
    s = stage(ok(files), "s")
    assert plain(s.env) == (("A", "1"), ("B", "2"), ("C", "3"), ("D", "4"))
    assert (plain(s.image), s.retries, s.timeout) == ("one:1", 3, 3600)


def test_a_template_never_runs_by_itself():
    pipeline = ok({"p.aip": 'template t: data { image = "i:1" }\ndata a from t { }\n'})
    assert [s.name for s in pipeline.stages] == ["a"]


def test_required_attributes_may_come_from_the_template_or_be_missing_in_both():
    files = {"p.aip": 'template t: serve { image = "i:1" }\nserve a from t { port = 80 }\nserve b from t { }\n'}
    checked = check(files)
    assert [(code, text) for code, _, _, _, text in found(checked, files)] == [("E203", "b")]


# ---------------------------------------------------------------------- errors


def test_a_kind_mismatch_is_an_error_at_the_from_with_the_template_s_kind():
    files = {"p.aip": 'template api: serve { image = "i:1"  port = 80 }\ntrain t from api { }\n'
                      'template x: eval from api { }\n'}
    checked = check(files)
    assert [(code, line, text) for code, _, line, _, text in found(checked, files)] == [
        ("E151", 2, "api"), ("E151", 3, "api")]
    assert checked.diagnostics[0].message == "`api` is a template for `serve` stages, not for a `train` stage"
    assert checked.diagnostics[1].message == "`api` is a template for `serve` stages, not for an `eval` template"


def test_a_template_cycle_is_printed_as_a_path_once():
    files = {"p.aip": 'template a: data from b { }\ntemplate b: data from c { }\ntemplate c: data from a { }\n'
                      'data s from a { image = "i:1" }\n'}
    checked = check(files)
    (diagnostic,) = checked.diagnostics
    assert (diagnostic.code, diagnostic.message) == ("E152", "template cycle: a -> b -> c -> a")
    assert len(diagnostic.related) == 2


def test_an_unknown_template_suggests_a_close_one():
    files = {"p.aip": 'import "lib/gpu.aip" as gpu\ntemplate trainer: train { image = "i:1" }\n'
                      'train a from trainr { }\ntrain b from gpu.h100_trainr { }\ntrain c from gpux.h100_trainer { }\n'
                      'train d from gpu { }\n',
             "lib/gpu.aip": GPU_LIBRARY}
    checked = check(files)
    assert [(d.code, d.help) for d in checked.diagnostics] == [
        ("E150", "did you mean `trainer`?"), ("E150", "did you mean `h100_trainer`?"),
        ("E150", "did you mean `gpu`?"), ("E150", "name one of its templates: `gpu.h100_trainer`")]


def test_an_import_cycle_of_three_files_is_an_error_at_the_import_that_closes_it():
    files = {"p.aip": 'import "lib/a.aip"\n', "lib/a.aip": 'import "b.aip"\n', "lib/b.aip": 'import "c.aip"\n',
             "lib/c.aip": 'import "a.aip"\n'}
    checked = check(files)
    assert [(code, file, line, text) for code, file, line, _, text in found(checked, files)] == [
        ("E154", "lib/c.aip", 1, '"a.aip"')]
    assert checked.diagnostics[0].message == "import cycle: lib/a.aip -> lib/b.aip -> lib/c.aip -> lib/a.aip"
    assert [label.file for label in checked.diagnostics[0].related] == ["lib/a.aip", "lib/b.aip"]


def test_an_import_of_the_importing_file_is_a_cycle():
    files = {"p.aip": 'import "p.aip" as me\n'}
    assert [d.code for d in check(files).diagnostics] == ["E154"]


def test_a_missing_file_is_an_error_at_the_import_naming_the_path_looked_for():
    files = {"pipelines/p.aip": 'import "../lib/gpu.aip" as gpu\ntrain a from gpu.h100_trainer { }\n'}
    checked = check(files, "pipelines/p.aip")
    assert [(code, line, text) for code, _, line, _, text in found(checked, files)] == [("E153", 1, '"../lib/gpu.aip"')]
    assert checked.diagnostics[0].message == "cannot read `lib/gpu.aip`: no such file"


def test_a_library_with_a_stage_in_it_is_an_error_at_the_import():
    files = {"p.aip": 'import "lib/x.aip" as x\ntrain a from x.t { }\n',
             "lib/x.aip": 'template t: train { image = "i:1" }\nparam n: int = 1\ntrain smoke from t { }\n'}
    checked = check(files)
    (diagnostic,) = checked.diagnostics
    assert (diagnostic.code, diagnostic.file, diagnostic.message) == (
        "E155", "p.aip", "`lib/x.aip` declares the parameter `n` and 1 more declaration: "
        "an imported file holds templates and imports only")
    assert [(label.file, label.message) for label in diagnostic.related] == [
        ("lib/x.aip", "not a template"), ("lib/x.aip", "not a template")]


def test_a_library_s_syntax_errors_and_duplicates_name_the_library():
    files = {"p.aip": 'import "lib/x.aip" as x\n',
             "lib/x.aip": 'template t: train { image = }\ntemplate u: train { }\ntemplate u: train { }\n'}
    checked = check(files)
    assert [(code, file, line) for code, file, line, *_ in found(checked, files)] == [
        ("E002", "lib/x.aip", 1), ("E101", "lib/x.aip", 3)]


def test_imports_are_relative_to_the_importing_file_and_read_once():
    read = []
    files = {"p/p.aip": 'import "../lib/a.aip" as a\nimport "../lib/b.aip" as b\ntrain s from b.t { }\n',
             "lib/a.aip": 'import "shared/base.aip" as base\n',
             "lib/b.aip": 'import "shared/base.aip" as base\ntemplate t: train from base.t { command = ["b"] }\n',
             "lib/shared/base.aip": 'template t: train { image = "base:1.0" }\n'}
    plain_read = reader(files)

    def counting(path: str) -> str:
        read.append(path)
        return plain_read(path)

    checked = check_source(files["p/p.aip"], "p/p.aip", read=counting)
    assert checked.ir is not None and plain(checked.ir.stage("s").image) == "base:1.0"
    assert read == ["lib/a.aip", "lib/shared/base.aip", "lib/b.aip"]
    assert [(f.path, f.via) for f in checked.imported] == [
        ("lib/a.aip", parse(files["p/p.aip"], "p").program.declarations[0].span),
        ("lib/shared/base.aip", parse(files["p/p.aip"], "p").program.declarations[0].span),
        ("lib/b.aip", parse(files["p/p.aip"], "p").program.declarations[1].span)]


# ----------------------------------------------------------------- late binding

LIBRARY = '''\
template trainer: train {
  image   = "ghcr.io/acme/trainer:2.1"
  command = ["python", "train.py", "--epochs", "${epochs}"]
  mount models at "/models"
}
'''


def test_a_name_resolves_where_each_stage_is_declared_one_error_per_failing_use():
    with_param = {"a.aip": 'import "lib/ml.aip" as ml\nparam epochs: int = 3\nvolume models { size = 1Gi }\n'
                           'train one from ml.trainer { }\n', "lib/ml.aip": LIBRARY}
    pipeline = ok(with_param, "a.aip")
    assert plain(pipeline.stage("one").command)[-1] == "3"
    without = {"b.aip": 'import "lib/ml.aip" as ml\nvolume models { size = 1Gi  access = rwx }\n'
                        'train one from ml.trainer { }\n'
                        'train two from ml.trainer { }\n'
                        'train three from ml.trainer { command = ["python", "train.py"] }\n', "lib/ml.aip": LIBRARY}
    checked = check(without, "b.aip")
    assert [(code, file, line, text) for code, file, line, _, text in found(checked, without)] == [
        ("E105", "lib/ml.aip", 3, "${epochs}"), ("E105", "lib/ml.aip", 3, "${epochs}")]
    uses = [[(label.file, Source("b", without["b.aip"]).position(label.span.start).line, label.message)
             for label in d.related] for d in checked.diagnostics]
    assert uses == [[("b.aip", 3, "used here")], [("b.aip", 4, "used here")]]


def test_a_template_s_own_error_is_reported_once_at_the_template_however_often_it_is_used():
    files = {"p.aip": 'template t: train { image = "i:1"  retries = "many" }\n'
                      'train a from t { }\ntrain b from t { }\n'}
    checked = check(files)
    assert [(d.code, d.related) for d in checked.diagnostics] == [("E202", ())]
    assert checked.ir is None


def test_a_library_checked_alone_reports_only_what_no_user_can_fix():
    library = LIBRARY + 'template broken: serve { image = "i:1"  retries = 2  replicas = "x" }\n'
    checked = check({"lib/ml.aip": library}, "lib/ml.aip")
    assert [(d.code, d.file) for d in checked.diagnostics] == [("E107", "lib/ml.aip"), ("E202", "lib/ml.aip")]
    assert check({"lib/ml.aip": LIBRARY}, "lib/ml.aip").diagnostics == []


def test_diagnostics_name_the_imported_file_in_human_and_json_output():
    files = {"p.aip": 'import "lib/ml.aip" as ml\nvolume models { size = 1Gi }\ntrain one from ml.trainer { }\n',
             "lib/ml.aip": LIBRARY}
    checked = check(files)
    sources = {path: Source(path, text) for path, text in files.items()}
    (item,) = json.loads(render_json(checked.diagnostics, sources))
    assert (item["file"], item["line"], item["column"]) == ("lib/ml.aip", 3, 49)
    assert item["related"] == [{"message": "used here", "file": "p.aip", "line": 3, "column": 16,
                                "end_line": 3, "end_column": 26}]
    human = render_human(checked.diagnostics, sources)
    assert " --> lib/ml.aip:3:49\n" in human and " ::: p.aip:3:16\n" in human


def test_a_backend_warning_about_a_template_s_attribute_names_the_library():
    files = {"p.aip": 'import "lib/gpu.aip" as gpu\nvolume models { size = 1Gi }\ntrain one from gpu.h100_trainer { }\n',
             "lib/gpu.aip": GPU_LIBRARY}
    emitted = get_backend("compose").emit(ok(files))
    located = {(d.code, d.file, Source(d.file, files[d.file]).position(d.span.start).line) for d in emitted.diagnostics}
    assert located == {("B101", "lib/gpu.aip", 4), ("B101", "lib/gpu.aip", 6)}  # gpu_model, timeout


# ------------------------------------------------------ the same output by hand

HAND_WRITTEN = '''\
volume models { size = 100Gi  access = rwx }
train small {
  image = "pytorch/pytorch:2.3.1-cuda12.1-cudnn8-runtime"
  resources { gpu = 1  memory = 32Gi  shm = 8Gi }
  mount models at "/models"
  command = ["python", "train.py", "--size", "small"]
}
train large {
  image = "ghcr.io/acme/trainer:2.1"
  resources { gpu = 8  gpu_model = "H100-80GB"  memory = 900Gi  shm = 128Gi }
  mount models at "/models"
  timeout = 12h
  command = ["python", "train.py", "--size", "large"]
}
'''


@pytest.mark.parametrize("target", list(TARGETS))
def test_the_contract_s_program_compiles_as_its_hand_written_twin(target):
    backend = get_backend(target)
    with_templates = ok({"p.aip": CONTRACT + CONTRACT_VOLUME, "lib/gpu.aip": GPU_LIBRARY})
    by_hand = ok({"p.aip": HAND_WRITTEN})
    assert to_yaml(backend.emit(with_templates).documents) == to_yaml(backend.emit(by_hand).documents)


def test_plan_and_graph_are_the_same_with_or_without_templates():
    with_templates = ok({"p.aip": CONTRACT + CONTRACT_VOLUME, "lib/gpu.aip": GPU_LIBRARY})
    by_hand = ok({"p.aip": HAND_WRITTEN})
    assert to_json(plan_pipeline(with_templates)) == to_json(plan_pipeline(by_hand))
    assert to_dot(with_templates) == to_dot(by_hand)
    assert to_mermaid(with_templates) == to_mermaid(by_hand)


def test_a_program_without_templates_is_not_copied():
    parsed = parse(HAND_WRITTEN, "p.aip")
    from aipc.compiler.templates import expand
    from aipc.diagnostics import Diagnostics

    assert expand(parsed.program, Diagnostics("p.aip")).program is parsed.program


def test_a_stage_keeps_the_spans_of_what_it_took_from_its_template():
    files = {"p.aip": 'template t: data { image = "i:1"  retries = 1 }\ndata a from t { timeout = 1m }\n'}
    pipeline = ok(files)
    spans = dict(pipeline.stage("a").spans)
    text = files["p.aip"]
    assert text[spans["retries"].start:spans["retries"].end] == "retries = 1"
    assert text[spans["timeout"].start:spans["timeout"].end] == "timeout = 1m"
    assert isinstance(parse(text, "p.aip").program.declarations[0], m.TemplateDecl)


def test_the_language_page_s_templates_program_checks_with_the_examples_library():
    (program,) = [p for p in re.findall(r"```aip\n(.*?)```", (ROOT / "docs" / "LANGUAGE.md").read_text(), re.S)
                  if "template trainer" in p]
    library = (ROOT / "examples" / "lib" / "ml.aip").read_text()
    pipeline = ok({"p.aip": program, "lib/ml.aip": library})
    large = pipeline.stage("large")
    assert (large.resources.gpu, large.resources.memory.limit, large.resources.shm) == (8, 32 * 2**30, 8 * 2**30)
    api = pipeline.stage("api")
    assert (api.port, plain(api.health.path), [m.path for m in api.mounts]) == (8080, "/healthz", ["/models"])


@pytest.mark.parametrize("path", ["a\x00b.aip", "\ud800.aip", "lib/${v}.aip", "lib/ml.txt", "/", ".aip"])
def test_an_import_path_that_names_no_aip_file_is_an_error_at_it(path):
    text = f'import "{path}" as lib\n'
    checked = check_source(text, "p.aip", read=reader({}))
    assert [(d.code, d.span.start) for d in checked.diagnostics] == [("E156", text.index('"'))]


def test_an_import_is_read_as_a_regular_file_only(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.aip")  # reading it would wait for a writer forever
    (tmp_path / "folder.aip").mkdir()
    text = 'import "pipe.aip" as a\nimport "folder.aip" as b\n'
    checked = check_source(text, str(tmp_path / "p.aip"))
    assert [d.message.split(": ", 1)[1] for d in checked.diagnostics] == ["it is not a regular file",
                                                                           "it is a directory"]


# ------------------------------------------------- matrix stages from templates

# A template holds a matrix and uses its axes; the stage adds an axis to it (a block
# merges key by key) and `max_parallel`; a second stage copies the first's matrix.
SWEEP_LIBRARY = '''\
template sweep: train {
  image   = "trainer:1.0"
  matrix  { lr = [1e-4, 3e-4] }
  command = ["python", "train.py", "--lr", "${matrix.lr}", "--seed", "${matrix.seed}"]
  resources { gpu = 1  memory = 8Gi }
}
'''
SWEEP = '''\
import "lib/sweeps.aip" as sweeps
train model from sweeps.sweep {
  matrix       { seed = [1, 2] }
  exclude      = [{ lr = 1e-4, seed = 2 }]
  max_parallel = 2
}
train score from sweeps.sweep {
  matrix    = model
  after     = [model]
  resources { gpu = 2 }
}
'''
SWEEP_BY_HAND = '''\
train model {
  image        = "trainer:1.0"
  matrix       { lr = [1e-4, 3e-4]  seed = [1, 2] }
  command      = ["python", "train.py", "--lr", "${matrix.lr}", "--seed", "${matrix.seed}"]
  resources    { gpu = 1  memory = 8Gi }
  exclude      = [{ lr = 1e-4, seed = 2 }]
  max_parallel = 2
}
train score {
  image     = "trainer:1.0"
  matrix    = model
  command   = ["python", "train.py", "--lr", "${matrix.lr}", "--seed", "${matrix.seed}"]
  resources { gpu = 2  memory = 8Gi }
  after     = [model]
}
'''


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_matrix_stage_from_a_template_compiles_as_its_hand_written_twin(target):
    """Templates are merged before the matrix is unrolled: the stage's axis joins the
    template's, and every instance sees both."""
    with_templates = ok({"p.aip": SWEEP, "lib/sweeps.aip": SWEEP_LIBRARY})
    by_hand = ok({"p.aip": SWEEP_BY_HAND})
    assert [s.name for s in with_templates.stages] == [
        "model-1e-4-1", "model-3e-4-1", "model-3e-4-2", "score-1e-4-1", "score-3e-4-1", "score-3e-4-2"]
    backend = get_backend(target)
    assert to_yaml(backend.emit(with_templates).documents) == to_yaml(backend.emit(by_hand).documents)
    assert to_json(plan_pipeline(with_templates)) == to_json(plan_pipeline(by_hand))
    assert to_dot(with_templates) == to_dot(by_hand)


def test_a_matrix_problem_in_a_template_s_text_is_reported_there_per_failing_use():
    """An axis or a `matrix = STAGE` a template names resolves where each stage that
    uses it is declared; what is wrong whoever uses it is reported once."""
    files = {"p.aip": '''\
template t: train {
  image   = "i:1"
  matrix  { lr = [1e-4, 3e-4] }
  command = ["x", "${matrix.seed}"]
}
train a from t { }
train b from t { matrix { seed = [1] } }
template u: train { image = "i:1"  matrix = base }
train c from u { }
template v: train { image = "i:1"  matrix { x = [1, 1] } }
train d from v { }
train e from v { }
'''}
    checked = check(files)
    lines = Source("p.aip", files["p.aip"])
    assert [(code, line, text, [lines.position(label.span.start).line for label in d.related])
            for (code, _, line, _, text), d in zip(found(checked, files), checked.diagnostics)] == [
        ("E130", 4, "${matrix.seed}", [6]),  # only `a` has no axis `seed`
        ("E102", 8, "base", [9]),
        ("E240", 10, "1", [10]),  # the value listed twice, and where first; not once per use
    ]


def test_a_library_alone_may_use_axes_its_users_declare():
    files = {"lib.aip": 'template t: train { image = "i:1"  command = ["x", "${matrix.lr}"] }\n'
                        'template u: train { image = "i:1"  matrix = base }\n'}
    assert check(files, "lib.aip").diagnostics == []
