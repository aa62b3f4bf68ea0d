"""One diagnostic type for every phase, and its renderers.

A diagnostic is data: a severity, a stable code (see :mod:`aipc.codes`), a
message, a primary span with a label, secondary spans and a help line. Spans
are character offsets into one source text; lines and columns are computed only
when rendering, by :class:`Source`.

A check reads one file and the files it imports. Spans of the checked file are
its offsets; each imported file has a number (once per process, see
:func:`file_base`) and its spans are its offsets plus that number times
``FILE_STRIDE``, so a span says by itself which file it is in, and a check of
one file pays nothing for it. A :class:`Diagnostics` sink turns such a span into
the file's name and an offset within it when the diagnostic is reported; a
:class:`Label` in another file than its diagnostic's names that file.

Renderers: :func:`render_human` (rustc-style, colour only when asked),
:func:`to_json` (1-based lines and columns, end exclusive) and, in the language
server, LSP diagnostics (0-based, UTF-16 columns).
"""

from __future__ import annotations

import bisect
import enum
import json
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Iterator, NamedTuple, Sequence

from aipc.codes import Code


class Span(NamedTuple):
    """A half-open range of character offsets ``[start, end)`` in one source."""

    start: int
    end: int


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Label:
    """A secondary span, with what it shows ("first declared here"); ``file`` names
    the file it is in when that is not its diagnostic's."""

    span: Span
    message: str
    file: str | None = None


# ------------------------------------------------------------------ other files

FILE_STRIDE = 1 << 40  # offsets of one file; a 16 MiB input uses 2**24 of them
_file_paths: list[str] = []  # the imported files, by number - 1
_file_numbers: dict[str, int] = {}
_files_lock = threading.Lock()


def file_base(path: str) -> int:
    """Where the offsets of ``path`` start when a check reads it as an imported file.

    Numbers are given once per process and per path (the language server checks
    many versions of a file; they share its number), so spans from any check can
    be located without passing a table around."""
    with _files_lock:
        number = _file_numbers.get(path)
        if number is None:
            _file_paths.append(path)
            number = _file_numbers[path] = len(_file_paths)
    return number * FILE_STRIDE


def locate(span: Span) -> tuple[str | None, Span]:
    """The imported file a span is in (None: the checked file) and the span in that file."""
    number = span.start // FILE_STRIDE
    if number == 0:
        return None, span
    base = number * FILE_STRIDE
    return _file_paths[number - 1], Span(span.start - base, span.end - base)


@dataclass(frozen=True)
class Use:
    """A template's text, checked as part of a stage that starts from it: what that
    stage's diagnostics about the template's text add, "used here" at the stage."""

    regions: tuple[Span, ...]
    label: Label

    def covers(self, span: Span) -> bool:
        return any(region.start <= span.start and span.end <= region.end for region in self.regions)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    severity: Severity
    code: str
    message: str
    file: str
    span: Span | None = None
    label: str = ""
    help: str | None = None
    related: tuple[Label, ...] = ()

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple:
        start = self.span.start if self.span is not None else -1
        return (self.file, start, self.code, self.message)


@dataclass
class Diagnostics:
    """A sink that phases report into: ``sink.error(codes.X, span, "...", help=...)``.

    Identical reports are kept once, so a phase may look at a construct twice
    without repeating itself.
    """

    file: str
    items: list[Diagnostic] = field(default_factory=list)
    _seen: set = field(default_factory=set, repr=False)
    _errors_reported: int = field(default=0, repr=False)  # repeats included
    _use: Use | None = field(default=None, repr=False)

    def report(
        self,
        severity: Severity,
        code: Code,
        span: Span | None,
        message: str,
        *,
        label: str = "",
        help: str | None = None,
        related: Sequence[Label] = (),
    ) -> None:
        key_extra = None
        use = self._use
        if use is not None and span is not None and use.covers(span):
            related = (*related, use.label)  # each use of a template reports its own
            key_extra = use.label.span
        file = self.file
        if span is not None and span.start >= FILE_STRIDE:
            located, span = locate(span)
            file = located or file
        if related:
            related = tuple(self._located(item, file) for item in related)
        diagnostic = Diagnostic(severity, code.id, message, file, span, label, help, tuple(related))
        if severity is Severity.ERROR:
            self._errors_reported += 1
        key = (diagnostic.code, file, span, message)
        if key_extra is not None:
            if key in self._seen:
                return  # the template's own error, reported once without a use
            key = (*key, key_extra)
        if key in self._seen:
            return
        self._seen.add(key)
        self.items.append(diagnostic)

    def _located(self, label: Label, file: str) -> Label:
        """A label with its span in its own file, naming that file when it is not ``file``."""
        if label.file is not None:
            return label
        located, span = locate(label.span)
        located = located or self.file
        return Label(span, label.message, None if located == file else located)

    @contextmanager
    def used_by(self, use: Use):
        """Within: a diagnostic whose span is in ``use.regions`` (the templates a stage
        starts from) gets ``use.label`` ("used here", at the stage), and is reported
        for each use, unless it was reported without a use (the template's own error)."""
        previous, self._use = self._use, use
        try:
            yield
        finally:
            self._use = previous

    def error(self, code: Code, span: Span | None, message: str, **details) -> None:
        self.report(Severity.ERROR, code, span, message, **details)

    def warning(self, code: Code, span: Span | None, message: str, **details) -> None:
        self.report(Severity.WARNING, code, span, message, **details)

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        for diagnostic in diagnostics:
            key = (diagnostic.code, diagnostic.file, diagnostic.span, diagnostic.message)
            if diagnostic.is_error:
                self._errors_reported += 1
            if key not in self._seen:
                self._seen.add(key)
                self.items.append(diagnostic)

    @property
    def has_errors(self) -> bool:
        return self.error_count() > 0

    def count_reported_error(self) -> None:
        """Count an error that is already listed (an earlier phase reported its
        cause), so that the construct it breaks is known to be invalid."""
        self._errors_reported += 1

    def error_count(self) -> int:
        """How many errors have been reported, repeats included: a phase compares
        counts to know whether a construct had any, even one already listed."""
        return self._errors_reported

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.items, key=Diagnostic.sort_key)


