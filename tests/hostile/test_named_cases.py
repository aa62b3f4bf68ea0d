"""Named hostile inputs, through the command line as a user would run it.

Each case runs `aipc` in a child process with a time limit and an address-space
limit (``RLIMIT_AS``), and must end with exit status 0 or 1 and diagnostics,
never a traceback or an internal error.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from aipc.backends import get_backend
from aipc.backends.writer import to_yaml
from aipc.codes import CODES
from aipc.commands.common import MAX_INPUT_BYTES, MAX_INPUT_MIB
from aipc.compiler.check import check_source
from aipc.diagnostics import _MAX_SHOWN_LINE
from aipc.dsl.recovery import MAX_SYNTAX_ERRORS
from tests.helpers import EXAMPLES, ROOT, strings_in
from tests.hostile.programs import YAML_LOOKALIKES, aip_string

TARGETS = ("compose", "k8s", "argo")
MiB = 2**20


def aipc(tmp_path: Path, *args: str, seconds: float = 30, memory: int = 512 * MiB) -> subprocess.CompletedProcess:
    """Run the CLI in a child process limited to ``memory`` bytes of address space."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "aipc", *args], cwd=tmp_path, capture_output=True,
                            timeout=seconds, preexec_fn=limit)
    result.elapsed = time.monotonic() - start
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode in (0, 1), stderr[-2000:]
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr[-2000:]
    return result


def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return name


def codes(result: subprocess.CompletedProcess) -> list[str]:
    return [d["code"] for d in json.loads(result.stdout)]


def test_empty_file(tmp_path):
    name = write(tmp_path, "empty.aip", "")
    assert aipc(tmp_path, "check", name).returncode == 0
    for target in TARGETS:
        result = aipc(tmp_path, "compile", "-t", target, name)
        assert result.returncode == 0
        assert all(isinstance(d, dict) for d in yaml.safe_load_all(result.stdout))


@pytest.mark.parametrize("content", [
    b"\x00", b'data x { image = "a:1" }\x00\n', b"\x00" * 100_000,
], ids=["nul", "nul-after-a-stage", "many-nuls"])
def test_nul_bytes(tmp_path, content):
    result = aipc(tmp_path, "check", "--format", "json", write(tmp_path, "nul.aip", content))
    assert result.returncode == 1 and codes(result) == ["E001"]


@pytest.mark.parametrize("content", [
    b"\xff\xfe\xfd", b'data x { image = "caf\xe9:1" }\n', b'pipeline "p" {}\n' + b"\xc3" * 5000,
], ids=["garbage", "latin-1", "truncated-sequences"])
def test_invalid_utf8(tmp_path, content):
    result = aipc(tmp_path, "check", "--format", "json", write(tmp_path, "bad.aip", content))
    assert result.returncode == 1 and codes(result) == ["E001"]
    assert "line" in json.loads(result.stdout)[0]["message"]


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_bom_and_crlf_check_and_compile_like_the_plain_file(example):
    text = example.read_text()
    plain, windows = check_source(text, "p.aip"), check_source(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode(), "p.aip")
    assert [(d.code, d.span) for d in plain.diagnostics] == [(d.code, d.span) for d in windows.diagnostics]
    assert (plain.ir is None) == (windows.ir is None)
    for target in TARGETS if plain.ir is not None else ():
        backend = get_backend(target)
        assert to_yaml(backend.emit(plain.ir).documents) == to_yaml(backend.emit(windows.ir).documents)


def test_bom_and_crlf_through_the_command_line(tmp_path):
    text = (EXAMPLES[0]).read_text()
    plain = write(tmp_path, "plain.aip", text)
    windows = write(tmp_path, "windows.aip", "\ufeff" + text.replace("\n", "\r\n"))
    checked = [aipc(tmp_path, "check", "--format", "json", name) for name in (plain, windows)]
    where = [[(d["code"], d["line"], d["column"]) for d in json.loads(c.stdout)] for c in checked]
    assert checked[0].returncode == checked[1].returncode and where[0] == where[1]
    outputs = [aipc(tmp_path, "compile", "-t", "k8s", name) for name in (plain, windows)]
    assert outputs[0].returncode == outputs[1].returncode
    assert outputs[0].stdout == outputs[1].stdout.replace(b"windows", b"plain")


