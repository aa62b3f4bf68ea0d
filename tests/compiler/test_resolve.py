"""Name resolution: declarations, duplicates, and the symbol table the language server reads."""

from __future__ import annotations

from aipc.compiler import schema
from aipc.compiler.resolve import symbol_table
from aipc.compiler.schema import AttributeSpec, Type
from aipc.dsl.parser import parse

TEXT = """\
param epochs: int = 1
volume raw { size = 1Gi }
secret s3 { keys = ["A"] }
data ingest {
  image = "i:1"
  command = ["x", "${ epochs }", "${pipeline.name}"]
  mount raw at "/raw/${epochs}"
  secrets = [s3]
}
train model { image = "i:1" after = [ingest, ghost] resources = { cpu = 1 } }
data ingest { image = "i:1" }
"""


def references(text: str) -> list[tuple[str, str, str]]:
    table = symbol_table(parse(text, "t.aip").program)
    return [(r.kind, r.name, text[r.span.start:r.span.end]) for r in table.references]


def test_the_symbol_table_lists_every_declaration_and_every_reference():
    table = symbol_table(parse(TEXT, "t.aip").program)
    assert [(d.kind, d.name, TEXT[d.name_span.start:d.name_span.end]) for d in table.declared] == [
        ("param", "epochs", "epochs"), ("volume", "raw", "raw"), ("secret", "s3", "s3"),
        ("stage", "ingest", "ingest"), ("stage", "model", "model"), ("stage", "ingest", "ingest"),
    ]
    assert table.declaration("stage", "ingest") is table.declared[3]  # the first of two
    assert table.declaration("stage", "ghost") is None
    # each at the span of the name alone (`${ epochs }` too), built-ins left out
    assert references(TEXT) == [
        ("param", "epochs", "epochs"), ("volume", "raw", "raw"), ("param", "epochs", "epochs"),
        ("secret", "s3", "s3"), ("stage", "ingest", "ingest"), ("stage", "ghost", "ghost"),
    ]


def test_a_service_address_is_a_use_of_its_stage_and_built_ins_are_not():
    text = ('serve db { image = "p:1"  port = 5432 }\n'
            'data load { image = "i:1"  after = [db]  command = ["${db.host}", "${ db.url }", "${pipeline.name}",'
            ' "${stage.name}", "${matrix.lr}", "${ghost.port}"] }\n')
    assert references(text) == [("stage", "db", "db"), ("stage", "db", "db"), ("stage", "db", "db"),
                                ("stage", "ghost", "ghost")]


def test_what_holds_references_comes_from_the_schema_types(monkeypatch):
    """A new attribute whose type is a list of stage names is a reference without a
    change in the resolver (nor in the language server, which reads the resolver)."""
    text = 'data a { image = "i:1" }\ndata b { image = "i:1" waits_for = [a] }\n'
    assert references(text) == []
    monkeypatch.setitem(schema.STAGE, "waits_for", AttributeSpec("waits_for", Type.STAGE_LIST, "Stages to wait for."))
    assert references(text) == [("stage", "a", "a")]
