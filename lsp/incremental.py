"""Re-parse only the declarations an edit touched.

A 300-stage file takes a few hundred milliseconds to parse whole, far more than
the budget between a keystroke and its diagnostic. The text is cut into chunks
at lines that start (in column 0) with a declaration keyword, outside strings
and comments; each chunk is parsed on its own by :func:`aipc.dsl.parser.parse`
and cached by its text, so an edit re-parses one chunk.

Positions: a chunk's model keeps the offsets it was first parsed at, in a
*virtual* coordinate space where every cached chunk owns a disjoint range, so a
chunk that only moved (text was inserted above it) is reused unchanged. The
checker runs on the concatenated chunks in virtual coordinates; diagnostics and
spans are mapped back to real offsets with :meth:`ParsedDocument.real_span`.

Exactness: when every chunk parses without a syntax error, the chunks' tokens
and declarations are exactly those of a whole-file parse (no token crosses a
line that starts with a declaration keyword, and every chunk ends where a
declaration ends), so the diagnostics equal `aipc check`'s. A chunk with a
syntax error was recovered on its own, which can differ from a whole-file
recovery near its end; such a document is marked ``exact = False`` and the
server follows up with a whole-file check.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from dataclasses import dataclass

from pydantic import BaseModel

from aipc.diagnostics import Diagnostic, Label, Span
from aipc.dsl import model as m
from aipc.dsl.format import SYNTAX_CODES
from aipc.dsl.parser import ParseResult, parse

_KEYWORD_LINE = r"^(?=(?:pipeline|param|volume|secret|data|train|eval|serve)[ \t]+[A-Za-z_\"])"
_SCAN = re.compile(
    r'(?P<skip>"""[\s\S]*?"""|"(?!"")(?:\\.|[^"\\\n])*"|(?:#|//)[^\n]*)|(?P<start>' + _KEYWORD_LINE + ")",
    re.MULTILINE,
)


def chunk_starts(text: str) -> list[int]:
    """Offsets where chunks start: 0, then each line that begins a declaration."""
    starts = [0]
    for match in _SCAN.finditer(text):
        if match.group("start") is not None and match.start() > 0:
            starts.append(match.start())
    return starts


@dataclass(frozen=True)
class ChunkParse:
    """One chunk's parse, its spans shifted to start at ``base``."""

    base: int
    length: int
    declarations: tuple
    broken: tuple
    diagnostics: tuple[Diagnostic, ...]
    exact: bool


@dataclass(frozen=True)
class Chunk:
    start: int  # real offset
    text: str
    parsed: ChunkParse


class ParsedDocument:
    """A document's parse in virtual coordinates, and the way back to real offsets."""

    def __init__(self, text: str, path: str, chunks: list[Chunk]) -> None:
        self.text = text
        self.path = path
        self.chunks = chunks
        self.exact = all(c.parsed.exact for c in chunks)
        declarations = tuple(d for c in chunks for d in c.parsed.declarations)
        broken = tuple(b for c in chunks for b in c.parsed.broken)
        self.program = m.Program(path=path, declarations=declarations, broken=broken)
        self.diagnostics = [d for c in chunks for d in c.parsed.diagnostics]
        self._starts = [c.start for c in chunks]
        by_base = sorted(range(len(chunks)), key=lambda i: chunks[i].parsed.base)
        self._bases = [chunks[i].parsed.base for i in by_base]
        self._by_base = by_base

    @property
    def parse_result(self) -> ParseResult:
        return ParseResult(self.program, self.diagnostics)

    def real(self, offset: int) -> int | None:
        """The real offset of a virtual one (None if no chunk of this version holds it)."""
        at = bisect.bisect_right(self._bases, offset) - 1
        if at < 0:
            return None
        chunk = self.chunks[self._by_base[at]]
        inside = offset - chunk.parsed.base
        if inside > chunk.parsed.length:
            return None
        return chunk.start + inside

    def virtual(self, offset: int) -> int:
        """The virtual offset of a real one."""
        at = max(0, bisect.bisect_right(self._starts, offset) - 1)
        chunk = self.chunks[at]
        return chunk.parsed.base + min(offset - chunk.start, chunk.parsed.length)

    def real_span(self, span: Span | None) -> Span | None:
        if span is None:
            return None
        start, end = self.real(span.start), self.real(span.end)
        if start is None or end is None:
            return Span(0, 0)
        return Span(start, max(start, end))

    def real_diagnostic(self, diagnostic: Diagnostic) -> Diagnostic:
        return dataclasses.replace(
            diagnostic, span=self.real_span(diagnostic.span),
            related=tuple(Label(self.real_span(label.span), label.message) for label in diagnostic.related),
        )


class IncrementalParser:
    """Parses successive versions of one document, re-using unchanged chunks."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._cache: dict[str, list[ChunkParse]] = {}
        self._next_base = 1  # virtual 0 stays unowned, like a span that points at no chunk

    def parse(self, text: str) -> ParsedDocument:
        starts = chunk_starts(text)
        bounds = list(zip(starts, starts[1:] + [len(text)]))
        seen: dict[str, int] = {}
        cache: dict[str, list[ChunkParse]] = {}
        chunks = []
        for start, end in bounds:
            piece = text[start:end]
            occurrence = seen.get(piece, 0)
            seen[piece] = occurrence + 1
            previous = self._cache.get(piece, [])
            parsed = previous[occurrence] if occurrence < len(previous) else self._parse_chunk(piece)
            cache.setdefault(piece, []).append(parsed)
            chunks.append(Chunk(start, piece, parsed))
        self._cache = cache
        return ParsedDocument(text, self.path, chunks)

    def _parse_chunk(self, piece: str) -> ChunkParse:
        base = self._next_base
        self._next_base += len(piece) + 1
        result = parse(piece, self.path)
        declarations = tuple(shift(d, base) for d in result.program.declarations)
        diagnostics = tuple(_shift_diagnostic(d, base) for d in result.diagnostics)
        exact = not any(d.code in SYNTAX_CODES for d in diagnostics)
        return ChunkParse(base, len(piece), declarations, result.program.broken, diagnostics, exact)


def shift(node, delta: int):
    """A copy of a model node with every span moved by ``delta``."""
    if isinstance(node, Span):
        return Span(node.start + delta, node.end + delta)
    if isinstance(node, BaseModel):
        return type(node).model_construct(**{name: shift(value, delta) for name, value in node.__dict__.items()})
    if isinstance(node, tuple):
        return tuple(shift(item, delta) for item in node)
    return node


def _shift_diagnostic(diagnostic: Diagnostic, delta: int) -> Diagnostic:
    def moved(span):
        return None if span is None else Span(span.start + delta, span.end + delta)

    return dataclasses.replace(
        diagnostic, span=moved(diagnostic.span),
        related=tuple(Label(moved(label.span), label.message) for label in diagnostic.related),
    )
