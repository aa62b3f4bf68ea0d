"""The command line: exit codes, unreadable inputs, formats, and what it imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aipc import cli
from aipc.codes import CODES
from tests.helpers import ROOT

EXAMPLE = str(ROOT / "examples" / "fraud-detection.aip")


def aipc(*args: str, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aipc", *args], input=stdin, capture_output=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_clean_file_exits_zero():
    result = aipc("check", EXAMPLE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == f"{EXAMPLE}: ok (5 stages)"


def test_errors_exit_one_and_every_error_is_listed(tmp_path):
    bad = tmp_path / "bad.aip"
    bad.write_text('data a { image = "e:1"  after = [b] }\nserve s { image = "e:1" }\nvolume v { size = 1GB }\n')
    result = aipc("check", str(bad))
    assert result.returncode == 1
    out = result.stdout.decode()
    assert out.count("error[") == 3
    assert out.rstrip().endswith(f"{bad}: 3 errors")
    assert "\x1b[" not in out  # no colour when not on a terminal


def test_json_format_is_one_list_with_one_based_positions(tmp_path):
    bad = tmp_path / "bad.aip"
    bad.write_text('data a {\n  image = "e:1"\n  after = [nope]\n}\n')
    result = aipc("check", "--format", "json", str(bad), EXAMPLE)
    assert result.returncode == 1
    (item,) = json.loads(result.stdout)
    assert item == {
        "file": str(bad), "line": 3, "column": 12, "end_line": 3, "end_column": 16,
        "severity": "error", "code": "E102", "message": "unknown stage `nope`",
        "help": "`after` lists stages declared in this file",
    }


def test_colour_when_asked():
    result = aipc("check", "--color", "always", str(ROOT / "tests" / "diagnostics" / "cases" / "unknown_stage.aip"))
    assert "\x1b[1;31merror[E102]" in result.stdout.decode()


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.aip", "no such file"),
    (lambda d: d, "it is a directory"),
    (lambda d: _write(d / "binary.aip", b"\x7fELF\x02\x01\x00\x00"), "is a binary file"),
    (lambda d: _write(d / "latin1.aip", 'data caf\xe9 { image = "e:1" }'.encode("latin-1")), "is not UTF-8"),
])
@pytest.mark.parametrize("fmt", ["human", "json"])
def test_unreadable_inputs_are_diagnostics(tmp_path, make, message, fmt):
    path = make(tmp_path)
    result = aipc("check", "--format", fmt, str(path))
    assert result.returncode == 1
    assert b"Traceback" not in result.stderr + result.stdout
    out = result.stdout.decode()
    assert message in out and "E001" in out
    if fmt == "json":
        (item,) = json.loads(out)
        assert item["code"] == "E001" and item["line"] is None


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_stdin():
    result = aipc("check", "-", stdin=b'data a { image = "e:1" }')
    assert result.returncode == 0
    assert result.stdout.decode().strip() == "<stdin>: ok (1 stage)"


def test_a_closed_stdin_is_a_diagnostic():
    result = subprocess.run([sys.executable, "-m", "aipc", "check", "-"], capture_output=True, timeout=60,
                            stdin=subprocess.DEVNULL, preexec_fn=lambda: os.close(0))
    assert result.returncode == 1, result.stderr
    assert "error[E001]: cannot read `<stdin>`: standard input is closed" in result.stdout.decode()


def test_params_are_applied_and_checked():
    assert aipc("check", EXAMPLE, "-p", "epochs=20").returncode == 0
    result = aipc("check", EXAMPLE, "-p", "epochs=twenty")
    assert result.returncode == 1 and b"E211" in result.stdout


@pytest.mark.parametrize("args", [[], ["check"], ["check", EXAMPLE, "-p", "novalue"], ["check", "--format", "xml", EXAMPLE],
                                  ["explain", "E999"], ["frobnicate"]])
def test_usage_errors_exit_two(args):
    result = aipc(*args)
    assert result.returncode == 2, result
    assert b"Traceback" not in result.stderr


def test_internal_errors_print_one_line_and_exit_three(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("aipc.compiler.check.check_source", broken)
    monkeypatch.delenv("AIPC_DEBUG", raising=False)
    assert cli.main(["check", EXAMPLE]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "internal error (ZeroDivisionError: boom)" in err and "please report" in err


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_code_is_explained(code, capsys):
    assert cli.main(["explain", code.lower()]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{code}: {CODES[code].title}")
    assert "Example:" in out and len(CODES[code].explanation) > 60


def test_explain_lists_codes(capsys):
    assert cli.main(["explain", "--list"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(CODES)


def test_check_does_not_import_heavy_libraries():
    probe = ("import sys; from aipc.cli import main; code = main(['check', %r]);"
             "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'docker', 'kubernetes', 'pygls', 'rich',"
             " 'lsprotocol', 'hera', 'yaml'}); print(heavy)") % EXAMPLE
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_help_lists_the_commands():
    result = aipc("--help")
    assert result.returncode == 0
    for command in cli.COMMANDS:
        assert command in result.stdout.decode()


def test_check_with_a_target_adds_what_the_target_cannot_express():
    laptop = str(ROOT / "examples" / "laptop.aip")
    assert aipc("check", laptop).returncode == 0
    result = aipc("check", laptop, "--target", "k8s")
    assert result.returncode == 1
    assert result.stdout.decode().count("error[B001]") == 4
    warned = aipc("check", EXAMPLE, "--target", "compose")
    assert warned.returncode == 0 and b"warning[B101]" in warned.stdout
    assert aipc("check", EXAMPLE, "--target", "nomad").returncode == 2


@pytest.mark.parametrize("command, blocked, extra", [
    (["run", EXAMPLE], "docker", "aipc[run]"),
    (["apply", EXAMPLE, "--dry-run"], "kubernetes", "aipc[k8s]"),
    (["lsp"], "pygls", "aipc[lsp]"),
])
def test_a_missing_extra_is_a_clear_error(command, blocked, extra):
    # A module set to None in sys.modules cannot be imported: as if the extra were not installed.
    probe = f"import sys; sys.modules[{blocked!r}] = None; from aipc.cli import main; sys.exit(main({command!r}))"
    secrets = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}  # the example's secret keys
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL, env={**os.environ, **secrets})
    assert result.returncode == 1, result.stderr
    assert extra in result.stderr and "Traceback" not in result.stderr


def test_the_command_line_decides_the_garbage_collector_not_the_library(monkeypatch, capsys, tmp_path):
    """check_source and to_yaml leave the collector as they find it (the language
    server calls them from threads); the CLI turns it off for a short command and
    raises its thresholds for a long one."""
    import gc

    from aipc.backends import writer
    from aipc.compiler import check as check_module

    seen: list[tuple[str, bool, str]] = []
    defaults = gc.get_threshold()
    real_check, real_yaml = check_module.check_parsed, writer._fast_yaml

    def spy(name, real):
        def call(*args, **kwargs):
            seen.append((name, gc.isenabled(), "raised" if gc.get_threshold() != defaults else "default"))
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(check_module, "check_parsed", spy("check", real_check))
    monkeypatch.setattr(writer, "_fast_yaml", spy("yaml", real_yaml))
    assert gc.isenabled()
    checked = check_module.check_source((ROOT / "examples" / "fraud-detection.aip").read_text(), EXAMPLE)
    writer.to_yaml([{"a": 1}])
    assert seen == [("check", True, "default"), ("yaml", True, "default")]
    seen.clear()
    assert cli.main(["compile", EXAMPLE, "-t", "k8s", "-o", str(tmp_path / "out.yaml")]) == 0
    assert seen == [("check", False, "default"), ("yaml", False, "default")] and gc.isenabled()  # on again after
    assert checked.ir is not None
    # `aipc run` runs for long: the collector stays on, with raised thresholds
    seen.clear()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)  # stops before any engine: a secret is missing
    assert cli.main(["run", EXAMPLE]) == 1
    assert seen == [("check", True, "raised")] and gc.isenabled() and gc.get_threshold() == defaults
