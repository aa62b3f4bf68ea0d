"""Write a surface model back as .aip source.

``parse(print_program(program))`` gives back an equal program (spans aside):
the round trip the property tests check. The layout is canonical: two-space
indentation, `=` aligned within a block, one item per line in a block that does
not fit on one line.
"""

from __future__ import annotations

import re

from aipc.dsl import model as m
from aipc.dsl.strings import quote

WIDTH = 100
INDENT = "  "
_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def print_program(program: m.Program) -> str:
    chunks: list[str] = []
    previous: m.Node | None = None
    for declaration in program.declarations:
        text = print_declaration(declaration)
        if previous is not None:
            # consecutive one-line declarations of a kind stay together
            together = (type(previous) is type(declaration) and "\n" not in text
                        and "\n" not in chunks[-1])
            chunks.append("\n" if together else "\n\n")
        chunks.append(text)
        previous = declaration
    return "".join(chunks) + ("\n" if chunks else "")


def print_declaration(declaration) -> str:
    if isinstance(declaration, m.ParamDecl):
        type_part = f": {declaration.type.value}" if declaration.type is not None else ""
        return f"param {declaration.name.value}{type_part} = {print_value(declaration.default, '')}"
    if isinstance(declaration, m.PipelineDecl):
        head = f"pipeline {quote((declaration.name,) if declaration.name else (), multiline=False)}"
    elif isinstance(declaration, m.VolumeDecl):
        head = f"volume {declaration.name.value}"
    elif isinstance(declaration, m.SecretDecl):
        head = f"secret {declaration.name.value}"
    else:
        head = f"{declaration.kind} {declaration.name.value}"
    one_line = not isinstance(declaration, (m.StageDecl, m.PipelineDecl))
    return head + " " + print_block(declaration.items, "", allow_one_line=one_line)


def print_block(items, indent: str, *, allow_one_line: bool = False) -> str:
    if not items:
        return "{ }"
    if allow_one_line:
        flat = [print_item(item, "", 0) for item in items]
        line = "{ " + "  ".join(flat) + " }"
        if all("\n" not in part for part in flat) and len(indent) + len(line) <= WIDTH // 2:
            return line
    inner = indent + INDENT
    width = max((len(item.name) for item in items if isinstance(item, m.Attribute)), default=0)
    lines = [inner + print_item(item, inner, width) for item in items]
    return "{\n" + "\n".join(lines) + "\n" + indent + "}"


def print_item(item, indent: str, width: int) -> str:
    if isinstance(item, m.Attribute):
        return f"{item.name.ljust(width)} = {print_value(item.value, indent)}"
    if isinstance(item, m.Mount):
        readonly = " readonly" if item.readonly else ""
        return f"mount {item.volume.value} at {quote(item.path.parts)}{readonly}"
    return f"{item.name} {print_block(item.items, indent)}"


def print_value(value, indent: str) -> str:
    if isinstance(value, m.Str):
        return quote(value.parts, indent)
    if isinstance(value, m.Number):
        return value.text
    if isinstance(value, m.Word):
        return value.value
    if isinstance(value, m.RangeValue):
        return f"{print_value(value.low, indent)}..{print_value(value.high, indent)}"
    inner = indent + INDENT
    if isinstance(value, m.ListValue):
        items = [print_value(item, inner) for item in value.items]
        return _bracketed("[", "]", items, indent, inner, ", ")
    entries = [f"{print_key(entry.key)} = {print_value(entry.value, inner)}" for entry in value.entries]
    return _bracketed("{", "}", entries, indent, inner, ", ", padded=True)


def print_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else quote((key,) if key else (), multiline=False)


def _bracketed(open_: str, close: str, items: list[str], indent: str, inner: str, separator: str,
               *, padded: bool = False) -> str:
    if not items:
        return open_ + (" " if padded else "") + close
    pad = " " if padded else ""
    flat = open_ + pad + separator.join(items) + pad + close
    if "\n" not in flat and len(indent) + len(flat) <= WIDTH:
        return flat
    return open_ + "\n" + "".join(f"{inner}{item},\n" for item in items) + indent + close
