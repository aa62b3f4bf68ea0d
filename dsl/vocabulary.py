"""The words and shapes of the language, read once from grammar.lark.

Everything that needs to know a keyword, a stage kind, a token class or the
shape of a name or a string imports it from here: the parser's recovery, the
formatter, the compiler's schema and IR, the language server. The facts come
from the grammar's own text (its terminal definitions and rules), not from the
parser lark builds: reading them costs about a millisecond and imports
nothing, so the IR (which the backends import) can use them without loading
lark. The tests check that every fact here equals what lark builds from the
same grammar (tests/dsl/test_vocabulary.py).

The reader understands the part of lark's grammar language that grammar.lark
uses: terminals defined by one string or one regular expression (with an
optional priority), rules with alternatives, groups, ``[optional]`` parts,
``?``/``*``/``+`` and ``-> alias``, ``%ignore``. Anything else is a bug in
aipc: the module fails at import, so no test run can miss it.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

GRAMMAR_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "grammar.lark")


class GrammarReadError(Exception):
    """grammar.lark uses something this reader does not understand (a bug in aipc)."""


class Terminal(NamedTuple):
    name: str
    regex: str  # a Python regular expression for it
    literal: str | None  # the text, for a terminal defined by a string
    priority: int
    raw: str  # the definition as written in the grammar: `"data"`, `/[A-Za-z_].../`


class Group(NamedTuple):
    """``( ... )`` or ``[ ... ]`` in a rule: alternatives, and whether the whole may be left out."""

    alternatives: tuple
    optional: bool


class Item(NamedTuple):
    symbol: str | Group
    operator: str  # "", "?", "*" or "+"


# ------------------------------------------------------------------ the reader

# One token of the grammar's text, after any spaces: a comment, a line break, a
# string or regular expression literal, a directive, `->`, a name (with `?`/`!`
# before it or a priority after it) or a punctuation mark.
_GRAMMAR_TOKEN = re.compile(
    r'[ \t\r\f]*(?:(?P<comment>//[^\n]*)|(?P<newline>\n)|(?P<string>"(?:\\.|[^"\\\n])*"i?)'
    r"|(?P<regex>/(?![/*])(?:\\.|[^/\\\n])+/[imslux]*)|(?P<directive>%[a-z]+)|(?P<arrow>->)"
    r"|(?P<name>[?!]?[A-Za-z_][A-Za-z0-9_]*(?:\.-?\d+)?)|(?P<punct>[:|()\[\]?*+])|(?P<end>$))"
)


def _statements(text: str) -> list[list[tuple[str, str]]]:
    """The grammar's definitions, each a list of (kind, text) tokens. A definition
    goes on over a line break only when the next line starts with `|` or the
    break is inside brackets."""
    statements: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    depth = 0
    position = 0
    pending_break = False
    while position < len(text):
        match = _GRAMMAR_TOKEN.match(text, position)
        if match is None:
            line = text.count("\n", 0, position) + 1
            raise GrammarReadError(f"grammar.lark line {line}: cannot read {text[position:position + 20]!r}")
        position = match.end()
        kind = match.lastgroup
        if kind in ("comment", "end"):
            continue
        if kind == "newline":
            pending_break = depth == 0
            continue
        value = match.group(kind)
        if pending_break and value != "|" and current:
            statements.append(current)
            current = []
        pending_break = False
        if value in ("(", "["):
            depth += 1
        elif value in (")", "]"):
            depth -= 1
        current.append((kind, value))
    if current:
        statements.append(current)
    return statements


def _literal_text(token: str) -> str:
    """The text of a grammar string literal (`"data"`), escapes undone."""
    if token.endswith("i"):
        raise GrammarReadError(f"case-insensitive literals are not supported: {token}")
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def _regex_source(token: str) -> str:
    body, _, flags = token[1:].rpartition("/")
    if flags:
        raise GrammarReadError(f"regular expression flags are not supported: {token}")
    return body


class _RuleReader:
    """Recursive descent over one rule's tokens: alternatives of items."""

    def __init__(self, tokens: list[tuple[str, str]], rule: str) -> None:
        self.tokens = tokens
        self.at = 0
        self.rule = rule

    def peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def alternatives(self) -> tuple:
        out = [self.alternative()]
        while self.peek() == "|":
            self.at += 1
            out.append(self.alternative())
        return tuple(out)

    def alternative(self) -> tuple:
        items = []
        while self.peek() not in (None, "|", ")", "]", "->"):
            items.append(self.item())
        if self.peek() == "->":
            self.at += 2  # an alias names the tree node; it changes nothing read here
        return tuple(items)

    def item(self) -> Item:
        kind, value = self.tokens[self.at]
        self.at += 1
        if value in ("(", "["):
            inner = self.alternatives()
            closing = ")" if value == "(" else "]"
            if self.peek() != closing:
                raise GrammarReadError(f"rule {self.rule}: `{value}` is not closed")
            self.at += 1
            symbol: str | Group = Group(inner, value == "[")
        elif kind == "name":
            symbol = value
        else:
            raise GrammarReadError(f"rule {self.rule}: write a named terminal instead of {value}")
        operator = ""
        if self.peek() in ("?", "*", "+"):
            operator = self.peek()
            self.at += 1
        return Item(symbol, operator)


