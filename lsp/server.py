"""The aipc language server: pygls handlers over the engine's own functions.

Diagnostics are exactly `aipc check`'s (``check_parsed`` over an incremental
parse, or ``check_source`` when the incremental parse cannot promise the same
result). They are debounced: each change waits ``debounce`` seconds, and only
the newest version is checked; a check that finishes after a newer change
arrived is dropped. Checks run one at a time on a worker thread, so the server
keeps reading the editor's messages while it checks.

Nothing here writes to stdout: the protocol owns it (see :func:`serve`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import functools
import gc
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from aipc import __version__
from aipc.compiler.check import check_parsed, check_source, normalize_newlines
from aipc.compiler.imports import ImportedFile, Reader, import_path
from aipc.compiler.sources import read_text
from aipc.diagnostics import Diagnostic, Label, Span
from aipc.dsl.format import FormatterBug, format_text
from aipc.dsl.vocabulary import IDENTIFIER, MAX_IDENTIFIER
from aipc.lsp import analysis, completion, convert, libraries
from aipc.lsp.incremental import IncrementalParser, ParsedDocument

logger = logging.getLogger("aipc.lsp")

DEBOUNCE = 0.02  # seconds between a change and its check
EXACT_DELAY = 0.3  # seconds of quiet before a whole-file check replaces an inexact result
MAX_WORKSPACE_FILES = 2000  # .aip files a rename of a template looks through
SKIPPED_FOLDERS = {"node_modules", "__pycache__", "venv"}

COMPLETION_KINDS = {
    "keyword": types.CompletionItemKind.Keyword, "attribute": types.CompletionItemKind.Property,
    "block": types.CompletionItemKind.Struct, "stage": types.CompletionItemKind.Function,
    "volume": types.CompletionItemKind.Folder, "secret": types.CompletionItemKind.Constant,
    "param": types.CompletionItemKind.Variable, "value": types.CompletionItemKind.EnumMember,
    "type": types.CompletionItemKind.TypeParameter, "template": types.CompletionItemKind.Class,
    "import": types.CompletionItemKind.Module,
}
SYMBOL_KINDS = {
    "pipeline": types.SymbolKind.Module, "param": types.SymbolKind.Variable,
    "volume": types.SymbolKind.Struct, "secret": types.SymbolKind.Key,
    "stage": types.SymbolKind.Function, "attribute": types.SymbolKind.Property,
    "block": types.SymbolKind.Object, "mount": types.SymbolKind.Field,
    "template": types.SymbolKind.Class, "import": types.SymbolKind.Namespace,
    "output": types.SymbolKind.Field, "input": types.SymbolKind.Field,
}


def path_of(uri: str) -> str:
    """The file path diagnostics name (a `file:` URI's path, else the URI itself)."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


@dataclass
class Document:
    """What the server knows of one open document."""

    uri: str
    parser: IncrementalParser
    version: int = 0
    text: str = ""
    bom: bool = False
    parsed: ParsedDocument | None = None  # of ``version``, made on demand
    index: analysis.Index | None = None
    published: list[Diagnostic] | None = None
    imported: tuple[ImportedFile, ...] = ()  # what the published check read besides it (`via` in real offsets)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def path(self) -> str:
        return self.parser.path

    def update(self, source: str, version: int) -> None:
        self.version = version
        self.bom = source.startswith("\ufeff")
        self.text = normalize_newlines(source)
        self.parsed = self.index = None

    def current(self) -> ParsedDocument:
        if self.parsed is None:
            self.parsed = self.parser.parse(self.text)
        return self.parsed

    def current_index(self) -> tuple[ParsedDocument, analysis.Index]:
        """The parse and its names, for the requests that need them."""
        parsed = self.current()
        if self.index is None:
            self.index = analysis.build_index(parsed)
        return parsed, self.index


class AipcLanguageServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("aipc", __version__)
        self.documents: dict[str, Document] = {}
        self.checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aipc-check")
        self.whole_checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aipc-check-whole")
        self.debounce = DEBOUNCE
        self.exact_delay = EXACT_DELAY
        self.tasks: set[asyncio.Task] = set()
        # what the checks of importing documents found in each imported file: path -> importer's uri -> diagnostics
        self.found_in: dict[str, dict[str, list[Diagnostic]]] = {}

    # positions ---------------------------------------------------------------------

    def encoding(self) -> str:
        try:
            encoding = self.workspace.position_encoding  # what initialize agreed with the client
        except RuntimeError:
            encoding = None
        return getattr(encoding, "value", encoding) or convert.UTF16

    def line_index(self, document: Document) -> convert.LineIndex:
        return convert.LineIndex(document.text, self.encoding(), document.bom)

    def document(self, uri: str) -> Document | None:
        return self.documents.get(uri)

    def by_path(self, path: str) -> Document | None:
        """The open document of a file, if any."""
        key = os.path.normpath(path)
        return next((d for d in self.documents.values() if os.path.normpath(d.path) == key), None)

    def reader(self) -> Reader:
        """How checks read imported files: an open document's text (saved or not), else the file."""
        texts = {os.path.normpath(d.path): d.text for d in self.documents.values()}

        def read(path: str) -> str:
            text = texts.get(os.path.normpath(os.path.abspath(path)))
            return text if text is not None else read_text(path)

        return read

    def location(self, path: str, span: Span) -> types.Location | None:
        """A place in a file, open or on disk (None when it cannot be read)."""
        place = self.place(path)
        if place is None:
            file = libraries.read_file(path, self.reader())
            if file is None:
                return None
            place = uri_of(path), convert.LineIndex(file.text, self.encoding())
        return types.Location(uri=place[0], range=place[1].range(span))

    def rename_everywhere(self, path: str, name: str, new_name: str) -> types.WorkspaceEdit | None:
        """Rename a template where it is declared and wherever a file uses it: the open
        documents, and the .aip files of the workspace's folders."""
        read = self.reader()
        files = {os.path.normpath(d.path): libraries.parse_file(d.path, d.text) for d in self.documents.values()}
        for candidate in self.workspace_files():
            if os.path.normpath(candidate) not in files:
                file = libraries.read_file(candidate, read)
                if file is not None:
                    files[os.path.normpath(candidate)] = file
        changes = {}
        for file_path, spans in libraries.template_uses(path, name, files.values()).items():
            place = self.place(file_path) or (uri_of(file_path),
                                              convert.LineIndex(files[os.path.normpath(file_path)].text, self.encoding()))
            changes[place[0]] = [types.TextEdit(range=place[1].range(span), new_text=new_name) for span in spans]
        return types.WorkspaceEdit(changes=changes) if changes else None

    def workspace_files(self) -> list[str]:
        """The .aip files under the workspace's folders (hidden folders aside), at most MAX_WORKSPACE_FILES."""
        try:
            roots = [path_of(folder.uri) for folder in self.workspace.folders.values()]
            if not roots and self.workspace.root_path:
                roots = [self.workspace.root_path]
        except RuntimeError:  # no workspace yet
            return []
        found: list[str] = []
        for root in roots:
            for folder, folders, names in os.walk(root):
                folders[:] = sorted(f for f in folders if not f.startswith(".") and f not in SKIPPED_FOLDERS)
                found += [os.path.join(folder, n) for n in sorted(names) if n.endswith(".aip")]
                if len(found) >= MAX_WORKSPACE_FILES:
                    return found[:MAX_WORKSPACE_FILES]
        return found

    def place(self, path: str, imported: tuple[ImportedFile, ...] = ()) -> convert.Place | None:
        """Where a file's spans go in the editor: an open document, or a file a check read."""
        document = self.by_path(path)
        if document is not None:
            return document.uri, self.line_index(document)
        for file in imported:
            if file.path == path:
                return uri_of(path), convert.LineIndex(file.text, self.encoding())
        return None

    # diagnostics -------------------------------------------------------------------------

    def open(self, uri: str, source: str, version: int) -> None:
        document = Document(uri, IncrementalParser(path_of(uri)))
        document.update(source, version)
        self.documents[uri] = document
        self.schedule(document, 0.0)
        self.recheck_importers(document.path)  # they read the file; now they read the editor's text

    def change(self, uri: str, version: int) -> None:
        document = self.documents.get(uri)
        if document is None:
            return
        document.update(self.workspace.get_text_document(uri).source, version)
        self.schedule(document, self.debounce)
        self.recheck_importers(document.path)

    def close(self, uri: str) -> None:
        document = self.documents.pop(uri, None)
        if document is None:
            return
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        self.recheck_importers(document.path)  # back to the saved file
        for file in document.imported:  # what it found in the files it imports goes with it
            self.found_in.get(file.path, {}).pop(uri, None)
            self.send_to(self.by_path(file.path))

    def recheck_importers(self, path: str) -> None:
        """Check again the open documents whose last check read ``path``."""
        key = os.path.normpath(path)
        for other in list(self.documents.values()):
            if any(os.path.normpath(file.path) == key for file in other.imported):
                self.schedule(other, self.debounce)

    def schedule(self, document: Document, delay: float) -> None:
        self._spawn(self._check_later(document, document.version, delay))

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _check_later(self, document: Document, version: int, delay: float) -> None:
        await asyncio.sleep(delay)
        async with document.lock:  # one check at a time; later versions wait here
            if not self._current(document, version):
                return  # a newer change has its own check coming
            started = time.perf_counter()
            try:
                parsed = document.current()
                parsed_at = time.perf_counter()
                found, imported = await asyncio.get_running_loop().run_in_executor(
                    self.checker, _check, parsed, self.reader())
            except Exception:  # noqa: BLE001 - the server must outlive any bug
                self.internal_error(f"checking {document.uri} failed")
                return
            checked_at = time.perf_counter()
            if not self._current(document, version):
                logger.debug("version %d of %s: result dropped, a newer version exists", version, document.uri)
                return
            self.publish(document, version, found, imported)
            logger.debug("version %d of %s: parsed in %.1f ms, checked in %.1f ms, published in %.1f ms",
                         version, document.uri, 1000 * (parsed_at - started), 1000 * (checked_at - parsed_at),
                         1000 * (time.perf_counter() - checked_at))
            if not parsed.exact:
                self._spawn(self._check_whole_later(document, version, parsed.text))

    async def _check_whole_later(self, document: Document, version: int, text: str) -> None:
        """Replace an inexact incremental result (an unclosed triple quote) with the
        whole file's, once the typing has paused. It runs on its own thread and holds
        no lock: the quick checks of newer versions never wait for it."""
        await asyncio.sleep(self.exact_delay)
        if not self._current(document, version):
            return
        try:
            checked = await asyncio.get_running_loop().run_in_executor(
                self.whole_checker, functools.partial(check_source, text, document.path, read=self.reader()))
        except Exception:  # noqa: BLE001
            self.internal_error(f"checking {document.uri} failed")
            return
        if self._current(document, version) and checked.diagnostics != document.published:
            self.publish(document, version, checked.diagnostics, checked.imported)

    def internal_error(self, what: str) -> None:
        """Log a bug in aipc; with AIPC_DEBUG=1 also show it in the editor."""
        logger.exception("%s; this is a bug in aipc, please report it", what)
        if os.environ.get("AIPC_DEBUG"):
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Error,
                                                             message=f"aipc: {what}"))

    def _current(self, document: Document, version: int) -> bool:
        return self.documents.get(document.uri) is document and document.version == version

    def publish(self, document: Document, version: int, found: list[Diagnostic],
                imported: tuple[ImportedFile, ...] = ()) -> None:
        """Show a check's diagnostics: the document's own, each one in a file it imports
        at the `import` that brought the file in, and (when that file is open too) in
        that file, next to its own."""
        before = {file.path for file in document.imported}
        document.published, document.imported = found, imported
        self.send_to(document)
        elsewhere: dict[str, list[Diagnostic]] = {}
        for item in found:
            if item.file != document.path:
                elsewhere.setdefault(item.file, []).append(item)
        for path in before | {file.path for file in imported}:
            found_here = self.found_in.setdefault(path, {})
            if path in elsewhere:
                found_here[document.uri] = elsewhere[path]
            else:
                found_here.pop(document.uri, None)
            self.send_to(self.by_path(path))

    def send_to(self, document: Document | None) -> None:
        """Publish a document's diagnostics: its last check's, and what the checks of the
        documents importing it found in it."""
        if document is None:
            return
        index = self.line_index(document)
        imported = document.imported
        via = {file.path: file.via for file in imported}

        def elsewhere(path: str) -> convert.Place | None:
            return self.place(path, imported)

        items, seen = [], set()
        for item in document.published or []:
            if item.file == document.path:
                items.append(convert.diagnostic(item, index, document.uri, elsewhere))
                seen.add(_identity(item))
            elif item.file in via:
                shown = os.path.relpath(item.file, os.path.dirname(document.path) or ".")
                items.append(convert.imported_diagnostic(item, via[item.file], index, document.uri, elsewhere, shown))
        for importer, found in sorted(self.found_in.get(document.path, {}).items()):
            if importer not in self.documents:
                continue
            place = functools.partial(self.place, imported=self.documents[importer].imported)
            for item in found:
                if _identity(item) not in seen:  # the library's own check has it already
                    seen.add(_identity(item))
                    items.append(convert.diagnostic(item, index, document.uri, place))
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=document.uri, diagnostics=items, version=document.version))