class Position(NamedTuple):
    """A 1-based line and column (columns count characters)."""

    line: int
    column: int


class Source:
    """A source text that turns offsets into lines and columns."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self._line_starts = [0]
        index = text.find("\n")
        while index != -1:
            self._line_starts.append(index + 1)
            index = text.find("\n", index + 1)

    def position(self, offset: int) -> Position:
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self._line_starts, offset) - 1
        return Position(line + 1, offset - self._line_starts[line] + 1)

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, without its line break."""
        start = self._line_starts[line - 1]
        end = self._line_starts[line] - 1 if line < len(self._line_starts) else len(self.text)
        return self.text[start:end].rstrip("\r")


# --------------------------------------------------------------------------- JSON


def to_json(diagnostics: Iterable[Diagnostic], sources: dict[str, Source]) -> list[dict]:
    """Plain objects for ``--format json``: 1-based lines and columns, end exclusive; a
    related label in another file than its diagnostic's names it in ``file``."""

    def place(file: str, span: Span | None) -> dict:
        source = sources.get(file)
        if span is None or source is None:
            return {"line": None, "column": None, "end_line": None, "end_column": None}
        start, end = source.position(span.start), source.position(span.end)
        return {"line": start.line, "column": start.column, "end_line": end.line, "end_column": end.column}

    out = []
    for diagnostic in diagnostics:
        item = {"file": diagnostic.file, **place(diagnostic.file, diagnostic.span)}
        item.update(
            severity=diagnostic.severity.value,
            code=diagnostic.code,
            message=diagnostic.message,
            help=diagnostic.help,
        )
        if diagnostic.related:
            item["related"] = [
                {"message": label.message, **({"file": label.file} if label.file else {}),
                 **place(label.file or diagnostic.file, label.span)}
                for label in diagnostic.related
            ]
        out.append(item)
    return out


def render_json(diagnostics: Iterable[Diagnostic], sources: dict[str, Source]) -> str:
    return json.dumps(to_json(diagnostics, sources), indent=2, ensure_ascii=False) + "\n"


# -------------------------------------------------------------------------- human

_COLOURS = {
    "error": "\x1b[1;31m",
    "warning": "\x1b[1;33m",
    "bold": "\x1b[1m",
    "blue": "\x1b[1;34m",
    "reset": "\x1b[0m",
}


class _Paint:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, style: str, text: str) -> str:
        if not self.enabled:
            return text
        return f"{_COLOURS[style]}{text}{_COLOURS['reset']}"


