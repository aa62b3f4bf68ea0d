"""``check_source``: the one entry point from text to IR that the CLI, the
language server and every backend use.

It leaves the garbage collector alone: on a large file its passes cost as much
as the check, so the caller decides (the CLI runs without it, see aipc.cli; the
language server raises its thresholds).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

from aipc import codes
from aipc.compiler import ir
from aipc.compiler.lower import lower
from aipc.compiler.values import suggestions_limited
from aipc.diagnostics import Diagnostic, Diagnostics
from aipc.dsl.parser import ParseResult, parse


class Checked(NamedTuple):
    """The IR (None when there are errors) and every diagnostic, in source order."""

    ir: ir.Pipeline | None
    diagnostics: list[Diagnostic]

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.diagnostics)


def decode(data: bytes, path: str, sink: Diagnostics) -> str | None:
    """UTF-8 text from bytes (a BOM is dropped); binary or other encodings are reported."""
    if b"\x00" in data:
        sink.error(codes.UNREADABLE, None, f"`{path}` is a binary file, not .aip text",
                   help="a .aip file is UTF-8 text")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        sink.error(codes.UNREADABLE, None,
                   f"`{path}` is not UTF-8 text (byte 0x{data[error.start]:02x} at line {line})",
                   help="re-save the file as UTF-8")
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


def check_source(text: str | bytes, path: str, params: Mapping[str, str] | None = None) -> Checked:
    """Parse, check and lower one .aip source. Never raises for any input."""
    text, problems = source_text(text, path)
    if text is None:
        return Checked(None, problems)
    return check_parsed(parse(text, path), path, params)


def check_parsed(parsed: ParseResult, path: str, params: Mapping[str, str] | None = None) -> Checked:
    """What ``check_source`` does after parsing, for a caller that parsed the text
    itself (the language server re-parses only the declarations that changed)."""
    sink = Diagnostics(path)
    sink.extend(parsed.diagnostics)
    with suggestions_limited():
        pipeline = lower(parsed.program, params or {}, sink)
    if sink.has_errors:
        pipeline = None
    return Checked(pipeline, sink.sorted())


def normalize_newlines(text: str) -> str:
    """CRLF and lone CR become LF, and a leading BOM goes: offsets then match what
    editors call lines and columns."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


__all__ = ["Checked", "check_parsed", "check_source", "source_text"]
