"""Program generators for the hostile-input tests.

- :func:`grammar_programs`: any text the grammar derives, drawn by
  ``hypothesis.extra.lark.from_lark`` from grammar.lark itself, with explicit
  strategies for names, numbers, strings and comments. Every token is followed
  by a space or a line break, so that the text lexes as the tokens drawn
  (``data`` then ``x`` must not become the word ``datax``). Such programs are
  free of syntax errors but rarely mean anything.
- :func:`valid_programs`: programs that mean something, built declaration by
  declaration from what LANGUAGE.md allows: every reference resolves, `after`
  only looks back (no cycles, no batch stage waiting for a service), mount
  paths are distinct, ranges are ordered. They must compile on every target,
  except that a mounted host volume is an error (B001) on the cluster targets.
  Strings that look like YAML are planted where any string is allowed.
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass, field

from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark
from lark import Lark

from aipc.dsl import vocabulary

KEYWORDS = tuple(vocabulary.KEYWORDS)  # pipeline, param, ... mount, at, readonly, import, as, template, from, ...
LOWER = "abcdefghijklmnopqrstuvwxyz"

# Strings a YAML reader would take for something else if they were written bare.
YAML_LOOKALIKES = (
    "a: b", "---", "...", "!!python/object/apply:os.system ['true']", "{{ }}", "{{workflow.name}}",
    "- item", "[1, 2]", "{k: v}", "yes", "no", "on", "null", "~", "true", "3e-4", "0o17", "0x1f",
    "1_000", "12:30:00", "2024-12-22", ".inf", "'single'", "\"double\"", "# not a comment", "&anchor",
    "*alias", "%TAG ! x", "@handle", "`tick`", "| literal", "> folded", "key: |", "<<: *merge",
    "?", ":", "=", "x #y", " padded ", "tab\there", "line\nbreak", "trailing \n", "\u00e9t\u00e9 \u2603",
    "\ufeffbom", "a\\b",
)


# ------------------------------------------------------------ from the grammar


def _grammar() -> Lark:
    text = importlib.resources.files("aipc").joinpath("grammar.lark").read_text(encoding="utf-8")
    return Lark(text, parser="lalr", lexer="basic", start="start")


def _separated(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(strategy, st.sampled_from([" ", "\n", "  "])).map("".join)


_identifiers = st.builds(lambda first, rest: first + rest, st.sampled_from(LOWER),
                         st.text(alphabet=LOWER + "0123456789_", max_size=6)).filter(
    lambda name: not name.endswith("_") and "__" not in name)
_words = st.one_of(st.sampled_from(["image", "command", "after", "cpu", "memory", "gpu", "size", "access",
                                    "rwx", "true", "false", "keys", "env", "port", "prep", "train_a", "Big"]),
                   _identifiers)
_numbers = st.builds(
    lambda sign, digits, unit: sign + digits + unit,
    st.sampled_from(["", "", "-", "+"]),
    st.sampled_from(["0", "1", "2", "42", "3.5", ".5", "3e-4", "1E6", "65536"]),
    st.sampled_from(["", "", "Gi", "Mi", "m", "k", "h", "1h30m", "s", "Ti", "x"]),
)
_string_bodies = st.lists(st.one_of(
    st.sampled_from(["python", "/data", "a: b", "---", "{{ }}", "${epochs}", "$${HOME}", "\\\"", "\\\\",
                     "\\n", "${", "x", " "]),
    st.text(alphabet=st.characters(blacklist_characters='"\\\n\r', blacklist_categories=("Cs",)), max_size=8),
), max_size=4).map("".join)
_strings = _string_bodies.map(lambda body: f'"{body}"')
_long_strings = st.lists(st.sampled_from(["set -eu", "  python x.py", "", "echo ${epochs}", "a: b"]),
                         max_size=3).map(lambda lines: '"""\n' + "\n".join(lines) + '\n"""')
_comments = st.sampled_from(["# comment", "// comment", "#", "# a: b"]).map(lambda text: text + "\n")


def grammar_programs() -> st.SearchStrategy[str]:
    """Texts in the language of grammar.lark (a syntax check finds nothing)."""
    explicit = {name.upper(): st.just(name + " ") for name in KEYWORDS}
    explicit.update({
        "WORD": _separated(_words), "NUMBER": _separated(_numbers), "STRING": _separated(_strings),
        "LONG_STRING": _separated(_long_strings), "COMMENT": _comments,
        "LBRACE": st.just("{ "), "RBRACE": st.just("}\n"), "LSQB": st.just("["), "RSQB": st.just("] "),
        "COMMA": st.just(", "), "EQUAL": st.just(" = "), "COLON": st.just(": "), "DOTDOT": st.just(".."),
        "DOT": st.just("."),
    })
    return from_lark(_grammar(), start="start", explicit=explicit)


# --------------------------------------------------------- meaningful programs


def aip_string(text: str) -> str:
    """``text`` as a .aip string literal (the reverse of the parser's decoding)."""
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
               .replace("\r", "\\r").replace("${", "$${"))
    return f'"{escaped}"'


@dataclass
class Program:
    """A generated program and what it asks for."""

    text: str
    pipeline: str
    stages: dict[str, str] = field(default_factory=dict)  # name -> kind
    volumes: dict[str, str] = field(default_factory=dict)  # name -> sized | claim | host
    host_mounted: bool = False
    planted: list[str] = field(default_factory=list)  # YAML look-alikes in commands and env values


_PARAM_DEFAULTS = {"string": '"hello"', "int": "3", "float": "3e-4", "bool": "true", "duration": "2h"}


