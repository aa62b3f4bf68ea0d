"""The vocabulary: what it reads from grammar.lark's text is what lark builds from
the grammar, and the modules that name kinds and keywords take them from it."""

from __future__ import annotations

import subprocess
import sys
import typing
from collections import defaultdict

import pytest

from aipc.backends import TARGETS
from aipc.compiler import ir, schema
from aipc.dsl import builder, scanner
from aipc.dsl import model as m
from aipc.dsl import vocabulary as v
from aipc.lsp import analysis


@pytest.fixture(scope="module")
def lark():
    return builder.lark_parser()


def lark_first_sets(rules) -> dict[str, set[str]]:
    """FIRST sets from the rules lark compiled (groups, `[...]` and `?` already expanded)."""
    first: dict[str, set[str]] = defaultdict(set)
    nullable: set[str] = set()
    changed = True
    while changed:
        changed = False
        for rule in rules:
            origin = rule.origin.name
            before = (len(first[origin]), origin in nullable)
            for symbol in rule.expansion:
                if symbol.is_term:
                    first[origin].add(symbol.name)
                    break
                first[origin] |= first[symbol.name]
                if symbol.name not in nullable:
                    break
            else:
                nullable.add(origin)
            changed |= before != (len(first[origin]), origin in nullable)
    return first


def test_terminals_are_the_ones_lark_builds(lark):
    named = {t.name: (t.raw, t.priority) for t in v.TERMINALS.values() if not t.name.startswith("__")}
    assert named == {t.name: (t.pattern.raw, t.priority) for t in lark.terminals if not t.name.startswith("__")}
    ignored = {v.TERMINALS[name].raw for name in v.IGNORED}
    assert ignored == {lark.get_terminal(name).pattern.raw for name in lark.lexer_conf.ignore}


def test_first_sets_are_the_ones_of_lark_s_rules(lark):
    theirs = lark_first_sets(lark.rules)
    assert set(v.RULES) == {rule.origin.name for rule in lark.rules}
    for name in v.RULES:
        assert v.FIRST[name] == theirs[name], name


def test_keywords_are_the_words_lark_retypes(lark):
    lexer = lark.parser.lexer
    assert lexer.scanner is not None  # built on first use, with the callbacks
    retyped = {name: {t.pattern.value: t.name for t in callback.scanner.terminals}
               for name, callback in lexer.callback.items()}
    assert v.RETYPED == retyped
    for text, name in v.KEYWORDS.items():
        assert [t.type for t in lark.lex(text)] == [name]
        assert [t.type for t in lark.lex(text + "x")] == ["WORD"]


def test_kinds_and_declarations_are_the_grammar_s(lark):
    literal = {t.name: t.pattern.value for t in lark.terminals}
    kinds = [literal[rule.expansion[0].name] for rule in lark.rules if rule.origin.name == "stage_kind"]
    assert v.STAGE_KINDS == tuple(kinds)
    assert v.DECLARATION_TOKENS == tuple(t for t in v.TERMINALS if t in lark_first_sets(lark.rules)["declaration"])
    assert v.DECLARATION_KEYWORDS == tuple(literal[name] for name in v.DECLARATION_TOKENS)
    assert set(v.STATEMENT_KEYWORDS) | set(v.DECLARATION_KEYWORDS) == set(v.KEYWORDS)
    assert v.SERVICE_KINDS | v.BATCH_KINDS == set(v.STAGE_KINDS) and not v.SERVICE_KINDS & v.BATCH_KINDS


def test_the_scanner_tries_terminals_in_lark_s_order(lark):
    assert [t.name for t in scanner._lexing_order()] == [t.name for t in lark.parser.lexer.scanner.terminals]


def test_a_grammar_the_reader_does_not_understand_is_an_error():
    with pytest.raises(v.GrammarReadError):
        v.read_grammar('start: "x"\n')  # an anonymous terminal in a rule
    with pytest.raises(v.GrammarReadError):
        v.read_grammar("%import common.WORD\n")
    with pytest.raises(v.GrammarReadError):
        v.read_grammar("start: (A\nA: \"a\"\n")


def test_model_schema_ir_and_language_server_take_the_kinds_from_it():
    assert typing.get_args(m.StageKind) == v.STAGE_KINDS
    assert schema.ALL_KINDS == set(v.STAGE_KINDS) and schema.BATCH | schema.SERVE == schema.ALL_KINDS
    assert tuple(kind.value for kind in ir.StageKind) == v.STAGE_KINDS
    assert [kind.is_batch for kind in ir.StageKind] == [kind in v.BATCH_KINDS for kind in v.STAGE_KINDS]
    # every keyword a declaration or an item starts with, and `from` and `as`, is explained on hover
    assert tuple(analysis.STAGE_KIND_DOCS) == v.STAGE_KINDS
    assert v.ITEM_KEYWORDS == ("mount", "output", "input")
    assert tuple(schema.STATEMENTS) == v.ITEM_KEYWORDS
    assert set(analysis.KEYWORD_DOCS) == set(v.DECLARATION_KEYWORDS) | set(v.ITEM_KEYWORDS) | {"from", "as"}


def test_the_ir_and_the_backends_load_no_parser():
    """Backends import the IR; the IR takes its stage kinds from the vocabulary,
    which must stay cheap: no lark, no parser, no checker."""
    modules = ["aipc.compiler.ir", *TARGETS.values()]
    probe = (f"import sys; import {', '.join(modules)}; "
             "print(sorted(n for n in sys.modules if n.split('.')[0] == 'lark' or n in "
             "('aipc.dsl.builder', 'aipc.dsl.parser', 'aipc.dsl.scanner', 'aipc.compiler.check')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
