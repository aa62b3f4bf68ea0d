"""The model builder: the callbacks lark calls on each reduction of grammar.lark's
rules, building model nodes while it parses (no intermediate tree), and the
lark parser built from the grammar and these callbacks.

Both ways of parsing use them: lark's own parser and the fast path
(:mod:`aipc.dsl.fastpath`), which runs lark's LALR table itself; the error
recovery (:mod:`aipc.dsl.recovery`) feeds lark's interactive parser. The
diagnostics the callbacks find (a bad escape, an invalid name) go to
:data:`building_sink`.
"""

from __future__ import annotations

import contextvars
import functools
import re
from typing import NamedTuple

from lark import Lark, Token, Transformer

from aipc import codes
from aipc.diagnostics import Diagnostics, Span
from aipc.dsl import model as m
from aipc.dsl import strings
from aipc.dsl.vocabulary import IDENTIFIER, MAX_IDENTIFIER

# The sink the model builder reports into while a parse is running (None: silent). The parser
# object is shared (building it is the expensive part), so per-parse state lives
# here rather than on the transformer.
building_sink: contextvars.ContextVar[Diagnostics | None] = contextvars.ContextVar("aipc_parse_sink", default=None)


_construct = m.construct
_tuple_new = tuple.__new__  # Span(a, b) without NamedTuple's Python-level __new__


def token_span(token: Token) -> Span:
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


class ModelBuilder(Transformer):
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
        return _construct(m.Name, span=token_span(token), value=str(token))

    def string(self, children):
        (token,) = children
        parts, problems = strings.decode(str(token), token.start_pos)
        for problem in problems:
            _report(problem.code, problem.span, problem.message, help=problem.help)
        return _construct(m.Str, span=token_span(token), kind="string", parts=parts)

    def number(self, children):
        (token,) = children
        value, unit = number_value(str(token))
        return _construct(m.Number, span=token_span(token), kind="number", text=str(token), value=value, unit=unit)

    def word(self, children):
        (name,) = children
        return _construct(m.Word, span=name.span, kind="word", value=name.value)

    def reference(self, children):
        parts = tuple(children[::2])  # name, or name `.` name
        return _construct(m.Reference, span=_span_of(parts[0], parts[-1]), kind="reference", parts=parts)

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
        text, key_span = _bare_or_quoted(key)
        return _construct(m.Entry, span=_span_of(key, value), key=text, key_span=key_span, value=value)

    # block items ----------------------------------------------------------------

    def body(self, children):
        opening, items, closing = children
        return [opening, *_unlink(items), closing]  # the declaration keeps the braces' span

    def attribute(self, children):
        name, _, value = children
        return _construct(
            m.Attribute, span=_span_of(name, value), item="attribute", name=str(name), name_span=token_span(name),
            value=value,
        )

    def block(self, children):
        name, body = children
        return _construct(
            m.Block, span=_span_of(name, body[-1]), item="block", name=str(name), name_span=token_span(name),
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

    def output(self, children):
        keyword, name, _, path = children
        _check_identifier(name, "output")
        return _construct(m.Output, span=_span_of(keyword, path), item="output", name=name, path=path)

    def input(self, children):
        keyword, source, _, path = children
        return _construct(m.Input, span=_span_of(keyword, path), item="input", source=source, path=path)

    # declarations -------------------------------------------------------------

    def pipeline_decl(self, children):
        keyword, name, body = children
        text, name_span = _bare_or_quoted(name)
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
        kind, name, keyword, base, body = children
        _check_identifier(name, "stage")
        return _construct(
            m.StageDecl, span=_span_of(kind, body[-1]), decl="stage", kind=str(kind), kind_span=token_span(kind),
            name=name, base=base, from_span=_optional_span(keyword), items=tuple(body[1:-1]),
        )

    def template_decl(self, children):
        keyword, name, _colon, kind, from_keyword, base, body = children
        _check_identifier(name, "template")
        return _construct(
            m.TemplateDecl, span=_span_of(keyword, body[-1]), decl="template", name=name, kind=str(kind),
            kind_span=token_span(kind), base=base, from_span=_optional_span(from_keyword), items=tuple(body[1:-1]),
        )

    def import_decl(self, children):
        keyword, path, _as, alias = children
        if alias is not None:
            _check_identifier(alias, "import")
        return _construct(m.ImportDecl, span=_span_of(keyword, alias or path), decl="import", path=path,
                          alias=alias)


def _optional_span(token: Token | None) -> Span | None:
    return None if token is None else token_span(token)


def _bare_or_quoted(name) -> tuple[str, Span]:
    """The text and span of a map key or pipeline name, written as a name or as a
    string (whose problems are reported; interpolations stay written as ``${name}``)."""
    if not isinstance(name, Token):
        return name.value, name.span
    parts, problems = strings.decode(str(name), name.start_pos)
    for problem in problems:
        _report(problem.code, problem.span, problem.message, help=problem.help)
    return "".join(p if isinstance(p, str) else "${" + p.name + "}" for p in parts), token_span(name)


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
        start=["start", "declaration"], transformer=ModelBuilder(),
        cache=True, maybe_placeholders=True,
    )
