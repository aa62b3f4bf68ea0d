"""Where output goes: `-o` and `aipc fmt` never replace what is not a regular file,
keep links, modes and read-only files; a full disk is an I/O error; output is
UTF-8 whatever the locale.

Everything runs `aipc` in a child process, as a user would: the standard streams
are set up at the process edge. Device nodes are made in tmp_path (the tests run
as root in CI), never the machine's own /dev/null or /dev/full: a regression
would replace them.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

EXAMPLE = str(ROOT / "examples" / "fraud-detection.aip")
MESSY = 'data   one {\n    image="a:1"\n}\n'
TIDY = 'data one {\n  image = "a:1"\n}\n'

# Each command that writes a file, with the -o (or file) argument last.
WRITERS = {
    "compile": ["compile", EXAMPLE, "-t", "k8s", "-o"],
    "graph": ["graph", EXAMPLE, "--format", "dot", "-o"],
}


def aipc(*args: str, cwd: Path | None = None, stdout=subprocess.PIPE, env: dict | None = None,
         stdin: bytes | None = None, preexec=None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "aipc", *args], cwd=cwd, stdout=stdout, stderr=subprocess.PIPE,
                            input=stdin, env={**os.environ, **(env or {})}, timeout=60, preexec_fn=preexec)
    assert b"Traceback" not in result.stderr and b"internal error" not in result.stderr, result.stderr.decode()
    return result


def device(path: Path, minor: int) -> Path:
    """A character device node of the kernel's memory driver: 3 is null, 7 is full."""
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    return path


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".aipc-" in p.name)


# ------------------------------------------------------------ what is not a file


@pytest.mark.parametrize("command", WRITERS)
def test_a_device_is_written_to_not_replaced(tmp_path, command):
    null = device(tmp_path / "null", 3)
    result = aipc(*WRITERS[command], str(null))
    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(null.lstat().st_mode) and null.lstat().st_rdev == os.makedev(1, 3)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("command", WRITERS)
def test_a_fifo_is_written_to_not_replaced(tmp_path, command):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = aipc(*WRITERS[command], str(fifo))
    reader.join(timeout=30)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    expected = aipc(*WRITERS[command][:-1]).stdout
    assert received == [expected] and expected


def test_a_link_to_standard_output_writes_to_it(tmp_path):
    """/dev/stdout is a link to /proc/self/fd/1: what is written goes where the
    shell pointed stdout, here a pipe; the link stays. (A link of our own in
    tmp_path: were /dev/stdout itself replaced, the machine would lose it.)"""
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    result = aipc("compile", EXAMPLE, "-t", "k8s", "-o", str(link))
    assert result.returncode == 0, result.stderr
    assert result.stdout == aipc("compile", EXAMPLE, "-t", "k8s").stdout
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"
    assert leftovers(tmp_path) == []


def test_a_link_to_standard_output_appends_when_the_shell_appends(tmp_path):
    log, link = tmp_path / "log", tmp_path / "stdout"
    log.write_bytes(b"before\n")
    link.symlink_to("/proc/self/fd/1")
    with open(log, "ab") as out:
        result = aipc("compile", EXAMPLE, "-t", "k8s", "-o", str(link), stdout=out)
    assert result.returncode == 0, result.stderr
    assert log.read_bytes() == b"before\n" + aipc("compile", EXAMPLE, "-t", "k8s").stdout


# ----------------------------------------------------------------- regular files


@pytest.mark.parametrize("command", WRITERS)
def test_through_a_symbolic_link_the_target_is_replaced_and_the_link_kept(tmp_path, command):
    real, link = tmp_path / "real.out", tmp_path / "link.out"
    real.write_text("old\n")
    link.symlink_to("real.out")
    assert aipc(*WRITERS[command], str(link)).returncode == 0
    assert link.is_symlink() and os.readlink(link) == "real.out"
    assert real.read_bytes() == aipc(*WRITERS[command][:-1]).stdout


def test_a_dangling_link_gets_its_file(tmp_path):
    link = tmp_path / "link.yaml"
    link.symlink_to("made.yaml")
    assert aipc(*WRITERS["compile"], str(link)).returncode == 0
    assert link.is_symlink() and yaml.safe_load_all((tmp_path / "made.yaml").read_text())


@pytest.mark.parametrize("command", WRITERS)
def test_the_mode_of_an_existing_file_is_kept(tmp_path, command):
    path = tmp_path / "secret.out"
    path.write_text("old\n")
    path.chmod(0o600)
    assert aipc(*WRITERS[command], str(path)).returncode == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() != "old\n"


