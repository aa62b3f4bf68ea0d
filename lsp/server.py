"""The aipc language server: pygls handlers over the engine's own functions.

Diagnostics are exactly `aipc check`'s (``check_parsed`` over an incremental
parse, or ``check_source`` when the incremental parse cannot promise the same
result). They are debounced: each change waits ``debounce`` seconds, and only
the newest version is checked; a check that finishes after a newer change
arrived is dropped.

The event loop only reads and answers messages: parsing, checking, indexing,
formatting and every request's answer run on worker threads (:meth:`work`), one
piece of work at a time per document and several documents at once, so a huge
document never delays another one's diagnostics. A parse gives up between
chunks as soon as a newer version of its document arrives (the chunks it did
parse are kept for that version); a request whose document changed while it
was answered gets ContentModified, and one about a position outside the
document gets InvalidParams.

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
from typing import Callable, NamedTuple
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.exceptions import JsonRpcContentModified, JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from aipc import __version__
from aipc.compiler.check import check_parsed, check_source, normalize_newlines
from aipc.compiler.imports import ImportedFile, Reader, import_path
from aipc.compiler.sources import read_text
from aipc.diagnostics import Diagnostic, Label, Span
from aipc.dsl.format import FormatterBug, format_text
from aipc.dsl.vocabulary import IDENTIFIER, MAX_IDENTIFIER
from aipc.lsp import analysis, completion, convert, libraries
from aipc.lsp.incremental import Cancelled, IncrementalParser, ParsedDocument

logger = logging.getLogger("aipc.lsp")

DEBOUNCE = 0.02  # seconds between a change and its check
EXACT_DELAY = 0.3  # seconds of quiet before a whole-file check replaces an inexact result
WORKERS = 4  # documents worked on at once
MAX_WORKSPACE_FILES = 2000  # .aip files a rename of a template looks through
SKIPPED_FOLDERS = {"node_modules", "__pycache__", "venv"}

COMPLETION_KINDS = {
    "keyword": types.CompletionItemKind.Keyword, "attribute": types.CompletionItemKind.Property,
    "block": types.CompletionItemKind.Struct, "stage": types.CompletionItemKind.Function,
    "volume": types.CompletionItemKind.Folder, "secret": types.CompletionItemKind.Constant,
    "param": types.CompletionItemKind.Variable, "value": types.CompletionItemKind.EnumMember,
    "type": types.CompletionItemKind.TypeParameter, "template": types.CompletionItemKind.Class,
    "import": types.CompletionItemKind.Module, "output": types.CompletionItemKind.Folder,
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


class Snapshot(NamedTuple):
    """One version of a document's text, as workers see it (replaced whole on each change)."""

    version: int
    text: str
    bom: bool


@dataclass
class View:
    """What a request is answered from: one version's parse, its names and its lines;
    the document's path, and how to read the files it imports (the open documents'
    texts as the request found them, else the files)."""

    snapshot: Snapshot
    parsed: ParsedDocument
    index: analysis.Index
    lines: convert.LineIndex
    path: str
    read: Reader

    def offset(self, position: types.Position) -> int:
        """The offset of a position of the request; a line past the end is an error
        (a column past a line's end means its end, as LSP says)."""
        if position.line >= self.lines.line_count:
            raise JsonRpcInvalidParams(
                f"line {position.line} is outside the document, which has {self.lines.line_count} lines")
        return self.lines.offset(position)


