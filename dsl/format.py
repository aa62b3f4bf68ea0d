"""``aipc fmt``: one canonical layout for .aip source, comments kept.

The formatter works on the surface model (what the parser built) plus the
comments, which the grammar ignores and :func:`collect_comments` reads from the
scanner. It never guesses at broken text: a file with syntax errors is refused.

The layout:
- two spaces of indentation, one item per line in a multi-line block, `=`
  aligned over a block's attributes and `at` over its statements (`mount`,
  `output`, `input`);
- a block written on one line stays on one line while it fits in ``WIDTH``
  columns and holds no comment (items separated by two spaces);
- lists and maps stay on one line while they fit; a longer list of plain values
  is filled up to the width, aligned after its `[`; anything else gets one
  element per line with a trailing comma;
- at the top level, consecutive one-line declarations of one kind are aligned
  (parameters on `=`, one-line blocks on `{`), and a blank line separates
  multi-line declarations and declarations of different kinds; elsewhere runs
  of blank lines become one;
- strings and numbers are written as they were (a triple-quoted string is
  re-indented to its new place only when that reads back as the same text).

Comments stay where they were relative to the code: a comment on its own line
stays on its own line before the same item, a comment after code stays after
that item, and the rare comment inside an item (between `mount v` and `at`)
moves to the line before the item. Every result is checked: it must parse to
the same model and hold the same comments, or :class:`FormatterBug` is raised.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from pydantic import BaseModel

from aipc import codes
from aipc.diagnostics import Diagnostic, Span
from aipc.dsl import model as m
from aipc.dsl import scanner, strings
from aipc.dsl.parser import parse

WIDTH = 100
INDENT = "  "
SYNTAX_CODES = frozenset({
    codes.UNEXPECTED_TOKEN.id, codes.UNEXPECTED_CHARACTER.id,
    codes.UNTERMINATED_STRING.id, codes.UNEXPECTED_EOF.id,
})
_SPAN_FIELDS = frozenset({"span", "name_span", "key_span", "kind_span", "from_span"})
# Statements of a body, `KEYWORD SUBJECT at PATH`: `at` is aligned over them.
_STATEMENTS = (m.Mount, m.Output, m.Input)


class Formatted(NamedTuple):
    """The formatted text, or None with the syntax errors that stopped the formatter."""

    text: str | None
    diagnostics: list[Diagnostic]


class FormatterBug(Exception):
    """The formatter's output would not mean what its input meant (a bug in aipc)."""


class Comment(NamedTuple):
    start: int
    end: int
    text: str


def collect_comments(text: str) -> list[Comment]:
    """Every comment of a text that lexes cleanly, in order, without trailing blanks."""
    return _scan(text)[0]


def _scan(text: str) -> tuple[list[Comment], list[int]]:
    """The comments and the offsets of every `{`, from one pass of the scanner."""
    comments: list[Comment] = []
    braces: list[int] = []
    for token in scanner.scan(text, comments=True):
        if token.type == scanner.COMMENT:
            comments.append(Comment(token.start_pos, token.end_pos, str(token).rstrip()))
        elif token.type == "LBRACE":
            braces.append(token.start_pos)
    return comments, braces


def format_text(text: str, path: str = "<stdin>") -> Formatted:
    """Format one source. Never raises for bad input: syntax errors are returned."""
    text = _normalize(text)
    parsed = parse(text, path)
    errors = [d for d in parsed.diagnostics if d.is_error and d.code in SYNTAX_CODES]
    if errors:
        return Formatted(None, errors)
    comments, braces = _scan(text)
    result = _Printer(text, comments, braces).program(parsed.program)
    _verify(parsed.program, comments, result, path)
    return Formatted(result, [])


def _normalize(text: str) -> str:
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


# -------------------------------------------------------------- meaning checks


def without_spans(node):
    """A model node as nested tuples with every span left out: two parses of
    texts that mean the same thing give equal results."""
    if isinstance(node, BaseModel):
        return (type(node).__name__,) + tuple(
            (name, without_spans(getattr(node, name)))
            for name in type(node).model_fields if name not in _SPAN_FIELDS
        )
    if isinstance(node, tuple) and not isinstance(node, Span):
        return tuple(without_spans(item) for item in node)
    return node


