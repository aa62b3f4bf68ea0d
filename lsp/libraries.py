"""Other files, as the editor needs them: where an import's file is, where a
template is declared (in this file or an imported one), which files use a
template, and what a stage looks like once its templates are merged in.

Pure functions over parsed files; files are read with a ``read`` function (the
server's reads open documents first, then the disk). Paths are resolved as the
checker resolves them (:func:`aipc.compiler.imports.import_path`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Iterable

from aipc.compiler.imports import Reader, file_identity, first_by_name, import_path
from aipc.compiler.resolve import declared_name
from aipc.compiler.sources import Unreadable
from aipc.compiler.templates import Layer, expand
from aipc.diagnostics import Diagnostics, Source, Span, locate
from aipc.dsl import model as m
from aipc.dsl.parser import parse
from aipc.lsp.analysis import instances

MAX_SHOWN_VALUE = 60  # characters of a value shown in a merged stage's hover


@dataclass(frozen=True)
class File:
    """A file's text and model, its spans its own offsets."""

    path: str
    text: str
    program: m.Program


@functools.lru_cache(maxsize=128)
def parse_file(path: str, text: str) -> File:
    return File(path, text, parse(text, path).program)


def read_file(path: str, read: Reader) -> File | None:
    try:
        return parse_file(path, read(path))
    except Unreadable:
        return None


def same_file(one: str, other: str) -> bool:
    return file_identity(one) == file_identity(other)


def imports_of(path: str, program: m.Program) -> dict[str, str]:
    """The files a program imports, by the name their templates are used by (the first
    import of each name), as paths."""
    out: dict[str, str] = {}
    for declaration in program.declarations:
        if isinstance(declaration, m.ImportDecl) and declaration.path.is_literal:
            out.setdefault(declared_name(declaration)[0], import_path(path, declaration.path.literal))
    return out


def import_at(program: m.Program, offset: int) -> m.ImportDecl | None:
    """The import whose path string is under ``offset``."""
    for declaration in program.declarations:
        if isinstance(declaration, m.ImportDecl) and declaration.path.span.start <= offset <= declaration.path.span.end:
            return declaration
    return None


def base_at(program: m.Program, offset: int) -> tuple[m.Reference, int] | None:
    """The `from` reference under ``offset`` and which of its parts (0 or 1) it is on."""
    for declaration in program.declarations:
        base = getattr(declaration, "base", None)
        if base is not None and base.span.start <= offset <= base.span.end:
            for number, part in enumerate(base.parts):
                if part.span.start <= offset <= part.span.end:
                    return base, number
    return None


@dataclass(frozen=True)
class Template:
    """A template's declaration: its file, name and the span of its name there."""

    path: str
    name: str
    name_span: Span
    declaration: m.TemplateDecl


def templates_of(file: File) -> dict[str, m.TemplateDecl]:
    return first_by_name(d for d in file.program.declarations if isinstance(d, m.TemplateDecl))


def imported_template(path: str, program: m.Program, reference: m.Reference, read: Reader) -> Template | None:
    """The template ``alias.name`` names in an imported file (None for a local one)."""
    if len(reference.parts) != 2:
        return None
    alias, name = (part.value for part in reference.parts)
    target = imports_of(path, program).get(alias)
    library = read_file(target, read) if target is not None else None
    declaration = templates_of(library).get(name) if library is not None else None
    if declaration is None:
        return None
    return Template(library.path, name, declaration.name.span, declaration)


def templates_by_import(path: str, program: m.Program, read: Reader) -> dict[str, list[tuple[str, str]]]:
    """For completion after `from NAME.`: each import's templates as (name, kind)."""
    out = {}
    for alias, target in imports_of(path, program).items():
        library = read_file(target, read)
        if library is not None:
            out[alias] = [(name, declaration.kind) for name, declaration in templates_of(library).items()]
    return out


