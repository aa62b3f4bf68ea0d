"""The language server over stdio, driven by pytest-lsp as an editor would."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from aipc.compiler.check import check_source
from aipc.diagnostics import Source
from aipc.dsl.format import format_text
from aipc.lsp.convert import LineIndex
from tests.helpers import ROOT

pytestmark = pytest.mark.asyncio(loop_scope="module")

FRAUD = (ROOT / "examples" / "fraud-detection.aip").read_text()


@pytest_lsp.fixture(
    scope="module",
    # AIPC_DEBUG=1: an internal error fails the request instead of being logged away
    config=ClientServerConfig(server_command=[sys.executable, "-m", "aipc", "lsp", "--stdio"],
                              server_env={**os.environ, "AIPC_DEBUG": "1"}),
)
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"),
        initialization_options={"debounceMs": 10},
    ))
    yield
    await lsp_client.shutdown_session()


async def wait_for(client: LanguageClient, uri: str, predicate, timeout: float = 15.0):
    """The document's diagnostics, once ``predicate`` holds for them."""

    async def poll():
        while True:
            diagnostics = client.diagnostics.get(uri)
            if diagnostics is not None and predicate(diagnostics):
                return diagnostics
            await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)

    return await asyncio.wait_for(poll(), timeout)


def open_document(client: LanguageClient, name: str, text: str, version: int = 1) -> str:
    uri = f"file:///work/{name}.aip"
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="aip", version=version, text=text)))
    return uri


def position(text: str, needle: str, shift: int = 0) -> types.Position:
    return LineIndex(text).position(text.index(needle) + shift)


def apply_edits(text: str, edits: list[types.TextEdit]) -> str:
    index = LineIndex(text)
    spans = sorted(((index.offset(e.range.start), index.offset(e.range.end), e.new_text) for e in edits),
                   reverse=True)
    for start, end, new in spans:
        text = text[:start] + new + text[end:]
    return text


BROKEN_AFTER = """\
data ingest {
  image = "etl:1.0"
}

data clean {
  image = "\U0001F642\U0001F642"  after = [ingets]
}
"""


async def test_diagnostics_on_open_have_utf16_columns(client: LanguageClient):
    uri = open_document(client, "open", BROKEN_AFTER)
    diagnostics = await wait_for(client, uri, lambda d: len(d) > 0)
    (unknown,) = [d for d in diagnostics if d.code == "E102"]
    # two emoji before it: 2 UTF-16 units each, so column 27 where Python counts 25
    assert unknown.range.start == types.Position(line=5, character=27)
    assert unknown.range.end == types.Position(line=5, character=33)
    assert "did you mean `ingest`?" in unknown.message
    assert unknown.severity == types.DiagnosticSeverity.Error and unknown.source == "aipc"
    # the same diagnostics as `aipc check`, one for one
    expected = check_source(BROKEN_AFTER, "/work/open.aip").diagnostics
    assert [(d.code, d.message.split("\n")[0]) for d in diagnostics] == [(d.code, d.message) for d in expected]
    (checked,) = [d for d in expected if d.code == "E102"]
    line, column = Source("open.aip", BROKEN_AFTER).position(checked.span.start)
    assert (line - 1, column - 1 + 2) == (unknown.range.start.line, unknown.range.start.character)


def change(client: LanguageClient, uri: str, text: str, version: int, old: str, new: str,
           shift: int = 0) -> str:
    """Send one incremental change (``old`` at its first place, after ``shift``, becomes ``new``)."""
    at = text.index(old, shift)
    index = LineIndex(text)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=index.position(at), end=index.position(at + len(old))), text=new)],
    ))
    return text[:at] + new + text[at + len(old):]


