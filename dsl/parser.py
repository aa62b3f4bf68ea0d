"""Parse .aip text into the surface model, reporting every independent syntax error.

``parse(text, path)`` first runs the LALR parser over the whole file, building
model nodes while it parses (no intermediate tree), on the fast path of
:mod:`aipc.dsl.fastpath`. Only when that fails does it re-parse declaration by
declaration with the error recovery of :mod:`aipc.dsl.recovery`, which reports
each error once, in words a user knows.

The grammar is ``grammar.lark``; this module holds the model builder (the
callbacks of its rules) and the lark parser built from both.
"""

from __future__ import annotations

import contextvars
import functools
import re
from typing import NamedTuple

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedInput

from aipc import codes
from aipc.diagnostics import Diagnostics, Span
from aipc.dsl import model as m
from aipc.dsl import strings

IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")
MAX_IDENTIFIER = 40
MAX_NESTING = 64

DECLARATION_KEYWORDS = ("pipeline", "param", "volume", "secret", "data", "train", "eval", "serve")
_DECLARATION_TOKENS = frozenset(k.upper() for k in DECLARATION_KEYWORDS)
_NAME_TOKENS = frozenset({"WORD", "MOUNT", "AT", "READONLY"} | _DECLARATION_TOKENS)
_VALUE_TOKENS = _NAME_TOKENS | {"STRING", "LONG_STRING", "NUMBER", "LSQB", "LBRACE"}
_CLOSERS = {"LBRACE": "RBRACE", "LSQB": "RSQB"}


class ParseResult(NamedTuple):
    program: m.Program
    diagnostics: Diagnostics


# The sink the model builder reports into while a parse is running (None: silent). The parser
# object is shared (building it is the expensive part), so per-parse state lives
# here rather than on the transformer.
building_sink: contextvars.ContextVar[Diagnostics | None] = contextvars.ContextVar("aipc_parse_sink", default=None)


_construct = m.construct
_tuple_new = tuple.__new__  # Span(a, b) without NamedTuple's Python-level __new__


def _span(token: Token) -> Span:
    return _tuple_new(Span, (token.start_pos, token.end_pos))


def _span_of(first, last) -> Span:
    start = first.start_pos if isinstance(first, Token) else first.span.start
    end = last.end_pos if isinstance(last, Token) else last.span.end
    return _tuple_new(Span, (start, end))


def _report(code, span, message, **details) -> None:
    sink = building_sink.get()
    if sink is not None:
        sink.error(code, span, message, **details)


_NUMBER = re.compile(r"([+-]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?)(.*)", re.S)


def number_value(text: str) -> tuple[int | float, str | None]:
    """Split a NUMBER token into its value and unit (``"1h30m"`` -> ``(1, "h30m")``)."""
    match = _NUMBER.fullmatch(text)
    digits, unit = match.group(1), match.group(2)
    value: int | float
    try:
        value = float(digits) if any(c in digits for c in ".eE") else int(digits)
    except ValueError:  # more digits than int() reads (CPython's guard against quadratic time)
        value = float(digits)  # its magnitude; the compiler reads the text, and reports it out of range
    return value, unit or None


class _Linked(NamedTuple):
    """One link of a repetition under construction: the links before, and an item.

    Immutable, so the error recovery may try repairs on shallow copies of the
    parser's value stack without disturbing the real parse.
    """

    before: "_Linked | None"
    item: object


def _unlink(links: _Linked | None) -> tuple:
    out = []
    while links is not None:
        out.append(links.item)
        links = links.before
    out.reverse()
    return tuple(out)