@dataclass
class Document:
    """What the server knows of one open document. The parse, the index and the
    line index are made by workers (one at a time per document) and kept for the
    version they were made of."""

    uri: str
    parser: IncrementalParser
    snapshot: Snapshot = Snapshot(0, "", False)
    parsed: ParsedDocument | None = None  # of ``parsed_version``
    parsed_version: int | None = None
    index: analysis.Index | None = None  # of ``parsed_version``
    lines: convert.LineIndex | None = None  # of ``lines_key``
    lines_key: tuple | None = None
    published: list[Diagnostic] | None = None
    published_lines: convert.LineIndex | None = None  # of the text ``published`` was found in
    imported: tuple[ImportedFile, ...] = ()  # what the published check read besides it (`via` in real offsets)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def path(self) -> str:
        return self.parser.path

    @property
    def version(self) -> int:
        return self.snapshot.version

    @property
    def text(self) -> str:
        return self.snapshot.text

    def update(self, source: str, version: int) -> None:
        self.snapshot = Snapshot(version, normalize_newlines(source), source.startswith("\ufeff"))

    # on a worker thread -------------------------------------------------------------

    def current(self, snapshot: Snapshot, cancelled: Callable[[], bool] | None = None) -> ParsedDocument:
        if self.parsed_version != snapshot.version:
            self.parsed = self.parser.parse(snapshot.text, cancelled)
            self.parsed_version, self.index = snapshot.version, None
        return self.parsed  # type: ignore[return-value]

    def line_index(self, snapshot: Snapshot, encoding: str) -> convert.LineIndex:
        key = (snapshot.version, encoding)
        if self.lines_key != key:
            self.lines, self.lines_key = convert.LineIndex(snapshot.text, encoding, snapshot.bom), key
        return self.lines  # type: ignore[return-value]

    def view(self, snapshot: Snapshot, encoding: str, read: Reader,
             cancelled: Callable[[], bool] | None = None) -> View:
        parsed = self.current(snapshot, cancelled)
        if self.index is None:
            self.index = analysis.build_index(parsed)
        return View(snapshot, parsed, self.index, self.line_index(snapshot, encoding), self.path, read)


class AipcLanguageServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("aipc", __version__)
        self.documents: dict[str, Document] = {}
        self.workers = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="aipc-work")
        self.whole_checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aipc-check-whole")
        self.debounce = DEBOUNCE
        self.exact_delay = EXACT_DELAY
        self.tasks: set[asyncio.Task] = set()
        # what the checks of importing documents found in each imported file: path -> importer's uri -> diagnostics
        self.found_in: dict[str, dict[str, list[Diagnostic]]] = {}

    # positions ---------------------------------------------------------------------

    def encoding(self) -> str:
        """The position encoding initialize agreed with the client."""
        try:
            encoding = self.workspace.position_encoding
        except RuntimeError:
            encoding = None
        return getattr(encoding, "value", encoding) or convert.UTF16

    def lines_of(self, document: Document) -> convert.LineIndex:
        """The positions of an open document's current text (safe on any thread)."""
        snapshot = document.snapshot
        return convert.LineIndex(snapshot.text, self.encoding(), snapshot.bom)

    def document(self, uri: str) -> Document | None:
        return self.documents.get(uri)

    # other files (also called on workers: they copy the documents before reading them) -----

    def by_path(self, path: str) -> Document | None:
        """The open document of a file, if any."""
        key = os.path.normpath(path)
        return next((d for d in list(self.documents.values()) if os.path.normpath(d.path) == key), None)

    def reader(self) -> Reader:
        """How checks read imported files: an open document's text (saved or not, as it
        is now), else the file."""
        texts = {os.path.normpath(d.path): d.text for d in list(self.documents.values())}

        def read(path: str) -> str:
            text = texts.get(os.path.normpath(os.path.abspath(path)))
            return text if text is not None else read_text(path)

        return read

    def location(self, path: str, span: Span, read: Reader) -> types.Location | None:
        """A place in a file, open or on disk (None when it cannot be read)."""
        place = self.place(path)
        if place is None:
            file = libraries.read_file(path, read)
            if file is None:
                return None
            place = uri_of(path), convert.LineIndex(file.text, self.encoding())
        return types.Location(uri=place[0], range=place[1].range(span))

    def rename_everywhere(self, path: str, name: str, new_name: str, read: Reader) -> types.WorkspaceEdit | None:
        """Rename a template where it is declared and wherever a file uses it: the open
        documents, and the .aip files of the workspace's folders."""
        files = {os.path.normpath(d.path): libraries.parse_file(d.path, d.text) for d in list(self.documents.values())}
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
            return document.uri, self.lines_of(document)
        for file in imported:
            if file.path == path:
                return uri_of(path), convert.LineIndex(file.text, self.encoding())
        return None

    # work off the event loop ---------------------------------------------------------

    async def work(self, document: Document, function, *args):
        """``function(*args)`` on a worker thread, after the document's earlier work:
        its parser is not thread-safe, and one thread per document leaves the others
        for other documents. A thread cannot be stopped, so when the caller is
        cancelled the document stays held until the thread is done."""
        async with document.lock:
            future = asyncio.get_running_loop().run_in_executor(self.workers, function, *args)
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                while not future.done():
                    try:
                        await asyncio.wait([future])
                    except asyncio.CancelledError:
                        continue
                raise

    def stale(self, document: Document, version: int) -> Callable[[], bool]:
        """Asked by a parse between chunks: has ``version`` been replaced (or closed)?"""
        return lambda: not self._current(document, version)

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
        self._spawn(self._check_later(document, document.snapshot, delay))

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _check_later(self, document: Document, snapshot: Snapshot, delay: float) -> None:
        await asyncio.sleep(delay)
        if not self._current(document, snapshot.version):
            return  # a newer change has its own check coming
        try:
            parsed, found, imported, lines, timings = await self.work(
                document, _diagnose, document, snapshot, self.encoding(), self.reader(),
                self.stale(document, snapshot.version))
        except Cancelled:
            return
        except Exception:  # noqa: BLE001 - the server must outlive any bug
            self.internal_error(f"checking {document.uri} failed")
            return
        if not self._current(document, snapshot.version):
            logger.debug("version %d of %s: result dropped, a newer version exists", snapshot.version, document.uri)
            return
        self.publish(document, snapshot.version, found, imported, lines)
        logger.debug("version %d of %s: parsed in %.1f ms, checked in %.1f ms", snapshot.version, document.uri,
                     *timings)
        if not parsed.exact:
            self._spawn(self._check_whole_later(document, snapshot))

    async def _check_whole_later(self, document: Document, snapshot: Snapshot) -> None:
        """Replace an inexact incremental result (an unclosed triple quote) with the
        whole file's, once the typing has paused. It runs on its own thread and holds
        no lock: the quick checks of newer versions never wait for it."""
        await asyncio.sleep(self.exact_delay)
        if not self._current(document, snapshot.version):
            return
        try:
            checked, lines = await asyncio.get_running_loop().run_in_executor(
                self.whole_checker, _check_whole, snapshot, document.path, self.encoding(), self.reader())
        except Exception:  # noqa: BLE001
            self.internal_error(f"checking {document.uri} failed")
            return
        if self._current(document, snapshot.version) and checked.diagnostics != document.published:
            self.publish(document, snapshot.version, checked.diagnostics, checked.imported, lines)

    def internal_error(self, what: str) -> None:
        """Log a bug in aipc; with AIPC_DEBUG=1 also show it in the editor."""
        logger.exception("%s; this is a bug in aipc, please report it", what)
        if os.environ.get("AIPC_DEBUG"):
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Error,
                                                             message=f"aipc: {what}"))

    def _current(self, document: Document, version: int) -> bool:
        return self.documents.get(document.uri) is document and document.version == version

    def publish(self, document: Document, version: int, found: list[Diagnostic],
                imported: tuple[ImportedFile, ...], lines: convert.LineIndex) -> None:
        """Show a check's diagnostics (``lines``: the positions of the text checked): the
        document's own, each one in a file it imports at the `import` that brought the
        file in, and (when that file is open too) in that file, next to its own."""
        before = {file.path for file in document.imported}
        document.published, document.imported, document.published_lines = found, imported, lines
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
        index = document.published_lines or self.lines_of(document)
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


def _diagnose(document: Document, snapshot: Snapshot, encoding: str, read: Reader, cancelled: Callable[[], bool]):
    """On a worker: parse (given up when stale), check, and the line index to publish with."""
    started = time.perf_counter()
    parsed = document.current(snapshot, cancelled)
    parsed_at = time.perf_counter()
    if cancelled():
        raise Cancelled
    found, imported = _check(parsed, read)
    lines = document.line_index(snapshot, encoding)
    return parsed, found, imported, lines, (1000 * (parsed_at - started), 1000 * (time.perf_counter() - parsed_at))


def _check_whole(snapshot: Snapshot, path: str, encoding: str, read: Reader):
    """On the whole-file checker's thread: `aipc check` of the text, and its lines."""
    return check_source(snapshot.text, path, read=read), convert.LineIndex(snapshot.text, encoding, snapshot.bom)


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