def read_grammar(text: str) -> tuple[dict[str, Terminal], tuple[str, ...], dict[str, tuple]]:
    """The terminals (in order of definition), the ignored terminals and the rules of a grammar."""
    terminals: dict[str, Terminal] = {}
    ignored: list[str] = []
    rules: dict[str, tuple] = {}
    for statement in _statements(text):
        (kind, head), rest = statement[0], statement[1:]
        if kind == "directive":
            if head != "%ignore" or len(rest) != 1:
                raise GrammarReadError(f"only `%ignore TERMINAL` is supported, not {head}")
            token_kind, value = rest[0]
            if token_kind == "name":
                ignored.append(value)
            else:
                name = f"__IGNORE_{len(ignored)}"
                terminals[name] = _terminal(name, 0, token_kind, value)
                ignored.append(name)
            continue
        if kind != "name" or not rest or rest[0][1] != ":":
            raise GrammarReadError(f"cannot read the definition starting with {head}")
        body = rest[1:]
        bare = head.lstrip("?!")
        if bare[:1].isupper():
            name, _, priority = bare.partition(".")
            if len(body) != 1 or body[0][0] not in ("string", "regex"):
                raise GrammarReadError(f"terminal {name}: only one string or regular expression is supported")
            terminals[name] = _terminal(name, int(priority or 0), *body[0])
        else:
            reader = _RuleReader(body, bare)
            rules[bare] = reader.alternatives()
            if reader.at != len(body):
                raise GrammarReadError(f"rule {bare}: cannot read {body[reader.at][1]}")
    for name in ignored:
        if name not in terminals:
            raise GrammarReadError(f"%ignore {name}: no such terminal")
    return terminals, tuple(ignored), rules


def _terminal(name: str, priority: int, kind: str, token: str) -> Terminal:
    if kind == "string":
        literal = _literal_text(token)
        return Terminal(name, re.escape(literal), literal, priority, token)
    return Terminal(name, _regex_source(token), None, priority, token)


# ----------------------------------------------------------------- FIRST sets


def first_sets(rules: dict[str, tuple]) -> dict[str, frozenset[str]]:
    """For each rule, the terminals that can start it (the usual fixpoint)."""
    first: dict[str, set[str]] = {name: set() for name in rules}
    nullable: set[str] = set()

    def of_sequence(items) -> tuple[set[str], bool]:
        out: set[str] = set()
        for item in items:
            symbols, empty = of_item(item)
            out |= symbols
            if not empty:
                return out, False
        return out, True

    def of_alternatives(alternatives) -> tuple[set[str], bool]:
        out: set[str] = set()
        empty = False
        for alternative in alternatives:
            symbols, alternative_empty = of_sequence(alternative)
            out |= symbols
            empty = empty or alternative_empty
        return out, empty

    def of_item(item: Item) -> tuple[set[str], bool]:
        symbol = item.symbol
        if isinstance(symbol, Group):
            symbols, empty = of_alternatives(symbol.alternatives)
            empty = empty or symbol.optional
        elif symbol in rules:
            symbols, empty = first[symbol], symbol in nullable
        else:
            symbols, empty = {symbol}, False
        return symbols, empty or item.operator in ("?", "*")

    changed = True
    while changed:
        changed = False
        for name, alternatives in rules.items():
            symbols, empty = of_alternatives(alternatives)
            if not symbols <= first[name] or (empty and name not in nullable):
                first[name] |= symbols
                if empty:
                    nullable.add(name)
                changed = True
    return {name: frozenset(symbols) for name, symbols in first.items()}


