"""The one scanner of .aip text: the grammar's terminals as one regular expression.

:func:`scan` reads any text without failing. Where the grammar's terminals
match, it makes the tokens lark's lexer makes (same types, keywords retyped
from words, same offsets; the tests compare the two on any text). Where they
do not, it still makes a token, of a type no rule of the grammar takes:

- ``UNCLOSED_STRING``: a `"` string that the line ends before it is closed;
- ``UNCLOSED_LONG_STRING``: a `\"\"\"` string that the text ends before it is closed;
- ``UNREADABLE``: one character that starts no token.

The parser's fast path stops at such a token (no LALR action takes it), the
error recovery reports it, and completion reads it as the string being typed.
Spans are offsets; tokens carry no line or column.

:func:`declaration_starts` (the language server's chunks) and
:func:`nesting_overflow` (the parser's depth limit) skip the same strings and
comments as :func:`scan`, with one regular expression each: they are called
on every keystroke over the whole text, where a Python loop per token would
cost ten times more.
"""

from __future__ import annotations

import functools
import re
from typing import Iterator

from lark import Token

from aipc.dsl import vocabulary as v

UNCLOSED_STRING = "UNCLOSED_STRING"
UNCLOSED_LONG_STRING = "UNCLOSED_LONG_STRING"
UNREADABLE = "UNREADABLE"
PROBLEMS = frozenset({UNCLOSED_STRING, UNCLOSED_LONG_STRING, UNREADABLE})
if PROBLEMS & set(v.TERMINALS):
    raise v.GrammarReadError(f"grammar.lark may not define {sorted(PROBLEMS & set(v.TERMINALS))}")
COMMENT = "COMMENT"

# What a string is when it is not closed: everything up to the end of its line
# (a one-line string) or of the text (a triple-quoted one).
_TOLERANT = {
    UNCLOSED_LONG_STRING: r'"""[\s\S]*',
    UNCLOSED_STRING: r'"(?:\\.|[^"\\\n])*',
    UNREADABLE: r"[\s\S]",
}


class ScannedToken(Token):
    """A lark token with its type, text and offsets (no lines or columns)."""

    __slots__ = ()


def _lexing_order() -> list[v.Terminal]:
    """The terminals in the order lark's basic lexer tries them: by priority, then
    the longest possible match, then the longest pattern, then the name. Keywords
    are left out: they are read as words, then retyped."""
    def longest(terminal: v.Terminal) -> int:
        if terminal.literal is not None:
            return len(terminal.literal)
        # An approximation of lark's (which parses the pattern): exact for the
        # unbounded patterns the grammar has, and the order only matters between
        # terminals that can match the same text. A test holds it equal to lark's.
        return _UNBOUNDED if re.search(r"[*+]|\{\d*,\}", terminal.regex) else len(terminal.regex)

    def written(terminal: v.Terminal) -> int:  # as lark counts it: an escaped character is one
        return len(terminal.literal if terminal.literal is not None else _ESCAPE.sub(_one_character, terminal.regex))

    folded = {name for table in v.RETYPED.values() for name in table.values()}
    terminals = [t for t in v.TERMINALS.values() if t.name not in folded]
    return sorted(terminals, key=lambda t: (-t.priority, -longest(t), -written(t), t.name))


_UNBOUNDED = 2**64
_ESCAPE = re.compile(r"\\(?:\\|[nftr]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})")


def _one_character(escape: re.Match) -> str:
    return escape.group() if escape.group() == "\\\\" else "_"  # lark keeps `\\` as two characters


@functools.lru_cache(maxsize=2)
def _master(comments: bool) -> re.Pattern:
    """Ignored text, then one token as a named group; with ``comments``, comments are tokens."""
    skipped = [v.TERMINALS[name].regex for name in v.IGNORED if comments is False or name != COMMENT]
    tokens = [f"(?P<{t.name}>{t.regex})" for t in _lexing_order()
              if t.name not in v.IGNORED or (comments and t.name == COMMENT)]
    tokens += [f"(?P<{name}>{pattern})" for name, pattern in _TOLERANT.items()]
    ignored = f"(?:{'|'.join(skipped)})*+" if skipped else ""  # possessive: no backtracking into whitespace
    return re.compile(f"{ignored}(?:{'|'.join(tokens)})")


_str_new = str.__new__


def scan(text: str, position: int = 0, end: int | None = None, *, comments: bool = False) -> Iterator[Token]:
    """The tokens of ``text[position:end]``, one at a time (a large file's tokens
    are not all alive at once). Never fails: see the module's docstring."""
    match = _master(comments).match
    retyped = v.RETYPED
    end = len(text) if end is None else end
    while True:
        found = match(text, position, end)
        if found is None:
            return
        kind = found.lastgroup
        start, position = found.span(kind)
        value = text[start:position]
        keywords = retyped.get(kind)
        if keywords is not None:
            kind = keywords.get(value, kind)
        token = _str_new(ScannedToken, value)
        token.type = kind
        token.value = value
        token.start_pos = start
        token.end_pos = position
        yield token


# ----------------------------------------------------- whole-text scans by one regex


def _skipped() -> str:
    """Closed strings and comments: text in which no keyword or bracket counts. (An
    unclosed triple quote hides nothing: while it is being typed, the rest of the
    file would otherwise become one string.)"""
    return "|".join(v.TERMINALS[name].regex for name in ("LONG_STRING", "STRING", COMMENT))


@functools.lru_cache(maxsize=1)
def _declaration_lines() -> re.Pattern:
    # a line starting (in column 0) with a declaration keyword, then a name or a string
    keywords = "|".join(re.escape(keyword) for keyword in v.DECLARATION_KEYWORDS)
    return re.compile(rf'(?P<skip>{_skipped()})|(?P<start>^(?=(?:{keywords})[ \t]+[A-Za-z_"]))', re.MULTILINE)


def declaration_starts(text: str) -> list[int]:
    """0, then the offset of each line that begins a declaration, outside strings and comments."""
    starts = [0]
    for match in _declaration_lines().finditer(text):
        if match.lastgroup == "start" and match.start() > 0:
            starts.append(match.start())
    return starts


@functools.lru_cache(maxsize=1)
def _brackets() -> re.Pattern:
    brackets = "".join(re.escape(v.TEXT_OF[name]) for pair in v.BRACKETS.items() for name in pair)
    return re.compile(f"{_skipped()}|[{brackets}]")  # no named groups: they cost a third more


def nesting_overflow(text: str, limit: int) -> tuple[int, int] | None:
    """The span of the first bracket nested deeper than ``limit``, if any (one linear scan)."""
    opening = "".join(v.TEXT_OF[name] for name in v.BRACKETS)
    closing = "".join(v.TEXT_OF[name] for name in v.BRACKETS.values())
    if sum(text.count(char) for char in opening) <= limit:
        return None
    depth = 0
    for match in _brackets().finditer(text):
        found = match.group()
        if found in opening:
            depth += 1
            if depth > limit:
                return match.span()
        elif found in closing:
            depth = max(0, depth - 1)
    return None