def test_deeply_nested_list(tmp_path):
    depth = 20_000
    name = write(tmp_path, "deep.aip", 'data x {\n  image = "a:1"\n  command = ' + "[" * depth + "]" * depth + "\n}\n")
    result = aipc(tmp_path, "check", "--format", "json", name, seconds=20, memory=256 * MiB)
    assert result.returncode == 1 and codes(result) == ["E002"]
    assert "nested" in json.loads(result.stdout)[0]["message"]


def test_deeply_nested_maps_and_lists(tmp_path):
    name = write(tmp_path, "deep.aip", 'data x { env = ' + "{ a = [" * 10_000 + "]}" * 10_000 + " }\n")
    result = aipc(tmp_path, "check", "--format", "json", name, seconds=20, memory=256 * MiB)
    assert result.returncode == 1 and codes(result) == ["E002"]


def test_two_megabyte_string(tmp_path):
    argument = "x" * (2 * MiB)
    name = write(tmp_path, "long.aip", f'data x {{ image = "a:1" command = ["echo", "{argument}"] }}\n')
    for target in TARGETS:
        result = aipc(tmp_path, "compile", "-t", target, name, seconds=30)
        assert result.returncode == 0
        assert result.stdout.count(argument.encode()) == 1


def test_two_megabyte_line_of_garbage(tmp_path):
    """A million errors on one line: the parser stops after MAX_SYNTAX_ERRORS and
    says so, and no error repeats the whole line under it."""
    name = write(tmp_path, "garbage.aip", "a;" * MiB)
    human = aipc(tmp_path, "check", name, seconds=30)
    assert human.returncode == 1
    assert len(human.stdout) < MiB  # 200 diagnostics shown, each line cut to _MAX_SHOWN_LINE columns
    assert max(len(line) for line in human.stdout.splitlines()) < _MAX_SHOWN_LINE + 20
    assert f"{MAX_SYNTAX_ERRORS + 1} errors".encode() in human.stdout
    assert b"more diagnostics not shown" in human.stdout
    listed = json.loads(aipc(tmp_path, "check", "--format", "json", name, seconds=30).stdout)
    assert len(listed) == MAX_SYNTAX_ERRORS + 1
    assert listed[-1]["message"] == f"too many syntax errors: stopped reading after {MAX_SYNTAX_ERRORS}"


def test_twenty_thousand_stages(tmp_path):
    stages = 20_000
    lines = ['volume data { size = 1Gi  access = rwx }']
    for i in range(stages):
        after = f" after = [s{i - 1}]" if i % 100 else ""
        lines.append(f'data s{i} {{ image = "etl:1.0" command = ["run", "{i}"] mount data at "/d"{after} }}')
    name = write(tmp_path, "many.aip", "\n".join(lines) + "\n")
    result = aipc(tmp_path, "check", name, seconds=60, memory=1024 * MiB)
    assert result.returncode == 0
    assert result.stdout.strip().endswith(f"ok ({stages} stages)".encode())


def test_five_thousand_errors(tmp_path):
    """Every error is reported; the human listing stops at 200 and counts the rest.
    JSON lists all of them: it is read by programs, and its size is linear in the
    input (each error points at its own place in the file)."""
    count = 5000
    lines = [f'data stage_{i} {{ image = "etl:1.0" after = [stage_{i}x] }}' for i in range(count)]
    name = write(tmp_path, "errors.aip", "\n".join(lines) + "\n")
    human = aipc(tmp_path, "check", name, seconds=60)
    assert human.returncode == 1
    assert f"... and {count - 200} more diagnostics not shown".encode() in human.stdout
    assert human.stdout.count(b"error[E102]") == 200
    assert human.stdout.strip().endswith(f"{count} errors".encode())
    listed = json.loads(aipc(tmp_path, "check", "--format", "json", name, seconds=60).stdout)
    assert len(listed) == count and {d["code"] for d in listed} == {"E102"}
    assert listed[0]["help"] == "did you mean `stage_0`?"  # suggestions while their budget lasts
    assert listed[-1]["help"] == "`after` lists stages declared in this file"