class _ModelBuilder(Transformer):
    """Callbacks the LALR parser calls on each reduction; they return model nodes."""

    def start(self, children):
        return list(_unlink(children[0]))

    # repetitions: `rule: | rule item` (or `rule: item | rule SEP item`)

    def declarations(self, children):
        return _Linked(children[0], children[1]) if children else None

    def items(self, children):
        return _Linked(children[0], children[1]) if children else None

    def values(self, children):
        return _Linked(children[0] if len(children) > 1 else None, children[-1])

    def entries(self, children):
        return _Linked(children[0] if len(children) > 1 else None, children[-1])

    # names and values ---------------------------------------------------------

    def name(self, children):
        (token,) = children
        return _construct(m.Name, span=_span(token), value=str(token))

    def string(self, children):
        (token,) = children
        parts, problems = strings.decode(str(token), token.start_pos)
        for problem in problems:
            _report(problem.code, problem.span, problem.message, help=problem.help)
        return _construct(m.Str, span=_span(token), kind="string", parts=parts)

    def number(self, children):
        (token,) = children
        value, unit = number_value(str(token))
        return _construct(m.Number, span=_span(token), kind="number", text=str(token), value=value, unit=unit)

    def word(self, children):
        (name,) = children
        return _construct(m.Word, span=name.span, kind="word", value=name.value)

    def range(self, children):
        low, _, high = children
        return _construct(m.RangeValue, span=_span_of(low, high), kind="range", low=low, high=high)

    def list(self, children):
        items = _unlink(children[1]) if len(children) > 2 else ()
        return _construct(m.ListValue, span=_span_of(children[0], children[-1]), kind="list", items=items)

    def map(self, children):
        entries = _unlink(children[1]) if len(children) > 2 else ()
        return _construct(m.MapValue, span=_span_of(children[0], children[-1]), kind="map", entries=entries)

    def entry(self, children):
        key, _, value = children
        if isinstance(key, Token):  # a quoted key
            parts, problems = strings.decode(str(key), key.start_pos)
            for problem in problems:
                _report(problem.code, problem.span, problem.message, help=problem.help)
            text = "".join(p if isinstance(p, str) else "${" + p.name + "}" for p in parts)
            key_span = _span(key)
        else:
            text, key_span = key.value, key.span
        return _construct(m.Entry, span=_span_of(key, value), key=text, key_span=key_span, value=value)

    # block items ----------------------------------------------------------------

    def body(self, children):
        opening, items, closing = children
        return [opening, *_unlink(items), closing]  # the declaration keeps the braces' span

    def attribute(self, children):
        name, _, value = children
        return _construct(
            m.Attribute, span=_span_of(name, value), item="attribute", name=str(name), name_span=_span(name),
            value=value,
        )

    def block(self, children):
        name, body = children
        return _construct(
            m.Block, span=_span_of(name, body[-1]), item="block", name=str(name), name_span=_span(name),
            items=tuple(body[1:-1]),
        )

    def mount(self, children):
        keyword, volume, _, path, readonly = children
        _check_identifier(volume, "volume")
        last = readonly if readonly is not None else path
        return _construct(
            m.Mount, span=_span_of(keyword, last), item="mount", volume=volume, path=path,
            readonly=readonly is not None,
        )

    # declarations -------------------------------------------------------------

    def pipeline_decl(self, children):
        keyword, name, body = children
        if isinstance(name, Token):
            parts, problems = strings.decode(str(name), name.start_pos)
            for problem in problems:
                _report(problem.code, problem.span, problem.message, help=problem.help)
            text = "".join(p if isinstance(p, str) else "${" + p.name + "}" for p in parts)
            name_span = _span(name)
        else:
            text, name_span = name.value, name.span
        return _construct(
            m.PipelineDecl, span=_span_of(keyword, body[-1]), decl="pipeline", name=text, name_span=name_span,
            items=tuple(body[1:-1]),
        )

    def param_decl(self, children):
        keyword, name, _colon, type_name, _, default = children
        _check_identifier(name, "parameter")
        return _construct(
            m.ParamDecl, span=_span_of(keyword, default), decl="param", name=name, type=type_name, default=default
        )

    def volume_decl(self, children):
        keyword, name, body = children
        _check_identifier(name, "volume")
        return _construct(m.VolumeDecl, span=_span_of(keyword, body[-1]), decl="volume", name=name,
                          items=tuple(body[1:-1]))

    def secret_decl(self, children):
        keyword, name, body = children
        _check_identifier(name, "secret")
        return _construct(m.SecretDecl, span=_span_of(keyword, body[-1]), decl="secret", name=name,
                          items=tuple(body[1:-1]))

    def stage_kind(self, children):
        return children[0]

    def stage_decl(self, children):
        kind, name, body = children
        _check_identifier(name, "stage")
        return _construct(
            m.StageDecl, span=_span_of(kind, body[-1]), decl="stage", kind=str(kind), kind_span=_span(kind),
            name=name, items=tuple(body[1:-1]),
        )


