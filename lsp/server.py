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
import difflib
import gc
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, NamedTuple
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.exceptions import JsonRpcContentModified, JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from aipc import __version__
from aipc.compiler.check import check_parsed, check_source, normalize_newlines
from aipc.diagnostics import Diagnostic
from aipc.dsl.format import FormatterBug, format_text
from aipc.dsl.vocabulary import IDENTIFIER, MAX_IDENTIFIER
from aipc.lsp import analysis, completion, convert
from aipc.lsp.incremental import Cancelled, IncrementalParser, ParsedDocument

logger = logging.getLogger("aipc.lsp")

DEBOUNCE = 0.02  # seconds between a change and its check
EXACT_DELAY = 0.3  # seconds of quiet before a whole-file check replaces an inexact result
WORKERS = 4  # documents worked on at once

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


class Snapshot(NamedTuple):
    """One version of a document's text, as workers see it (replaced whole on each change)."""

    version: int
    text: str
    bom: bool


@dataclass
class View:
    """What a request is answered from: one version's parse, its names and its lines."""

    snapshot: Snapshot
    parsed: ParsedDocument
    index: analysis.Index
    lines: convert.LineIndex

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
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

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

    def view(self, snapshot: Snapshot, encoding: str, cancelled: Callable[[], bool] | None = None) -> View:
        parsed = self.current(snapshot, cancelled)
        if self.index is None:
            self.index = analysis.build_index(parsed)
        return View(snapshot, parsed, self.index, self.line_index(snapshot, encoding))


class AipcLanguageServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("aipc", __version__)
        self.documents: dict[str, Document] = {}
        self.workers = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="aipc-work")
        self.whole_checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aipc-check-whole")
        self.debounce = DEBOUNCE
        self.exact_delay = EXACT_DELAY
        self.tasks: set[asyncio.Task] = set()

    # positions ---------------------------------------------------------------------

    def encoding(self) -> str:
        """The position encoding initialize agreed with the client."""
        try:
            encoding = self.workspace.position_encoding
        except RuntimeError:
            encoding = None
        return getattr(encoding, "value", encoding) or convert.UTF16

    def document(self, uri: str) -> Document | None:
        return self.documents.get(uri)

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

    def change(self, uri: str, version: int) -> None:
        document = self.documents.get(uri)
        if document is None:
            return
        document.update(self.workspace.get_text_document(uri).source, version)
        self.schedule(document, self.debounce)

    def close(self, uri: str) -> None:
        if self.documents.pop(uri, None) is not None:
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

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
            parsed, found, lines, timings = await self.work(
                document, _diagnose, document, snapshot, self.encoding(), self.stale(document, snapshot.version))
        except Cancelled:
            return
        except Exception:  # noqa: BLE001 - the server must outlive any bug
            self.internal_error(f"checking {document.uri} failed")
            return
        if not self._current(document, snapshot.version):
            logger.debug("version %d of %s: result dropped, a newer version exists", snapshot.version, document.uri)
            return
        self.publish(document, snapshot.version, found, lines)
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
                self.whole_checker, _check_whole, snapshot, document.parser.path, self.encoding())
        except Exception:  # noqa: BLE001
            self.internal_error(f"checking {document.uri} failed")
            return
        if self._current(document, snapshot.version) and checked.diagnostics != document.published:
            self.publish(document, snapshot.version, checked.diagnostics, lines)

    def internal_error(self, what: str) -> None:
        """Log a bug in aipc; with AIPC_DEBUG=1 also show it in the editor."""
        logger.exception("%s; this is a bug in aipc, please report it", what)
        if os.environ.get("AIPC_DEBUG"):
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Error,
                                                             message=f"aipc: {what}"))

    def _current(self, document: Document, version: int) -> bool:
        return self.documents.get(document.uri) is document and document.version == version

    def publish(self, document: Document, version: int, found: list[Diagnostic], lines: convert.LineIndex) -> None:
        document.published = found
        items = [convert.diagnostic(d, lines, document.uri) for d in found]
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=document.uri, diagnostics=items, version=version))


def _diagnose(document: Document, snapshot: Snapshot, encoding: str, cancelled: Callable[[], bool]):
    """On a worker: parse (given up when stale), check, and the line index to publish with."""
    started = time.perf_counter()
    parsed = document.current(snapshot, cancelled)
    parsed_at = time.perf_counter()
    if cancelled():
        raise Cancelled
    found = _check(parsed)
    lines = document.line_index(snapshot, encoding)
    return parsed, found, lines, (1000 * (parsed_at - started), 1000 * (time.perf_counter() - parsed_at))


def _check_whole(snapshot: Snapshot, path: str, encoding: str):
    """On the whole-file checker's thread: `aipc check` of the text, and its lines."""
    return check_source(snapshot.text, path), convert.LineIndex(snapshot.text, encoding, snapshot.bom)


def _check(parsed: ParsedDocument) -> list[Diagnostic]:
    """`aipc check`'s diagnostics for an incremental parse, in real offsets."""
    checked = check_parsed(parsed.parse_result, parsed.path)
    return sorted((parsed.real_diagnostic(d) for d in checked.diagnostics), key=Diagnostic.sort_key)


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
        snapshot, encoding = document.snapshot, ls.encoding()

        def answer():
            view = document.view(snapshot, encoding, ls.stale(document, snapshot.version))
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
    answer = analysis.hover(view.parsed, view.index, view.offset(params.position))
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
    starts = [chunk.start for chunk in view.parsed.chunks]
    result = completion.complete(view.snapshot.text, offset, completion.chunk_start_at(starts, offset), view.index)
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
    declared = view.index.definition(view.offset(params.position))
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
    name = view.index.name_at(view.offset(params.position))
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
    new_name = params.new_name.strip()
    edits = [types.TextEdit(range=view.lines.range(span), new_text=new_name)
             for span in view.index.references(view.offset(params.position))]
    return types.WorkspaceEdit(changes={params.text_document.uri: edits}) if edits else None


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
