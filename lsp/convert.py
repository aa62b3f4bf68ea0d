"""Offsets and LSP positions, and aipc diagnostics as LSP diagnostics.

aipc spans are character offsets into the checked text (a leading BOM removed,
CRLF and lone CR turned into LF). LSP positions are a 0-based line and a
column counted in the negotiated encoding's code units: UTF-16 unless the
client agreed to another (``utf-8`` or ``utf-32``). A character outside the
Basic Multilingual Plane (an emoji) is one offset, two UTF-16 units and four
UTF-8 bytes; a tab is one of each.
"""

from __future__ import annotations

import bisect
from typing import Callable

from lsprotocol import types

from aipc.diagnostics import Diagnostic, Severity, Span

UTF8, UTF16, UTF32 = "utf-8", "utf-16", "utf-32"


def _units(char: str, encoding: str) -> int:
    point = ord(char)
    if encoding == UTF16:
        return 2 if point > 0xFFFF else 1
    if encoding == UTF8:
        return 1 if point < 0x80 else 2 if point < 0x800 else 3 if point < 0x10000 else 4
    return 1


def units_of(text: str, encoding: str = UTF16) -> int:
    """How many code units ``text`` takes in ``encoding``."""
    if encoding == UTF32 or text.isascii():
        return len(text)
    if encoding == UTF16:
        return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)
    return len(text.encode("utf-8"))


class LineIndex:
    """Converts between offsets in a text and LSP positions.

    ``bom`` says the editor's text starts with a BOM that the checked text has
    lost: positions on the first line are then one unit further right.
    """

    def __init__(self, text: str, encoding: str = UTF16, bom: bool = False) -> None:
        self.text = text
        self.encoding = encoding if encoding in (UTF8, UTF16, UTF32) else UTF16
        self.bom_units = _units("\ufeff", self.encoding) if bom else 0
        self.starts = [0]
        index = text.find("\n")
        while index != -1:
            self.starts.append(index + 1)
            index = text.find("\n", index + 1)

    @property
    def line_count(self) -> int:
        """How many lines the text has (a last empty line after a final line break included)."""
        return len(self.starts)

    def line_text(self, line: int) -> str:
        start = self.starts[line]
        end = self.starts[line + 1] - 1 if line + 1 < len(self.starts) else len(self.text)
        return self.text[start:end]

    def position(self, offset: int) -> types.Position:
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self.starts, offset) - 1
        start = self.starts[line]
        column = units_of(self.text[start:offset], self.encoding)
        return types.Position(line=line, character=column + (self.bom_units if line == 0 else 0))

    def offset(self, position: types.Position) -> int:
        """The offset of a position; past the end of a line means its end, past the
        last line means the end of the text. A column inside a surrogate pair (or a
        UTF-8 sequence) falls back to the start of that character."""
        if position.line < 0:
            return 0
        if position.line >= len(self.starts):
            return len(self.text)
        line = self.line_text(position.line)
        wanted = position.character - (self.bom_units if position.line == 0 else 0)
        if self.encoding == UTF32 or line.isascii():
            column = max(0, min(wanted, len(line)))
        else:
            column, used = 0, 0
            for char in line:
                width = _units(char, self.encoding)
                if used + width > wanted:
                    break
                used += width
                column += 1
        return self.starts[position.line] + column

    def range(self, span: Span) -> types.Range:
        return types.Range(start=self.position(span.start), end=self.position(span.end))

    def span(self, range_: types.Range) -> Span:
        return Span(self.offset(range_.start), self.offset(range_.end))


# Where a file's spans go in the editor: its URI and its positions.
Place = tuple[str, LineIndex]


def diagnostic(item: Diagnostic, index: LineIndex, uri: str,
               elsewhere: Callable[[str], Place | None] | None = None) -> types.Diagnostic:
    """An aipc diagnostic as the editor shows it: the help line under the message,
    secondary labels as related information, in another file when the label names
    one (``elsewhere`` places it; a label it cannot place is left out)."""
    span = item.span if item.span is not None else Span(0, 0)
    message = item.message
    if item.help:
        message += f"\nhelp: {item.help}"
    related = []
    for label in item.related:
        place = (uri, index) if label.file is None else (elsewhere(label.file) if elsewhere else None)
        if place is not None:
            related.append(types.DiagnosticRelatedInformation(
                location=types.Location(uri=place[0], range=place[1].range(label.span)), message=label.message))
    return types.Diagnostic(
        range=index.range(span),
        message=message,
        severity=_severity(item),
        code=item.code,
        source="aipc",
        related_information=related or None,
    )


def imported_diagnostic(item: Diagnostic, via: Span, index: LineIndex, uri: str,
                        elsewhere: Callable[[str], Place | None], shown: str) -> types.Diagnostic:
    """A diagnostic in a file the document imports, as the document shows it: at the
    ``import`` that brought the file in (``via``), naming the file (``shown``) and the
    place, which with the diagnostic's labels is related information."""
    place = elsewhere(item.file)
    converted = diagnostic(item, place[1] if place else index, place[0] if place else uri, elsewhere)
    where = shown
    related = list(converted.related_information or [])
    if place is not None and item.span is not None:
        start = place[1].position(item.span.start)
        where = f"{shown}:{start.line + 1}:{start.character + 1}"
        related.insert(0, types.DiagnosticRelatedInformation(
            location=types.Location(uri=place[0], range=place[1].range(item.span)),
            message=item.label or item.message))
    return types.Diagnostic(
        range=index.range(via), message=f"{where}: {converted.message}", severity=converted.severity,
        code=item.code, source="aipc", related_information=related or None,
    )


def _severity(item: Diagnostic) -> types.DiagnosticSeverity:
    return types.DiagnosticSeverity.Error if item.severity is Severity.ERROR else types.DiagnosticSeverity.Warning
