"""The lexical rules of LANGUAGE.md, one by one."""

from __future__ import annotations

import pytest

from aipc.compiler import check_source
from aipc.dsl import model as m
from aipc.dsl.parser import parse
from tests.helpers import codes_of, compile_ok, plain


def only_stage(text: str):
    return compile_ok(text).stages[0]


def test_comments_with_hash_and_slashes():
    stage = only_stage('''
# a comment
// another
data ingest {  # trailing
  image = "etl:1.0"  // trailing too
  command = ["echo", "# not a comment", "// nor this"]
}
''')
    assert plain(stage.command) == ("echo", "# not a comment", "// nor this")


def test_identifier_length_limit():
    assert codes_of(f'data {"a" * 40} {{ image = "etl:1.0" }}') == []
    assert codes_of(f'data {"a" * 41} {{ image = "etl:1.0" }}') == ["E007"]


@pytest.mark.parametrize("name, code", [("Ingest", "E007"), ("_x", "E007"), ("in-gest", "E007")])
def test_identifiers_are_lowercase_words(name, code):
    assert codes_of(f'data {name} {{ image = "etl:1.0" }}') == [code]


def test_keywords_are_not_reserved_where_a_name_is_expected():
    pipeline = compile_ok('''
volume data { size = 1Gi }
data data { image = "etl:1.0"  mount data at "/data" }
train serve { image = "t:1.0"  after = [data] }
serve mount { image = "api:1.0"  port = 80  after = [serve] }
''')
    assert [s.name for s in pipeline.stages] == ["data", "serve", "mount"]
    assert pipeline.stage("serve").after == ("data",)


def test_map_keys_bare_or_quoted():
    stage = only_stage('''
data ingest {
  image  = "etl:1.0"
  labels = { LOG_LEVEL = "info", "app.kubernetes.io/tier" = "ml" }
}
''')
    assert dict(stage.labels) == {"LOG_LEVEL": "info", "app.kubernetes.io/tier": "ml"}


def test_enumerated_values_bare_or_quoted():
    pipeline = compile_ok('volume a { size = 1Gi  access = rwx }\nvolume b { size = 1Gi  access = "rox" }')
    assert [v.access.value for v in pipeline.volumes] == ["rwx", "rox"]


def test_one_line_block_from_the_language_page():
    stage = only_stage('volume lake { size = 1Ti }\n'
                       'data users { image = "etl:1.0" command = ["etl", "users"] mount lake at "/lake" }')
    assert plain(stage.command) == ("etl", "users")
    assert stage.mounts[0].path == "/lake"


def test_lists_and_maps_span_lines_with_trailing_commas():
    stage = only_stage('''
data ingest {
  image   = "etl:1.0"
  command = [
    "etl",
    "--all",
  ]
  env = {
    A = "1",
    B = "2",
  }
}
''')
    assert plain(stage.command) == ("etl", "--all")
    assert plain(stage.env) == (("A", "1"), ("B", "2"))


def test_string_escapes():
    stage = only_stage(r'data s { image = "etl:1.0"  command = ["a\"b", "c\\d", "e\nf", "g\th"] }')
    assert plain(stage.command) == ('a"b', "c\\d", "e\nf", "g\th")


def test_triple_quoted_strings_lose_common_indentation():
    stage = only_stage('''
data s {
  image  = "etl:1.0"
  script = """
    set -eu
    if true; then
      echo "indented"
    fi
  """
}
''')
    assert plain(stage.script) == 'set -eu\nif true; then\n  echo "indented"\nfi\n'


def test_triple_quoted_strings_keep_backslashes():
    stage = only_stage('data s {\n  image = "e:1"\n  script = """\n    python x.py \\\n      --flag\n  """\n}\n')
    assert plain(stage.script) == "python x.py \\\n  --flag\n"


def test_interpolation_and_literal_dollar_brace():
    pipeline = compile_ok('''
pipeline "demo" { }
param day: string = "2024-12-22"
data ingest {
  image   = "etl:1.0"
  command = ["etl", "--day=${day}", "--tag=${pipeline.name}/${stage.name}", "$${HOME}"]
}
''')
    assert plain(pipeline.stages[0].command) == ("etl", "--day=2024-12-22", "--tag=demo/ingest", "${HOME}")