def _request(handler):
    """A request about an open document, answered on a worker from a :class:`View`
    of its current version: ``handler(ls, params, view)``. An unknown document
    gets no answer; a document changed meanwhile, ContentModified. A bug is
    logged and answered with nothing (with AIPC_DEBUG=1 the request fails)."""

    async def run(ls: AipcLanguageServer, params):
        document = ls.document(params.text_document.uri)
        if document is None:
            return None
        snapshot, encoding, read = document.snapshot, ls.encoding(), ls.reader()

        def answer():
            view = document.view(snapshot, encoding, read, ls.stale(document, snapshot.version))
            return handler(ls, params, view)

        try:
            return await ls.work(document, answer)
        except Cancelled:
            raise JsonRpcContentModified(f"{document.uri} changed while the request was answered") from None
        except JsonRpcException:
            raise
        except Exception:  # noqa: BLE001
            logger.exception("%s failed", handler.__name__)
            if os.environ.get("AIPC_DEBUG"):
                raise
            return None

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
@_request
def hover(ls: AipcLanguageServer, params: types.HoverParams, view: View) -> types.Hover | None:
    parsed = view.parsed

    def merged(name: str) -> str | None:  # a stage from a template: as merged, each attribute's origin
        return libraries.merged_stage(parsed.program, name, view.read,
                                      lambda span: parsed.text[parsed.real_span(span).start:parsed.real_span(span).end])

    answer = analysis.hover(parsed, view.index, view.offset(params.position), merged)
    if answer is None:
        return None
    text, span = answer
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
                       range=view.lines.range(span))


@server.feature(types.TEXT_DOCUMENT_COMPLETION,
                types.CompletionOptions(trigger_characters=["[", ",", "{", "=", "$"]))
@_request
def complete(ls: AipcLanguageServer, params: types.CompletionParams, view: View) -> types.CompletionList | None:
    offset = view.offset(params.position)
    text, index = view.snapshot.text, view.index
    line_start = text.rfind("\n", 0, offset) + 1
    if "from" in text[line_start:offset]:  # `from gpu.`: the imported files' templates
        index.imported = libraries.templates_by_import(view.path, view.parsed.program, view.read)
    starts = [chunk.start for chunk in view.parsed.chunks]
    result = completion.complete(text, offset, completion.chunk_start_at(starts, offset), index)
    replace = view.lines.range(result.replace)
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
@_request
def definition(ls: AipcLanguageServer, params: types.DefinitionParams, view: View) -> types.Location | None:
    offset, parsed = view.offset(params.position), view.parsed
    virtual = parsed.virtual(offset)
    found = libraries.base_at(parsed.program, virtual)
    if found is not None and found[1] == 1:  # `from gpu.h100_trainer`: the template, in its file
        template = libraries.imported_template(view.path, parsed.program, found[0], view.read)
        return ls.location(template.path, template.name_span, view.read) if template is not None else None
    declaration = libraries.import_at(parsed.program, virtual)
    if declaration is not None and declaration.path.is_literal:  # the imported file itself
        return ls.location(import_path(view.path, declaration.path.literal), Span(0, 0), view.read)
    declared = view.index.definition(offset)
    if declared is None:
        return None
    return types.Location(uri=params.text_document.uri, range=view.lines.range(declared.name_span))


@server.feature(types.TEXT_DOCUMENT_REFERENCES)
@_request
def references(ls: AipcLanguageServer, params: types.ReferenceParams, view: View) -> list[types.Location] | None:
    spans = view.index.references(view.offset(params.position), params.context.include_declaration)
    return [types.Location(uri=params.text_document.uri, range=view.lines.range(span)) for span in spans]


@server.feature(types.TEXT_DOCUMENT_DOCUMENT_HIGHLIGHT)
@_request
def highlight(ls: AipcLanguageServer, params: types.DocumentHighlightParams, view: View):
    return [types.DocumentHighlight(range=view.lines.range(span))
            for span in view.index.references(view.offset(params.position))]


