"""Name resolution: the declarations of a program by kind and name, and every
place a name is used.

Names are unique per kind (params, volumes, secrets) and across stages. The
first declaration of a name wins; later ones are reported with a pointer to
the first. Declarations whose text did not parse are remembered as known names,
so that references to them do not add "unknown" errors to the syntax error.

:func:`symbol_table` lists every declaration and every reference with its
span: what the language server's hover, definition, references and rename
read. Which values hold references comes from the schema's types (a
``STAGE_LIST`` holds stage names), not from attribute names, so a new
attribute of such a type is found without a change here. A new kind of
reference is one more entry in :data:`NAME_LISTS` or one more case in
:func:`_references_in`.

The v1 forms are declared and used here as well: a template by its name, an
import by its ``as`` name (or its file's stem); ``from trainer`` uses the
template, ``from gpu.h100_trainer`` the import ``gpu`` (its template lives in
the imported file), ``input model.metrics`` the stage ``model``, a dotted
value (``hf.token``, v1's only one: a secret's key) the secret ``hf``, and a
service address in a string (``${db.host}``) the stage ``db``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Iterator

from aipc import codes
from aipc.compiler import schema
from aipc.compiler.schema import AttributeSpec, Type
from aipc.diagnostics import Diagnostics, Label, Span
from aipc.dsl import model as m

# The kinds of declared names, and what a message calls each.
WHAT = {"param": "parameter", "volume": "volume", "secret": "secret", "stage": "stage", "template": "template",
        "import": "import"}
# `${NAME.x}` with these is a built-in (`${pipeline.name}`), never a stage's address.
ADDRESS_BUILTINS = ("pipeline", "stage", "matrix")
# Attribute types whose values are names of declarations of a kind: `after = [a, b]`, `matrix = model`.
NAME_LISTS: dict[Type, str] = {Type.STAGE_LIST: "stage", Type.SECRET_LIST: "secret", Type.STAGE_NAME: "stage"}


@dataclass
class Symbols:
    header: m.PipelineDecl | None = None
    params: dict[str, m.ParamDecl] = field(default_factory=dict)
    volumes: dict[str, m.VolumeDecl] = field(default_factory=dict)
    secrets: dict[str, m.SecretDecl] = field(default_factory=dict)
    stages: dict[str, m.StageDecl] = field(default_factory=dict)
    templates: dict[str, m.TemplateDecl] = field(default_factory=dict)
    imports: dict[str, m.ImportDecl] = field(default_factory=dict)
    broken: dict[str, set[str]] = field(default_factory=dict)  # kind -> names that did not parse
    incomplete: set[tuple[str, str, str]] = field(default_factory=set)  # attributes dropped by the recovery
    _known: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)  # filled once collected

    def written(self, kind: str, name: str, attribute: str) -> bool:
        """Whether the source set this attribute, though its value was lost to a syntax error."""
        return (kind, name, attribute) in self.incomplete

    def table(self, kind: str) -> dict:
        """The declarations of a kind (param, volume, secret, stage, template, import), by name."""
        return {"param": self.params, "volume": self.volumes, "secret": self.secrets, "stage": self.stages,
                "template": self.templates, "import": self.imports}[kind]

    def known(self, kind: str) -> frozenset[str]:
        """Names of this kind that exist, parsed or not (for "unknown name" checks)."""
        cached = self._known.get(kind)
        if cached is None:
            cached = self._known[kind] = frozenset(self.table(kind)) | self.broken.get(kind, set())
        return cached


def collect_declarations(program: m.Program, sink: Diagnostics) -> Symbols:
    symbols = Symbols()
    for kind, name in program.broken:
        symbols.broken.setdefault(kind, set()).add(name)
    symbols.incomplete = set(program.incomplete)
    for declaration in program.declarations:
        if isinstance(declaration, m.PipelineDecl):
            if symbols.header is not None:
                sink.error(codes.DUPLICATE_HEADER, declaration.span,
                           "a file has at most one `pipeline` header",
                           label="second header",
                           related=[Label(symbols.header.name_span, "first header here")],
                           help="merge the two headers into one")
                continue
            symbols.header = declaration
            continue
        kind = declaration.decl
        table = symbols.table(kind)
        name, span = declared_name(declaration)
        if name in table:
            first = table[name]
            what = WHAT[kind]
            sink.error(codes.DUPLICATE_NAME, span,
                       f"the {what} `{name}` is declared twice",
                       label="declared again here",
                       related=[Label(declared_name(first)[1], "first declared here")],
                       help=f"rename one of them; {what} names are unique"
                       + (" across all stage kinds" if kind == "stage" else ""))
            continue
        table[name] = declaration
    return symbols


def declared_name(declaration) -> tuple[str, Span]:
    """The name a declaration declares, and its span. An import without `as` is named
    after its file's stem (`import "lib/gpu.aip"` declares `gpu`, at the path)."""
    if isinstance(declaration, m.ImportDecl):
        if declaration.alias is not None:
            return declaration.alias.value, declaration.alias.span
        return PurePosixPath(declaration.path.literal).stem, declaration.path.span
    return declaration.name.value, declaration.name.span