async def test_diagnostics_follow_edits_and_drop_stale_results(client: LanguageClient):
    uri = open_document(client, "edit", BROKEN_AFTER)
    await wait_for(client, uri, lambda d: any(x.code == "E102" for x in d))
    text = BROKEN_AFTER
    # a burst of keystrokes: the diagnostics end as the last version's
    text = change(client, uri, text, 2, "ingets", "")
    for version, char in enumerate("ingest", start=3):
        text = change(client, uri, text, version, "]", char + "]", text.index("after"))
    assert "after = [ingest]" in text
    final = await wait_for(client, uri, lambda d: not any(x.code == "E102" for x in d))
    assert [d.code for d in final] == ["E403"]  # an emoji is no image reference
    # then a syntax error two lines up: reported where it is, at once
    text = change(client, uri, text, 20, "= \"etl", ": \"etl")
    diagnostics = await wait_for(client, uri, lambda d: any(x.code == "E002" for x in d))
    (syntax,) = [d for d in diagnostics if d.code == "E002"]
    assert syntax.range.start == types.Position(line=1, character=8)
    assert syntax.message.startswith("expected `=`")


async def test_hover_explains_attributes_and_normalises_units(client: LanguageClient):
    uri = open_document(client, "hover", FRAUD)
    await wait_for(client, uri, lambda d: True)

    async def hover(needle: str, shift: int = 0) -> str:
        result = await client.text_document_hover_async(types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=position(FRAUD, needle, shift)))
        assert result is not None, needle
        return result.contents.value

    assert "16Gi` = 17179869184 bytes" in await hover("shm       = 16Gi", 13)
    assert (await hover("cpu       = 8", 12)).startswith("`8` = 8 cores (8000 millicores)")
    assert "1800 seconds" in await hover("timeout = 30m", 11)
    text = await hover("timeout = 12h")
    assert "**`timeout`**: a duration (batch stages)" in text and "deadline" in text
    assert "only for serve stages" not in await hover("port     = 8080")
    assert "one of `rwo`, `rwx`, `rox`" in await hover("access = rwx")
    assert "data stage** `ingest`" in await hover("[ingest]", 1)
    assert "parameter** `run_date`" in await hover("${run_date}", 3)
    assert "mounts a declared volume" in await hover("mount raw ")


async def test_completion_after_offers_only_stage_names(client: LanguageClient):
    text = FRAUD + "\ntrain extra {\n  image = \"t:1\"\n  after = [\n"
    uri = open_document(client, "complete", text)
    end = LineIndex(text).position(len(text) - 1)
    result = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=end))
    assert {item.label for item in result.items} == {"ingest", "featurize", "model", "evaluate", "api"}
    assert all(item.kind == types.CompletionItemKind.Function for item in result.items)


async def test_completion_of_attributes_mounts_and_parameters(client: LanguageClient):
    text = FRAUD + '\nserve extra {\n  image = "t:1"\n  command = ["x", "${ep"]\n  mount \n  \n}\n'
    uri = open_document(client, "complete2", text)

    async def labels(needle: str, shift: int) -> set[str]:
        result = await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=position(text, needle, shift)))
        return {item.label for item in result.items}

    attributes = await labels('  \n}\n', 2)
    assert {"port", "replicas", "health", "workdir", "mount", "resources"} <= attributes
    assert not {"image", "command", "retries", "timeout"} & attributes  # already set, or not for serve
    assert await labels("mount \n", 6) == {"raw", "features", "models"}
    assert {"epochs", "lr", "run_date", "use_amp"} <= await labels('${ep"', 4)


async def test_definition_references_and_rename(client: LanguageClient):
    uri = open_document(client, "navigate", FRAUD)
    use = position(FRAUD, "after  = [ingest]", 10)
    found = await client.text_document_definition_async(types.DefinitionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=use))
    assert found.range == types.Range(start=position(FRAUD, "ingest {"), end=position(FRAUD, "ingest {", 6))
    volume = position(FRAUD, "models   { size")
    refs = await client.text_document_references_async(types.ReferenceParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=volume,
        context=types.ReferenceContext(include_declaration=True)))
    assert len(refs) == 4  # the declaration and three mounts
    param = position(FRAUD, "${epochs}", 2)
    refs = await client.text_document_references_async(types.ReferenceParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=param,
        context=types.ReferenceContext(include_declaration=False)))
    assert [r.range.start for r in refs] == [param]
    edit = await client.text_document_rename_async(types.RenameParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=use, new_name="ingest_raw"))
    renamed = apply_edits(FRAUD, edit.changes[uri])
    assert "data ingest_raw {" in renamed and "after  = [ingest_raw]" in renamed
    assert not check_source(renamed, "/work/navigate.aip").has_errors


