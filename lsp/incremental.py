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
syntax error is parsed again together with the chunks after it, until its
error recovery is over before the last of them starts: from there on the
whole-file recovery is in step with the chunks again, so this too is exact.
Two cases stay inexact (``exact = False``), and the server follows them with a
whole-file check: an unclosed triple quote (it runs on to the next triple quote,
anywhere) and brackets nested past the parser's depth limit.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass
from typing import Callable

from aipc import codes
from aipc.diagnostics import Diagnostic, Label, Span
from aipc.dsl import model as m
from aipc.dsl import scanner
from aipc.dsl.format import SYNTAX_CODES
from aipc.dsl.parser import ParseResult, deep_nesting, parse


def chunk_starts(text: str) -> list[int]:
    """Offsets where chunks start: 0, then each line that begins a declaration."""
    return scanner.declaration_starts(text)


@dataclass(frozen=True)
class ChunkParse:
    """One chunk's parse, its spans shifted to start at ``base``."""

    base: int
    length: int
    declarations: tuple
    broken: tuple
    incomplete: tuple
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
        incomplete = tuple(i for c in chunks for i in c.parsed.incomplete)
        self.program = m.Program(path=path, declarations=declarations, broken=broken, incomplete=incomplete)
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
        """A diagnostic of this document in real offsets (labels in other files, which
        imports bring in, are in their own)."""
        return dataclasses.replace(
            diagnostic, span=self.real_span(diagnostic.span),
            related=tuple(Label(self.real_span(label.span), label.message) if label.file is None else label
                          for label in diagnostic.related),
        )


class Cancelled(Exception):
    """A parse given up because its version is no longer wanted (a newer one came)."""


class IncrementalParser:
    """Parses successive versions of one document, re-using unchanged chunks.

    Not thread-safe: one parse at a time per parser (the language server runs a
    document's work one piece at a time)."""

    MAX_GROUP = 8  # chunks re-parsed together around a syntax error before giving up on exactness

    def __init__(self, path: str) -> None:
        self.path = path
        self._cache: dict[str, list[ChunkParse]] = {}
        self._next_base = 1  # virtual 0 stays unowned, like a span that points at no chunk

    def parse(self, text: str, cancelled: Callable[[], bool] | None = None) -> ParsedDocument:
        """The parse of ``text``. ``cancelled`` is asked between chunks: when it says
        yes, :class:`Cancelled` is raised, and the chunks parsed so far are kept for
        the next version, which usually shares most of them."""
        starts = chunk_starts(text)
        bounds = list(zip(starts, starts[1:] + [len(text)]))
        self._seen: dict[str, int] = {}
        self._fresh: dict[str, list[ChunkParse]] = {}
        units: list[Chunk] = []
        broken = False
        index = 0
        while index < len(bounds):
            if cancelled is not None and cancelled():
                self._keep_fresh()
                raise Cancelled
            start, end = bounds[index]
            unit = self._unit(text[start:end])
            if not unit.exact:
                broken = True
                index, grouped = self._group(text, bounds, index, unit)
                units.append(grouped)
            else:
                units.append(Chunk(start, text[start:end], unit))
            index += 1
        self._cache = self._fresh
        document = ParsedDocument(text, self.path, units)
        if not broken or deep_nesting(text) is None:
            return document
        # brackets left open by a broken chunk nest the chunks after it: the whole
        # file's parse stops at the depth limit, so only its answer is right
        return ParsedDocument(text, self.path, [Chunk(c.start, c.text, dataclasses.replace(c.parsed, exact=False))
                                                for c in units])

    def _keep_fresh(self) -> None:
        """After a cancelled parse: the chunks it parsed join the cache (ahead of the
        earlier version's parses of the same text), so that no work is lost."""
        for piece, parses in self._fresh.items():
            self._cache[piece] = parses + self._cache.get(piece, [])[len(parses):]

    def _group(self, text: str, bounds, index: int, first: ChunkParse) -> tuple[int, Chunk]:
        """A chunk with a syntax error, parsed together with the chunks after it until
        its recovery ends where the next chunk begins, as the whole file's would. Returns
        the index of the group's last chunk and the group."""
        start = bounds[index][0]
        if _unclosed_triple_quote(first, text[start:bounds[index][1]]):
            # `"""` without its closing quotes swallows text up to the next `"""` anywhere
            return index, Chunk(start, text[start:bounds[index][1]], first)
        last = index
        while True:
            if last + 1 >= len(bounds) or last - index >= self.MAX_GROUP:
                end = bounds[last][1]
                parsed = self._unit(text[start:end])
                exact = last + 1 >= len(bounds) and not _unclosed_triple_quote(parsed, text[start:end])
                return last, Chunk(start, text[start:end], dataclasses.replace(parsed, exact=exact))
            last += 1
            end = bounds[last][1]
            piece = text[start:end]
            parsed = self._unit(piece)
            tail = parsed.base + (bounds[last][0] - start)  # where the last chunk starts, virtually
            if _unclosed_triple_quote(parsed, piece):
                return last, Chunk(start, piece, parsed)
            if _in_step(parsed, tail):
                return last, Chunk(start, piece, dataclasses.replace(parsed, exact=True))

    def _unit(self, piece: str) -> ChunkParse:
        occurrence = self._seen.get(piece, 0)
        self._seen[piece] = occurrence + 1
        previous = self._cache.get(piece, [])
        parsed = previous[occurrence] if occurrence < len(previous) else self._parse_chunk(piece)
        self._fresh.setdefault(piece, []).append(parsed)
        return parsed

    def _parse_chunk(self, piece: str) -> ChunkParse:
        base = self._next_base
        self._next_base += len(piece) + 1
        result = parse(piece, self.path)
        declarations = tuple(m.shifted(d, base) for d in result.program.declarations)
        diagnostics = tuple(_shift_diagnostic(d, base) for d in result.diagnostics)
        exact = not any(d.code in SYNTAX_CODES for d in diagnostics)
        return ChunkParse(base, len(piece), declarations, result.program.broken, result.program.incomplete,
                          diagnostics, exact)


def _in_step(parsed: ChunkParse, tail: int) -> bool:
    """Whether a group's recovery was over when its last chunk began at ``tail``: a
    declaration starts right there, and nothing in the last chunk is reported (but
    a label pointing at its first token, "expected `}` before this")."""
    if not any(declaration.span.start == tail for declaration in parsed.declarations):
        return False
    for diagnostic in parsed.diagnostics:
        if diagnostic.span is not None and diagnostic.span.end > tail:
            return False
        if any(label.span.start > tail for label in diagnostic.related):
            return False
    return True


def _unclosed_triple_quote(parsed: ChunkParse, piece: str) -> bool:
    return any(d.code == codes.UNTERMINATED_STRING.id and d.span is not None
               and piece.startswith('"""', d.span.start - parsed.base) for d in parsed.diagnostics)


def _shift_diagnostic(diagnostic: Diagnostic, delta: int) -> Diagnostic:
    def moved(span):
        return None if span is None else Span(span.start + delta, span.end + delta)

    return dataclasses.replace(
        diagnostic, span=moved(diagnostic.span),
        related=tuple(Label(moved(label.span), label.message) for label in diagnostic.related),
    )