# ------------------------------------------------------------- the symbol table


@dataclass(frozen=True)
class Declared:
    """A declaration: its kind (pipeline, param, volume, secret, stage, template, import), name and node."""

    kind: str
    name: str
    name_span: Span
    node: m.Node


@dataclass(frozen=True)
class Reference:
    """A use of a declared name (declared or not), at the span of the name itself."""

    kind: str  # param, volume, secret, stage, template, import
    name: str
    span: Span


@dataclass
class SymbolTable:
    """Every declaration, duplicates included, and every reference, in source order."""

    declared: list[Declared] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)

    def declaration(self, kind: str, name: str) -> Declared | None:
        """The declaration a name of a kind refers to: the first one."""
        for item in self.declared:
            if item.kind == kind and item.name == name:
                return item
        return None


def symbol_table(program: m.Program) -> SymbolTable:
    """The declarations and references of a program (the parsed part of it)."""
    table = SymbolTable()
    for declaration in program.declarations:
        if isinstance(declaration, m.PipelineDecl):
            table.declared.append(Declared("pipeline", declaration.name, declaration.name_span, declaration))
        else:
            name, span = declared_name(declaration)
            table.declared.append(Declared(declaration.decl, name, span, declaration))
        table.references += _references_in(declaration, _TABLES[type(declaration)])
    return table


# What each kind of declaration accepts, as attributes (the schema's tables).
_TABLES: dict[type, dict[str, AttributeSpec]] = {
    m.PipelineDecl: schema.HEADER, m.ParamDecl: {}, m.VolumeDecl: schema.VOLUME, m.SecretDecl: schema.SECRET,
    m.StageDecl: schema.STAGE, m.TemplateDecl: schema.STAGE, m.ImportDecl: {},
}


def _references_in(node, table: dict[str, AttributeSpec]) -> Iterator[Reference]:
    """The references under a model node whose attributes are read against ``table``."""
    if isinstance(node, m.Str):
        for part in node.parts:
            if not isinstance(part, m.Interpolation):
                continue
            head, dot, _ = part.name.partition(".")
            if not dot:
                yield Reference("param", part.name, part.name_span)
            elif head not in ADDRESS_BUILTINS:  # `${db.host}`: a use of the stage `db`
                start = part.name_span.start
                yield Reference("stage", head, Span(start, start + len(head)))
        return
    if isinstance(node, m.Reference):  # a dotted value: `hf.token`, a key of the secret `hf`
        first = node.parts[0]
        yield Reference("secret", first.value, first.span)
        return
    if isinstance(node, (m.StageDecl, m.TemplateDecl)) and node.base is not None:
        first = node.base.parts[0]  # `from trainer`, or `from gpu.h100_trainer`: a template of the import `gpu`
        yield Reference("template" if len(node.base.parts) == 1 else "import", first.value, first.span)
        for item in node.items:
            yield from _references_in(item, table)
        return
    if isinstance(node, m.Input):  # `input model.metrics`: an output of the stage `model`
        first = node.source.parts[0]
        yield Reference("stage", first.value, first.span)
        yield from _references_in(node.path, table)
        return
    if isinstance(node, m.Mount):
        yield Reference("volume", node.volume.value, node.volume.span)
        yield from _references_in(node.path, table)
        return
    if isinstance(node, m.Attribute):
        spec = table.get(node.name)
        kind = NAME_LISTS.get(spec.type) if spec is not None else None
        if kind is not None:
            words = node.value.items if isinstance(node.value, m.ListValue) else (node.value,)
            for word in words:
                if isinstance(word, m.Word):
                    yield Reference(kind, word.value, word.span)
            return
        # `resources = { ... }` is the block written as a map: its entries are its attributes
        table = schema.STAGE_BLOCKS.get(node.name, {}) if table is schema.STAGE else {}
    elif isinstance(node, m.Block):
        table = schema.STAGE_BLOCKS.get(node.name, {}) if table is schema.STAGE else {}
    for child in m.children(node):
        yield from _references_in(child, table)
