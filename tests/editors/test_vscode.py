"""The VS Code extension: its TextMate grammar against annotated samples, its manifest, its client."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from aipc.compiler import schema
from aipc.dsl import vocabulary
from tests.editors.installed import tool
from tests.helpers import EXAMPLES, ROOT

EXTENSION = ROOT / "editors" / "vscode"
SAMPLES = sorted((EXTENSION / "tests").glob("*.aip"))


def tmgrammar_test() -> str:
    return tool("vscode-tmgrammar-test", os.environ.get("AIPC_TMGRAMMAR_TEST")
                or str(ROOT / ".tools" / "npm" / "node_modules" / ".bin" / "vscode-tmgrammar-test"))


def test_the_grammar_scopes_the_annotated_samples():
    assert len(SAMPLES) >= 2
    result = subprocess.run([tmgrammar_test(), "--config", "package.json", *[str(s.relative_to(EXTENSION))
                                                                             for s in SAMPLES]],
                            cwd=EXTENSION, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for sample in SAMPLES:
        assert f"{sample.relative_to(EXTENSION)} run successfuly" in result.stdout


def annotate_nothing_invalid(text: str, title: str) -> str:
    """``text`` as a syntax test asserting that no character of it is scoped invalid
    (the grammar's one invalid scope is a bad escape)."""
    out = [f'# SYNTAX TEST "source.aip" "{title}"']
    for line in text.splitlines():
        out.append(line)
        if line:
            out.append("# <- - invalid.illegal.escape.aip")
        if len(line) > 1:
            out.append("#" + "^" * (len(line) - 1) + " - invalid.illegal.escape.aip")
    return "\n".join(out) + "\n"


def test_the_grammar_sees_no_invalid_text_in_the_examples(tmp_path):
    (tmp_path / "control.aip").write_text(annotate_nothing_invalid('data x { image = "\\q" }', "control"))
    control = subprocess.run([tmgrammar_test(), "--config", str(EXTENSION / "package.json"),
                              str(tmp_path / "control.aip")], cwd=EXTENSION, capture_output=True, text=True)
    assert control.returncode != 0 and "invalid.illegal.escape.aip" in control.stdout  # the check can fail
    for example in EXAMPLES:
        (tmp_path / example.name).write_text(annotate_nothing_invalid(example.read_text(), example.stem))
    result = subprocess.run([tmgrammar_test(), "--config", str(EXTENSION / "package.json"),
                             *[str(tmp_path / e.name) for e in EXAMPLES]],
                            cwd=EXTENSION, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_manifest_ties_language_grammar_and_configuration_together():
    manifest = json.loads((EXTENSION / "package.json").read_text())
    (language,) = manifest["contributes"]["languages"]
    assert language["id"] == "aip" and language["extensions"] == [".aip"]
    (grammar,) = manifest["contributes"]["grammars"]
    assert grammar["language"] == "aip" and grammar["scopeName"] == "source.aip"
    tm = json.loads((EXTENSION / grammar["path"]).read_text())
    assert tm["scopeName"] == "source.aip"
    for rule in re.findall(r'"include": "#([^"]+)"', (EXTENSION / grammar["path"]).read_text()):
        assert rule in tm["repository"], rule
    configuration = json.loads((EXTENSION / language["configuration"]).read_text())
    assert configuration["comments"] == {"lineComment": "#"}
    assert ["{", "}"] in configuration["brackets"] and ["[", "]"] in configuration["brackets"]
    assert {p["open"] for p in configuration["autoClosingPairs"]} == {"{", "[", '"'}
    settings = manifest["contributes"]["configuration"]["properties"]
    assert settings["aip.server.path"]["default"] == "aipc"
    assert settings["aip.server.args"]["default"] == ["lsp"]
    assert "vscode-languageclient" in manifest["dependencies"]
    # a server command from a workspace's own settings runs only once the workspace is trusted
    # (VS Code's Workspace Trust extension guide: with `supported: "limited"`, Restricted Mode
    # reads the restrictedConfigurations from the user's settings, never the workspace's)
    restricted = manifest["capabilities"]["untrustedWorkspaces"]["restrictedConfigurations"]
    assert sorted(restricted) == ["aip.server.args", "aip.server.path"]
    assert [c["command"] for c in manifest["contributes"]["commands"]] == ["aip.restartServer"]
    assert (EXTENSION / manifest["icon"]).read_bytes().startswith(b"\x89PNG")
    assert "Apache License" in (EXTENSION / "LICENSE").read_text() and manifest["license"] == "Apache-2.0"


def test_the_client_starts_aipc_lsp_and_restarts_it():
    """extension.js run by node against stand-ins for the VS Code API (tests/extension.test.js)."""
    result = subprocess.run([tool("node"), "tests/extension.test.js"], cwd=EXTENSION, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "extension.js: ok"


# ------------------------------------------------------------------ the vocabulary


def capture_groups(regex: str) -> list[str]:
    """The source of each capturing group of a regular expression, in order."""
    groups: list[str] = []
    opened: list[tuple[int, int | None]] = []  # (start, index in groups, or None for (?...))
    index, in_class = 0, False
    while index < len(regex):
        char = regex[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            capturing = not regex.startswith("(?", index)
            opened.append((index + 1, len(groups) if capturing else None))
            if capturing:
                groups.append("")
        elif char == ")":
            start, at = opened.pop()
            if at is not None:
                groups[at] = regex[start:index]
        index += 1
    return groups


def scoped_groups(grammar: dict) -> list[tuple[str, str]]:
    """(scope, group source) for every capture of every `match` rule of a TextMate grammar
    (a rule with one group and a scope for the whole match: that group)."""
    out = []

    def visit(node):
        if isinstance(node, dict):
            if "match" in node:
                groups = capture_groups(node["match"])
                for number, capture in node.get("captures", {}).items():
                    if int(number) > 0:
                        out.append((capture["name"], groups[int(number) - 1]))
                if "name" in node and len(groups) == 1:  # `\b(readonly)\b`, scoped as a whole
                    out.append((node["name"], groups[0]))
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(grammar)
    return out


def words(alternation: str) -> list[str]:
    assert re.fullmatch(r"[a-z_]+(?:\|[a-z_]+)*", alternation), alternation
    return alternation.split("|")


def test_the_textmate_grammar_s_words_are_the_vocabulary():
    """The editor colours exactly the keywords, kinds and choices the language has,
    and reads names, interpolations and numbers as the parser does."""
    manifest = json.loads((EXTENSION / "package.json").read_text())
    (grammar,) = manifest["contributes"]["grammars"]
    captures = scoped_groups(json.loads((EXTENSION / grammar["path"]).read_text()))
    keywords = [w for scope, group in captures
                if scope.split(".")[0:2] in (["storage", "type"], ["keyword", "other"], ["storage", "modifier"])
                and not scope.startswith("keyword.other.unit") and re.fullmatch(r"[a-z_|]+", group)
                for w in words(group)]
    assert set(keywords) == set(vocabulary.KEYWORDS)  # `at` ends `mount`, `output` and `input`: two rules
    (kinds,) = [group for scope, group in captures if scope == "storage.type.stage.aip"]
    assert tuple(words(kinds)) == vocabulary.STAGE_KINDS
    (choices,) = [group for scope, group in captures if scope == "constant.language.choice.aip"]
    tables = [schema.HEADER, schema.VOLUME, schema.SECRET, schema.STAGE, *schema.STAGE_BLOCKS.values()]
    specs = [spec for table in tables for spec in table.values() if spec.choices]
    assert set(words(choices)) == {choice for spec in specs for choice in spec.choices}
    (named,) = {group for scope, group in captures if scope == "support.type.property-name.aip" and "|" in group}
    assert set(words(named)) == {spec.name for spec in specs}
    names = {group for scope, group in captures
             if scope.startswith(("entity.name.", "variable.other.")) and "interpolation" not in scope}
    assert names == {vocabulary.WORD}
    (interpolated,) = [group for scope, group in captures if scope == "variable.other.interpolation.aip"]
    assert interpolated == vocabulary.INTERPOLATION_NAME.pattern
    value, unit = [group for scope, group in captures if scope in ("constant.numeric.aip", "keyword.other.unit.aip")]
    assert f"{value}(?:{unit})?" == vocabulary.TERMINALS["NUMBER"].regex