def test_strings_that_look_like_yaml_stay_data(tmp_path):
    """Each look-alike goes in a command argument, an environment value and a
    script; every target's output reads back (safe loader: no tags, no objects)
    with each of them as the very string it was."""
    lookalikes = [s for s in YAML_LOOKALIKES if "$" not in s]
    arguments = ", ".join(aip_string(s) for s in lookalikes)
    env = ", ".join(f"V{i} = {aip_string(s)}" for i, s in enumerate(lookalikes))
    program = (f'pipeline "looks" {{ description = {aip_string("a: b --- !!python/object {{ }}")} }}\n'
               f'data args {{ image = "etl:1.0" command = ["run", {arguments}] env = {{ {env} }} }}\n'
               'data script { image = "etl:1.0" script = """\n  echo "a: b"\n  ---\n  echo !!python/object {{ }}\n"""'
               " after = [args] }\n")
    name = write(tmp_path, "looks.aip", program)
    for target in TARGETS:
        result = aipc(tmp_path, "compile", "-t", target, name)
        assert result.returncode == 0, result.stderr.decode()
        documents = list(yaml.safe_load_all(result.stdout))
        assert all(isinstance(d, dict) for d in documents)
        found = set(strings_in(documents))
        for text in lookalikes:
            expected = text.replace("$", "$$") if target == "compose" else text
            assert expected in found or any(f"={expected}" in s for s in found), (target, text)
        assert any("echo !!python/object {{ }}" in s for s in found), target


# ------------------------------------------------------------ size and memory