async def test_document_symbols_outline_the_file(client: LanguageClient):
    uri = open_document(client, "symbols", FRAUD)
    symbols = await client.text_document_document_symbol_async(types.DocumentSymbolParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    assert [(s.name, s.kind) for s in symbols][:3] == [
        ("fraud-detection", types.SymbolKind.Module), ("epochs", types.SymbolKind.Variable),
        ("lr", types.SymbolKind.Variable)]
    stages = [s for s in symbols if s.kind == types.SymbolKind.Function]
    assert [s.name for s in stages] == ["ingest", "featurize", "model", "evaluate", "api"]
    assert stages[0].detail == "data stage"
    assert [c.name for c in stages[0].children][:3] == ["image", "command", "mount raw"]


async def test_formatting_gives_the_formatter_output(client: LanguageClient):
    messy = 'data   one {\n    image="a:1"\n  command =["x",\n "y"]   # why\n}\nparam n:int=1\n'
    uri = open_document(client, "format", messy)
    edits = await client.text_document_formatting_async(types.DocumentFormattingParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        options=types.FormattingOptions(tab_size=2, insert_spaces=True)))
    assert apply_edits(messy, edits) == format_text(messy).text
    broken = open_document(client, "format-broken", "data one {\n  image = \n")
    edits = await client.text_document_formatting_async(types.DocumentFormattingParams(
        text_document=types.TextDocumentIdentifier(uri=broken),
        options=types.FormattingOptions(tab_size=2, insert_spaces=True)))
    assert edits is None


async def test_any_request_on_broken_text_gets_an_answer(client: LanguageClient):
    garbage = 'pipeline {\n data x { image = "\U0001F642 after = [a,, \n  mount at "\n}}} ]]\n' \
              'serve s { resources { cpu = 1..  memory = 16Qi } port = "${p"\n param q: = \n"""\n'
    uri = open_document(client, "garbage", garbage)
    diagnostics = await wait_for(client, uri, lambda d: len(d) > 0)
    assert all(d.source == "aipc" for d in diagnostics)
    document = types.TextDocumentIdentifier(uri=uri)
    index = LineIndex(garbage)
    for offset in range(0, len(garbage) + 1, 3):
        at = index.position(offset)
        await client.text_document_hover_async(types.HoverParams(text_document=document, position=at))
        await client.text_document_completion_async(types.CompletionParams(text_document=document, position=at))
        await client.text_document_definition_async(types.DefinitionParams(text_document=document, position=at))
    symbols = await client.text_document_document_symbol_async(types.DocumentSymbolParams(text_document=document))
    assert symbols is not None
    assert not client.messages  # no "Error in server" shown to the user


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(server_command=[sys.executable, "-m", "aipc", "lsp"],
                              server_env={**os.environ, "AIPC_DEBUG": "1"}),
)
async def utf8_client(lsp_client: LanguageClient):
    capabilities = client_capabilities("visual-studio-code")
    capabilities.general = types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind.Utf8])
    result = await lsp_client.initialize_session(types.InitializeParams(capabilities=capabilities))
    assert result.capabilities.position_encoding == types.PositionEncodingKind.Utf8
    yield
    await lsp_client.shutdown_session()


async def test_a_client_that_counts_utf8_bytes_gets_byte_columns(utf8_client: LanguageClient):
    uri = open_document(utf8_client, "utf8", BROKEN_AFTER)
    diagnostics = await wait_for(utf8_client, uri, lambda d: any(x.code == "E102" for x in d))
    (unknown,) = [d for d in diagnostics if d.code == "E102"]
    assert unknown.range.start == types.Position(line=5, character=31)  # two 4-byte emoji
    found = await utf8_client.text_document_definition_async(types.DefinitionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=5, character=12)))
    assert found is None  # inside the emoji string: not a name


# ------------------------------------------------------------------ work off the event loop


