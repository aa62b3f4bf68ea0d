"""String literals: escapes, triple-quote indentation removal, ``${...}``.

Pure functions from a string token's raw text to the parts of a
:class:`aipc.dsl.model.Str` and a list of problems; the parser reports the
problems. Offsets in problems are absolute positions in the source.
"""

from __future__ import annotations

import bisect
import re
from typing import NamedTuple

from aipc import codes
from aipc.codes import Code
from aipc.diagnostics import Span
from aipc.dsl.model import Interpolation, construct
from aipc.dsl.vocabulary import INTERPOLATION_NAME as _INTERPOLATION_NAME

_tuple_new = tuple.__new__  # Span(a, b) without NamedTuple's Python-level __new__
ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "$": "$"}


class Problem(NamedTuple):
    code: Code
    span: Span
    message: str
    help: str | None = None


Parts = tuple  # tuple[str | Interpolation, ...]


def decode(raw: str, start: int) -> tuple[Parts, list[Problem]]:
    """Decode a string token (``"..."`` or ``\"\"\"...\"\"\"``) found at offset ``start``."""
    if raw.startswith('"""'):
        text, offsets = _dedent(raw[3:-3], start + 3)
        return _split(text, offsets, escapes=False)
    body = raw[1:-1]
    if "\\" not in body and "$" not in body:  # most strings: the text as written
        return ((body,) if body else ()), []
    return _split(body, range(start + 1, start + 1 + len(body)), escapes=True)


def _dedent(content: str, base: int) -> tuple[str, "_LineOffsets"]:
    """Triple-quoted text: drop a blank first and last line, then the common indentation.

    Returns the text and the offsets in the source of its characters. It works on
    the content as one string (no list of lines): a script of many short lines
    costs a few bytes per byte, not hundreds per line.
    """
    start, end = 0, len(content)
    newline = content.find("\n")
    if newline != -1 and not content[:newline].strip():
        start = newline + 1  # a blank first line
    last_newline = content.rfind("\n", start)
    trailing_newline = last_newline != -1 and not content[last_newline + 1:].strip()
    if trailing_newline:
        end = last_newline  # a blank last line: the text ends with a line break instead
    body = content[start:end]
    indent = None
    for found in _INDENT.finditer(body):  # the indentation of each line that is not blank
        prefix = found.group()
        if indent is None:
            indent = prefix
        while not prefix.startswith(indent):
            indent = indent[:-1]
    if not indent:
        body_text = body
    elif body.count("\n" + indent) + body.startswith(indent) == body.count("\n") + 1:
        body_text = body[len(indent):].replace("\n" + indent, "\n")  # every line has the indentation
    else:  # a blank line shorter than the indentation loses its spaces and tabs
        body_text = re.compile(f"^(?:{re.escape(indent)}|[ \t]+)", re.M).sub("", body)
    return body_text + ("\n" if trailing_newline else ""), _LineOffsets(body, indent or "", base + start)


_INDENT = re.compile(r"^[ \t]*(?=[^\n]*?\S)", re.M)
_LEADING = re.compile(r"[ \t]*")


class _LineOffsets:
    """The source offset of each character of a dedented text: one run per line,
    worked out on first use (only a problem or a `${...}` needs one)."""

    __slots__ = ("_body", "_indent", "_base", "_firsts", "_sources")

    def __init__(self, body: str, indent: str, base: int) -> None:
        self._body, self._indent, self._base = body, indent, base
        self._firsts: list[int] = []  # the index in the text where each line starts
        self._sources: list[int] = []  # and the offset in the source of that character

    def __getitem__(self, index: int) -> int:
        if not self._firsts:
            body, indent = self._body, self._indent
            position = removed = 0
            while position != -1:
                cut = len(indent) if body.startswith(indent, position) else (
                    _LEADING.match(body, position).end() - position)
                self._firsts.append(position - removed)
                self._sources.append(self._base + position + cut)
                removed += cut
                position = body.find("\n", position)
                position = position + 1 if position != -1 else -1
        run = bisect.bisect_right(self._firsts, index) - 1
        return self._sources[run] + index - self._firsts[run]


# Where an escape, `${` or `$${` starts: the text between two of them is one literal
# run (a `$` alone does not cut a run: one piece per `$` would cost ~30 bytes per byte).
_SPECIAL = re.compile(r"\\|\$\$?\{")
_INTERPOLATION_START = re.compile(r"\$\$?\{")


def _next_special(text: str, start: int, escapes: bool) -> int:
    found = (_SPECIAL if escapes else _INTERPOLATION_START).search(text, start)
    return found.start() if found else len(text)


def _split(text: str, offsets, *, escapes: bool) -> tuple[Parts, list[Problem]]:
    """Split text into literal runs and interpolations, decoding escapes if asked."""
    parts: list = []
    literal: list[str] = []
    problems: list[Problem] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if escapes and char == "\\":
            if i + 1 < n and text[i + 1] in ESCAPES:
                literal.append(ESCAPES[text[i + 1]])
            else:
                shown = text[i : i + 2]
                span = Span(offsets[i], offsets[min(i + 1, n - 1)] + 1)
                problems.append(Problem(
                    codes.INVALID_ESCAPE, span, f"invalid escape sequence `{shown}`",
                    "known escapes are \\\" \\\\ \\n \\t \\r \\$; write \\\\ for a backslash",
                ))
                literal.append(text[i + 1] if i + 1 < n else "")
            i += 2
            continue
        if char == "$" and text.startswith("$${", i):
            literal.append("${")
            i += 3
            continue
        if char == "$" and text.startswith("${", i):
            close = text.find("}", i + 2)
            newline = text.find("\n", i + 2)
            if close == -1 or (newline != -1 and newline < close):
                end = n if newline == -1 else newline
                problems.append(Problem(
                    codes.INVALID_INTERPOLATION, Span(offsets[i], offsets[end - 1] + 1),
                    "`${` is not closed by `}`",
                    "write `${name}` for a parameter, or `$${` for a literal `${`",
                ))
                literal.append(text[i:end])
                i = end
                continue
            inside = text[i + 2 : close]
            name = inside.strip()
            span = Span(offsets[i], offsets[close] + 1)
            if not _INTERPOLATION_NAME.fullmatch(name):
                problems.append(Problem(
                    codes.INVALID_INTERPOLATION, span,
                    f"`{text[i:close + 1]}` is not a parameter reference",
                    "write `${name}` for a parameter, or `$${` for a literal `${`",
                ))
                literal.append(text[i : close + 1])
            else:
                if literal:
                    parts.append("".join(literal))
                    literal = []
                first = i + 2 if name == inside else i + 2 + len(inside) - len(inside.lstrip())
                name_span = _tuple_new(Span, (offsets[first], offsets[first + len(name) - 1] + 1))
                parts.append(construct(Interpolation, span=span, name=name, name_span=name_span))
            i = close + 1
            continue
        # an ordinary run of text, up to the next character that may start something
        end = _next_special(text, i + 1, escapes)
        literal.append(text[i:end])
        i = end
    if literal:
        parts.append("".join(literal))
    merged: list = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        elif part != "":
            merged.append(part)
    return tuple(merged), problems