def _check_identifier(name: m.Name, what: str) -> None:
    value = name.value
    if len(value) > MAX_IDENTIFIER:
        _report(codes.INVALID_NAME, name.span,
                f"{what} name `{value}` is {len(value)} characters long",
                help=f"names have at most {MAX_IDENTIFIER} characters")
    elif not IDENTIFIER.fullmatch(value):
        suggestion = re.sub(r"[^a-z0-9_]", "_", value.lower())
        if not suggestion[:1].isalpha():
            suggestion = "s_" + suggestion
        _report(codes.INVALID_NAME, name.span,
                f"`{value}` is not a valid {what} name",
                help=f"names are lowercase letters, digits and `_`, starting with a letter: `{suggestion}`")


@functools.lru_cache(maxsize=1)
def lark_parser() -> Lark:
    return Lark.open_from_package(
        "aipc", "grammar.lark", parser="lalr", lexer="basic",
        start=["start", "declaration"], transformer=_ModelBuilder(),
        cache=True, maybe_placeholders=True,
    )


# ------------------------------------------------------------------ entry point


def parse(text: str, path: str) -> ParseResult:
    """Parse a whole file. Never raises for bad input: problems are diagnostics."""
    sink = Diagnostics(path)
    deepest = deep_nesting(text)
    if deepest is not None:
        sink.error(codes.UNEXPECTED_TOKEN, deepest,
                   f"brackets nested more than {MAX_NESTING} levels deep",
                   help="no pipeline needs this much nesting; flatten the value")
        return ParseResult(_construct(m.Program, path=path, declarations=(), broken=(), incomplete=()), sink)
    from aipc.dsl.fastpath import fast_parse, fast_path
    from aipc.dsl.recovery import Recovery

    reset = building_sink.set(sink)
    try:
        fast = fast_path()
        if fast is not None:
            declarations = fast_parse(fast, text)
            if declarations is not None:
                return ParseResult(_construct(m.Program, path=path, declarations=tuple(declarations), broken=(),
                                                  incomplete=()), sink)
        else:
            try:
                declarations = lark_parser().parse(text, start="start")
                return ParseResult(_construct(m.Program, path=path, declarations=tuple(declarations), broken=(),
                                                  incomplete=()), sink)
            except UnexpectedInput:
                pass
        sink = Diagnostics(path)  # the fast attempt stopped half-way; start over
        building_sink.set(sink)
        recovered = Recovery(text, sink).run()
        program = _construct(m.Program, path=path, declarations=tuple(recovered.declarations),
                             broken=tuple(recovered.broken), incomplete=tuple(recovered.incomplete))
        return ParseResult(program, sink)
    finally:
        building_sink.reset(reset)


_BRACKETS = re.compile(r'"""[\s\S]*?"""|"(?:\\.|[^"\\\n])*"|(?:#|//)[^\n]*|[\[\]{}]')


def deep_nesting(text: str) -> Span | None:
    """The first bracket nested deeper than MAX_NESTING, if any (one linear scan)."""
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return None
    depth = 0
    for match in _BRACKETS.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return Span(match.start(), match.end())
        elif char in "]}":
            depth = max(0, depth - 1)
    return None