def huge_pipeline(stages: int) -> str:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from generate import pipeline

    return pipeline(stages)


async def test_a_huge_document_does_not_delay_another_documents_diagnostics(client: LanguageClient):
    """Parsing and checking run on worker threads, a document at a time each: the
    event loop keeps answering, and a small file opened next to a huge one gets its
    diagnostics in a fraction of the time the huge one takes."""
    loop = asyncio.get_running_loop()
    huge = huge_pipeline(3000)  # about a megabyte: seconds to parse and check
    started = loop.time()
    huge_uri = open_document(client, "huge", huge)
    small_uri = open_document(client, "next-to-huge", BROKEN_AFTER)
    await wait_for(client, small_uri, lambda d: any(x.code == "E102" for x in d), timeout=60)
    small = loop.time() - started
    hover = await client.text_document_hover_async(types.HoverParams(  # requests are answered too
        text_document=types.TextDocumentIdentifier(uri=small_uri), position=position(BROKEN_AFTER, "image")))
    answered = loop.time() - started
    assert hover is not None
    await wait_for(client, huge_uri, lambda d: True, timeout=300)
    whole = loop.time() - started
    client.text_document_did_close(types.DidCloseTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=huge_uri)))
    assert whole > 1.0, f"the huge document took only {whole:.2f} s: not huge enough to show anything"
    assert small < whole / 4, f"the small document waited {small:.2f} s of the huge one's {whole:.2f} s"
    assert answered < whole / 4, f"a hover on it waited {answered:.2f} s of {whole:.2f} s"


async def test_a_position_outside_the_document_gets_an_error(client: LanguageClient):
    uri = open_document(client, "outside", FRAUD)
    await wait_for(client, uri, lambda d: True)
    document = types.TextDocumentIdentifier(uri=uri)
    last_line = FRAUD.count("\n")  # the empty line after the last line break
    outside = types.Position(line=last_line + 1, character=0)
    requests = [
        client.text_document_hover_async(types.HoverParams(text_document=document, position=outside)),
        client.text_document_completion_async(types.CompletionParams(text_document=document, position=outside)),
        client.text_document_definition_async(types.DefinitionParams(text_document=document, position=outside)),
        client.text_document_references_async(types.ReferenceParams(
            text_document=document, position=outside, context=types.ReferenceContext(include_declaration=True))),
        client.text_document_document_highlight_async(types.DocumentHighlightParams(
            text_document=document, position=outside)),
        client.text_document_prepare_rename_async(types.PrepareRenameParams(text_document=document, position=outside)),
        client.text_document_rename_async(types.RenameParams(text_document=document, position=outside, new_name="x")),
    ]
    for request in requests:
        with pytest.raises(JsonRpcInvalidParams, match="outside the document"):
            await asyncio.wait_for(request, 15)
    # the last line itself, and a column past a line's end (LSP: the line's end), are answered
    await client.text_document_hover_async(types.HoverParams(
        text_document=document, position=types.Position(line=last_line, character=0)))
    await client.text_document_hover_async(types.HoverParams(
        text_document=document, position=types.Position(line=1, character=999)))


async def test_a_request_whose_document_changes_meanwhile_gets_content_modified():
    """In-process: the document changes after the request took its version and
    before its parse ran; the parse gives up, and the editor is told to ask again."""
    from pygls.exceptions import JsonRpcContentModified

    from aipc.lsp.server import AipcLanguageServer, hover

    ls = AipcLanguageServer()
    ls.open("file:///work/moving.aip", FRAUD, 1)
    document = ls.document("file:///work/moving.aip")
    params = types.HoverParams(text_document=types.TextDocumentIdentifier(uri=document.uri),
                               position=position(FRAUD, "image"))
    async with document.lock:  # the document's earlier work, still running
        request = asyncio.ensure_future(hover(ls, params))
        await asyncio.sleep(0.05)  # the request took version 1 and waits for the document
        document.update(FRAUD.replace("ingest", "ingest_v2"), 2)
    with pytest.raises(JsonRpcContentModified):
        await request
    answer = await hover(ls, params)  # asked again: answered from version 2
    assert answer is not None