def _verify(program: m.Program, comments: list[Comment], result: str, path: str) -> None:
    again = parse(result, path)
    if any(d.is_error and d.code in SYNTAX_CODES for d in again.diagnostics):
        raise FormatterBug(f"the formatted text of {path} does not parse: {again.diagnostics[0].message}")
    if without_spans(again.program) != without_spans(program):
        raise FormatterBug(f"formatting {path} would change its meaning")
    kept = Counter(c.text for c in collect_comments(result))
    if kept != Counter(c.text for c in comments):
        raise FormatterBug(f"formatting {path} would lose or change a comment")


# ------------------------------------------------------------ comment placement


def _is_container(node) -> bool:
    return isinstance(node, (m.PipelineDecl, m.VolumeDecl, m.SecretDecl, m.StageDecl, m.TemplateDecl, m.Block,
                             m.ListValue, m.MapValue))


def _children(node) -> tuple:
    if isinstance(node, m.ListValue):
        return node.items
    if isinstance(node, m.MapValue):
        return node.entries
    return node.items


def _values(node) -> tuple:
    """The values directly inside a non-container node, where containers may hide."""
    if isinstance(node, (m.Attribute, m.Entry)):
        return (node.value,)
    if isinstance(node, m.ParamDecl):
        return (node.default,)
    if isinstance(node, m.RangeValue):
        return (node.low, node.high)
    if isinstance(node, (m.Mount, m.Output, m.Input, m.ImportDecl)):
        return (node.path,)
    return ()


@dataclass
class _Entry:
    """One line-level thing in a container: a child node or an own-line comment."""

    node: object = None
    comment: Comment | None = None
    blank_before: bool = False


@dataclass
class _Layout:
    """Where each comment goes: filled once, read while printing."""

    entries: dict[int, list[_Entry]] = field(default_factory=dict)  # container id -> entries
    trailing: dict[int, Comment] = field(default_factory=dict)  # node id -> comment after it
    opener: dict[int, Comment] = field(default_factory=dict)  # container id -> comment after `{`/`[`
    hoisted: dict[int, list[Comment]] = field(default_factory=dict)  # node id -> comments moved before it


