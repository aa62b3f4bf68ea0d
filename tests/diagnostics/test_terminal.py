"""What the human renderer sends to a terminal: control characters from the input
(escape sequences, C1 controls, bidirectional overrides) are shown as escapes,
never sent raw; the caret still points at the right character. JSON escapes by
its own rules."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from aipc.compiler import check_source
from aipc.diagnostics import Diagnostic, Severity, Source, Span, render_human, render_json, visible

# Raw in a terminal: a colour change, a window title, a cursor move, DEL, a C1 CSI,
# a right-to-left override, a line separator.
CONTROLS = ["\x1b[31m", "\x1b]0;owned\x07", "\x1b[2J\x1b[H", "\x7f", "\x9b1m", "\u202e", "\u2028"]
RAW = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def raw_controls(text: str) -> list[str]:
    """Control characters in rendered text, line breaks between lines excepted."""
    return [c for line in text.split("\n") for c in RAW.findall(line)]


@pytest.mark.parametrize("control", CONTROLS, ids=repr)
def test_messages_and_source_lines_show_controls_as_escapes(control):
    text = f'data a {{ image = "e:1"  workdir = "{control}x"  after = [b] }}\n'
    checked = check_source(text, "t.aip")
    rendered = render_human(checked.diagnostics, {"t.aip": Source("t.aip", text)})
    assert sorted(d.code for d in checked.diagnostics) == ["E102", "E205"]
    assert raw_controls(rendered) == []
    assert visible(control) in rendered  # in the source line, and in the help quoting the value
    assert f'help: write "/{visible(control)}x"' in rendered


def test_the_caret_points_at_the_character_after_escapes():
    text = 'data a { image = "e:1"  workdir = "/e\x1b[31m:1\t"  after = [b] }\n'
    rendered = render_human(check_source(text, "t.aip").diagnostics, {"t.aip": Source("t.aip", text)})
    lines = rendered.splitlines()
    (shown,) = [line for line in lines if line.startswith("1 | ")]
    caret = lines[lines.index(shown) + 1]
    assert shown == '1 | data a { image = "e:1"  workdir = "/e\\x1b[31m:1    "  after = [b] }'  # the tab as four spaces
    assert caret.index("^") == shown.index("[b]") + 1


def test_every_field_is_escaped():
    diagnostic = Diagnostic(Severity.ERROR, "E001", "bad \x1b[2J message", "file\x1b.aip", None,
                            help="help \x9b1m")
    rendered = render_human([diagnostic], {})
    assert raw_controls(rendered) == []
    assert "bad \\x1b[2J message" in rendered and "file\\x1b.aip" in rendered and "help \\x9b1m" in rendered
    labelled = Diagnostic(Severity.ERROR, "E102", "m", "t.aip", Span(0, 1), label="label \x1b")
    assert "label \\x1b" in render_human([labelled], {"t.aip": Source("t.aip", "x\n")})


def test_colour_codes_of_our_own_stay():
    diagnostic = Diagnostic(Severity.ERROR, "E001", "message \x1b[5m", "t.aip")
    rendered = render_human([diagnostic], {}, color=True)
    assert "\x1b[1;31merror[E001]" in rendered and "message \\x1b[5m" in rendered


def test_json_keeps_the_text_and_escapes_it_by_json_rules():
    text = 'data a { image = "e:1"  workdir = "\x1b[31mx" }\n'
    checked = check_source(text, "t.aip")
    rendered = render_json(checked.diagnostics, {"t.aip": Source("t.aip", text)})
    assert "\x1b" not in rendered
    assert json.loads(rendered)[0]["help"] == 'write "/\x1b[31mx"'


def test_through_the_command_line(tmp_path):
    path = tmp_path / "t.aip"
    path.write_text('data a { image = "e\x1b]0;owned\x07:1"  after = [b] }\n')
    result = subprocess.run([sys.executable, "-m", "aipc", "check", str(path)], capture_output=True, timeout=60)
    assert result.returncode == 1
    out = result.stdout.decode()
    assert b"\x1b" not in result.stdout and b"\x07" not in result.stdout
    assert '"e\\x1b]0;owned\\x07:1"' in out and "error[E102]" in out