def test_a_new_file_gets_the_mode_the_umask_gives(tmp_path):
    path = tmp_path / "new.yaml"
    assert aipc(*WRITERS["compile"], str(path), preexec=lambda: os.umask(0o027)).returncode == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("command", WRITERS)
def test_hard_links_all_see_the_new_content(tmp_path, command):
    first, second = tmp_path / "first.out", tmp_path / "second.out"
    first.write_text("old\n")
    os.link(first, second)
    assert aipc(*WRITERS[command], str(first)).returncode == 0
    assert first.stat().st_ino == second.stat().st_ino and first.stat().st_nlink == 2
    assert second.read_bytes() == first.read_bytes() == aipc(*WRITERS[command][:-1]).stdout


def test_fmt_keeps_links_and_modes(tmp_path):
    real, link, other = tmp_path / "real.aip", tmp_path / "link.aip", tmp_path / "other.aip"
    real.write_text(MESSY)
    real.chmod(0o600)
    link.symlink_to("real.aip")
    os.link(real, other)
    result = aipc("fmt", str(link))
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and real.read_text() == other.read_text() == TIDY
    assert stat.S_IMODE(real.stat().st_mode) == 0o600 and real.stat().st_nlink == 2


def test_fmt_refuses_a_read_only_file(tmp_path):
    path = tmp_path / "p.aip"
    path.write_text(MESSY)
    path.chmod(0o444)  # root could write it: aipc must not
    result = aipc("fmt", str(path))
    assert result.returncode == 1
    assert f"cannot write `{path}`: the file is read-only" in result.stderr.decode()
    assert path.read_text() == MESSY and stat.S_IMODE(path.stat().st_mode) == 0o444
    assert leftovers(tmp_path) == []


def test_compile_refuses_a_read_only_file(tmp_path):
    path = tmp_path / "out.yaml"
    path.write_text("old\n")
    path.chmod(0o444)
    result = aipc(*WRITERS["compile"], str(path))
    assert result.returncode == 1 and b"read-only" in result.stderr
    assert path.read_text() == "old\n"


@pytest.mark.parametrize("command, name", [("compile", "fraud-detection.k8s.yaml"), ("graph", "fraud-detection.dot")])
def test_a_new_directory_with_a_trailing_slash(tmp_path, command, name):
    directory = tmp_path / "new" / "dir"
    result = aipc(*WRITERS[command], f"{directory}{os.sep}")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(directory)) == [name]
    assert (directory / name).read_bytes() == aipc(*WRITERS[command][:-1]).stdout
    assert f"wrote {directory / name}" in result.stderr.decode()


def test_without_a_trailing_slash_a_missing_directory_is_an_error(tmp_path):
    result = aipc(*WRITERS["compile"], str(tmp_path / "missing" / "out.yaml"))
    assert result.returncode == 1 and b"No such file or directory" in result.stderr
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ a full disk


@pytest.mark.parametrize("command", WRITERS)
def test_a_full_device_is_an_io_error_naming_the_path(tmp_path, command):
    full = device(tmp_path / "full", 7)
    result = aipc(*WRITERS[command], str(full))
    assert result.returncode == 1
    assert f"aipc {command}: error: cannot write `{full}`: No space left on device" in result.stderr.decode()
    assert stat.S_ISCHR(full.lstat().st_mode)


@pytest.mark.parametrize("args", [
    ["check", EXAMPLE], ["check", "--format", "json", EXAMPLE], ["compile", EXAMPLE, "-t", "argo"],
    ["graph", EXAMPLE], ["plan", EXAMPLE], ["explain", "E001"], ["fmt", "-"],
], ids=["check", "check-json", "compile", "graph", "plan", "explain", "fmt"])
def test_standard_output_on_a_full_disk_is_an_io_error(args):
    stdin = Path(EXAMPLE).read_bytes() if args[-1] == "-" else None
    with open("/dev/full", "wb") as full:
        result = aipc(*args, stdout=full, stdin=stdin)
    assert result.returncode == 1
    assert result.stderr.decode().endswith(
        f"aipc {args[0]}: error: cannot write standard output: No space left on device\n")


