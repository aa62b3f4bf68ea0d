"""Every rejection LANGUAGE.md lists has a case file here.

Each case file states what it must produce in `# expect: CODE LINE:COLUMN`
comments (`# expect: CODE LINE:COLUMN in PATH` for one in a file it imports,
PATH as diagnostics name it), `# params: NAME=VALUE` for `-p` overrides, and
`# compile: --target TARGET [OPTIONS]` adds what that target reports, for a
diagnostic only a target gives. Files that cases import live under cases/lib/
(not cases themselves). The test asserts
exactly those diagnostics at exactly those places, then snapshots the rendered
human and JSON output so that a change in wording is reviewed like code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shlex
from pathlib import Path

import pytest

from aipc.compiler import check_source
from aipc.compiler.sources import Unreadable, read_text
from aipc.diagnostics import Source, render_human, render_json

HERE = Path(__file__).parent
CASES = sorted((HERE / "cases").glob("*.aip"))
EXPECT = re.compile(r"#\s*expect:\s*([EWB]\d{3})\s+(\d+):(\d+)(?:\s+in\s+(\S+))?")
PARAMS = re.compile(r"#\s*params:\s*(\S+)=(\S*)")
COMPILE = re.compile(r"#\s*compile:\s*(.+)")


def run_case(path: Path):
    text = path.read_text()
    params = dict(PARAMS.findall(text))
    name = f"cases/{path.name}"
    checked = check_source(text, name, params, read=read_beside_cases)
    compiled = COMPILE.search(text)
    if compiled is not None and checked.ir is not None:
        checked = dataclasses.replace(
            checked, diagnostics=checked.diagnostics + target_diagnostics(checked.ir, compiled.group(1)))
    return text, name, checked


def read_beside_cases(imported: str) -> str:
    """A file a case imports; a message about it names it from this directory, so
    that snapshots do not depend on where the repository is checked out."""
    try:
        return read_text(str(HERE / imported))
    except Unreadable as error:
        raise Unreadable(error.message.replace(f"{HERE}/", ""), error.help) from None


def sources_of(text: str, name: str, checked) -> dict[str, Source]:
    return {name: Source(name, text), **{f.path: Source(f.path, f.text) for f in checked.imported}}


def target_diagnostics(pipeline, command_line: str) -> list:
    """What `aipc compile --target TARGET OPTIONS` adds, through the backend's own options."""
    from aipc.backends import get_backend

    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    options, rest = parser.parse_known_args(shlex.split(command_line))
    backend = get_backend(options.target)
    backend_parser = argparse.ArgumentParser()
    backend.add_arguments(backend_parser)
    return list(backend.emit(pipeline, backend.options_from(backend_parser.parse_args(rest))).diagnostics)


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_case_reports_exactly_what_it_expects(case: Path) -> None:
    text, name, checked = run_case(case)
    expected = sorted((code, int(line), int(column), file or name)
                      for code, line, column, file in EXPECT.findall(text))
    assert expected, f"{case.name} states no `# expect:` line"
    sources = sources_of(text, name, checked)
    actual = sorted(
        (d.code, *sources[d.file].position(d.span.start), d.file) if d.span is not None else (d.code, 0, 0, d.file)
        for d in checked.diagnostics
    )
    assert actual == expected
    if any(code.startswith("E") for code, *_ in expected):
        assert checked.ir is None
    else:
        assert checked.ir is not None


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_case_rendering(case: Path, text_snapshot, json_snapshot) -> None:
    text, name, checked = run_case(case)
    sources = sources_of(text, name, checked)
    assert render_human(checked.diagnostics, sources) == text_snapshot
    rendered = render_json(checked.diagnostics, sources)
    for item in json.loads(rendered):
        assert set(item) >= {"file", "line", "column", "end_line", "end_column", "severity", "code",
                             "message", "help"}
    assert rendered == json_snapshot