def _check(parsed: ParsedDocument, read: Reader) -> tuple[list[Diagnostic], tuple[ImportedFile, ...]]:
    """`aipc check`'s diagnostics for an incremental parse, in real offsets, and the
    files it read besides the document."""
    checked = check_parsed(parsed.parse_result, parsed.path, read=read)
    found = sorted((parsed.real_diagnostic(d) if d.file == parsed.path else _labels_in_real(parsed, d)
                    for d in checked.diagnostics), key=Diagnostic.sort_key)
    imported = tuple(dataclasses.replace(file, via=parsed.real_span(file.via)) for file in checked.imported)
    return found, imported


def _labels_in_real(parsed: ParsedDocument, item: Diagnostic) -> Diagnostic:
    """A diagnostic in an imported file whose labels in the document are in real offsets."""
    return dataclasses.replace(item, related=tuple(
        Label(parsed.real_span(label.span), label.message, label.file) if label.file == parsed.path else label
        for label in item.related))


def _identity(item: Diagnostic) -> tuple:
    """What makes two diagnostics one (each use of a template has its own, by its label)."""
    return item.code, item.span, item.message, tuple((label.file, label.span) for label in item.related)


def uri_of(path: str) -> str:
    """The `file:` URI of an absolute path (a relative one stays as it is)."""
    return Path(path).as_uri() if os.path.isabs(path) else path


