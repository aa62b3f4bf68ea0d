"""What the subcommands share: reading and checking inputs, `-p` options, printing diagnostics."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, TextIO

from aipc import codes
from aipc.commands import UsageError
from aipc.compiler.sources import MAX_INPUT_BYTES, MAX_INPUT_MIB, Unreadable, read_bytes  # noqa: F401 (re-exported)
from aipc.diagnostics import Diagnostic, Diagnostics, Source, render_human, render_json, summary, visible

if TYPE_CHECKING:
    from aipc.compiler.ir import Pipeline

MAX_SHOWN = 200  # human output lists at most this many diagnostics and counts the rest


def add_param_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--param", dest="params", action="append", default=[], metavar="NAME=VALUE",
                        help="override a parameter's default (repeatable); checked against its type")


def add_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("human", "json"), default="human",
                        help="how diagnostics are printed (default: human)")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour human diagnostics (default: auto, only on a terminal)")


def parse_params(values: Iterable[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for value in values:
        name, equals, text = value.partition("=")
        if not equals or not name.strip():
            raise UsageError(f"`-p {value}` is not NAME=VALUE")
        params[name.strip()] = text
    return params


@dataclass
class Input:
    """One input file: its text when it could be read, else the diagnostic saying why."""

    path: str
    data: bytes | None
    diagnostics: list[Diagnostic]


def read_input(path: str) -> Input:
    """Read a file for checking (``-`` is stdin), at most MAX_INPUT_BYTES of it; a
    missing file, a directory, a larger input or unreadable bytes become an E001
    diagnostic rather than an exception."""
    shown = "<stdin>" if path == "-" else path
    try:
        return Input(shown, read_bytes(path, shown), [])
    except Unreadable as problem:
        sink = Diagnostics(shown)
        sink.error(codes.UNREADABLE, None, problem.message, help=problem.help)
        return Input(shown, None, sink.sorted())


@dataclass
class CheckedFile:
    """One input, checked: its text (when readable), its IR (when it has no errors),
    its diagnostics in source order, and the files it imports (their diagnostics
    show their text)."""

    path: str
    source: Source | None
    pipeline: "Pipeline | None"
    diagnostics: list[Diagnostic]
    imported: tuple[Source, ...] = ()
    templates: int = 0

    @property
    def sources(self) -> dict[str, Source]:
        found = {source.path: source for source in self.imported}
        if self.source is not None:
            found[self.path] = self.source
        return found


def check_file(path: str, params: dict[str, str]) -> CheckedFile:
    """Read and check one file (`-` is stdin); unreadable input is a diagnostic."""
    from aipc.compiler.check import check_source, source_text

    read = read_input(path)
    if read.data is None:
        return CheckedFile(read.path, None, None, read.diagnostics)
    text, problems = source_text(read.data, read.path)
    if text is None:
        return CheckedFile(read.path, None, None, problems)
    checked = check_source(text, read.path, params)
    imported = tuple(Source(file.path, file.text) for file in checked.imported)
    return CheckedFile(read.path, Source(read.path, text), checked.ir, checked.diagnostics, imported,
                       checked.templates)


def load_pipeline(path: str, param_options: list[str], stream: TextIO | None = None,
                  color: str = "auto") -> "Pipeline | None":
    """For the commands that act on one pipeline (run, graph, plan, apply): the
    checked IR, or None when the file cannot be read or has errors. Every
    diagnostic, warnings too, is printed to ``stream`` (stderr)."""
    stream = stream or sys.stderr
    checked = check_file(path, parse_params(param_options))
    print_diagnostics(checked.diagnostics, checked.sources, "human", color, stream)
    return checked.pipeline


def use_color(choice: str, stream: TextIO) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM") != "dumb"


def print_diagnostics(diagnostics: list[Diagnostic], sources: dict[str, Source], fmt: str,
                      color: str, stream: TextIO) -> None:
    if fmt == "json":
        stream.write(render_json(diagnostics, sources))
        return
    if diagnostics:
        stream.write(render_human(diagnostics, sources, color=use_color(color, stream), limit=MAX_SHOWN))


def print_summary(path: str, diagnostics: list[Diagnostic], stream: TextIO, ok_detail: str = "") -> None:
    path = visible(path)
    counts = summary(diagnostics)
    if any(d.is_error for d in diagnostics):
        stream.write(f"{path}: {counts}\n")
    elif counts:
        stream.write(f"{path}: ok{ok_detail}, {counts}\n")
    else:
        stream.write(f"{path}: ok{ok_detail}\n")


@dataclass
class RunTarget:
    """What `aipc down`, `logs` and `ps` act on: the pipeline a file declares (its
    name and namespace, what a run belongs to) and, when the file checks, its IR."""

    path: str
    name: str
    namespace: str | None
    pipeline: "Pipeline | None"


def run_target(path: str, params: dict[str, str] | None = None) -> RunTarget | None:
    """The pipeline ``path`` declares. A file with errors still names its pipeline
    by its header (or its name): the runs to find may predate the errors. None, with
    the problem printed, when the file cannot be read."""
    from aipc.compiler import ir
    from aipc.compiler.check import check_source, source_text
    from aipc.dsl import model as m
    from aipc.dsl.parser import parse

    read = read_input(path)
    text, problems = (None, read.diagnostics) if read.data is None else source_text(read.data, read.path)
    if text is None:
        print_diagnostics(problems, {}, "human", "auto", sys.stderr)
        return None
    pipeline, _ = check_source(text, read.path, params or {})
    if pipeline is not None:
        return RunTarget(path, pipeline.name, pipeline.namespace, pipeline)
    program = parse(text, read.path).program
    header = next((d for d in program.declarations if isinstance(d, m.PipelineDecl)), None)
    if header is None:
        return RunTarget(path, ir.clean_name(os.path.splitext(os.path.basename(path))[0]), None, None)
    namespace = next((attribute.value.parts[0] for attribute in header.items
                      if isinstance(attribute, m.Attribute) and attribute.name == "namespace"
                      and isinstance(attribute.value, m.Str) and len(attribute.value.parts) == 1
                      and isinstance(attribute.value.parts[0], str)), None)
    return RunTarget(path, ir.clean_name(header.name), namespace, None)


def docker_client(command: str, purpose: str):
    """A client of the local Docker engine, or None once it is said why there is none:
    the `run` extra is not installed, or no engine answers. ``purpose`` says what
    needs it (`reading a running service`)."""
    try:
        from aipc.runner.docker_driver import EngineUnavailable, connect
    except ImportError as missing:
        print(f"aipc {command}: error: {purpose} needs the `run` extra ({missing.name} is not installed): "
              "pip install 'aipc[run]'", file=sys.stderr)
        return None
    try:
        return connect()
    except EngineUnavailable as problem:
        print(f"aipc {command}: error: {problem}", file=sys.stderr)
        return None