class _Printer:
    def __init__(self, text: str, comments: list[Comment], braces: list[int]) -> None:
        self.text = text
        self.comments = comments
        self.braces = braces
        self.layout = _Layout()

    # geometry ---------------------------------------------------------------------

    def open_brace(self, node) -> int:
        """Offset of the `{` that opens a declaration's or block's body."""
        if isinstance(node, (m.ListValue, m.MapValue)):
            return node.span.start
        after = node.name_span.end if isinstance(node, (m.PipelineDecl, m.Block)) else node.name.span.end
        return self.braces[bisect.bisect_left(self.braces, after)]

    def interior(self, node) -> tuple[int, int]:
        return self.open_brace(node) + 1, node.span.end - 1

    def one_line_in_source(self, node) -> bool:
        return "\n" not in self.text[self.open_brace(node):node.span.end]

    def blank_between(self, start: int, end: int) -> bool:
        return self.text.count("\n", start, end) >= 2

    # placing comments ---------------------------------------------------------------

    def place_all(self, program: m.Program) -> None:
        top = _TOP
        for comment in self.comments:
            self.place(top, program.declarations, (0, len(self.text)), comment)
        self.order(top, program.declarations, 0)
        for container in self._containers(program.declarations):
            self.order(container, _children(container), self.interior(container)[0])

    def _containers(self, nodes):
        for node in nodes:
            if _is_container(node):
                yield node
                yield from self._containers(_children(node))
            else:
                yield from self._containers(_values(node))

    def find_container(self, node, offset: int):
        """The innermost container in ``node`` whose inside holds ``offset``."""
        if _is_container(node):
            start, end = self.interior(node)
            if start <= offset < end:
                return node
            return None
        for value in _values(node):
            if value.span.start <= offset < value.span.end:
                return self.find_container(value, offset)
        return None

    def place(self, container, children, interior: tuple[int, int], comment: Comment) -> None:
        offset = comment.start
        previous = None
        for child in children:
            if child.span.start <= offset < child.span.end:
                inner = self.find_container(child, offset)
                if inner is None:
                    self.layout.hoisted.setdefault(id(child), []).append(comment)
                else:
                    self.place(inner, _children(inner), self.interior(inner), comment)
                return
            if child.span.end <= offset:
                previous = child
        if previous is not None and "\n" not in self.text[previous.span.end:offset]:
            self.layout.trailing[id(previous)] = comment
        elif previous is None and container is not _TOP and "\n" not in self.text[interior[0]:offset]:
            self.layout.opener[id(container)] = comment
        else:
            self.layout.entries.setdefault(id(container), []).append(_Entry(comment=comment))

    def order(self, container, children, start: int) -> None:
        """Merge children and own-line comments in source order, noting blank lines."""
        entries = [_Entry(node=child) for child in children]
        entries += self.layout.entries.get(id(container), [])
        entries.sort(key=lambda e: e.comment.start if e.comment else self._first(e.node))
        end = start
        for entry in entries:
            first = entry.comment.start if entry.comment else self._first(entry.node)
            entry.blank_before = self.blank_between(end, first)
            if entry.comment:
                end = entry.comment.end
            else:
                trailing = self.layout.trailing.get(id(entry.node))
                end = trailing.end if trailing else entry.node.span.end
        self.layout.entries[id(container)] = entries

    def _first(self, node) -> int:
        hoisted = self.layout.hoisted.get(id(node))
        return min(node.span.start, hoisted[0].start) if hoisted else node.span.start

    def has_comments(self, node) -> bool:
        """Whether a comment sits anywhere inside ``node`` or right after it."""
        if id(node) in self.layout.trailing or id(node) in self.layout.hoisted:
            return True
        if _is_container(node):
            if id(node) in self.layout.opener:
                return True
            if any(e.comment for e in self.layout.entries.get(id(node), [])):
                return True
            return any(self.has_comments(child) for child in _children(node))
        return any(self.has_comments(value) for value in _values(node))

    # raw text -------------------------------------------------------------------------

    def raw(self, span: Span) -> str:
        return self.text[span.start:span.end]

    def scalar(self, value) -> str:
        if isinstance(value, m.Number):
            return value.text
        if isinstance(value, m.Word):
            return value.value
        if isinstance(value, m.Reference):
            return value.dotted
        return self.raw(value.span)

    # flat (one-line) forms: None when a value cannot sit on one line ---------------------

    def flat(self, node) -> str | None:
        if isinstance(node, m.Str):
            raw = self.raw(node.span)
            return None if "\n" in raw else raw
        if isinstance(node, (m.Number, m.Word, m.Reference)):
            return self.scalar(node)
        if isinstance(node, m.RangeValue):
            low, high = self.flat(node.low), self.flat(node.high)
            return None if low is None or high is None else f"{low}..{high}"
        if isinstance(node, (m.ListValue, m.MapValue, m.Block)) and self._inner_comments(node):
            return None
        if isinstance(node, m.ListValue):
            items = [self.flat(item) for item in node.items]
            return None if None in items else "[" + ", ".join(items) + "]"
        if isinstance(node, m.MapValue):
            entries = [self.flat(entry) for entry in node.entries]
            return None if None in entries else ("{ " + ", ".join(entries) + " }" if entries else "{}")
        if isinstance(node, m.Entry):
            value = self.flat(node.value)
            return None if value is None else f"{self.raw(node.key_span)} = {value}"
        if isinstance(node, m.Attribute):
            value = self.flat(node.value)
            return None if value is None else f"{node.name} = {value}"
        if isinstance(node, _STATEMENTS):
            path = self.flat(node.path)
            return None if path is None else self.statement_lines(node, 0, [path])[0]
        if isinstance(node, m.Block):
            body = self.flat_body(node)
            return None if body is None else f"{node.name} {body}"
        return None

    def _inner_comments(self, container) -> bool:
        if id(container) in self.layout.opener:
            return True
        if any(e.comment for e in self.layout.entries.get(id(container), [])):
            return True
        return any(self.has_comments(child) for child in _children(container))

    def flat_body(self, node) -> str | None:
        """``{ a = 1  b = 2 }`` for a block written on one line, if it still can be."""
        if not self.one_line_in_source(node) or self._inner_comments(node):
            return None
        items = [self.flat(item) for item in node.items]
        if None in items:
            return None
        return "{ " + "  ".join(items) + " }" if items else "{}"

    def statement_lines(self, statement, width: int, path: list[str]) -> list[str]:
        """``mount V at PATH [readonly]``, ``output NAME at PATH``, ``input REF at PATH``, with
        `at` after ``width`` columns of `KEYWORD SUBJECT`, `readonly` after the last line of a
        triple-quoted path."""
        lines = [f"{_statement_head(statement).ljust(width)} at {path[0]}"] + path[1:]
        if isinstance(statement, m.Mount) and statement.readonly:
            lines[-1] += " readonly"
        return lines

    # values ------------------------------------------------------------------------

    def value(self, node, indent: int, column: int) -> list[str]:
        """Lines for a value starting at ``column`` on a line indented ``indent``:
        the first line continues the current one, the others are complete."""
        if isinstance(node, m.Str):
            raw = self.raw(node.span)
            if "\n" not in raw:
                return [raw]
            return reindent_long_string(raw, " " * indent).split("\n")
        if isinstance(node, (m.Number, m.Word, m.Reference)):
            return [self.scalar(node)]
        if isinstance(node, m.RangeValue):
            low = self.value(node.low, indent, column)
            high = self.value(node.high, indent, column + len(low[-1]) + 2)
            return low[:-1] + [low[-1] + ".." + high[0]] + high[1:]
        flat = self.flat(node)
        if flat is not None and column + len(flat) <= WIDTH:
            return [flat]
        if isinstance(node, m.ListValue) and not self._inner_comments(node):
            items = [self.flat(item) for item in node.items]
            if None not in items and all(not isinstance(i, (m.ListValue, m.MapValue)) for i in node.items):
                return _fill(items, column)
        return self.broken_container(node, indent)

    def broken_container(self, node, indent: int) -> list[str]:
        opener, closer = ("[", "]") if isinstance(node, m.ListValue) else ("{", "}")
        inner = indent + len(INDENT)
        comment = self.layout.opener.get(id(node))
        lines = [opener + (f"  {comment.text}" if comment else "")]
        width = 0
        if isinstance(node, m.MapValue):
            width = max((len(self.raw(e.key_span)) for e in node.entries), default=0)
        for entry in self.entries_of(node):
            if entry.blank_before and len(lines) > 1:
                lines.append("")
            if entry.comment:
                lines.append(" " * inner + entry.comment.text)
                continue
            child = entry.node
            lines += self.hoisted_lines(child, inner)
            if isinstance(child, m.Entry):
                head = " " * inner + self.raw(child.key_span).ljust(width) + " = "
                body = self.value(child.value, inner, len(head))
            else:
                head = " " * inner
                body = self.value(child, inner, inner)
            body[-1] += ","
            lines += self.with_trailing([head + body[0]] + body[1:], child)
        lines.append(" " * indent + closer)
        return lines

    def entries_of(self, container) -> list[_Entry]:
        return self.layout.entries.get(id(container), [])

    def hoisted_lines(self, node, indent: int) -> list[str]:
        return [" " * indent + c.text for c in self.layout.hoisted.get(id(node), [])]

    def with_trailing(self, lines: list[str], node) -> list[str]:
        comment = self.layout.trailing.get(id(node))
        if comment is not None:
            lines[-1] += "  " + comment.text
        return lines

    # blocks --------------------------------------------------------------------------

    def block(self, node, head: str, indent: int, pad: int = 0) -> list[str]:
        """``head { ... }``: on one line when it was and still fits, else one item per line."""
        body = self.flat_body(node)
        if body is not None and indent + len(head) + 1 + len(body) <= WIDTH:
            return [head.ljust(pad) + " " + body]
        comment = self.layout.opener.get(id(node))
        entries = self.entries_of(node)
        if not entries and comment is None:
            return [head.ljust(pad) + " {}"]
        lines = [head + " {" + (f"  {comment.text}" if comment else "")]
        inner = indent + len(INDENT)
        names = [len(i.name) for i in node.items if isinstance(i, m.Attribute)]
        statements = [len(_statement_head(i)) for i in node.items if isinstance(i, _STATEMENTS)]
        widths = (max(names, default=0), max(statements, default=0))
        for entry in entries:
            if entry.blank_before and len(lines) > 1:
                lines.append("")
            if entry.comment:
                lines.append(" " * inner + entry.comment.text)
                continue
            lines += self.hoisted_lines(entry.node, inner)
            lines += self.with_trailing(self.item(entry.node, inner, widths), entry.node)
        lines.append(" " * indent + "}")
        return lines

    def item(self, node, indent: int, widths: tuple[int, int]) -> list[str]:
        prefix = " " * indent
        if isinstance(node, m.Attribute):
            head = prefix + node.name.ljust(widths[0]) + " = "
            body = self.value(node.value, indent, len(head))
            return [head + body[0]] + body[1:]
        if isinstance(node, _STATEMENTS):
            lines = self.statement_lines(node, widths[1], self.value(node.path, indent, indent))
            return [prefix + lines[0]] + lines[1:]
        return [prefix + line if i == 0 else line
                for i, line in enumerate(self.block(node, node.name, indent))]

    # declarations -------------------------------------------------------------------------

    def head(self, declaration) -> str:
        if isinstance(declaration, m.PipelineDecl):
            return "pipeline " + self.raw(declaration.name_span)
        if isinstance(declaration, m.ParamDecl):
            typed = f": {declaration.type.value}" if declaration.type is not None else ""
            return f"param {declaration.name.value}{typed}"
        if isinstance(declaration, m.StageDecl):
            return f"{declaration.kind} {declaration.name.value}" + _base(declaration)
        if isinstance(declaration, m.TemplateDecl):
            return f"template {declaration.name.value}: {declaration.kind}" + _base(declaration)
        if isinstance(declaration, m.ImportDecl):
            alias = f" as {declaration.alias.value}" if declaration.alias is not None else ""
            return f"import {self.raw(declaration.path.span)}{alias}"
        keyword = "volume" if isinstance(declaration, m.VolumeDecl) else "secret"
        return f"{keyword} {declaration.name.value}"

    def declaration(self, declaration, pad: int = 0) -> list[str]:
        head = self.head(declaration)
        if isinstance(declaration, m.ImportDecl):
            return [head]
        if isinstance(declaration, m.ParamDecl):
            start = head.ljust(pad) + " = "
            body = self.value(declaration.default, 0, len(start))
            return [start + body[0]] + body[1:]
        return self.block(declaration, head, 0, pad)

    def program(self, program: m.Program) -> str:
        self.place_all(program)
        entries = self.entries_of(_TOP)
        rendered = {id(e.node): self.declaration(e.node) for e in entries if e.node is not None}
        pads = self._alignment(entries, rendered)
        out: list[str] = []
        for index, entry in enumerate(entries):
            if out and self._separated(entries, index, rendered):
                out.append("")
            if entry.comment is not None:
                out.append(entry.comment.text)
                continue
            node = entry.node
            out += self.hoisted_lines(node, 0)
            lines = self.declaration(node, pads[id(node)]) if id(node) in pads else rendered[id(node)]
            out += self.with_trailing(list(lines), node)
        return "\n".join(out) + "\n" if out else ""

    def _separated(self, entries: list[_Entry], index: int, rendered) -> bool:
        """Whether a blank line goes before ``entries[index]`` at the top level: where
        the source had one, and between a declaration and the next (with the comments
        right above it) when either spans several lines or their kinds differ."""
        if entries[index].blank_before:
            return True
        before = entries[index - 1].node if index > 0 else None
        following = self._group_declaration(entries, index)
        if before is None or following is None:
            return False
        return (_category(before) != _category(following)
                or len(rendered[id(before)]) > 1 or len(rendered[id(following)]) > 1)

    def _group_declaration(self, entries: list[_Entry], index: int):
        """The declaration that the comments from ``index`` on lead to, without a blank line."""
        while index < len(entries):
            entry = entries[index]
            if entry.node is not None:
                return entry.node
            if index + 1 < len(entries) and entries[index + 1].blank_before:
                return None
            index += 1
        return None

    def _alignment(self, entries: list[_Entry], rendered) -> dict[int, int]:
        """Pads for runs of adjacent one-line declarations of one kind."""
        pads: dict[int, int] = {}
        run: list = []

        def flush():
            if len(run) > 1:
                width = max(len(self.head(d)) for d in run)
                for declaration in run:
                    pads[id(declaration)] = width
            run.clear()

        for entry in entries:
            node = entry.node
            # comments moved above a declaration break the run just as comments written there do
            if node is None or entry.blank_before or len(rendered[id(node)]) > 1 \
                    or id(node) in self.layout.hoisted \
                    or (run and _category(run[-1]) != _category(node)):
                flush()
            if node is not None and len(rendered[id(node)]) == 1:
                run.append(node)
        flush()
        return pads


