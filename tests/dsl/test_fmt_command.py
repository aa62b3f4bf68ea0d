"""`aipc fmt`: in place, --check, --diff, stdin, and files it refuses."""

from __future__ import annotations

import subprocess
import sys

from aipc.dsl.format import format_text
from tests.helpers import ROOT

MESSY = 'data   one {\n    image="a:1"\n  after =[ two ]   # why\n}\ndata two { image = "a:1" }\n'
BROKEN = "data one {\n  image = \n"


def aipc(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aipc", "fmt", *args], input=stdin, capture_output=True,
                          text=True, timeout=60)


def test_formats_files_in_place(tmp_path):
    path = tmp_path / "p.aip"
    path.write_text(MESSY)
    path.chmod(0o640)
    result = aipc(str(path))
    assert result.returncode == 0, result.stderr
    assert path.read_text() == format_text(MESSY).text
    assert path.stat().st_mode & 0o777 == 0o640
    assert f"reformatted {path}" in result.stderr and result.stdout == ""
    again = aipc(str(path))
    assert again.returncode == 0 and "reformatted" not in again.stderr


def test_check_reports_files_that_would_change_without_writing(tmp_path):
    messy, tidy = tmp_path / "messy.aip", tmp_path / "tidy.aip"
    messy.write_text(MESSY)
    tidy.write_text(format_text(MESSY).text)
    result = aipc("--check", str(messy), str(tidy))
    assert result.returncode == 1
    assert f"would reformat {messy}" in result.stderr and str(tidy) not in result.stderr
    assert messy.read_text() == MESSY
    assert aipc("--check", str(tidy)).returncode == 0


def test_diff_prints_the_changes_without_writing(tmp_path):
    path = tmp_path / "p.aip"
    path.write_text(MESSY)
    result = aipc("--diff", str(path))
    assert result.returncode == 0
    assert result.stdout.startswith(f"--- {path} (original)\n+++ {path} (formatted)\n")
    assert "-data   one {\n" in result.stdout and "+data one {\n" in result.stdout
    assert path.read_text() == MESSY
    assert aipc("--diff", "--check", str(path)).returncode == 1


def test_stdin_is_formatted_to_stdout():
    result = aipc("-", stdin=MESSY)
    assert result.returncode == 0
    assert result.stdout == format_text(MESSY).text
    assert aipc("--check", "-", stdin=MESSY).stdout == ""


def test_files_with_syntax_errors_are_left_alone(tmp_path):
    broken, messy = tmp_path / "broken.aip", tmp_path / "messy.aip"
    broken.write_text(BROKEN)
    messy.write_text(MESSY)
    result = aipc(str(broken), str(messy))
    assert result.returncode == 1
    assert "error[E008]" in result.stderr and f"{broken}:1:10" in result.stderr
    assert "not formatted, it has syntax errors" in result.stderr
    assert broken.read_text() == BROKEN
    assert messy.read_text() == format_text(MESSY).text  # the other file is still formatted


def test_unreadable_inputs_are_reported(tmp_path):
    result = aipc(str(tmp_path / "missing.aip"))
    assert result.returncode == 1 and "error[E001]" in result.stderr and "Traceback" not in result.stderr
    binary = tmp_path / "b.aip"
    binary.write_bytes(b"\x00\x01")
    assert aipc(str(binary)).returncode == 1


def test_every_example_is_in_the_canonical_layout():
    """`aipc fmt --check examples/*.aip` passes: every example, also ones added later."""
    examples = sorted((ROOT / "examples").glob("*.aip"))
    assert len(examples) >= 5
    result = aipc("--check", *map(str, examples))
    assert result.returncode == 0, result.stderr
    for path in examples:
        assert format_text(path.read_text()).text == path.read_text(), path.name
