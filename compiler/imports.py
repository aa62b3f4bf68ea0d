"""Imports: the files a pipeline's templates come from.

``import "PATH" [as NAME]`` reads PATH relative to the importing file's folder;
its templates are then named ``NAME.TEMPLATE`` (NAME defaults to the file's
stem). :func:`load_imports` reads every file a program imports, directly or
through other files, once each (by its real path), parses it and places its
spans at the file's own offsets (:func:`aipc.diagnostics.file_base`), so that
whatever is later reported about its text names that file.

An imported file is a library: templates and further imports only. Everything
that stops an import (a file that cannot be read, a cycle, a file that
declares something else, a path that is not a plain `.aip` path) is reported
at the ``import`` line that names it.
"""

from __future__ import annotations

import functools
import os
import posixpath
from dataclasses import dataclass, field
from typing import Callable

from aipc import codes
from aipc.compiler.resolve import WHAT, collect_declarations, declared_name
from aipc.compiler.sources import Unreadable, read_text
from aipc.diagnostics import Diagnostic, Diagnostics, Label, Span, file_base
from aipc.dsl import model as m
from aipc.dsl.parser import parse
from aipc.dsl.vocabulary import IDENTIFIER, MAX_IDENTIFIER

Reader = Callable[[str], str]  # a path -> its text; raises Unreadable
MAX_LABELS = 5  # declarations shown under "an imported file holds templates and imports only"


@dataclass(eq=False)
class Module:
    """A file that templates are taken from: the checked file, or one it imports.

    ``imports`` holds, by the name each is used by, the module of every import
    that worked (None for one that did not: it was reported).
    """

    path: str
    program: m.Program
    templates: dict[str, m.TemplateDecl] = field(default_factory=dict)
    imports: dict[str, "Module | None"] = field(default_factory=dict)
    import_declarations: dict[str, m.ImportDecl] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportedFile:
    """A file a check read besides the checked one: how diagnostics name it, the
    text they show, and the checked file's ``import`` that first led to it."""

    path: str
    text: str
    via: Span


@dataclass
class Imports:
    root: Module  # the checked file
    modules: list[Module]  # every module, the root first, each imported file once
    files: tuple[ImportedFile, ...]


def load_imports(program: m.Program, path: str, read: Reader | None, sink: Diagnostics) -> Imports:
    """The checked program's module and every module it imports, with each problem reported."""
    return _Loader(read or read_text, sink).run(program, path)


