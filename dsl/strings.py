"""String literals: escapes, triple-quote indentation removal, ``${...}``.

Pure functions from a string token's raw text to the parts of a
:class:`aipc.dsl.model.Str` and a list of problems; the parser reports the
problems. Offsets in problems are absolute positions in the source.
"""

from __future__ import annotations

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


def _dedent(content: str, base: int) -> tuple[str, list[int]]:
    """Triple-quoted text: drop a blank first and last line, then the common indentation.

    Returns the text and, for each of its characters, its offset in the source.
    """
    lines = content.split("\n")
    starts = []
    offset = base
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1
    first, last = 0, len(lines)
    if len(lines) > 1 and not lines[0].strip():
        first = 1
    if last - first > 1 and not lines[-1].strip():
        last -= 1
        trailing_newline = True
    else:
        trailing_newline = False
    kept = list(range(first, last))
    indent = _common_indent([lines[i] for i in kept if lines[i].strip()])
    text: list[str] = []
    offsets: list[int] = []
    for position, index in enumerate(kept):
        line = lines[index]
        cut = len(indent) if line.startswith(indent) else len(line) - len(line.lstrip(" \t"))
        text.append(line[cut:])
        offsets.extend(range(starts[index] + cut, starts[index] + len(line)))
        if position < len(kept) - 1 or trailing_newline:
            text.append("\n")
            offsets.append(starts[index] + len(line))
    return "".join(text), offsets


def _common_indent(lines: list[str]) -> str:
    if not lines:
        return ""
    prefixes = [line[: len(line) - len(line.lstrip(" \t"))] for line in lines]
    common = prefixes[0]
    for prefix in prefixes[1:]:
        while not prefix.startswith(common):
            common = common[:-1]
    return common


_SPECIAL = re.compile(r"[\\$]")  # where an escape or an interpolation may start
_DOLLAR = re.compile(r"\$")


def _next_special(text: str, start: int, escapes: bool) -> int:
    found = (_SPECIAL if escapes else _DOLLAR).search(text, start)
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