server = AipcLanguageServer()


def _guarded(handler):
    """A request handler that logs an internal error and answers nothing, rather
    than failing the editor's request (with AIPC_DEBUG=1 the request fails)."""

    def run(ls: AipcLanguageServer, params):
        try:
            return handler(ls, params)
        except Exception:  # noqa: BLE001
            logger.exception("%s failed", handler.__name__)
            if os.environ.get("AIPC_DEBUG"):
                raise
            return None

    run.__name__ = handler.__name__
    return run


def _at_position(handler):
    """A request about a place in a document: the handler also gets the document and
    the offset of ``params.position``, and is not called for an unknown document."""

    def run(ls: AipcLanguageServer, params):
        document = ls.document(params.text_document.uri)
        if document is None:
            return None
        return handler(ls, params, document, ls.line_index(document).offset(params.position))

    run.__name__ = handler.__name__
    return run


# ------------------------------------------------------------------- lifecycle


@server.feature(types.INITIALIZE)
def initialize(ls: AipcLanguageServer, params: types.InitializeParams) -> None:
    options = params.initialization_options
    if isinstance(options, dict):
        if isinstance(options.get("debounceMs"), (int, float)) and options["debounceMs"] >= 0:
            ls.debounce = options["debounceMs"] / 1000


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: AipcLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
    item = params.text_document
    ls.open(item.uri, ls.workspace.get_text_document(item.uri).source, item.version)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: AipcLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.change(params.text_document.uri, params.text_document.version)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: AipcLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.close(params.text_document.uri)