LONG_LITERALS = {  # one string (or number) of about a mebibyte, each a way it once cost ~200 bytes a byte
    "plain": 'data x { image = "a:1" command = ["echo", "' + "x" * MiB + '"] }\n',
    "escapes": 'data x { image = "a:1" command = ["echo", "' + "x\\n" * (MiB // 3) + '"] }\n',
    "dollars": 'data x { image = "a:1" command = ["echo", "' + "$x" * (MiB // 2) + '"] }\n',
    "triple-quoted": 'data x { image = "a:1" script = """\n  ' + "x" * MiB + '\n""" }\n',
    "short-lines": 'data x { image = "a:1" script = """\n' + "  x $y\n" * (MiB // 7) + '""" }\n',
    "number-unit": 'data x { image = "a:1" retries = 1' + "a1" * (MiB // 2) + "a }\n",
}


@pytest.mark.parametrize("text", LONG_LITERALS.values(), ids=LONG_LITERALS.keys())
def test_a_long_literal_costs_a_few_bytes_per_byte(text):
    """Checking and writing YAML peak at a small multiple of the input: the
    regular expressions keep no backtracking point per character (possessive
    repeats), string decoding keeps no list per character or per line."""
    tracemalloc.start()
    try:
        checked = check_source(text, "long.aip")
        checking = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        if checked.ir is not None:
            to_yaml(get_backend("k8s").emit(checked.ir).documents)
        writing = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert checking < 16 * len(text) and writing < 16 * len(text)


def test_twelve_megabytes_of_strings_compile_in_bounded_memory(tmp_path):
    """A long argument, an environment value full of escapes and a script of many
    short lines: every target, within 512 MiB of address space."""
    plain, escapes, lines = "x" * (5 * MiB), "x\\n" * (MiB // 3 * 2), "  x $y\n" * (5 * MiB // 7)
    name = write(tmp_path, "big.aip", f'data x {{ image = "a:1" command = ["echo", "{plain}"] env = {{ E = "{escapes}" }} }}\n'
                                      f'data y {{ image = "a:1" script = """\n{lines}""" after = [x] }}\n')
    for target in TARGETS:
        result = aipc(tmp_path, "compile", "-t", target, name, seconds=60, memory=512 * MiB)
        assert result.returncode == 0 and result.stdout.count(plain.encode()) == 1


def test_reading_stops_at_the_limit(tmp_path):
    """An input is read up to MAX_INPUT_BYTES and one byte more: a larger file, an
    endless device or stdin is one E001, quickly, in little memory."""
    at_limit = write(tmp_path, "at.aip", b"#" * MAX_INPUT_BYTES)
    assert aipc(tmp_path, "check", at_limit, seconds=60).returncode == 0
    over = write(tmp_path, "over.aip", b"#" * (MAX_INPUT_BYTES + 1))
    for args in (["check", "--format", "json", over], ["check", "--format", "json", "/dev/zero"]):
        result = aipc(tmp_path, *args, seconds=30, memory=256 * MiB)
        (found,) = json.loads(result.stdout)
        assert found["code"] == "E001" and f"larger than {MAX_INPUT_MIB} MiB" in found["message"]
    with open(tmp_path / over, "rb") as stdin:
        piped = subprocess.run([sys.executable, "-m", "aipc", "check", "--format", "json", "-"], stdin=stdin,
                               capture_output=True, timeout=30)
    assert piped.returncode == 1 and json.loads(piped.stdout)[0]["message"].startswith("`<stdin>` is larger")


def test_the_limit_is_documented():
    assert f"larger than {MAX_INPUT_MIB} MiB" in " ".join(CODES["E001"].explanation.split())
    assert f"{MAX_INPUT_MIB} MiB" in (ROOT / "README.md").read_text()


# ------------------------------------------------------- dangerous programs (issue 12)

DANGEROUS = {  # a program that type-checks, and what the checker must say about it
    "docker-socket": ('volume s { host = "/var/run/docker.sock" }\n'
                      'data a { image = "docker:27.1"  mount s at "/var/run/docker.sock" }\n', ["W401"]),
    "host-root": ('volume r { host = "/" }\ndata a { image = "e:1"  mount r at "/host" readonly }\n', ["W401"]),
    "ssh-keys": ('volume k { host = "$HOME/.ssh" }\ndata a { image = "e:1"  mount k at "/k" }\n', ["W401"]),
    "mount-over-proc": ('volume v { size = 1Gi }\ndata a { image = "e:1"  mount v at "/proc/../proc" }\n', ["E401"]),
    "mount-over-root": ('volume v { size = 1Gi }\ndata a { image = "e:1"  mount v at "//" }\n', ["E401"]),
    "env-over-secret": ('secret s { keys = ["TOKEN"] }\n'
                        'data a { image = "e:1"  secrets = [s]  env = { TOKEN = "plain" } }\n', ["E402"]),
    "password-in-env": ('data a { image = "e:1"  env = { DB_PASSWORD = "hunter2" } }\n', ["W402"]),
    "image-with-newline": ('data a { image = "python:3.11\\n" }\n', ["E403"]),
    "image-lookalike": ('data a { image = "pyth\u043en:3.11" }\n', ["E403"]),
    "image-with-scheme": ('data a { image = "https://ghcr.io/a/b:1" }\n', ["E403"]),
    "registry-with-scheme": ('pipeline "p" { registry = "http://r.example.com" }\ndata a { image = "b:1" }\n',
                             ["E403"]),
    "bad-digest": ('data a { image = "b@sha256:' + "g" * 64 + '" }\n', ["E403"]),
    "no-stages": ('pipeline "p" { namespace = "ml" }\n', ["W403"]),
}


@pytest.mark.parametrize("name", DANGEROUS)
def test_dangerous_programs_are_not_accepted_silently(tmp_path, name):
    program, expected = DANGEROUS[name]
    result = aipc(tmp_path, "check", "--format", "json", write(tmp_path, "p.aip", program))
    assert codes(result) == expected
    assert result.returncode == (1 if any(code.startswith("E") for code in expected) else 0)


def test_an_argo_parameter_never_reaches_a_manifest_raw(tmp_path):
    """`-p` (or, on a Workflow, `argo submit -p`) with YAML in the value: the serve
    stage's manifest is still the one object aipc wrote, with the value one string."""
    injected = "it's fine\n      hostNetwork: true\n      containers: [{name: x, image: evil}]"
    program = ('param note: string = "ok"\n'
               'serve api { image = "api:1.0"  port = 8080  env = { NOTE = "${note}" } }\n')
    name = write(tmp_path, "inject.aip", program)
    result = aipc(tmp_path, "compile", "-t", "argo", name, "-p", f"note={injected}")
    assert result.returncode == 0, result.stderr.decode()
    (workflow,) = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert "arguments" not in workflow["spec"]  # nothing left to submit into the manifest
    manifests = [yaml.safe_load(t["resource"]["manifest"]) for t in workflow["spec"]["templates"] if "resource" in t]
    (deployment,) = [m for m in manifests if m["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert "hostNetwork" not in pod and len(pod["containers"]) == 1
    assert {"name": "NOTE", "value": injected} in pod["containers"][0]["env"]
    assert b"B101" in result.stderr
