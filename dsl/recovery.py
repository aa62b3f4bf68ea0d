"""Error recovery: parse a file with syntax errors declaration by declaration,
reporting each error once, in words a user knows, and repairing what can be
repaired so that the errors after it are found too.

The lexer skips characters it cannot read (standing in a string token where
the intent is clear); the parser tries a one-token repair (a missing `,`, `]`,
`}`...) that lets the next tokens through, drops an attribute left without a
value, and otherwise skips to the next declaration.
"""

from __future__ import annotations

import difflib
import re
from typing import NamedTuple

from lark import Token
from lark.exceptions import UnexpectedToken

from aipc import codes
from aipc.diagnostics import Diagnostics, Label, Span
from aipc.dsl import scanner
from aipc.dsl.builder import building_sink, lark_parser, token_span
from aipc.dsl.vocabulary import (
    BRACKETS, DECLARATION_KEYWORDS, DECLARATION_TOKENS, IGNORED, ITEM_KEYWORDS, KEYWORDS, NAME_TOKENS, STAGE_KINDS,
    STRING_TOKENS, TERMINALS, TEXT_OF, VALUE_TOKENS,
)

_DECLARATIONS = frozenset(DECLARATION_TOKENS)
_RARE_STATEMENTS = frozenset(KEYWORDS[keyword] for keyword in ITEM_KEYWORDS) - {"MOUNT"}
_TERMINALS = [*sorted(set(TERMINALS) - set(IGNORED)), "$END"]  # what a parser state may take next
_DESCRIBE = {**{name: f"`{text}`" for name, text in TEXT_OF.items()}, "NUMBER": "a number", "$END": "end of file"}
# the order in which expected tokens are named: the likely ones first
_ORDER = ["MOUNT", "RSQB", "RBRACE", "COMMA", "EQUAL", "LBRACE", "AT", "READONLY", "COLON", "LSQB", "DOTDOT"]
_KINDS = ", ".join(f"`{kind}`" for kind in STAGE_KINDS)
_DECLARATION_LIST = ", ".join(f"`{keyword}`" for keyword in DECLARATION_KEYWORDS[:-1])


def describe_expected(expected: set[str]) -> str:
    """Words for what the parser would have accepted: "`]` or `,`", "a value"."""
    words: list[str] = []
    rest = set(expected)
    if VALUE_TOKENS <= rest:
        words.append("a value")
        rest -= VALUE_TOKENS
    if {"WORD", "MOUNT", "RBRACE"} <= rest and not (NAME_TOKENS - {"MOUNT"}) <= rest:
        words.append("an attribute")
        rest -= {"WORD"} | _RARE_STATEMENTS  # `mount` is named; `output` and `input` are rarer
    if NAME_TOKENS <= rest:
        words.append("a name")
        rest -= NAME_TOKENS
    elif _DECLARATIONS <= rest:
        words.append(f"a declaration ({_DECLARATION_LIST} or `{DECLARATION_KEYWORDS[-1]}`)")
        rest -= _DECLARATIONS
    if "WORD" in rest:
        words.append("a name")
        rest.discard("WORD")
    if STRING_TOKENS & rest:
        words.append("a string")
        rest -= STRING_TOKENS
    if len(rest) > 1:
        rest -= {"DOTDOT", "DOT"}  # `..` is possible after any value, `.` after any name; naming them is noise
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
    if token.type in STRING_TOKENS:
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
    if (token.type in STRING_TOKENS or token.type in ("NUMBER", "LSQB")) and "EQUAL" in expected:
        return "write `=` between the attribute's name and its value"
    if token.type in VALUE_TOKENS and "COMMA" in expected and "RSQB" in expected:
        return "separate list items with `,`"
    if token.type == "WORD" and _DECLARATIONS <= expected:
        close = difflib.get_close_matches(str(token), DECLARATION_KEYWORDS, n=1)
        if close:
            return f"did you mean `{close[0]}`?"
        others = ", ".join(f"`{k}`" for k in DECLARATION_KEYWORDS if k not in STAGE_KINDS)
        return f"a file holds declarations: {others} and the stages {_KINDS}"
    if token.type == "EQUAL" and "LBRACE" in expected:
        return "blocks are written without `=`: `resources { cpu = 2 }`"
    if token.type == "LBRACE" and "COLON" in expected and "EQUAL" not in expected:
        return "a template names the kind of stage it is for: `template trainer: train { ... }`"
    if token.type == "DOT":
        return "`.` joins the two parts of a reference (`hf.token`, `model.metrics`, `gpu.h100_trainer`)"
    return None


def _hint_in_context(tokens: list[Token], index: int, expected: set[str]) -> str | None:
    """A help line for mistakes that the tokens before the offending one explain."""
    token = tokens[index] if index < len(tokens) else None
    before = tokens[index - 1].type if 0 < index <= len(tokens) else None
    if token is None:
        return None
    if token.type == "DOT" and index >= 2 and tokens[index - 2].type == "DOT":
        return "a reference has two parts, `NAME.NAME`: a secret's key, a stage's output or an imported template"
    if before == "IMPORT" and STRING_TOKENS & expected and token.type in NAME_TOKENS:
        return f'the path is a string: `import "lib/{token}.aip" as {token}`'
    if token.type == "READONLY":
        first = index - 1
        while first > 0 and tokens[first].type not in ("INPUT", "OUTPUT", "MOUNT", "LBRACE", "RBRACE"):
            first -= 1
        if tokens[first].type == "INPUT":
            return "an input is always mounted read-only; remove `readonly`"
        if tokens[first].type == "OUTPUT":
            return "an output is the directory its stage writes; remove `readonly`"
    return None