@server.feature(types.TEXT_DOCUMENT_PREPARE_RENAME)
@_request
def prepare_rename(ls: AipcLanguageServer, params: types.PrepareRenameParams, view: View):
    offset = view.offset(params.position)
    imported = _imported_template_at(view, offset)
    if imported is not None:
        return view.lines.range(imported[1])
    name = view.index.name_at(offset)
    if name is None or view.index.first(name[0], name[1]) is None:
        return None
    return view.lines.range(name[2])


@server.feature(types.TEXT_DOCUMENT_RENAME)
async def rename(ls: AipcLanguageServer, params: types.RenameParams) -> types.WorkspaceEdit | None:
    new_name = params.new_name.strip()
    if not IDENTIFIER.fullmatch(new_name) or len(new_name) > MAX_IDENTIFIER:
        ls.window_show_message(types.ShowMessageParams(
            type=types.MessageType.Error,
            message=f"`{new_name}` is not a valid name: lowercase letters, digits and `_`, "
                    f"starting with a letter, at most {MAX_IDENTIFIER} characters"))
        return None
    return await _rename_edits(ls, params)


@_request
def _rename_edits(ls: AipcLanguageServer, params: types.RenameParams, view: View) -> types.WorkspaceEdit | None:
    new_name, offset = params.new_name.strip(), view.offset(params.position)
    imported = _imported_template_at(view, offset)
    found = view.index.name_at(offset)
    if imported is not None or (found is not None and found[0] == "template"):
        # a template: its declaration and its uses in every file that can name it
        path, name = (imported[0].path, imported[0].name) if imported is not None else (view.path, found[1])
        return ls.rename_everywhere(path, name, new_name, view.read)
    edits = [types.TextEdit(range=view.lines.range(span), new_text=new_name) for span in view.index.references(offset)]
    return types.WorkspaceEdit(changes={params.text_document.uri: edits}) if edits else None


def _imported_template_at(view: View, offset: int):
    """The imported template whose name (`from gpu.NAME`) is under the cursor, and that
    name's span (real offsets), if any."""
    parsed = view.parsed
    found = libraries.base_at(parsed.program, parsed.virtual(offset))
    if found is None or found[1] != 1:
        return None
    template = libraries.imported_template(view.path, parsed.program, found[0], view.read)
    return (template, parsed.real_span(found[0].parts[1].span)) if template is not None else None


@server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
@_request
def symbols(ls: AipcLanguageServer, params: types.DocumentSymbolParams, view: View) -> list[types.DocumentSymbol]:
    def convert_symbol(symbol: analysis.Symbol) -> types.DocumentSymbol:
        return types.DocumentSymbol(
            name=symbol.name, kind=SYMBOL_KINDS[symbol.kind], detail=symbol.detail or None,
            range=view.lines.range(symbol.span), selection_range=view.lines.range(symbol.selection),
            children=[convert_symbol(child) for child in symbol.children] or None,
        )

    return [convert_symbol(symbol) for symbol in analysis.outline(view.parsed, view.index)]


@server.feature(types.TEXT_DOCUMENT_FORMATTING)
async def formatting(ls: AipcLanguageServer, params: types.DocumentFormattingParams) -> list[types.TextEdit] | None:
    document = ls.document(params.text_document.uri)
    if document is None:
        return None
    snapshot, encoding = document.snapshot, ls.encoding()
    try:
        edits = await ls.work(document, _format, snapshot, document.parser.path, encoding)
    except FormatterBug as error:
        logger.error("not formatted: %s; this is a bug in aipc, please report it", error)
        return None
    except Exception:  # noqa: BLE001
        logger.exception("formatting failed")
        if os.environ.get("AIPC_DEBUG"):
            raise
        return None
    if edits is None:
        ls.window_log_message(types.LogMessageParams(
            type=types.MessageType.Info, message="aipc: not formatted, the file has syntax errors"))
        return None
    if not ls._current(document, snapshot.version):
        raise JsonRpcContentModified(f"{document.uri} changed while it was formatted")
    return edits


def _format(snapshot: Snapshot, path: str, encoding: str) -> list[types.TextEdit] | None:
    """On a worker: the edits that format the text, None when it has syntax errors."""
    formatted = format_text(snapshot.text, path)
    return None if formatted.text is None else line_edits(snapshot.text, formatted.text, encoding)


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
