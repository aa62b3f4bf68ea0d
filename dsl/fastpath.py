"""The parser's fast path, for files without syntax errors.

A file without syntax errors goes through lark's own terminals and LALR table
but not through lark's per-token machinery, which costs more than the parse
itself: one regular expression skips ignored text and matches the next token
(no token objects for whitespace, no line and column counting: spans are
offsets), and a tight loop runs the LALR table, passing a reduction of one
symbol through without a call. The model builder's callbacks are lark's, so
both ways build the same model; the tests compare them on every example and
on generated programs. Any lexing or parsing error leaves the fast path, and
the recovery (:mod:`aipc.dsl.recovery`) reports it.
"""

from __future__ import annotations

import functools
import itertools
import re
from typing import NamedTuple

from lark import Lark, Token
from lark.lexer import PatternStr, UnlessCallback
from lark.parse_tree_builder import ExpandSingleChild
from lark.parsers.lalr_analysis import Shift

from aipc.dsl.parser import lark_parser


class FastToken(Token):
    """A lark token from the fast lexer: type, value and offsets (no lines or columns)."""

    __slots__ = ()


class FastPath(NamedTuple):
    master: re.Pattern  # ignored text, then one token as a named group
    ignored: re.Pattern  # ignored text only (what may follow the last token)
    keywords: dict  # terminal -> {text: the keyword terminal lark retypes it to}
    table: list[dict]  # state -> {symbol: next state (shift) | (size, rule name, callback or None)}
    start: int
    end: int


@functools.lru_cache(maxsize=1)
def fast_path() -> FastPath | None:
    """Built from the cached parser; None if lark's internals are not the ones
    this was written for (lark < 2 is required), and the plain path is used."""
    try:
        return _build(lark_parser())
    except (AttributeError, AssertionError, KeyError, TypeError, re.error):
        return None


def _build(lark: Lark) -> FastPath:
    lexer = lark.parser.lexer
    terminals = lexer.scanner.terminals  # lark's matching order, keywords already folded into WORD
    ignore = lexer.ignore_types
    assert not lexer.user_callbacks and lark.options.postlex is None
    skip = "|".join(t.pattern.to_regexp() for t in terminals if t.name in ignore)
    tokens = "|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in terminals if t.name not in ignore)
    ignored = f"(?:{skip})*+" if skip else ""  # possessive: no backtracking into whitespace runs
    keywords: dict[str, dict[str, str]] = {}
    for name, callback in lexer.callback.items():
        assert isinstance(callback, UnlessCallback)
        folded = callback.scanner.terminals
        assert all(isinstance(t.pattern, PatternStr) and not t.pattern.flags for t in folded)
        keywords[name] = {t.pattern.value: t.name for t in folded}

    lalr = lark.parser.parser.parser
    reductions = {}
    for rule, callback in lalr.callbacks.items():
        size = len(rule.expansion)
        passthrough = size == 1 and isinstance(callback, ExpandSingleChild)  # `?rule` of one symbol
        reductions[rule] = (size, rule.origin.name, None if passthrough else callback)
    states = lalr.parse_table.states
    assert set(states) == set(range(len(states)))
    table: list[dict] = [{} for _ in states]
    for state, actions in states.items():
        row = table[state]
        for symbol, (action, target) in actions.items():
            row[symbol] = target if action is Shift else reductions[target]
            assert (action is Shift) == isinstance(row[symbol], int)
    return FastPath(
        master=re.compile(f"{ignored}(?:{tokens})", lexer.g_regex_flags),
        ignored=re.compile(ignored, lexer.g_regex_flags),
        keywords=keywords, table=table,
        start=lalr.parse_table.start_states["start"], end=lalr.parse_table.end_states["start"],
    )


_str_new = str.__new__


UNREADABLE = "$UNREADABLE"  # a token type no parser state accepts
_END = Token("$END", "")  # the end of input, which the table reduces the start rule on


def fast_tokens(fast: FastPath, text: str, position: int = 0):
    """The tokens of ``text`` from ``position`` on as lark's lexer makes them, one
    at a time (a large file's tokens are not all alive at once). Where lark's
    lexer would stop, the last token has the type ``UNREADABLE`` and starts at
    the character that cannot be read."""
    match = fast.master.match
    keywords = fast.keywords
    while True:
        found = match(text, position)
        if found is None:
            break
        kind = found.lastgroup
        start, position = found.span(kind)
        value = text[start:position]
        retype = keywords.get(kind)
        if retype is not None:
            kind = retype.get(value, kind)
        token = _str_new(FastToken, value)
        token.type = kind
        token.value = value
        token.start_pos = start
        token.end_pos = position
        yield token
    position = fast.ignored.match(text, position).end()
    if position != len(text):
        yield Token(UNREADABLE, text[position : position + 1], position, end_pos=position + 1)


def fast_parse(fast: FastPath, text: str) -> list | None:
    """The declarations of ``text`` built by the model builder, or None on any syntax error."""
    table = fast.table
    states = [fast.start]
    values: list = []
    try:
        for token in itertools.chain(fast_tokens(fast, text), (_END,)):
            symbol = token.type
            action = table[states[-1]][symbol]
            while action.__class__ is not int:  # reduce until the token can be shifted
                size, origin, callback = action
                if callback is None:  # the one child is the value: only the state changes
                    states[-1] = table[states[-2]][origin]
                else:
                    if size:
                        children = values[-size:]
                        del states[-size:]
                        del values[-size:]
                    else:
                        children = []
                    values.append(callback(children))
                    states.append(table[states[-1]][origin])
                if states[-1] == fast.end:  # only the end of input reduces the start rule
                    return values[-1]
                action = table[states[-1]][symbol]
            states.append(action)
            values.append(token)
    except KeyError:  # no action for this symbol: a syntax error
        return None