class _Top:
    """The file itself, as the container of the declarations."""


_TOP = _Top()


def _category(declaration) -> str:
    return declaration.decl


def _base(declaration) -> str:
    """`` from BASE`` after a stage's or template's name, if it has one."""
    return f" from {declaration.base.dotted}" if declaration.base is not None else ""


def _statement_head(statement) -> str:
    """What comes before `at` in a statement: ``mount V``, ``output NAME``, ``input REF``."""
    if isinstance(statement, m.Mount):
        return f"mount {statement.volume.value}"
    if isinstance(statement, m.Output):
        return f"output {statement.name.value}"
    return f"input {statement.source.dotted}"


def _fill(items: list[str], column: int) -> list[str]:
    """``[a, b, c,`` packed up to the width, continuation lines aligned after the `[`.

    An option and its value (``"--lr", "${lr}"``) stay on one line together.
    """
    units: list[list[str]] = []
    for item in items:
        if units and _is_option(units[-1][-1]) and len(units[-1]) == 1 and not _is_option(item):
            units[-1].append(item)
        else:
            units.append([item])
    lines: list[str] = []
    current = "["
    for index, unit in enumerate(units):
        last = index == len(units) - 1
        piece = ", ".join(unit) + ("]" if last else ",")
        if current == "[":
            current += piece
        elif len(current) + 1 + len(piece) + (column if not lines else 0) > WIDTH:
            lines.append(current)
            current = " " * (column + 1) + piece
        else:
            current += " " + piece
    if not units:
        current += "]"
    lines.append(current)
    return lines