@st.composite
def valid_programs(draw) -> Program:
    pool = draw(st.lists(_identifiers.filter(lambda n: n not in KEYWORDS), min_size=16, max_size=16,
                         unique=True))
    names = iter(pool)
    pipeline = draw(st.sampled_from(["gen", "fuzz-pipe", "p1"]))
    lines = []
    planted: list[str] = []

    def plant() -> str:
        text = draw(st.sampled_from(YAML_LOOKALIKES))
        planted.append(text)
        return aip_string(text)

    description = aip_string(draw(st.sampled_from(YAML_LOOKALIKES)))
    header = [f'  description = {description}'] if draw(st.booleans()) else []
    if draw(st.booleans()):
        header.append('  namespace = "ml-fuzz"')
    if draw(st.booleans()):
        header.append('  labels = { team = "risk", "example.com/tier" = "ml-1" }')
    lines += [f'pipeline "{pipeline}" {{', *header, "}"]

    params = {}
    for _ in range(draw(st.integers(0, 3))):
        name, kind = next(names), draw(st.sampled_from(sorted(_PARAM_DEFAULTS)))
        params[name] = kind
        lines.append(f"param {name}: {kind} = {_PARAM_DEFAULTS[kind]}")

    program = Program("", pipeline)
    for _ in range(draw(st.integers(0, 3))):
        name = next(names)
        kind = draw(st.sampled_from(["sized", "sized", "claim", "host"]))
        program.volumes[name] = kind
        if kind == "sized":
            access = draw(st.sampled_from(["", "  access = rwx", "  access = rox", '  access = "rwo"']))
            klass = draw(st.sampled_from(["", '  class = "fast-ssd"']))
            lines.append(f"volume {name} {{ size = {draw(st.integers(1, 500))}Gi{access}{klass} }}")
        elif kind == "claim":
            lines.append(f'volume {name} {{ claim = "shared-{name.replace("_", "-")}" }}')
        else:
            lines.append(f'volume {name} {{ host = "./{name}" }}')

    secrets = [next(names) for _ in range(draw(st.integers(0, 2)))]
    for name in secrets:
        lines.append(f'secret {name} {{ keys = ["{name.upper()}_TOKEN", "API_KEY"] }}')

    declared: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(1, 5))):
        name, kind = next(names), draw(st.sampled_from(["data", "train", "eval", "serve"]))
        body = [f'  image = "registry.example.com/team/{name}:{draw(st.sampled_from(["1.0", "2.3.1", "latest"]))}"']
        program_kind = draw(st.sampled_from(["command", "script", "none"]))
        if program_kind == "command":
            arguments = ['"python"', '"-m"', f'"{name}"']
            arguments += [plant() for _ in range(draw(st.integers(0, 2)))]
            arguments += [f'"--{p}=${{{p}}}"' for p in params if draw(st.booleans())]
            body.append(f"  command = [{', '.join(arguments)}]")
        elif program_kind == "script":
            body.append('  script = """\n    set -eu\n    echo "${stage.name}"\n    python run.py\n  """')
        if draw(st.booleans()):
            body.append(f"  env = {{ LOG_LEVEL = \"info\", NOTE = {plant()} }}")
        used_secrets = draw(st.lists(st.sampled_from(secrets), unique=True, max_size=2)) if secrets else []
        if used_secrets:
            body.append(f"  secrets = [{', '.join(used_secrets)}]")
        # `after` looks back only: no cycles; a batch stage never waits for a service
        candidates = [n for n, k in declared if kind == "serve" or k != "serve"]
        after = draw(st.lists(st.sampled_from(candidates), unique=True, max_size=3)) if candidates else []
        if after:
            body.append(f"  after = [{', '.join(after)}]")
        for volume in draw(st.lists(st.sampled_from(sorted(program.volumes)), unique=True, max_size=3)
                           if program.volumes else st.just([])):
            readonly = " readonly" if draw(st.booleans()) else ""
            body.append(f'  mount {volume} at "/mnt/{volume}"{readonly}')
            program.host_mounted |= program.volumes[volume] == "host"
        resources = []
        if draw(st.booleans()):
            resources.append(draw(st.sampled_from(["cpu = 2", "cpu = 500m", "cpu = 1..4", "cpu = 0.5"])))
        if draw(st.booleans()):
            resources.append(draw(st.sampled_from(["memory = 4Gi", "memory = 512Mi..2Gi", "memory = 1G"])))
        if draw(st.booleans()):
            resources.append(f"gpu = {draw(st.integers(0, 4))}")
            resources.append(draw(st.sampled_from(["", "gpu_vendor = amd", 'gpu_vendor = "intel"',
                                                   'gpu_model = "NVIDIA-A100-SXM4-80GB"'])))
        if draw(st.booleans()):
            resources.append(draw(st.sampled_from(["shm = 512Mi", "disk = 20Gi"])))  # within every memory limit (B003)
        if resources:
            body.append(f"  resources {{ {'  '.join(r for r in resources if r)} }}")
        if kind == "serve":
            body.append(f"  port = {draw(st.integers(1024, 65535))}")
            if draw(st.booleans()):
                body.append(f"  replicas = {draw(st.integers(1, 3))}")
            if draw(st.booleans()):
                body.append('  health = "/healthz"')
        else:
            if draw(st.booleans()):
                body.append(f"  retries = {draw(st.integers(0, 3))}")
            if draw(st.booleans()):
                body.append(f"  timeout = {draw(st.sampled_from(['30m', '1h30m', '2d', '45s']))}")
        if draw(st.booleans()):
            body.append('  labels = { owner = "ml-team" }')
        lines += [f"{kind} {name} {{", *body, "}"]
        declared.append((name, kind))
        program.stages[name] = kind

    program.text = "\n".join(lines) + "\n"
    program.planted = planted
    return program


def plain_data(documents) -> str:
    """Documents as canonical JSON, to compare what was written with what was read back."""
    return json.dumps(documents, sort_keys=True)
