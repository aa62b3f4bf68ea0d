"""Parse .aip text into the surface model, reporting every independent syntax error.

``parse(text, path)`` first parses the whole file in one go, on the fast path
of :mod:`aipc.dsl.fastpath` (or with lark's own parser when the fast path is
off). Only when that finds a syntax error does it re-parse declaration by
declaration with the error recovery of :mod:`aipc.dsl.recovery`, which reports
each error once, in words a user knows.

The grammar is ``grammar.lark``; :mod:`aipc.dsl.builder` holds the callbacks
that build the model from its rules.
"""

from __future__ import annotations

from typing import NamedTuple

from lark.exceptions import UnexpectedInput

from aipc import codes
from aipc.diagnostics import Diagnostics, Span
from aipc.dsl import fastpath, scanner
from aipc.dsl import model as m
from aipc.dsl.builder import building_sink, lark_parser
from aipc.dsl.recovery import Recovery

MAX_NESTING = 64


class ParseResult(NamedTuple):
    program: m.Program
    diagnostics: Diagnostics


def parse(text: str, path: str) -> ParseResult:
    """Parse a whole file. Never raises for bad input: problems are diagnostics."""
    sink = Diagnostics(path)
    deepest = deep_nesting(text)
    if deepest is not None:
        sink.error(codes.UNEXPECTED_TOKEN, deepest,
                   f"brackets nested more than {MAX_NESTING} levels deep",
                   help="no pipeline needs this much nesting; flatten the value")
        return ParseResult(_program(path, ()), sink)
    reset = building_sink.set(sink)
    try:
        declarations = _parse_whole(text)
        if declarations is not None:
            return ParseResult(_program(path, tuple(declarations)), sink)
        sink = Diagnostics(path)  # the whole-file attempt stopped half-way; start over
        building_sink.set(sink)
        recovered = Recovery(text, sink).run()
        program = _program(path, tuple(recovered.declarations), tuple(recovered.broken),
                           tuple(recovered.incomplete))
        return ParseResult(program, sink)
    finally:
        building_sink.reset(reset)


def _parse_whole(text: str) -> list | None:
    """The declarations of a file without syntax errors, else None."""
    fast = fastpath.fast_path()
    if fast is not None:
        return fastpath.fast_parse(fast, text)
    try:
        return lark_parser().parse(text, start="start")
    except UnexpectedInput:
        return None


def _program(path: str, declarations: tuple, broken: tuple = (), incomplete: tuple = ()) -> m.Program:
    return m.construct(m.Program, path=path, declarations=declarations, broken=broken, incomplete=incomplete)


def deep_nesting(text: str) -> Span | None:
    """The first bracket nested deeper than MAX_NESTING, if any (one linear scan)."""
    found = scanner.nesting_overflow(text, MAX_NESTING)
    return None if found is None else Span(*found)
