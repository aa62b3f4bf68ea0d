"""The parser's fast path, for files without syntax errors.

A file without syntax errors goes through lark's own LALR table but not
through lark's per-token machinery, which costs more than the parse itself:
the tokens come from :func:`aipc.dsl.scanner.scan` (no token objects for
whitespace, no line and column counting: spans are offsets), and a tight loop
runs the table, passing a reduction of one symbol through without a call. The
model builder's callbacks are lark's, so both ways build the same model; the
tests compare them on every example and on generated programs.

The fast path gives up on a table miss only (a token no action takes: a
syntax error, or a token the scanner made of unreadable text), and the error
recovery (:mod:`aipc.dsl.recovery`) reports it. Anything a callback raises is
a bug and propagates.

``AIPC_PARSER_FASTPATH=0`` in the environment turns it off: lark's own parser
then parses every file. The test command runs the diagnostics and hostile-input
tests a second time that way.
"""

from __future__ import annotations

import functools
import itertools
import os
from typing import NamedTuple

from lark import Lark, Token
from lark.parse_tree_builder import ExpandSingleChild
from lark.parsers.lalr_analysis import Shift

from aipc.dsl import scanner
from aipc.dsl.builder import lark_parser

SWITCH = "AIPC_PARSER_FASTPATH"


class FastPath(NamedTuple):
    table: list[dict]  # state -> {symbol: next state (shift) | (size, rule name, callback or None)}
    start: int
    end: int


def fast_path() -> FastPath | None:
    """The fast path, or None when ``AIPC_PARSER_FASTPATH=0`` turns it off."""
    if os.environ.get(SWITCH, "1") == "0":
        return None
    return build_fast_path()


@functools.lru_cache(maxsize=1)
def build_fast_path() -> FastPath:
    """Lark's LALR table as a list indexed by state, from the cached parser. It
    reads lark's internals (lark < 2 is required); the tests build it."""
    lark: Lark = lark_parser()
    assert lark.options.postlex is None and not lark.parser.lexer.user_callbacks
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
        table=table, start=lalr.parse_table.start_states["start"], end=lalr.parse_table.end_states["start"],
    )


_END = Token("$END", "")  # the end of input, which the table reduces the start rule on


def fast_parse(fast: FastPath, text: str) -> list | None:
    """The declarations of ``text`` built by the model builder, or None on a syntax error."""
    table = fast.table
    states = [fast.start]
    values: list = []
    for token in itertools.chain(scanner.scan(text), (_END,)):
        symbol = token.type
        try:
            action = table[states[-1]][symbol]
        except KeyError:  # no action for this token: a syntax error
            return None
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
            try:
                action = table[states[-1]][symbol]
            except KeyError:
                return None
        states.append(action)
        values.append(token)
    raise AssertionError("the end of input did not finish the parse")  # the table always ends on $END