def test_interpolation_in_triple_quoted_script_and_shell_variables():
    stage = only_stage('''
param n: int = 3
data s {
  image  = "etl:1.0"
  script = """
    for i in $(seq ${n}); do echo "$${HOSTNAME} $i"; done
  """
}
''')
    assert plain(stage.script) == 'for i in $(seq 3); do echo "${HOSTNAME} $i"; done\n'


@pytest.mark.parametrize("text, value, unit", [
    ("42", 42, None), ("-1", -1, None), ("3.5", 3.5, None), ("3e-4", 3e-4, None),
    ("200Gi", 200, "Gi"), ("500m", 500, "m"), ("1h30m", 1, "h30m"),
])
def test_numbers_and_quantities(text, value, unit):
    program = parse(f"param x = {text}", "t.aip").program
    number = program.declarations[0].default
    assert isinstance(number, m.Number)
    assert (number.value, number.unit, number.text) == (value, unit, text)


def test_booleans():
    pipeline = compile_ok("param on: bool = true\nparam off: bool = false")
    assert [p.value for p in pipeline.params] == [False, True]  # sorted by name: off, on


def test_the_attribute_decides_the_unit():
    stage = only_stage('train t { image = "t:1"  timeout = 500m  resources { cpu = 500m } }')
    assert stage.timeout == 500 * 60
    assert stage.resources.cpu.request == 500


@pytest.mark.parametrize("memory, expected", [
    ("1Ki", 1024), ("1Mi", 2**20), ("16Gi", 16 * 2**30), ("1Ti", 2**40), ("1Pi", 2**50),
    ("1k", 1000), ("2M", 2 * 10**6), ("3G", 3 * 10**9), ("1T", 10**12), ("1P", 10**15),
    ("1.5Gi", 1610612736),
])
def test_byte_units(memory, expected):
    stage = only_stage(f'train t {{ image = "t:1"  resources {{ memory = {memory} }} }}')
    assert stage.resources.memory.request == expected


@pytest.mark.parametrize("cpu, millicores", [("2", 2000), ("0.5", 500), ("500m", 500), ("1.25", 1250)])
def test_cpu_units(cpu, millicores):
    stage = only_stage(f'train t {{ image = "t:1"  resources {{ cpu = {cpu} }} }}')
    assert stage.resources.cpu.request == stage.resources.cpu.limit == millicores


@pytest.mark.parametrize("timeout, seconds", [("30s", 30), ("45m", 2700), ("12h", 43200), ("2d", 172800),
                                              ("1h30m", 5400), ("1d2h3m4s", 93784)])
def test_duration_units(timeout, seconds):
    assert only_stage(f'train t {{ image = "t:1"  timeout = {timeout} }}').timeout == seconds


def test_ranges_are_request_and_limit():
    stage = only_stage('train t { image = "t:1"  resources { cpu = 1..4  memory = 8Gi..16Gi } }')
    assert (stage.resources.cpu.request, stage.resources.cpu.limit) == (1000, 4000)
    assert (stage.resources.memory.request, stage.resources.memory.limit) == (8 * 2**30, 16 * 2**30)


def test_values_from_parameters_after_overrides():
    text = '''
param gpus: int = 2
param mem: string = "16Gi"
param deadline: duration = 2h
train t {
  image   = "t:1"
  timeout = "${deadline}"
  resources { gpu = "${gpus}"  memory = "${mem}" }
}
'''
    stage = compile_ok(text).stages[0]
    assert (stage.resources.gpu, stage.resources.memory.request, stage.timeout) == (2, 16 * 2**30, 7200)
    stage = compile_ok(text, {"gpus": "4", "mem": "8Gi", "deadline": "30m"}).stages[0]
    assert (stage.resources.gpu, stage.resources.memory.request, stage.timeout) == (4, 8 * 2**30, 1800)


def test_a_parameter_value_that_does_not_fit_points_at_the_use():
    text = 'param gpus: string = "lots"\ntrain t { image = "t:1"  resources { gpu = "${gpus}" } }'
    (diagnostic,) = check_source(text, "t.aip").diagnostics
    assert diagnostic.code == "E208"
    assert diagnostic.span.start == text.index('"${gpus}"')


def test_crlf_and_bom_are_accepted():
    text = '\ufeffdata ingest {\r\n  image = "etl:1.0"\r\n  script = """\r\n    echo hi\r\n  """\r\n}\r\n'
    stage = only_stage(text)
    assert plain(stage.script) == "echo hi\n"
    assert check_source(text.encode("utf-8"), "t.aip").ir is not None
