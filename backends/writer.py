"""The one writer: documents to YAML text (files are written by :mod:`aipc.output`).

YAML comes from PyYAML's C emitter when it is available. Keys keep the order
the backend built them in (no sorting here: backends choose a readable order),
multi-line strings are literal blocks, and no anchors or aliases are emitted
even when one object appears twice.

PyYAML spends most of its time before the C emitter, representing and
resolving every scalar in Python, so documents made of what backends build
(dicts, lists, strings, ints, booleans) are written by :func:`_fast_yaml`
instead: block collections the way the C emitter lays them out, and each
distinct string classified once, as plain, single-quoted or a literal block.
A string it cannot classify with certainty (quotes, tabs, non-ASCII text,
leading or trailing spaces, `: `...) sends the whole stream to PyYAML; the
tests hold both paths to the same bytes.

A value that is not YAML data (an ``ir.Text`` a backend did not render, an IR
enum, any other object) is refused with :class:`NotData`, so a string a
backend forgot to render fails every test that writes its output.
"""

from __future__ import annotations

import re
from typing import Iterable

import yaml

_Base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_Base):  # type: ignore[misc, valid-type]
    def ignore_aliases(self, data) -> bool:
        return True


# Plain scalars that YAML 1.1 (PyYAML) reads as strings but YAML 1.2 readers (Go's
# yaml.v3 in compose v2 and kubectl, ruamel) read as numbers, booleans or null:
# `3e-4`, `0o17`. PyYAML already quotes what YAML 1.1 would not read as a string.
_YAML12_NON_STRING = re.compile(
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|0o[0-7]+|0x[0-9a-fA-F]+"
    r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)|null|Null|NULL|~|true|True|TRUE|false|False|FALSE"
)


def _represent_str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    if style is None and _YAML12_NON_STRING.fullmatch(value):
        style = "'"
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def to_yaml(documents: Iterable[dict]) -> str:
    """A YAML stream; several documents are separated by `---`."""
    documents = list(documents)
    text = _fast_yaml(documents)
    if text is None:
        text = _pyyaml(documents)
    return text


def _pyyaml(documents: list[dict]) -> str:
    return yaml.dump_all(
        documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
        allow_unicode=True, width=4096, explicit_start=len(documents) > 1,
    )


# ------------------------------------------------------------ the fast path

class _Unusual(Exception):
    """A value the fast path leaves to PyYAML."""


class NotData(TypeError):
    """A document holds something other than dicts, lists, strings, numbers, booleans and None."""


_PYYAML_DATA = (float, tuple)  # data the fast path leaves to PyYAML

_ONE_LINE = re.compile(r"[\x20-\x7e]*")  # printable ASCII, no line break
# Printable ASCII lines written as a literal block with a `|` or `|-` header: the
# first line not indented, no line ending in a space.
# (`*+`: the regex engine keeps no backtracking point per line, which cost ~150 bytes a line.)
_LITERAL_TEXT = re.compile(r"(?![ \n])(?:[\x20-\x7e]*[\x21-\x7e])?(?:\n(?:[\x20-\x7e]*[\x21-\x7e])?)*+")
_INDICATORS = frozenset("#,[]{}&*!|>'\"%@`")
_MAX_KEY = 128  # a longer key is not a simple key: `? key`
_MAX_SPACED = 1024  # far below the line width (4096) past which scalars are folded at a space
_STR_TAG = "tag:yaml.org,2002:str"


def _plain_allowed(text: str) -> bool:
    """Whether the C emitter may write this one-line printable ASCII text plain
    in block context (libyaml's scalar analysis, for that subset of strings)."""
    first = text[0]
    if first == " " or text[-1] == " " or first in _INDICATORS:
        return False
    if first in "?:-" and (len(text) == 1 or text[1] == " "):
        return False
    if text.startswith(("---", "...")):
        return False
    return ": " not in text and " #" not in text and not text.endswith(":")


def _fast_yaml(documents: list[dict]) -> str | None:
    """The stream PyYAML would write, or None when a value needs PyYAML's judgement."""
    out: list[str] = []
    values: dict[str, str] = {}  # each distinct string classified once, as a value
    keys: dict[str, str] = {}  # and as a key
    resolve = _Dumper("").resolve if documents else None

    def string(text: str, key: bool) -> str:
        if (not _ONE_LINE.fullmatch(text) or (key and len(text) > _MAX_KEY)
                or (len(text) > _MAX_SPACED and " " in text)):
            raise _Unusual
        plain = (text != "" and _plain_allowed(text) and not _YAML12_NON_STRING.fullmatch(text)
                 and resolve(yaml.ScalarNode, text, (True, False)) == _STR_TAG)
        return text if plain else "'" + text.replace("'", "''") + "'"

    def scalar(value) -> str:
        """A one-line scalar: a string written plain or single-quoted, an int, a bool, null."""
        kind = value.__class__
        if kind is str:
            text = values.get(value)
            if text is None:
                text = values[value] = string(value, False)
            return text
        if kind is bool:
            return "true" if value else "false"
        if kind is int:
            return str(value)
        if value is None:
            return "null"
        if kind in _PYYAML_DATA:
            raise _Unusual
        raise NotData(f"{kind.__module__}.{kind.__qualname__} is not YAML data: the backend must turn it into "
                      "text first (an ir.Text through its render function)")

    def literal(value: str, indent: str) -> str:
        if value.endswith("\n\n") or not _LITERAL_TEXT.fullmatch(value):
            raise _Unusual
        body = value[:-1] if value.endswith("\n") else value
        # Every line indented, empty ones left empty; in whole-string operations, not
        # a string per line. Twice: one pass skips every other line of a blank run.
        lines = indent + body.replace("\n", "\n" + indent)
        blank = "\n" + indent + "\n"
        lines = lines.replace(blank, "\n\n").replace(blank, "\n\n")
        return ("|\n" if value.endswith("\n") else "|-\n") + lines

    def mapping(node: dict, indent: str) -> None:
        inner = indent + "  "
        for key, value in node.items():
            text = keys.get(key)
            if text is None:
                if key.__class__ is not str:
                    raise _Unusual
                text = keys[key] = string(key, True)
            key = text
            kind = value.__class__
            if kind is dict:
                if value:
                    out.append(f"{indent}{key}:\n")
                    mapping(value, inner)
                else:
                    out.append(f"{indent}{key}: {{}}\n")
            elif kind is list:
                if value:
                    out.append(f"{indent}{key}:\n")
                    sequence(value, indent)  # block sequences in a mapping are not indented
                else:
                    out.append(f"{indent}{key}: []\n")
            elif kind is str and "\n" in value:
                out.append(f"{indent}{key}: {literal(value, inner)}\n")
            else:
                out.append(f"{indent}{key}: {scalar(value)}\n")

    def sequence(node: list, indent: str) -> None:
        inner = indent + "  "
        for item in node:
            kind = item.__class__
            if kind is dict or kind is list:
                if not item:
                    out.append(f"{indent}- {{}}\n" if kind is dict else f"{indent}- []\n")
                    continue
                first = len(out)
                if kind is dict:
                    mapping(item, inner)
                else:
                    sequence(item, inner)
                out[first] = f"{indent}- {out[first][len(inner):]}"  # the first line follows the dash
            elif kind is str and "\n" in item:
                out.append(f"{indent}- {literal(item, inner)}\n")
            else:
                out.append(f"{indent}- {scalar(item)}\n")

    try:
        for document in documents:
            if document.__class__ is not dict or not document:
                raise _Unusual
            if len(documents) > 1:
                out.append("---\n")
            mapping(document, "")
    except _Unusual:
        return None
    return "".join(out)