def template_uses(template_path: str, name: str, files: Iterable[File]) -> dict[str, list[Span]]:
    """Every place a template's name is written, by file: its declaration, `from NAME`
    in its own file and `from ALIAS.NAME` in each file that imports it."""
    out: dict[str, list[Span]] = {}
    for file in files:
        spans = []
        if same_file(file.path, template_path):
            declaration = templates_of(file).get(name)
            if declaration is not None:
                spans.append(declaration.name.span)
            spans += [base.parts[0].span for base in _bases(file.program)
                      if len(base.parts) == 1 and base.parts[0].value == name]
        aliases = {alias for alias, target in imports_of(file.path, file.program).items()
                   if same_file(target, template_path)}
        spans += [base.parts[1].span for base in _bases(file.program)
                  if len(base.parts) == 2 and base.parts[0].value in aliases and base.parts[1].value == name]
        if spans:
            out[file.path] = sorted(spans)
    return out


def _bases(program: m.Program) -> list[m.Reference]:
    return [d.base for d in program.declarations if getattr(d, "base", None) is not None]


# ------------------------------------------------------------------ merged stages


def merged_stage(program: m.Program, name: str, read: Reader, text_of) -> str | None:
    """A stage that starts from a template, as the lowering sees it: each attribute
    with the template it came from. ``text_of(span)`` is the document's text at one
    of its spans (the program's own spans may be virtual)."""
    expansion = expand(program, Diagnostics(program.path), read)
    chain = expansion.chains.get(name)
    stage = next((d for d in expansion.program.declarations
                  if isinstance(d, m.StageDecl) and d.name.value == name), None)
    if chain is None or stage is None:
        return None
    texts = {file.path: file.text for file in expansion.files}

    def source(span: Span) -> str:
        path, local = locate(span)
        if path is None:
            return text_of(span)
        return texts.get(path, "")[local.start:local.end]

    def origin(span: Span) -> str:
        for layer in chain:
            if layer.declaration.span.start <= span.start and span.end <= layer.declaration.span.end:
                return layer.name
        return ""

    lines = [(f"{stage.kind} {name} from {stage.base.dotted} {{", "")]
    for item in stage.items:
        lines += _item_lines(item, "  ", source, origin)
    lines.append(("}", ""))
    width = min(max(len(code) for code, _ in lines), MAX_SHOWN_VALUE + 20)
    block = [f"{code.ljust(width)}  # {where}" if where else code for code, where in lines]
    out = [f"**{stage.kind} stage** `{name}`, merged with its templates:", "", "```aip", *block, "```", ""]
    out.append("A comment names the template an attribute comes from; the others are the stage's own. "
               "Templates: " + ", ".join(_where(layer, texts) for layer in chain) + ".")
    out += instances(expansion.program, name)
    return "\n".join(out)


def _item_lines(item, indent: str, source, origin) -> list[tuple[str, str]]:
    if isinstance(item, m.Block):
        out = [(f"{indent}{item.name} {{", "")]
        for inner in item.items:
            out += _item_lines(inner, indent + "  ", source, origin)
        return out + [(f"{indent}}}", "")]
    if isinstance(item, m.Attribute) and isinstance(item.value, m.MapValue) and _mixed(item.value, origin):
        out = [(f"{indent}{item.name} = {{", "")]
        out += [(f"{indent}  {entry.key} = {_shown(source(entry.value.span))}", origin(entry.span))
                for entry in item.value.entries]
        return out + [(f"{indent}}}", "")]
    return [(f"{indent}{_shown(source(item.span))}", origin(item.span))]


def _mixed(value: m.MapValue, origin) -> bool:
    return len({origin(entry.span) for entry in value.entries}) > 1


def _shown(text: str) -> str:
    first = text.split("\n", 1)[0]
    if len(first) > MAX_SHOWN_VALUE:
        return first[:MAX_SHOWN_VALUE] + "..."
    return first + (" ..." if "\n" in text else "")


def _where(layer: Layer, texts: dict[str, str]) -> str:
    path, local = locate(layer.declaration.name.span)
    if path is None:
        return f"`{layer.name}`"
    line = Source(path, texts.get(path, "")).position(local.start).line
    return f"`{layer.name}` ({os.path.basename(path)}:{line})"