def _is_option(item: str) -> bool:
    return item.startswith('"-') and len(item) > 3


# ------------------------------------------------------------ triple-quoted strings


def _parts_key(parts) -> tuple:
    return tuple(p if isinstance(p, str) else ("${}", p.name) for p in parts)


def reindent_long_string(raw: str, indent: str) -> str:
    """A triple-quoted string moved to a line indented ``indent``: its text one level
    deeper, its closing quotes at ``indent``. The original when that would read back
    differently (text on the opening line, or unusual blank lines)."""
    content = raw[3:-3]
    lines = content.split("\n")
    if len(lines) < 3 or lines[0].strip():
        return raw
    body, last = lines[1:-1], lines[-1]
    closes_alone = not last.strip()
    if not closes_alone:
        body = body + [last]
    written = [line for line in body if line.strip()]
    if not written:
        return raw
    common = min((line[: len(line) - len(line.lstrip(" \t"))] for line in written), key=len)
    if not all(line.startswith(common) for line in written):
        return raw
    inner = indent + INDENT
    moved = []
    for line in body:
        if line.strip():
            moved.append(inner + line[len(common):])
        else:
            moved.append(inner + line[len(common):] if len(line) > len(common) else "")
    closing = "\n" + indent + '"""' if closes_alone else '"""'
    candidate = '"""\n' + "\n".join(moved) + closing
    before, problems_before = strings.decode(raw, 0)
    after, problems_after = strings.decode(candidate, 0)
    if _parts_key(before) != _parts_key(after) or len(problems_before) != len(problems_after):
        return raw
    return candidate