class _Loader:
    def __init__(self, read: Reader, sink: Diagnostics) -> None:
        self.read = read
        self.sink = sink
        self.by_identity: dict[str, Module] = {}
        self.modules: list[Module] = []
        self.files: list[ImportedFile] = []
        self.stack: list[tuple[str, Module, m.ImportDecl | None]] = []  # (identity, module, the import that led here)

    def run(self, program: m.Program, path: str) -> Imports:
        root = Module(path, program)
        root.templates = first_by_name(d for d in program.declarations if isinstance(d, m.TemplateDecl))
        self.modules.append(root)
        identity = file_identity(path) if path not in ("-", "<stdin>") else None
        if identity is not None:
            self.by_identity[identity] = root
        self.stack.append((identity or "", root, None))
        self._visit(root, via=None)
        return Imports(root, self.modules, tuple(self.files))

    def _visit(self, module: Module, via: Span | None) -> None:
        imports = [d for d in module.program.declarations if isinstance(d, m.ImportDecl)]
        for declaration in imports:
            name = declared_name(declaration)[0]
            first = name not in module.import_declarations
            if first:
                module.import_declarations[name] = declaration
            target = self._target(module, declaration, name)
            loaded = None if target is None else self._load(target, declaration, via or declaration.span)
            if first:  # a second import of a name is E101, reported by the resolver
                module.imports[name] = loaded

    def _target(self, module: Module, declaration: m.ImportDecl, name: str) -> str | None:
        """The path an import names, relative to the importing file, or None (reported)."""
        path = declaration.path
        if not path.is_literal:
            self.sink.error(codes.INVALID_IMPORT, path.span, "an import path cannot use `${...}`",
                            label="read before parameters exist", help="write the path as plain text")
            return None
        literal = path.literal
        if "\x00" in literal or not _encodable(literal):
            self.sink.error(codes.INVALID_IMPORT, path.span, "the import path is not a path a file system takes",
                            label="not a file name", help='name a file of templates: `import "lib/ml.aip"`')
            return None
        if not literal.endswith(".aip") or posixpath.basename(literal) == ".aip":
            self.sink.error(codes.INVALID_IMPORT, path.span, f"`{literal}` is not a .aip file",
                            label="imports read .aip files", help='name a file of templates: `import "lib/ml.aip"`')
            return None
        if declaration.alias is None and (len(name) > MAX_IDENTIFIER or not IDENTIFIER.fullmatch(name)):
            suggestion = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_") or "lib"
            if not suggestion[0].isalpha():
                suggestion = "lib_" + suggestion
            self.sink.error(codes.INVALID_IMPORT, path.span, f"`{name}` is not a valid name for an import",
                            label="its templates are used by the file's stem",
                            help=f'name it: `import "{literal}" as {suggestion[:MAX_IDENTIFIER]}`')
        return import_path(module.path, literal)

    def _load(self, path: str, declaration: m.ImportDecl, via: Span) -> Module | None:
        identity = file_identity(path)
        if any(entry[0] == identity for entry in self.stack):
            self._report_cycle(declaration, identity)
            return None
        known = self.by_identity.get(identity)
        if known is not None:
            return known
        try:
            text = self.read(path)
        except Unreadable as problem:
            self.sink.error(codes.IMPORT_UNREADABLE, declaration.path.span, problem.message,
                            label="imported here", help=problem.help)
            return None
        program, diagnostics = _parse_library(path, text)
        self.sink.extend(diagnostics)
        module = Module(path, program)
        symbols = collect_declarations(program, self.sink)  # names declared twice in it
        module.templates = symbols.templates
        self.by_identity[identity] = module
        self.modules.append(module)
        self.files.append(ImportedFile(path, text, via))
        self._check_library(module, declaration)
        self.stack.append((identity, module, declaration))
        self._visit(module, via)
        self.stack.pop()
        return module

    def _check_library(self, module: Module, declaration: m.ImportDecl) -> None:
        others = [d for d in module.program.declarations if not isinstance(d, (m.TemplateDecl, m.ImportDecl))]
        if not others:
            return
        first = others[0]
        what = "a pipeline header" if isinstance(first, m.PipelineDecl) else \
            f"the {WHAT[first.decl]} `{declared_name(first)[0]}`"
        more = f" and {len(others) - 1} more declaration{'s' if len(others) > 2 else ''}" if len(others) > 1 else ""
        self.sink.error(
            codes.IMPORT_NOT_A_LIBRARY, declaration.path.span,
            f"`{declaration.path.literal}` declares {what}{more}: an imported file holds templates and imports only",
            label="imported here",
            related=[Label(_declaration_name_span(d), "not a template") for d in others[:MAX_LABELS]],
            help="move these declarations into the pipelines that use them, or import a file of templates")

    def _report_cycle(self, declaration: m.ImportDecl, identity: str) -> None:
        start = next(i for i, entry in enumerate(self.stack) if entry[0] == identity)
        chain = self.stack[start:]
        names = [module.path for _, module, _ in chain] + [chain[0][1].path]
        related = [Label(through.path.span, f"imports `{through.path.literal}`")
                   for _, _, through in chain[1:] if through is not None]
        self.sink.error(codes.IMPORT_CYCLE, declaration.path.span, "import cycle: " + " -> ".join(names),
                        label="imports a file that is still being read", related=related,
                        help="move the templates these files share into a file that imports none of them")


def import_path(importer: str, literal: str) -> str:
    """The path ``import "literal"`` names in the file ``importer``: relative to its folder
    (the current one for stdin)."""
    folder = posixpath.dirname(importer) if importer not in ("-", "<stdin>") else ""
    return posixpath.normpath(posixpath.join(folder, literal))


def _encodable(path: str) -> bool:
    try:
        os.fsencode(path)
    except UnicodeError:  # a lone surrogate, from an editor's text
        return False
    return True


def file_identity(path: str) -> str:
    """What makes two paths one file (symbolic links followed)."""
    try:
        return os.path.realpath(path)
    except (ValueError, OSError):  # a NUL byte in an editor's file name; a loop of links
        return path


def first_by_name(declarations) -> dict:
    out: dict = {}
    for declaration in declarations:
        out.setdefault(declaration.name.value, declaration)
    return out


def _declaration_name_span(declaration) -> Span:
    if isinstance(declaration, m.PipelineDecl):
        return declaration.name_span
    return declared_name(declaration)[1]


@functools.lru_cache(maxsize=64)
def _parse_library(path: str, text: str) -> tuple[m.Program, tuple[Diagnostic, ...]]:
    """An imported file's model, its spans at the file's offsets, and its syntax errors
    (the language server checks each keystroke: a library's parse is kept)."""
    parsed = parse(text, path)
    base = file_base(path)
    program = m.shifted(parsed.program, base)
    return program, tuple(parsed.diagnostics)