# ---------------------------------------------------------------------- requests


@server.feature(types.TEXT_DOCUMENT_HOVER)
@_guarded
@_at_position
def hover(ls: AipcLanguageServer, params: types.HoverParams, document: Document, offset: int) -> types.Hover | None:
    parsed, index = document.current_index()

    def merged(name: str) -> str | None:  # a stage from a template: as merged, each attribute's origin
        return libraries.merged_stage(parsed.program, name, ls.reader(),
                                      lambda span: parsed.text[parsed.real_span(span).start:parsed.real_span(span).end])

    answer = analysis.hover(parsed, index, offset, merged)
    if answer is None:
        return None
    text, span = answer
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
                       range=ls.line_index(document).range(span))


@server.feature(types.TEXT_DOCUMENT_COMPLETION,
                types.CompletionOptions(trigger_characters=["[", ",", "{", "=", "$"]))
@_guarded
@_at_position
def complete(ls: AipcLanguageServer, params: types.CompletionParams, document: Document, offset: int) -> types.CompletionList | None:
    parsed, index = document.current_index()
    line_start = document.text.rfind("\n", 0, offset) + 1
    if "from" in document.text[line_start:offset]:  # `from gpu.`: the imported files' templates
        index.imported = libraries.templates_by_import(document.path, parsed.program, ls.reader())
    starts = [chunk.start for chunk in parsed.chunks]
    result = completion.complete(document.text, offset, completion.chunk_start_at(starts, offset), index)
    lines = ls.line_index(document)
    replace = lines.range(result.replace)
    items = []
    for order, candidate in enumerate(result.items):
        documentation = (types.MarkupContent(kind=types.MarkupKind.Markdown, value=candidate.documentation)
                         if candidate.documentation else None)
        items.append(types.CompletionItem(
            label=candidate.label, kind=COMPLETION_KINDS.get(candidate.kind), detail=candidate.detail or None,
            documentation=documentation, sort_text=f"{order:03d}",
            text_edit=types.TextEdit(range=replace, new_text=candidate.insert or candidate.label),
        ))
    return types.CompletionList(is_incomplete=False, items=items)


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
@_guarded
@_at_position
def definition(ls: AipcLanguageServer, params: types.DefinitionParams, document: Document, offset: int) -> types.Location | None:
    parsed, index = document.current_index()
    virtual = parsed.virtual(offset)
    found = libraries.base_at(parsed.program, virtual)
    if found is not None and found[1] == 1:  # `from gpu.h100_trainer`: the template, in its file
        template = libraries.imported_template(document.path, parsed.program, found[0], ls.reader())
        return ls.location(template.path, template.name_span) if template is not None else None
    declaration = libraries.import_at(parsed.program, virtual)
    if declaration is not None and declaration.path.is_literal:  # the imported file itself
        target = import_path(document.path, declaration.path.literal)
        return ls.location(target, Span(0, 0))
    declared = index.definition(offset)
    if declared is None:
        return None
    return types.Location(uri=document.uri, range=ls.line_index(document).range(declared.name_span))