# What a terminal must not receive raw from the input: C0 controls but the tab (ESC
# starts the sequences that recolour, retitle or rewrite a terminal), DEL, C1
# controls, the bidirectional controls that reorder what is shown ("trojan
# source"), line and paragraph separators, and lone surrogates (from file names
# that are not UTF-8).
_UNSHOWN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(found: re.Match) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` for a terminal: control characters written as escapes (``\\x1b``)."""
    return _UNSHOWN.sub(_escape, text) if _UNSHOWN.search(text) else text


def _expand_tabs(text: str) -> str:
    """A source line as shown: tabs as four spaces, control characters escaped
    (per character, so a shown prefix is as wide as the prefix it shows)."""
    return visible(text).replace("\t", "    ")


_MAX_SHOWN_LINE = 160  # a longer source line is shown cut around the span, with "..."
_BEFORE_SPAN = 40  # columns kept before the span when a line is cut


def _cut(line: str, column: int, width: int) -> tuple[str, int, int]:
    """At most ``_MAX_SHOWN_LINE`` columns of a long line, around the marked ones:
    a line of megabytes is not repeated under each of its errors."""
    if len(line) <= _MAX_SHOWN_LINE:
        return line, column, width
    first = max(0, min(column - _BEFORE_SPAN, len(line) - _MAX_SHOWN_LINE))
    last = first + _MAX_SHOWN_LINE
    lead = "..." if first > 0 else ""
    shown = lead + line[first:last] + ("..." if last < len(line) else "")
    return shown, len(lead) + column - first, max(1, min(width, last - column))


def _snippet(source: Source, span: Span, label: str, mark: str, style: str,
             paint: _Paint, gutter: int) -> list[str]:
    start, end = source.position(span.start), source.position(span.end)
    text = source.line_text(start.line)
    prefix = _expand_tabs(text[: start.column - 1])
    if end.line == start.line:
        width = max(1, end.column - start.column)
        marked = _expand_tabs(text[start.column - 1 : start.column - 1 + width])
        width = max(1, len(marked))
    else:  # a span over several lines: mark to the end of its first line
        width = max(1, len(_expand_tabs(text)) - len(prefix))
    shown, column, width = _cut(_expand_tabs(text), len(prefix), width)
    number = str(start.line).rjust(gutter)
    bar = paint("blue", " " * gutter + " |")
    lines = [
        paint("blue", f"{number} |") + (" " + shown if shown else ""),
        bar + " " + " " * column + paint(style, mark * width + (f" {label}" if label else "")),
    ]
    return lines


def render_one(diagnostic: Diagnostic, sources: dict[str, Source], paint: _Paint) -> str:
    severity = diagnostic.severity.value
    lines = [paint(severity, f"{severity}[{diagnostic.code}]") + paint("bold", f": {visible(diagnostic.message)}")]
    source = sources.get(diagnostic.file)
    # the spans shown, each with the source it is in (a label may be in another file)
    shown = [(source, diagnostic.span)] if diagnostic.span is not None and source is not None else []
    labels = [(sources.get(label.file or diagnostic.file), label) for label in diagnostic.related]
    shown += [(where, label.span) for where, label in labels if where is not None]
    gutter = len(str(max(where.position(span.start).line for where, span in shown))) if shown else 1
    pad = " " * gutter
    where = visible(diagnostic.file)
    if source is not None and diagnostic.span is not None:
        start = source.position(diagnostic.span.start)
        where = f"{where}:{start.line}:{start.column}"
    lines.append(paint("blue", f"{pad}--> ") + where)
    if shown:
        lines.append(paint("blue", f"{pad} |"))
        if source is not None and diagnostic.span is not None:
            lines += _snippet(source, diagnostic.span, visible(diagnostic.label), "^", severity, paint, gutter)
        current = diagnostic.file
        for label_source, label in labels:
            if label_source is None:
                continue
            if label_source.path != current:  # rustc's `:::` names the file the next lines are in
                current = label_source.path
                start = label_source.position(label.span.start)
                lines += [paint("blue", f"{pad} |"),
                          paint("blue", f"{pad}::: ") + f"{visible(current)}:{start.line}:{start.column}",
                          paint("blue", f"{pad} |")]
            lines += _snippet(label_source, label.span, visible(label.message), "-", "blue", paint, gutter)
    if diagnostic.help:
        lines.append(paint("blue", f"{pad} = ") + paint("bold", "help") + f": {visible(diagnostic.help)}")
    return "\n".join(lines)


def summary(diagnostics: Sequence[Diagnostic]) -> str:
    errors = sum(1 for d in diagnostics if d.is_error)
    warnings = len(diagnostics) - errors
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return ", ".join(parts)


def render_human(
    diagnostics: Sequence[Diagnostic],
    sources: dict[str, Source],
    *,
    color: bool = False,
    limit: int | None = None,
) -> str:
    """rustc-style text: a header, the location, the line with a caret, help.

    With ``limit``, at most that many diagnostics are shown and the rest are
    counted in one closing line, so a file with thousands of errors stays readable.
    """
    paint = _Paint(color)
    shown = diagnostics if limit is None else diagnostics[:limit]
    blocks = [render_one(d, sources, paint) for d in shown]
    hidden = len(diagnostics) - len(shown)
    if hidden > 0:
        blocks.append(f"... and {hidden} more diagnostic{'s' if hidden != 1 else ''} not shown")
    return "\n\n".join(blocks) + ("\n" if blocks else "")