def _in_order(names) -> tuple[str, ...]:
    """Terminal names in the order the grammar defines them."""
    names = set(names)
    return tuple(name for name in TERMINALS if name in names)


# ------------------------------------------------------------------ the facts

with open(GRAMMAR_PATH, encoding="utf-8") as _file:
    GRAMMAR = _file.read()

TERMINALS, IGNORED, RULES = read_grammar(GRAMMAR)
FIRST = first_sets(RULES)

# Keywords: string terminals that a word terminal also matches. The lexer reads
# them as words and then retypes them, as lark does, so they are not reserved
# where the grammar accepts a word (a stage may be called `data`).
def _retyped() -> dict[str, dict[str, str]]:
    retyped: dict[str, dict[str, str]] = {}
    for word in TERMINALS.values():
        if word.literal is not None or word.name in IGNORED:
            continue
        for keyword in TERMINALS.values():
            if (keyword.literal is not None and keyword.priority == word.priority
                    and re.fullmatch(word.regex, keyword.literal)):
                retyped.setdefault(word.name, {})[keyword.literal] = keyword.name
    return retyped


RETYPED = _retyped()  # word terminal -> {text: the keyword terminal it is retyped to}
KEYWORDS: dict[str, str] = {text: name for table in RETYPED.values() for text, name in table.items()}
KEYWORD_TOKENS = frozenset(KEYWORDS.values())
TEXT_OF: dict[str, str] = {t.name: t.literal for t in TERMINALS.values() if t.literal is not None}

# Declarations start with a keyword; a stage's keyword is its kind.
DECLARATION_TOKENS: tuple[str, ...] = _in_order(FIRST["declaration"])
DECLARATION_KEYWORDS: tuple[str, ...] = tuple(TEXT_OF[name] for name in DECLARATION_TOKENS)
STAGE_KINDS: tuple[str, ...] = tuple(TEXT_OF[name] for name in _in_order(FIRST["stage_kind"]))
# Words inside a declaration that start or continue a statement (`mount V at "/p" readonly`,
# `train big from base`, `import "lib.aip" as lib`).
STATEMENT_KEYWORDS: tuple[str, ...] = tuple(TEXT_OF[name] for name in _in_order(KEYWORD_TOKENS)
                                            if name not in DECLARATION_TOKENS)
# The keywords an item of a body starts with: `mount`, `output`, `input`.
ITEM_KEYWORDS: tuple[str, ...] = tuple(TEXT_OF[name] for name in _in_order(FIRST["item"] & KEYWORD_TOKENS))

# What the kinds mean is not syntax: `serve` runs until stopped, the others run to completion.
SERVICE_KINDS: frozenset[str] = frozenset({"serve"})
BATCH_KINDS: frozenset[str] = frozenset(STAGE_KINDS) - SERVICE_KINDS
if not SERVICE_KINDS <= set(STAGE_KINDS):
    raise GrammarReadError("grammar.lark has no `serve` stage kind")

# Token classes, by what may come at a place.
NAME_TOKENS: frozenset[str] = FIRST["name"]  # where a name is expected (keywords are names too)
VALUE_TOKENS: frozenset[str] = FIRST["value"]  # where a value is expected
BRACKETS: dict[str, str] = {
    opening.name: closing.name
    for opening in TERMINALS.values() for closing in TERMINALS.values()
    if (opening.literal, closing.literal) in (("{", "}"), ("[", "]"))
}

# Shapes of names and strings.
WORD = TERMINALS["WORD"].regex  # a bare word: identifiers, enumerated values, booleans, map keys
IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")  # what a declared name must be (the builder checks it)
MAX_IDENTIFIER = 40
INTERPOLATION_NAME = re.compile(rf"{WORD}(?:\.{WORD})*")  # inside `${...}`: a param, or a dotted built-in
STRING_TOKENS: frozenset[str] = FIRST["string"]  # a string, one line or several
