"""``check_source``: the one entry point from text to IR that the CLI, the
language server and every backend use.

It leaves the garbage collector alone: on a large file its passes cost as much
as the check, so the caller decides (the CLI runs without it, see aipc.cli; the
language server raises its thresholds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping

from aipc import codes
from aipc.compiler import ir, sources
from aipc.compiler.sources import normalize_newlines
from aipc.compiler.imports import ImportedFile, Reader
from aipc.compiler.lower import lower
from aipc.compiler.templates import expand
from aipc.compiler.values import suggestions_limited
from aipc.diagnostics import Diagnostic, Diagnostics
from aipc.dsl.parser import ParseResult, parse


@dataclass(frozen=True)
class Checked:
    """The IR (None when there are errors), every diagnostic in source order (by
    file), the files the check read besides the checked one (imports), and how
    many templates the checked file declares. It unpacks as ``ir, diagnostics``."""

    ir: ir.Pipeline | None
    diagnostics: list[Diagnostic]
    imported: tuple[ImportedFile, ...] = ()
    templates: int = 0

    def __iter__(self) -> Iterator:
        return iter((self.ir, self.diagnostics))

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.diagnostics)


def decode(data: bytes, path: str, sink: Diagnostics) -> str | None:
    """UTF-8 text from bytes (a BOM is dropped); binary or other encodings are reported."""
    try:
        return sources.decode(data, path)
    except sources.Unreadable as problem:
        sink.error(codes.UNREADABLE, None, problem.message, help=problem.help)
        return None


def source_text(data: str | bytes, path: str) -> tuple[str | None, list[Diagnostic]]:
    """The text ``check_source`` works on: decoded, without BOM, LF line ends.

    Lines and columns in diagnostics refer to this text, so renderers use it too.
    """
    sink = Diagnostics(path)
    if isinstance(data, (bytes, bytearray)):
        decoded = decode(bytes(data), path, sink)
        if decoded is None:
            return None, sink.sorted()
        data = decoded
    return normalize_newlines(data), []


def check_source(text: str | bytes, path: str, params: Mapping[str, str] | None = None, *,
                 read: Reader | None = None) -> Checked:
    """Parse, check and lower one .aip source. Never raises for any input.

    Imported files are read with ``read`` (a path -> its text, raising
    :class:`~aipc.compiler.sources.Unreadable`), from the file system by default.
    """
    text, problems = source_text(text, path)
    if text is None:
        return Checked(None, problems)
    return check_parsed(parse(text, path), path, params, read=read)


def check_parsed(parsed: ParseResult, path: str, params: Mapping[str, str] | None = None, *,
                 read: Reader | None = None) -> Checked:
    """What ``check_source`` does after parsing, for a caller that parsed the text
    itself (the language server re-parses only the declarations that changed)."""
    sink = Diagnostics(path)
    sink.extend(parsed.diagnostics)
    with suggestions_limited():
        expansion = expand(parsed.program, sink, read)
        pipeline = lower(expansion.program, params or {}, sink, expansion.uses, expansion.unresolved)
    if sink.has_errors:
        pipeline = None
    return Checked(pipeline, sink.sorted(), expansion.files, expansion.templates)


__all__ = ["Checked", "check_parsed", "check_source", "source_text"]