def _file_size_limit(size: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def test_a_failed_write_leaves_the_file_as_it_was(tmp_path):
    """A file size limit makes writing fail part of the way, as a full disk does."""
    path = tmp_path / "out.yaml"
    path.write_text("previous\n")
    result = aipc(*WRITERS["compile"], str(path), preexec=_file_size_limit(4096))
    assert result.returncode == 1 and f"cannot write `{path}`: File too large".encode() in result.stderr
    assert path.read_text() == "previous\n" and leftovers(tmp_path) == []


def test_a_failed_write_through_hard_links_puts_the_old_content_back(tmp_path):
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text("previous\n" * 100)
    os.link(first, second)
    result = aipc(*WRITERS["compile"], str(first), preexec=_file_size_limit(4096))
    assert result.returncode == 1 and b"File too large" in result.stderr
    assert first.read_text() == second.read_text() == "previous\n" * 100


def test_fmt_goes_on_with_the_next_file_after_a_failed_write(tmp_path):
    locked, open_ = tmp_path / "locked.aip", tmp_path / "open.aip"
    for path in (locked, open_):
        path.write_text(MESSY)
    locked.chmod(0o400)
    result = aipc("fmt", str(locked), str(open_))
    assert result.returncode == 1
    assert locked.read_text() == MESSY and open_.read_text() == TIDY


# ---------------------------------------------------------------------- locale

UNICODE = 'pipeline "p" { description = "café ✓" }\ndata a { image = "e:1"  command = ["echo", "héllo ✓ ☃"] }\n'


@pytest.fixture(scope="module")
def latin1_locale(tmp_path_factory) -> dict[str, str]:
    """An ISO-8859-1 locale, built with localedef into a directory of its own
    (LOCPATH): the machine need not have one installed."""
    directory = tmp_path_factory.mktemp("locale")
    localedef = shutil.which("localedef")
    assert localedef, "localedef (libc-bin) builds the test locale"
    subprocess.run([localedef, "-i", "en_US", "-f", "ISO-8859-1", str(directory / "en_US.ISO-8859-1")],
                   check=True, capture_output=True, timeout=120)
    return {"LOCPATH": str(directory), "LC_ALL": "en_US.ISO-8859-1"}


def _without_utf8(env: dict[str, str]) -> dict[str, str]:
    """The child's environment: no UTF-8 from ours (LANG, LC_*, PYTHONIOENCODING, PYTHONUTF8)."""
    cleared = {k: "" for k in os.environ if k.startswith(("LC_", "LANG", "PYTHONIOENCODING", "PYTHONUTF8"))}
    return {**cleared, **env}


@pytest.mark.parametrize("setting", ["locale", "PYTHONIOENCODING"])
def test_output_is_utf8_whatever_the_locale(tmp_path, latin1_locale, setting):
    env = _without_utf8(latin1_locale if setting == "locale" else {"PYTHONIOENCODING": "latin-1", "LC_ALL": "C"})
    source = tmp_path / "p.aip"
    source.write_text(UNICODE)
    if setting == "locale":  # the child really runs with a Latin-1 standard output
        probe = subprocess.run([sys.executable, "-c", "import sys; print(sys.stdout.encoding)"],
                               capture_output=True, text=True, env={**os.environ, **env})
        assert probe.stdout.strip() == "iso8859-1"
    for target in ("k8s", "compose", "argo"):
        result = aipc("compile", str(source), "-t", target, env=env)
        assert result.returncode == 0, result.stderr.decode()
        assert "héllo ✓ ☃".encode() in result.stdout
    bad = tmp_path / "bad.aip"
    bad.write_text('data a { image = "e:1"  workdir = "café ✓" }\n')
    human = aipc("check", str(bad), env=env)  # diagnostics on stdout
    assert human.returncode == 1 and 'workdir = "café ✓"'.encode() in human.stdout
    assert 'help: write "/café ✓"'.encode() in human.stdout
    listed = aipc("check", "--format", "json", str(bad), env=env)
    assert json.loads(listed.stdout.decode("utf-8"))[0]["help"] == 'write "/café ✓"'
    compiled = aipc("compile", str(bad), "-t", "k8s", env=env)  # diagnostics on stderr
    assert compiled.returncode == 1 and 'help: write "/café ✓"'.encode() in compiled.stderr


def test_a_file_name_that_is_not_utf8_is_shown_escaped(tmp_path):
    name = os.fsencode(tmp_path) + b"/caf\xe9.aip"
    with open(name, "w") as handle:
        handle.write('data a { image = "e:1" }\n')
    result = subprocess.run([sys.executable, "-m", "aipc", "check", name], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode("utf-8").strip().endswith("caf\\udce9.aip: ok (1 stage)")