MAX_SYNTAX_ERRORS = 1000  # after this many, a file is not worth reading further


class Recovered(NamedTuple):
    declarations: list
    broken: list[tuple[str, str]]  # (kind, name) of declarations that did not parse
    incomplete: list[tuple[str, str, str]]  # (kind, name, attribute) dropped for want of a value


class Recovery:
    """Declaration-by-declaration parsing that reports and repairs syntax errors.

    It stops after ``MAX_SYNTAX_ERRORS`` errors, with one more saying so: a line
    of two megabytes of garbage would otherwise be a million errors.
    """

    MAX_ERRORS_PER_DECLARATION = 4
    LOOKAHEAD = 3

    def __init__(self, text: str, sink: Diagnostics) -> None:
        self.text = text
        self.sink = sink
        self.parser = lark_parser()
        self.incomplete: list[tuple[str, str, str]] = []  # attributes dropped for want of a value
        self._dropped: set[tuple[int, Token]] = set()
        self.declaration_start = 0
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
        """Every token of the text. Text the scanner cannot make a token of is
        reported, skipped or stood in for, and scanning resumes after it, until
        the error limit."""
        tokens: list[Token] = []
        text = self.text
        position = 0
        while position <= len(text):
            problem = None
            for token in scanner.scan(text, position):
                if token.type in scanner.PROBLEMS:
                    problem = token.start_pos
                    break
                tokens.append(token)
            if problem is None:
                break
            position, stand_in = self._dashed_name(tokens, problem) or self._lex_error(problem)
            if stand_in is not None:
                tokens.append(stand_in)
            if self._too_many(position):
                self.truncated = True
                break
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
                or tokens[-1].type not in NAME_TOKENS):
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
            if self.tokens[index].type in _DECLARATIONS and self._starts_line(index):
                return index
            index += 1
        return index

    def _token(self, index: int) -> Token:
        return self.tokens[index] if index < len(self.tokens) else self.eof

    def run(self) -> "Recovered":
        declarations: list = []
        broken: list[tuple[str, str]] = []
        index = 0
        while index < len(self.tokens):
            token = self.tokens[index]
            if self._too_many(token.start_pos):
                break
            if token.type not in _DECLARATIONS:
                expected = set(_DECLARATIONS)
                self.sink.error(codes.UNEXPECTED_TOKEN, token_span(token),
                                f"expected {describe_expected(expected)}, found {describe_token(token)}",
                                help=_hint(token, expected))
                index = self._next_declaration(index + 1)
                continue
            index_before = index
            self.declaration_start = index
            index, declaration = self._declaration(index)
            if declaration is None:
                broken.append(self._identify(index_before))
            else:
                declarations.append(declaration)
        if self.stopped:  # what was read is not the program: checking it would only add noise
            return Recovered([], [], [])
        return Recovered(declarations, broken, self.incomplete)

    def _identify(self, index: int) -> tuple[str, str]:
        kind = str(self.tokens[index])
        category = "stage" if kind in STAGE_KINDS else kind
        following = self._token(index + 1)
        name = str(following) if following.type in NAME_TOKENS else ""
        return category, name

    @staticmethod
    def _virtual(kind: str, at: Token) -> Token:
        """A token the recovery pretends was written, at the position of ``at``."""
        return Token(kind, TEXT_OF[kind], at.start_pos, 0, 0, end_pos=at.start_pos)

    # a stand-in text per token type, for asking the parser what it would accept
    _SAMPLES = {"WORD": "x", "NUMBER": "0", "STRING": '""', "LONG_STRING": '""""""', "$END": ""}

    def _acceptable(self, state) -> set[str]:
        """The token types ``state`` can take next, tried one by one on copies.

        An LALR table's own list for a state is wider: states merged by LALR
        accept, for a reduction, lookaheads that only some of their contexts allow.
        """
        accepted = set()
        with _Muted():
            for kind in _TERMINALS:
                sample = TEXT_OF.get(kind, self._SAMPLES.get(kind))
                try:
                    state.copy(deepcopy_values=False).feed_token(Token(kind, sample, 0, 0, 0, end_pos=0),
                                                                 kind == "$END")
                except UnexpectedToken:
                    continue
                accepted.add(kind)
        return accepted

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
                finishes = self._can_finish(saved) and token.type in _DECLARATIONS
                return fed + (1 if finishes else 0)
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
        words: dict[int, tuple] = {}  # token index -> (state, openers) before a WORD: where attributes start
        while True:
            token = self._token(index)
            saved = state.copy(deepcopy_values=False)
            if token.type == "WORD":
                words[index] = (saved, list(openers))
            try:
                result = state.feed_token(token, token.type == "$END")
            except UnexpectedToken:
                state = saved
                if token.type != "$END" and self._can_finish(state):
                    return index, state.feed_token(self.eof, True)
                bare = self._valueless_attribute(index, words)
                if bare is not None:  # `retries =` with no value: drop it, read on after its `=`
                    state, openers = words[bare][0].copy(deepcopy_values=False), list(words[bare][1])
                    index = bare + 2
                    errors += 1
                    continue
                expected = self._acceptable(state)
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
            if token.type in BRACKETS:
                openers.append(token)
            elif token.type in ("RBRACE", "RSQB") and openers:
                openers.pop()
            index += 1

    def _valueless_attribute(self, index: int, words: dict) -> int | None:
        """An attribute left without a value (`retries =`) explains an error at
        ``index`` when the error comes right after its `=` (`{ size = }`) or on the
        next line, whose first word was read as the value (`retries =` then
        `timeout = 1h`). Reports it at the bare `=` and returns the index of the
        attribute's name, from where the parse can resume without it."""
        tokens = self.tokens
        if index - 2 in words and tokens[index - 1].type == "EQUAL" and self._token(index).type in (
                "RBRACE", "RSQB", "COMMA", "EQUAL", "$END"):
            name = index - 2
        else:
            first = index
            while first > 0 and first < len(tokens) and not self._starts_line(first):
                first -= 1
            name = first - 2
            if (name not in words or first >= len(tokens) or tokens[first - 1].type != "EQUAL"
                    or tokens[first].type not in NAME_TOKENS or first == index and tokens[index].type != "WORD"):
                return None
        attribute, equals = tokens[name], tokens[name + 1]
        if equals.type != "EQUAL":
            return None
        if (name, attribute) in self._dropped:
            return None  # dropping it once did not help
        resume = self._token(name + 2)
        try:  # without the bare attribute, the parse must go on from what follows its `=`
            words[name][0].copy(deepcopy_values=False).feed_token(resume, resume.type == "$END")
        except UnexpectedToken:
            return None
        self._dropped.add((name, attribute))
        self.incomplete.append((*self._identify(self.declaration_start), str(attribute)))
        self.sink.error(codes.UNEXPECTED_TOKEN, token_span(equals), f"`{attribute}` has no value",
                        label="expected a value after `=`",
                        help=f"write a value after `{attribute} =`, or remove it")
        return name

    def _report_syntax(self, index: int, token: Token, expected: set[str], openers: list[Token]) -> None:
        declaration_start = token.type in _DECLARATIONS and self._starts_line(index)
        if token.type == "$END" and self.truncated:
            return  # the unterminated string already explains the missing brackets
        if (token.type == "$END" or declaration_start) and openers:
            opener = openers[-1]
            closer = "}" if opener.type == "LBRACE" else "]"
            where = "the file ends" if token.type == "$END" else "the next declaration starts"
            self.sink.error(
                codes.UNEXPECTED_EOF, token_span(opener),
                f"`{opener}` is not closed: {where} before its `{closer}`",
                label="this bracket is never closed",
                help=f"add `{closer}` to close it",
                related=[Label(token_span(token), f"expected `{closer}` before this")],
            )
            return
        self.sink.error(
            codes.UNEXPECTED_TOKEN, token_span(token),
            f"expected {describe_expected(expected)}, found {describe_token(token)}",
            label="unexpected here",
            help=_hint_in_context(self.tokens, index, expected) or _hint(token, expected),
        )

    @staticmethod
    def _with(state, tokens: list[Token]):
        """A copy of ``state`` fed ``tokens``, or None when it does not take them."""
        trial = state.copy(deepcopy_values=False)
        try:
            for token in tokens:
                trial.feed_token(token)
        except UnexpectedToken:
            return None
        return trial

    def _repair(self, state, index: int, expected: set[str], openers: list[Token]):
        """Try one-token repairs; return the repaired state and index, or None."""
        token = self._token(index)
        ahead = [self._token(i) for i in range(index, index + self.LOOKAHEAD)]
        candidates = []
        # the next declaration starts inside an open block: close everything and finish
        if openers and (token.type == "$END" or token.type in _DECLARATIONS):
            trial = self._with(state, [self._virtual(BRACKETS[o.type], token) for o in reversed(openers)])
            if trial is not None and (token.type == "$END" or self._can_finish(trial)):
                openers.clear()
                return trial, index
        for kind in ("COMMA", "RSQB", "RBRACE", "EQUAL"):
            if kind in expected:
                candidates.append(([self._virtual(kind, token)], index))  # insert it
                if token.type != "$END":
                    candidates.append(([self._virtual(kind, token)], index + 1))  # or replace
        if token.type != "$END":
            candidates.append(([], index + 1))  # drop the offending token
        if token.type == "DOT":
            candidates.append(([], index + 2))  # or a third part of a reference with its `.`
        best = None
        for inserted, resume in candidates:
            trial = self._with(state, inserted)
            if trial is None:
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
        self._reset = building_sink.set(None)

    def __exit__(self, *exc):
        building_sink.reset(self._reset)
        return False
