"""Parse .aip text into the surface model, reporting every independent syntax error.

``parse(text, path)`` first runs the LALR parser over the whole file, building
model nodes while it parses (no intermediate tree). Only when that fails does
it re-parse declaration by declaration with error recovery: the lexer skips
characters it cannot read, the parser tries a one-token repair (a missing `,`,
`]`, `}`...) that lets the next tokens through, and otherwise skips to the next
declaration. Each error is reported once, in words a user knows.
"""

from __future__ import annotations

import contextvars
import difflib
import functools
import re
from typing import NamedTuple

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr, UnlessCallback
from lark.parse_tree_builder import ExpandSingleChild
from lark.parsers.lalr_analysis import Shift

from aipc import codes
from aipc.diagnostics import Diagnostics, Label, Span
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


# The sink the model builder reports into while a parse is running. The parser
# object is shared (building it is the expensive part), so per-parse state lives
# here rather than on the transformer.
_sink: contextvars.ContextVar[Diagnostics | None] = contextvars.ContextVar("aipc_parse_sink", default=None)


_construct = m.construct
_tuple_new = tuple.__new__  # Span(a, b) without NamedTuple's Python-level __new__


def _span(token: Token) -> Span:
    return _tuple_new(Span, (token.start_pos, token.end_pos))


def _span_of(first, last) -> Span:
    start = first.start_pos if isinstance(first, Token) else first.span.start
    end = last.end_pos if isinstance(last, Token) else last.span.end
    return _tuple_new(Span, (start, end))


def _report(code, span, message, **details) -> None:
    sink = _sink.get()
    if sink is not None:
        sink.error(code, span, message, **details)


_NUMBER = re.compile(r"([+-]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?)(.*)", re.S)


def number_value(text: str) -> tuple[int | float, str | None]:
    """Split a NUMBER token into its value and unit (``"1h30m"`` -> ``(1, "h30m")``)."""
    match = _NUMBER.fullmatch(text)
    digits, unit = match.group(1), match.group(2)
    if any(c in digits for c in ".eE"):
        value: int | float = float(digits)
    else:
        value = int(digits)
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
def _parser() -> Lark:
    return Lark.open_from_package(
        "aipc", "grammar.lark", parser="lalr", lexer="basic",
        start=["start", "declaration"], transformer=_ModelBuilder(),
        cache=True, maybe_placeholders=True,
    )


# ------------------------------------------------------------ the fast path
#
# A file without syntax errors goes through lark's own terminals and LALR table
# but not through lark's per-token machinery, which costs more than the parse
# itself: one regular expression skips ignored text and matches the next token
# (no token objects for whitespace, no line and column counting: spans are
# offsets), and a tight loop runs the LALR table, passing a reduction of one
# symbol through without a call. The model builder's callbacks are lark's, so
# both ways build the same model; the tests compare them on every example and
# on generated programs. Any lexing or parsing error leaves the fast path, and
# the recovery below reports it.


class _FastToken(Token):
    """A lark token from the fast lexer: type, value and offsets (no lines or columns)."""

    __slots__ = ()


class _FastPath(NamedTuple):
    master: re.Pattern  # ignored text, then one token as a named group
    ignored: re.Pattern  # ignored text only (what may follow the last token)
    keywords: dict  # terminal -> {text: the keyword terminal lark retypes it to}
    table: list[dict]  # state -> {symbol: next state (shift) | (size, rule name, callback or None)}
    start: int
    end: int


@functools.lru_cache(maxsize=1)
def _fast_path() -> _FastPath | None:
    """Built from the cached parser; None if lark's internals are not the ones
    this was written for (lark < 2 is required), and the plain path is used."""
    try:
        return _build_fast_path(_parser())
    except (AttributeError, AssertionError, KeyError, TypeError, re.error):
        return None


