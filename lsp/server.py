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
import difflib
import gc
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from aipc import __version__
from aipc.compiler.check import check_parsed, check_source, normalize_newlines
from aipc.diagnostics import Diagnostic
from aipc.dsl.format import FormatterBug, format_text
from aipc.dsl.vocabulary import IDENTIFIER, MAX_IDENTIFIER
from aipc.lsp import analysis, completion, convert
from aipc.lsp.incremental import IncrementalParser, ParsedDocument

logger = logging.getLogger("aipc.lsp")

DEBOUNCE = 0.02  # seconds between a change and its check
EXACT_DELAY = 0.3  # seconds of quiet before a whole-file check replaces an inexact result

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
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

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

    # positions ---------------------------------------------------------------------

    def line_index(self, document: Document) -> convert.LineIndex:
        try:
            encoding = self.workspace.position_encoding  # what initialize agreed with the client
        except RuntimeError:
            encoding = None
        encoding = getattr(encoding, "value", encoding) or convert.UTF16
        return convert.LineIndex(document.text, encoding, document.bom)

    def document(self, uri: str) -> Document | None:
        return self.documents.get(uri)

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
                found = await asyncio.get_running_loop().run_in_executor(self.checker, _check, parsed)
            except Exception:  # noqa: BLE001 - the server must outlive any bug
                self.internal_error(f"checking {document.uri} failed")
                return
            checked_at = time.perf_counter()
            if not self._current(document, version):
                logger.debug("version %d of %s: result dropped, a newer version exists", version, document.uri)
                return
            self.publish(document, version, found)
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
                self.whole_checker, check_source, text, document.parser.path)
        except Exception:  # noqa: BLE001
            self.internal_error(f"checking {document.uri} failed")
            return
        if self._current(document, version) and checked.diagnostics != document.published:
            self.publish(document, version, checked.diagnostics)

    def internal_error(self, what: str) -> None:
        """Log a bug in aipc; with AIPC_DEBUG=1 also show it in the editor."""
        logger.exception("%s; this is a bug in aipc, please report it", what)
        if os.environ.get("AIPC_DEBUG"):
            self.window_show_message(types.ShowMessageParams(type=types.MessageType.Error,
                                                             message=f"aipc: {what}"))

    def _current(self, document: Document, version: int) -> bool:
        return self.documents.get(document.uri) is document and document.version == version

    def publish(self, document: Document, version: int, found: list[Diagnostic]) -> None:
        document.published = found
        index = self.line_index(document)
        items = [convert.diagnostic(d, index, document.uri) for d in found]
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=document.uri, diagnostics=items, version=version))


def _check(parsed: ParsedDocument) -> list[Diagnostic]:
    """`aipc check`'s diagnostics for an incremental parse, in real offsets."""
    checked = check_parsed(parsed.parse_result, parsed.path)
    return sorted((parsed.real_diagnostic(d) for d in checked.diagnostics), key=Diagnostic.sort_key)


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
    answer = analysis.hover(parsed, index, offset)
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
    _, index = document.current_index()
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
    _, index = document.current_index()
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
    lines = ls.line_index(document)
    edits = [types.TextEdit(range=lines.range(span), new_text=new_name) for span in index.references(offset)]
    return types.WorkspaceEdit(changes={document.uri: edits}) if edits else None


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
