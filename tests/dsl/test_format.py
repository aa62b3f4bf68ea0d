"""The formatter: one layout, idempotent, comments kept, meaning unchanged."""

from __future__ import annotations

import dataclasses
import enum
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aipc.compiler import schema
from aipc.compiler.check import check_source
from aipc.diagnostics import Span
from aipc.dsl.format import SYNTAX_CODES, collect_comments, format_text, reindent_long_string, without_spans
from aipc.dsl.parser import parse
from tests.helpers import EXAMPLES


def ir_without_spans(value):
    """The IR as plain data with every span left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return tuple((f.name, ir_without_spans(getattr(value, f.name)))
                     for f in dataclasses.fields(value) if f.name not in ("span", "spans"))
    if isinstance(value, Span):
        return None
    if isinstance(value, (tuple, list)):
        return tuple(ir_without_spans(v) for v in value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def formatted(text: str) -> str:
    result = format_text(text, "test.aip")
    assert result.text is not None, [d.message for d in result.diagnostics]
    return result.text


def same_meaning(before: str, after: str, path: str = "t.aip") -> None:
    """Equal models (spans aside), equal IR, the same diagnostics, the same comments."""
    assert without_spans(parse(after, path).program) == without_spans(parse(before, path).program)
    old, new = check_source(before, path), check_source(after, path)
    assert ir_without_spans(new.ir) == ir_without_spans(old.ir)
    assert Counter((d.code, d.message) for d in new.diagnostics) == \
        Counter((d.code, d.message) for d in old.diagnostics)
    assert Counter(c.text for c in collect_comments(after)) == Counter(c.text for c in collect_comments(before))


# ---------------------------------------------------------------------- examples


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_format_to_their_snapshot(path, text_snapshot):
    assert formatted(path.read_text()) == text_snapshot


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_formatting_examples_keeps_their_ir_and_is_idempotent(path):
    before = path.read_text()
    after = formatted(before)
    assert check_source(after, str(path)).ir is not None
    same_meaning(before, after, str(path))
    assert formatted(after) == after


# ------------------------------------------------------------------------ layout

MESSY = '''\
// header comment
# second header line

pipeline "p" { # on the opener
    description="x"   # trailing
  # dangling in the header
}
param a : int=1
param bb = "x" # after bb
# about c
param c: string = "long"



volume v { size = 1Gi }
volume   w{size=2Gi access=rwx}
secret s { keys = [ "A" , # first key
   # own line in a list
   "B",
 ] }
data # in an odd place
  one {
  image = "x:1"
  command = ["a",
    "b"]   // after a list
  mount v # inside a mount
     at "/v" readonly
  env = { A = "1" # in a map
    B = "2" }
  resources {cpu=1..2 memory = 1Gi}
  script = """
        echo hi
          indented
        echo ${a}
        """
  after=[
  ]
  # last in the block
}
train two { image = "x:1" after = [one] }
# end of file
'''


def test_a_messy_file_gets_the_canonical_layout(text_snapshot):
    after = formatted(MESSY)
    assert after == text_snapshot
    same_meaning(MESSY, after)
    assert formatted(after) == after


def test_blocks_get_one_attribute_per_line_and_aligned_equals():
    after = formatted("train t {\n  image = \"i:1\"  timeout = 1h\n  resources { cpu = 1\n gpu = 2 }\n}\n")
    assert after == (
        "train t {\n"
        '  image   = "i:1"\n'
        "  timeout = 1h\n"
        "  resources {\n"
        "    cpu = 1\n"
        "    gpu = 2\n"
        "  }\n"
        "}\n"
    )


def test_one_line_blocks_stay_on_one_line_while_they_fit():
    assert formatted("volume v {size=1Gi  access = rwx}") == "volume v { size = 1Gi  access = rwx }\n"
    long = "data d { " + " ".join(f'labels{i} = "{"x" * 20}"' for i in range(4)) + " }\n"
    assert formatted(long).count("\n") == 6


def test_long_argument_lists_fill_lines_keeping_options_with_their_values():
    text = ('data d {\n  command = ["python", "-m", "a.very.long.module.name", "--input", "/data/input/file",'
            ' "--output", "/data/output/file", "--verbose"]\n}\n')
    assert formatted(text) == (
        "data d {\n"
        '  command = ["python", "-m", "a.very.long.module.name", "--input", "/data/input/file",\n'
        '             "--output", "/data/output/file", "--verbose"]\n'
        "}\n"
    )


def test_blank_lines_are_normalised():
    text = "\n\n# lead\nparam a = 1\n\n\n\nparam b = 2\nvolume v { size = 1Gi }\ndata d {\n\n\n  image = \"i:1\"\n\n}\n\n\n"
    assert formatted(text) == (
        "# lead\nparam a = 1\n\nparam b = 2\n\nvolume v { size = 1Gi }\n\ndata d {\n  image = \"i:1\"\n}\n"
    )


def test_comments_above_a_declaration_stay_with_it():
    text = "data a { image = \"i:1\" }\n# about b\n// and more\ndata b {\n  image = \"i:1\"\n}\n"
    assert formatted(text) == (
        'data a { image = "i:1" }\n\n# about b\n// and more\ndata b {\n  image = "i:1"\n}\n'
    )


def test_files_with_syntax_errors_are_refused():
    result = format_text("data d {\n  image = \n", "broken.aip")
    assert result.text is None
    assert result.diagnostics and all(d.code in SYNTAX_CODES for d in result.diagnostics)


def test_names_that_do_not_check_are_still_formatted():
    assert formatted("data Bad { image = \"x\" }") == 'data Bad { image = "x" }\n'


def test_empty_and_comment_only_files():
    assert formatted("") == ""
    assert formatted("\n\n  # only a comment   \n\n") == "# only a comment\n"


def test_crlf_and_bom_become_plain_lines():
    assert formatted("\ufeffparam a = 1\r\nparam b = 2\r\n") == "param a = 1\nparam b = 2\n"


def test_triple_quoted_text_moves_with_its_block():
    raw = '"""\n        set -eu\n          python x\n        """'
    assert reindent_long_string(raw, "  ") == '"""\n    set -eu\n      python x\n  """'
    # text on the opening line keeps the original: moving it would change the text
    assert reindent_long_string('"""a\n   b"""', "  ") == '"""a\n   b"""'


def test_readonly_follows_a_triple_quoted_mount_path():
    """Found by formatting programs from the grammar: `readonly` was written after the
    first line of the path, inside the string."""
    text = 'data x { image = "i:1" mount v at """\n  /data\n""" readonly }\n'
    after = formatted(text)
    assert after == 'data x {\n  image = "i:1"\n  mount v at """\n    /data\n  """ readonly\n}\n'
    same_meaning(text, after)
    assert formatted(after) == after


# ------------------------------------------------------------ generated programs

NAMES = ["ingest", "train_a", "data", "m2", "serve_x"]
COMMENTS = ["# note", "// why", "# ${x} \"quoted\"", "#"]
SEPARATORS = [" ", "  ", "\n", "\n  ", "\n\n    ", "\t", " \n", "\n\n\n"]

words = st.sampled_from(NAMES + ["rwx", "true", "amd", "nvidia"])
numbers = st.sampled_from(["1", "0", "-1", "2.5", "3e-4", "16Gi", "500m", "1h30m", "200G", "12h", "8"])
short_strings = st.sampled_from(['"python:3.11-slim"', '"/data"', '""', '"a\\"b"', '"${epochs}"',
                                 '"x ${pipeline.name} $${literal}"', '"tab\\there"', '"\U0001F642 emoji"'])
long_strings = st.sampled_from(['"""\n    set -eu\n      echo ${epochs}\n    """', '"""one line"""',
                                '"""\n  a\n\n  b\n"""', '"""\n\tx\n\ty"""'])


def value_tokens(depth: int = 0):
    scalar = st.one_of(words.map(lambda w: [w]), numbers.map(lambda n: [n]), short_strings.map(lambda s: [s]),
                       long_strings.map(lambda s: [s]))
    ranged = st.tuples(numbers, numbers).map(lambda p: [p[0], "..", p[1]])
    if depth >= 2:
        return st.one_of(scalar, ranged)
    inner = value_tokens(depth + 1)
    listed = st.lists(inner, max_size=4).flatmap(lambda items: st.booleans().map(
        lambda trailing: ["["] + [t for i, item in enumerate(items) for t in ([","] if i else []) + item]
        + ([","] if trailing and items else []) + ["]"]))
    keys = st.sampled_from(["A", "LOG_LEVEL", '"app.kubernetes.io/tier"', "cpu", "memory"])
    mapped = st.lists(st.tuples(keys, inner), max_size=3).flatmap(lambda entries: st.booleans().map(
        lambda commas: ["{"] + [t for i, (k, v) in enumerate(entries)
                                for t in ([","] if i and commas else []) + [k, "="] + v] + ["}"]))
    return st.one_of(scalar, ranged, listed, mapped)


def attribute_tokens(table):
    return st.tuples(st.sampled_from(sorted(table)), value_tokens()).map(lambda a: [a[0], "="] + a[1])


item_tokens = st.one_of(
    attribute_tokens(schema.STAGE),
    st.tuples(st.sampled_from(NAMES), short_strings, st.booleans()).map(
        lambda m: ["mount", m[0], "at", m[1]] + (["readonly"] if m[2] else [])),
    st.lists(attribute_tokens(schema.RESOURCES), max_size=3).map(
        lambda items: ["resources", "{"] + [t for item in items for t in item] + ["}"]),
)


def block(head: list[str], items):
    return st.lists(items, max_size=5).map(lambda body: head + ["{"] + [t for i in body for t in i] + ["}"])


declaration_tokens = st.one_of(
    st.tuples(st.sampled_from(NAMES), st.sampled_from([[], [":", "int"], [":", "string"]]), value_tokens()).map(
        lambda p: ["param", p[0], *p[1], "="] + p[2]),
    st.sampled_from(NAMES).flatmap(lambda n: block(["volume", n], attribute_tokens(schema.VOLUME))),
    st.sampled_from(NAMES).flatmap(lambda n: block(["secret", n], attribute_tokens(schema.SECRET))),
    block(["pipeline", '"p"'], attribute_tokens(schema.HEADER)),
    st.tuples(st.sampled_from(["data", "train", "eval", "serve"]), st.sampled_from(NAMES)).flatmap(
        lambda k: block(list(k), item_tokens)),
)


@st.composite
def programs(draw) -> str:
    """Source text of a random program, laid out at random, with comments anywhere."""
    tokens = [t for d in draw(st.lists(declaration_tokens, max_size=5)) for t in d]
    out = []
    for token in tokens:
        out.append(token)
        choice = draw(st.integers(0, 9))
        if choice == 0:
            out.append(" " + draw(st.sampled_from(COMMENTS)) + "\n")
        elif choice == 1:
            out.append("\n" + draw(st.sampled_from(COMMENTS)) + "\n  ")
        else:
            out.append(draw(st.sampled_from(SEPARATORS)))
    return "".join(out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_generated_programs_keep_their_meaning_and_format_idempotently(text):
    after = formatted(text)
    same_meaning(text, after)
    assert formatted(after) == after