def _build_fast_path(lark: Lark) -> _FastPath:
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
    return _FastPath(
        master=re.compile(f"{ignored}(?:{tokens})", lexer.g_regex_flags),
        ignored=re.compile(ignored, lexer.g_regex_flags),
        keywords=keywords, table=table,
        start=lalr.parse_table.start_states["start"], end=lalr.parse_table.end_states["start"],
    )


_str_new = str.__new__


_UNREADABLE = "$UNREADABLE"  # a token type no parser state accepts


def _fast_tokens(fast: _FastPath, text: str, position: int = 0):
    """The tokens of ``text`` from ``position`` on as lark's lexer makes them, one
    at a time (a large file's tokens are not all alive at once). Where lark's
    lexer would stop, the last token has the type ``_UNREADABLE`` and starts at
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
        token = _str_new(_FastToken, value)
        token.type = kind
        token.value = value
        token.start_pos = start
        token.end_pos = position
        yield token
    position = fast.ignored.match(text, position).end()
    if position != len(text):
        yield Token(_UNREADABLE, text[position : position + 1], position, end_pos=position + 1)


def _fast_parse(fast: _FastPath, text: str) -> list | None:
    """The declarations of ``text`` built by the model builder, or None on any syntax error."""
    table = fast.table
    states = [fast.start]
    values: list = []
    try:
        for token in _fast_tokens(fast, text):
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
                action = table[states[-1]][symbol]
            states.append(action)
            values.append(token)
        while True:  # end of input: reduce until the start rule is done
            size, origin, callback = table[states[-1]]["$END"]
            if callback is None:
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
            if states[-1] == fast.end:
                return values[-1]
    except KeyError:  # no action for this symbol: a syntax error
        return None


# ------------------------------------------------------------------ entry point


def parse(text: str, path: str) -> ParseResult:
    """Parse a whole file. Never raises for bad input: problems are diagnostics."""
    sink = Diagnostics(path)
    deepest = _deep_nesting(text)
    if deepest is not None:
        sink.error(codes.UNEXPECTED_TOKEN, deepest,
                   f"brackets nested more than {MAX_NESTING} levels deep",
                   help="no pipeline needs this much nesting; flatten the value")
        return ParseResult(_construct(m.Program, path=path, declarations=(), broken=()), sink)
    reset = _sink.set(sink)
    try:
        fast = _fast_path()
        if fast is not None:
            declarations = _fast_parse(fast, text)
            if declarations is not None:
                return ParseResult(_construct(m.Program, path=path, declarations=tuple(declarations), broken=()), sink)
        else:
            try:
                declarations = _parser().parse(text, start="start")
                return ParseResult(_construct(m.Program, path=path, declarations=tuple(declarations), broken=()), sink)
            except UnexpectedInput:
                pass
        sink = Diagnostics(path)  # the fast attempt stopped half-way; start over
        _sink.set(sink)
        declarations, broken = _Recovery(text, sink).run()
        program = _construct(m.Program, path=path, declarations=tuple(declarations), broken=tuple(broken))
        return ParseResult(program, sink)
    finally:
        _sink.reset(reset)


_BRACKETS = re.compile(r'"""[\s\S]*?"""|"(?:\\.|[^"\\\n])*"|(?:#|//)[^\n]*|[\[\]{}]')


def _deep_nesting(text: str) -> Span | None:
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


# --------------------------------------------------------------- error recovery

_DESCRIBE = {
    "RSQB": "`]`", "RBRACE": "`}`", "COMMA": "`,`", "EQUAL": "`=`", "COLON": "`:`",
    "LBRACE": "`{`", "LSQB": "`[`", "DOTDOT": "`..`", "AT": "`at`", "READONLY": "`readonly`",
    "MOUNT": "`mount`", "NUMBER": "a number", "$END": "end of file",
}
_ORDER = ["MOUNT", "RSQB", "RBRACE", "COMMA", "EQUAL", "LBRACE", "AT", "READONLY", "COLON", "LSQB", "DOTDOT"]


def describe_expected(expected: set[str]) -> str:
    """Words for what the parser would have accepted: "`]` or `,`", "a value"."""
    words: list[str] = []
    rest = set(expected)
    if _VALUE_TOKENS <= rest:
        words.append("a value")
        rest -= _VALUE_TOKENS
    if {"WORD", "MOUNT", "RBRACE"} <= rest and not (_NAME_TOKENS - {"MOUNT"}) <= rest:
        words.append("an attribute")
        rest -= {"WORD"}
    if _NAME_TOKENS <= rest:
        words.append("a name")
        rest -= _NAME_TOKENS
    elif _DECLARATION_TOKENS <= rest:
        words.append("a declaration (`pipeline`, `param`, `volume`, `secret`, `data`, `train`, `eval` or `serve`)")
        rest -= _DECLARATION_TOKENS
    if "WORD" in rest:
        words.append("a name")
        rest.discard("WORD")
    if {"STRING", "LONG_STRING"} & rest:
        words.append("a string")
        rest -= {"STRING", "LONG_STRING"}
    if len(rest) > 1:
        rest.discard("DOTDOT")  # `..` is possible after any number; naming it is noise
    ordered = [t for t in _ORDER if t in rest] + sorted(rest - set(_ORDER))
    words += [_DESCRIBE.get(t, f"`{t.lower()}`") for t in ordered]
    if not words:
        return "nothing more"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def describe_token(token: Token) -> str:
    if token.type == "$END":
        return "end of file"
    if token.type in ("STRING", "LONG_STRING"):
        return "a string"
    if token.type == "NUMBER":
        return f"`{token}`"
    text = str(token)
    return f"`{text}`"


def _hint(token: Token, expected: set[str]) -> str | None:
    """A context-aware help line for the usual mistakes."""
    if token.type == "COMMA" and "RBRACE" in expected and "WORD" in expected:
        return "attributes are separated by spaces or newlines, not commas; remove the `,`"
    if token.type == "COLON" and "EQUAL" in expected:
        return "attributes are set with `=`, as in `image = \"python:3.11\"`"
    if token.type in ("STRING", "LONG_STRING", "NUMBER", "LSQB") and "EQUAL" in expected:
        return "write `=` between the attribute's name and its value"
    if token.type in _VALUE_TOKENS and "COMMA" in expected and "RSQB" in expected:
        return "separate list items with `,`"
    if token.type == "WORD" and _DECLARATION_TOKENS <= expected:
        close = difflib.get_close_matches(str(token), DECLARATION_KEYWORDS, n=1)
        if close:
            return f"did you mean `{close[0]}`?"
        return "a file holds declarations: `pipeline`, `param`, `volume`, `secret` and the stages `data`, `train`, `eval`, `serve`"
    if token.type == "EQUAL" and "LBRACE" in expected:
        return "blocks are written without `=`: `resources { cpu = 2 }`"
    return None


MAX_SYNTAX_ERRORS = 1000  # after this many, a file is not worth reading further


class _Recovery:
    """Declaration-by-declaration parsing that reports and repairs syntax errors.

    It stops after ``MAX_SYNTAX_ERRORS`` errors, with one more saying so: a line
    of two megabytes of garbage would otherwise be a million errors.
    """

    MAX_ERRORS_PER_DECLARATION = 4
    LOOKAHEAD = 3

    def __init__(self, text: str, sink: Diagnostics) -> None:
        self.text = text
        self.sink = sink
        self.parser = _parser()
        self.truncated = False  # an unterminated triple-quoted string (or the error limit) ended lexing
        self.stopped = False  # the error limit was reached
        self.tokens = self._lex()
        end = len(text.rstrip())
        self.eof = Token("$END", "", end, 0, 0, end_pos=end)

    # lexing -------------------------------------------------------------------

    def _too_many(self, position: int) -> bool:
        """Whether the error limit is reached; if so, the last error says so."""
        if len(self.sink.items) < MAX_SYNTAX_ERRORS:
            return False
        if not self.stopped:
            self.stopped = True
            self.sink.error(codes.UNEXPECTED_TOKEN, Span(position, position),
                            f"too many syntax errors: stopped reading after {MAX_SYNTAX_ERRORS}",
                            help="fix the errors above and check again")
        return True

    def _lex(self) -> list[Token]:
        fast = _fast_path()
        if fast is None:
            return self._lex_with_lark()
        tokens: list[Token] = []
        text = self.text
        position = 0
        while position <= len(text):
            unreadable = None
            for token in _fast_tokens(fast, text, position):
                if token.type == _UNREADABLE:
                    unreadable = token.start_pos
                    break
                tokens.append(token)
            if unreadable is None:
                break
            position, stand_in = self._dashed_name(tokens, unreadable) or self._lex_error(unreadable)
            if stand_in is not None:
                tokens.append(stand_in)
            if self._too_many(position):
                self.truncated = True
                break
        return tokens

    def _lex_with_lark(self) -> list[Token]:
        tokens: list[Token] = []
        offset = 0
        text = self.text
        while offset <= len(text):
            try:
                for token in self.parser.lex(text[offset:]):
                    if offset:
                        token.start_pos += offset
                        token.end_pos += offset
                    tokens.append(token)
                break
            except UnexpectedCharacters as error:
                position = offset + error.pos_in_stream
                offset, stand_in = self._dashed_name(tokens, position) or self._lex_error(position)
                if stand_in is not None:
                    tokens.append(stand_in)
        return tokens

    def _lex_error(self, position: int) -> tuple[int, Token | None]:
        """Report the unreadable text at ``position``. Returns where lexing resumes
        and, when the intent is clear, a string token standing in for the bad text
        so that the parser carries on as the user meant."""
        text = self.text
        line_end = text.find("\n", position)
        line_end = len(text) if line_end == -1 else line_end
        char = text[position]
        if text.startswith('"""', position):
            self.sink.error(codes.UNTERMINATED_STRING, Span(position, position + 3),
                            "this triple-quoted string is never closed",
                            label="opened here", help='close it with `"""`')
            self.truncated = True
            return len(text) + 1, None
        if char == '"':
            # The string most likely ends before the brackets and commas that close the line.
            content = text[position + 1 : line_end].rstrip()
            body = content.rstrip("]}, \t")
            if body.endswith("\\") and not body.endswith("\\\\"):
                body = body[:-1]
            end = position + 1 + len(body)
            self.sink.error(codes.UNTERMINATED_STRING, Span(position, position + 1 + len(content)),
                            "unterminated string", label="no closing `\"` on this line",
                            help='close the string on the same line, or use """...""" for text over several lines')
            return end, self._stand_in(body, position, end)
        if char == "'":
            close = text.find("'", position + 1, line_end)
            if close != -1:
                body = text[position + 1 : close]
                self.sink.error(codes.UNEXPECTED_CHARACTER, Span(position, close + 1),
                                "strings are written with double quotes",
                                label="single quotes", help=f'write "{body}"')
                return close + 1, self._stand_in(body, position, close + 1)
        end = position + 1
        while end < len(text) and text[end] == char:
            end += 1
        shown = repr(char)[1:-1] if not char.isprintable() else char
        hint = None
        if char == "'":
            hint = 'strings are written with double quotes: "..."'
        elif char in "();":
            hint = "attributes are written `name = value`, one after another"
        elif char == "\x00":
            hint = "the file holds NUL bytes; is it a binary file?"
        self.sink.error(codes.UNEXPECTED_CHARACTER, Span(position, end),
                        f"unexpected character `{shown}`", help=hint)
        return end, None

    def _dashed_name(self, tokens: list[Token], position: int) -> tuple[int, Token] | None:
        """`in-gest`: a name written with dashes is one mistake, not two."""
        text = self.text
        if (text[position] != "-" or not tokens or tokens[-1].end_pos != position
                or tokens[-1].type not in _NAME_TOKENS):
            return None
        match = re.compile(r"-[A-Za-z0-9_-]*[A-Za-z0-9_]").match(text, position)
        if match is None:
            return None
        word = tokens.pop()
        written = text[word.start_pos : match.end()]
        name = written.replace("-", "_")
        self.sink.error(codes.INVALID_NAME, Span(word.start_pos, match.end()),
                        f"`{written}` is not a valid name", label="`-` is not allowed in names",
                        help=f"names use `_` between words: `{name}`")
        return match.end(), Token("WORD", name, word.start_pos, 0, 0, end_pos=match.end())

    @staticmethod
    def _stand_in(body: str, start: int, end: int) -> Token:
        """A STRING token for text the user evidently meant as a string."""
        escaped = body.replace('"', '\\"')
        return Token("STRING", f'"{escaped}"', start, 0, 0, end_pos=end)

    # parsing ------------------------------------------------------------------

    def _starts_line(self, index: int) -> bool:
        token = self.tokens[index]
        start = self.text.rfind("\n", 0, token.start_pos) + 1
        return not self.text[start : token.start_pos].strip()

    def _next_declaration(self, index: int) -> int:
        while index < len(self.tokens):
            if self.tokens[index].type in _DECLARATION_TOKENS and self._starts_line(index):
                return index
            index += 1
        return index

    def _token(self, index: int) -> Token:
        return self.tokens[index] if index < len(self.tokens) else self.eof

    def run(self) -> tuple[list, list[tuple[str, str]]]:
        declarations: list = []
        broken: list[tuple[str, str]] = []
        index = 0
        while index < len(self.tokens):
            token = self.tokens[index]
            if self._too_many(token.start_pos):
                break
            if token.type not in _DECLARATION_TOKENS:
                expected = set(_DECLARATION_TOKENS)
                self.sink.error(codes.UNEXPECTED_TOKEN, _span(token),
                                f"expected {describe_expected(expected)}, found {describe_token(token)}",
                                help=_hint(token, expected))
                index = self._next_declaration(index + 1)
                continue
            index_before = index
            index, declaration = self._declaration(index)
            if declaration is None:
                broken.append(self._identify(index_before))
            else:
                declarations.append(declaration)
        if self.stopped:  # what was read is not the program: checking it would only add noise
            return [], []
        return declarations, broken

    def _identify(self, index: int) -> tuple[str, str]:
        kind = str(self.tokens[index])
        category = "stage" if kind in ("data", "train", "eval", "serve") else kind
        following = self._token(index + 1)
        name = str(following) if following.type in _NAME_TOKENS else ""
        return category, name

    @staticmethod
    def _virtual(kind: str, at: Token) -> Token:
        """A token the recovery pretends was written, at the position of ``at``."""
        text = {"COMMA": ",", "RSQB": "]", "RBRACE": "}", "EQUAL": "="}[kind]
        return Token(kind, text, at.start_pos, 0, 0, end_pos=at.start_pos)

    def _fresh_state(self):
        return self.parser.parse_interactive("", start="declaration").parser_state

    def _feeds(self, state, tokens: list[Token]) -> int:
        """How many of ``tokens`` a copy of ``state`` accepts (finishing the declaration counts)."""
        trial = state.copy(deepcopy_values=False)
        for fed, token in enumerate(tokens):
            saved = trial.copy(deepcopy_values=False)
            try:
                trial.feed_token(token, token.type == "$END")
            except UnexpectedToken:
                return fed + (1 if self._can_finish(saved) else 0)
            if token.type == "$END":
                return fed + 1
        return len(tokens)

    def _can_finish(self, state) -> bool:
        try:
            state.copy(deepcopy_values=False).feed_token(self.eof, True)
            return True
        except UnexpectedToken:
            return False

    def _declaration(self, index: int):
        state = self._fresh_state()
        openers: list[Token] = []
        errors = 0
        previous_error = -10
        with_muted = _Muted()
        while True:
            token = self._token(index)
            saved = state.copy(deepcopy_values=False)
            try:
                result = state.feed_token(token, token.type == "$END")
            except UnexpectedToken as error:
                state = saved
                if token.type != "$END" and self._can_finish(state):
                    return index, state.feed_token(self.eof, True)
                expected = {t for t in error.expected if t.isupper()}
                errors += 1
                self._report_syntax(index, token, expected, openers)
                if errors > self.MAX_ERRORS_PER_DECLARATION or index - previous_error <= 1:
                    return self._next_declaration(index + 1 if index < len(self.tokens) else index), None
                previous_error = index
                with with_muted:
                    repaired = self._repair(state, index, expected, openers)
                if repaired is None:
                    return self._next_declaration(index + 1 if index < len(self.tokens) else index), None
                state, index = repaired
                continue
            if token.type == "$END":
                return index, result
            if token.type in _CLOSERS:
                openers.append(token)
            elif token.type in ("RBRACE", "RSQB") and openers:
                openers.pop()
            index += 1

    def _report_syntax(self, index: int, token: Token, expected: set[str], openers: list[Token]) -> None:
        declaration_start = token.type in _DECLARATION_TOKENS and self._starts_line(index)
        if token.type == "$END" and self.truncated:
            return  # the unterminated string already explains the missing brackets
        if (token.type == "$END" or declaration_start) and openers:
            opener = openers[-1]
            closer = "}" if opener.type == "LBRACE" else "]"
            where = "the file ends" if token.type == "$END" else "the next declaration starts"
            self.sink.error(
                codes.UNEXPECTED_EOF, _span(opener),
                f"`{opener}` is not closed: {where} before its `{closer}`",
                label="this bracket is never closed",
                help=f"add `{closer}` to close it",
                related=[Label(_span(token), f"expected `{closer}` before this")],
            )
            return
        self.sink.error(
            codes.UNEXPECTED_TOKEN, _span(token),
            f"expected {describe_expected(expected)}, found {describe_token(token)}",
            label="unexpected here", help=_hint(token, expected),
        )

    def _repair(self, state, index: int, expected: set[str], openers: list[Token]):
        """Try one-token repairs; return the repaired state and index, or None."""
        token = self._token(index)
        ahead = [self._token(i) for i in range(index, index + self.LOOKAHEAD)]
        candidates = []
        # the next declaration starts inside an open block: close everything and finish
        if openers and (token.type == "$END" or token.type in _DECLARATION_TOKENS):
            closing = [self._virtual(_CLOSERS[o.type], token) for o in reversed(openers)]
            trial = state.copy(deepcopy_values=False)
            try:
                for extra in closing:
                    trial.feed_token(extra)
            except UnexpectedToken:
                pass
            else:
                if token.type == "$END" or self._can_finish(trial):
                    openers.clear()
                    return trial, index
        for kind in ("COMMA", "RSQB", "RBRACE", "EQUAL"):
            if kind in expected:
                candidates.append(([self._virtual(kind, token)], index))  # insert it
                if token.type != "$END":
                    candidates.append(([self._virtual(kind, token)], index + 1))  # or replace
        if token.type != "$END":
            candidates.append(([], index + 1))  # drop the offending token
        best = None
        for inserted, resume in candidates:
            trial = state.copy(deepcopy_values=False)
            try:
                for extra in inserted:
                    trial.feed_token(extra)
            except UnexpectedToken:
                continue
            rest = [self._token(i) for i in range(resume, resume + self.LOOKAHEAD)]
            score = self._feeds(trial, rest)
            if score and (best is None or score > best[0]):
                best = (score, inserted, resume)
            if score >= len(ahead):
                break
        if best is None:
            return None
        _, inserted, resume = best
        for extra in inserted:
            state.feed_token(extra)
            if extra.type in ("RBRACE", "RSQB") and openers:
                openers.pop()
        return state, resume


class _Muted:
    """Silence the model builder while the recovery tries repairs on copies."""

    def __enter__(self):
        self._reset = _sink.set(None)

    def __exit__(self, *exc):
        _sink.reset(self._reset)
        return False