@server.feature(types.TEXT_DOCUMENT_REFERENCES)
@_guarded
@_at_position
def references(ls: AipcLanguageServer, params: types.ReferenceParams, document: Document, offset: int) -> list[types.Location] | None:
    _, index = document.current_index()
    lines = ls.line_index(document)
    spans = index.references(offset, params.context.include_declaration)
    return [types.Location(uri=document.uri, range=lines.range(span)) for span in spans]


@server.feature(types.TEXT_DOCUMENT_DOCUMENT_HIGHLIGHT)
@_guarded
@_at_position
def highlight(ls: AipcLanguageServer, params: types.DocumentHighlightParams, document: Document, offset: int):
    _, index = document.current_index()
    lines = ls.line_index(document)
    return [types.DocumentHighlight(range=lines.range(span)) for span in index.references(offset)]


@server.feature(types.TEXT_DOCUMENT_PREPARE_RENAME)
@_guarded
@_at_position
def prepare_rename(ls: AipcLanguageServer, params: types.PrepareRenameParams, document: Document, offset: int):
    parsed, index = document.current_index()
    imported = _imported_template_at(ls, document, offset)
    if imported is not None:
        return ls.line_index(document).range(imported[1])
    name = index.name_at(offset)
    if name is None or index.first(name[0], name[1]) is None:
        return None
    return ls.line_index(document).range(name[2])


@server.feature(types.TEXT_DOCUMENT_RENAME)
@_guarded
@_at_position
def rename(ls: AipcLanguageServer, params: types.RenameParams, document: Document, offset: int) -> types.WorkspaceEdit | None:
    _, index = document.current_index()
    new_name = params.new_name.strip()
    if not IDENTIFIER.fullmatch(new_name) or len(new_name) > MAX_IDENTIFIER:
        ls.window_show_message(types.ShowMessageParams(
            type=types.MessageType.Error,
            message=f"`{new_name}` is not a valid name: lowercase letters, digits and `_`, "
                    f"starting with a letter, at most {MAX_IDENTIFIER} characters"))
        return None
    imported = _imported_template_at(ls, document, offset)
    found = index.name_at(offset)
    if imported is not None or (found is not None and found[0] == "template"):
        # a template: its declaration and its uses in every file that can name it
        path, name = (imported[0].path, imported[0].name) if imported is not None else (document.path, found[1])
        return ls.rename_everywhere(path, name, new_name)
    lines = ls.line_index(document)
    edits = [types.TextEdit(range=lines.range(span), new_text=new_name) for span in index.references(offset)]
    return types.WorkspaceEdit(changes={document.uri: edits}) if edits else None


def _imported_template_at(ls: AipcLanguageServer, document: Document, offset: int):
    """The imported template whose name (`from gpu.NAME`) is under the cursor, and that
    name's span (real offsets), if any."""
    parsed = document.current()
    found = libraries.base_at(parsed.program, parsed.virtual(offset))
    if found is None or found[1] != 1:
        return None
    template = libraries.imported_template(document.path, parsed.program, found[0], ls.reader())
    return (template, parsed.real_span(found[0].parts[1].span)) if template is not None else None


@server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
@_guarded
def symbols(ls: AipcLanguageServer, params: types.DocumentSymbolParams) -> list[types.DocumentSymbol] | None:
    document = ls.document(params.text_document.uri)
    if document is None:
        return None
    parsed, index = document.current_index()
    lines = ls.line_index(document)

    def convert_symbol(symbol: analysis.Symbol) -> types.DocumentSymbol:
        return types.DocumentSymbol(
            name=symbol.name, kind=SYMBOL_KINDS[symbol.kind], detail=symbol.detail or None,
            range=lines.range(symbol.span), selection_range=lines.range(symbol.selection),
            children=[convert_symbol(child) for child in symbol.children] or None,
        )

    return [convert_symbol(symbol) for symbol in analysis.outline(parsed, index)]


@server.feature(types.TEXT_DOCUMENT_FORMATTING)
@_guarded
def formatting(ls: AipcLanguageServer, params: types.DocumentFormattingParams) -> list[types.TextEdit] | None:
    document = ls.document(params.text_document.uri)
    if document is None:
        return None
    try:
        formatted = format_text(document.text, document.parser.path)
    except FormatterBug as error:
        logger.error("not formatted: %s; this is a bug in aipc, please report it", error)
        return None
    if formatted.text is None:
        ls.window_log_message(types.LogMessageParams(
            type=types.MessageType.Info, message="aipc: not formatted, the file has syntax errors"))
        return None
    return line_edits(document.text, formatted.text, ls.line_index(document).encoding)


def line_edits(before: str, after: str, encoding: str = convert.UTF16) -> list[types.TextEdit]:
    """The changed runs of whole lines that turn ``before`` into ``after`` (small
    edits keep the editor's cursor and folds where they were)."""
    old, new = before.split("\n"), after.split("\n")
    end_of_text = types.Position(line=len(old) - 1, character=convert.units_of(old[-1], encoding))
    edits = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        lines = "\n".join(new[j1:j2])
        if i2 < len(old):  # whole lines, up to the start of line i2
            start, end = types.Position(line=i1, character=0), types.Position(line=i2, character=0)
            text = lines + "\n" if j2 > j1 else ""
        elif i1 < len(old):  # up to the end of the text
            start, end, text = types.Position(line=i1, character=0), end_of_text, lines
        else:  # lines added after the last one
            start, end, text = end_of_text, end_of_text, "\n" + lines
        edits.append(types.TextEdit(range=types.Range(start=start, end=end), new_text=text))
    return edits


# ---------------------------------------------------------------------------- stdio


def serve(verbose: bool = False, log_file: str | None = None) -> None:
    """Speak LSP on stdin/stdout until the editor says exit.

    ``sys.stdout`` is pointed at stderr first, so a stray print anywhere can never
    corrupt the protocol stream; logs go to stderr (or ``log_file``).
    """
    protocol_out = sys.stdout.buffer
    sys.stdout = sys.stderr
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("pygls").setLevel(logging.INFO if verbose else logging.WARNING)
    # A parsed 300-stage file is some 100,000 objects; the default thresholds run a
    # full collection over them every few edits, a pause longer than a check.
    gc.set_threshold(50_000, 20, 100)
    server.start_io(sys.stdin.buffer, protocol_out)
