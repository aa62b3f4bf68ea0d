"""Templates across files in the language server, over one connection as an editor
drives it: a pipeline and the library it imports are open together; definition
goes from one to the other, each shows the diagnostics that concern it, hover on
a stage shows what its templates gave it, completion offers an import's
templates, and a template is renamed in every file that uses it."""

from __future__ import annotations

import os
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from tests.lsp.test_server import apply_edits, position, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

LIBRARY = '''\
# GPU training, shared by the team's pipelines.
template base: train {
  image = "ghcr.io/acme/trainer:2.1"
  resources { memory = 64Gi  shm = 8Gi }
}

template h100_trainer: train from base {
  resources { gpu = 4  gpu_model = "H100-80GB" }
  mount models at "/models"
  env = { EPOCHS = "${epochs}", LEVEL = "info" }
}
'''
PIPELINE = '''\
import "lib/gpu.aip" as gpu
volume models { size = 10Gi  access = rwx }

train small from gpu.h100_trainer {
  command = ["python", "train.py", "--size", "small"]
  resources { gpu = 1 }
  env = { LEVEL = "debug" }
}
train large from gpu.h100_trainer { command = ["python", "train.py", "--size", "large"] }
'''
OTHER = '''\
import "lib/gpu.aip" as shared
param epochs: int = 3
volume models { size = 10Gi }
train tuned from shared.h100_trainer { }
'''


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("workspace")
    (root / "lib").mkdir()
    (root / "lib" / "gpu.aip").write_text(LIBRARY)
    (root / "pipeline.aip").write_text(PIPELINE)
    (root / "other.aip").write_text(OTHER)  # never opened: a rename finds it in the workspace
    return root


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(server_command=[sys.executable, "-m", "aipc", "lsp", "--stdio"],
                              server_env={**os.environ, "AIPC_DEBUG": "1"}),
)
async def client(lsp_client: LanguageClient, folder):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"),
        initialization_options={"debounceMs": 10},
        workspace_folders=[types.WorkspaceFolder(uri=folder.as_uri(), name="workspace")],
    ))
    yield
    await lsp_client.shutdown_session()


def open_file(client: LanguageClient, path, text: str, version: int = 1) -> str:
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="aip", version=version, text=text)))
    return uri


def change(client: LanguageClient, uri: str, text: str, version: int) -> None:
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))


async def test_a_pipeline_and_its_library_over_one_connection(client: LanguageClient, folder):
    pipeline = open_file(client, folder / "pipeline.aip", PIPELINE)
    library = open_file(client, folder / "lib" / "gpu.aip", LIBRARY)

    # diagnostics in both: `${epochs}` resolves in no stage of the pipeline, one error per use;
    # the pipeline shows them at its import line, the library at the template's line
    in_pipeline = await wait_for(client, pipeline, lambda d: len(d) == 2)
    assert {d.code for d in in_pipeline} == {"E105"}
    assert all(d.range.start.line == 0 for d in in_pipeline)  # the import
    assert in_pipeline[0].message.startswith("lib/gpu.aip:10:21: unknown parameter `epochs`")
    assert {(r.location.uri, r.message) for d in in_pipeline for r in d.related_information} >= {
        (library, "not declared"), (pipeline, "used here")}
    in_library = await wait_for(client, library, lambda d: len(d) == 2)
    assert [(d.code, d.range.start.line, d.range.start.character) for d in in_library] == [
        ("E105", 9, 20), ("E105", 9, 20)]
    assert sorted(r.location.range.start.line for d in in_library for r in d.related_information) == [3, 8]

    # definition: from the pipeline's `gpu.h100_trainer` into the library, and the import's path to its file
    found = await client.text_document_definition_async(types.DefinitionParams(
        text_document=types.TextDocumentIdentifier(uri=pipeline), position=position(PIPELINE, "h100_trainer", 3)))
    assert found.uri == library and found.range.start == position(LIBRARY, "h100_trainer")
    found = await client.text_document_definition_async(types.DefinitionParams(
        text_document=types.TextDocumentIdentifier(uri=pipeline), position=position(PIPELINE, "lib/gpu")))
    assert found.uri == library and found.range.start == types.Position(line=0, character=0)
    found = await client.text_document_definition_async(types.DefinitionParams(
        text_document=types.TextDocumentIdentifier(uri=library), position=position(LIBRARY, "from base", 6)))
    assert found.uri == library and found.range.start == position(LIBRARY, "base")

    # hover on a stage: what it is once merged, and where each attribute comes from
    answer = await client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=pipeline), position=position(PIPELINE, "small")))
    text = answer.contents.value
    lines = {line.split("#")[0].strip(): line.partition("#")[2].strip() for line in text.splitlines()}
    assert lines["gpu = 1"] == "" and lines['LEVEL = "debug"'] == ""  # its own
    assert lines["memory = 64Gi"] == "base" and lines['mount models at "/models"'] == "gpu.h100_trainer"
    assert "Templates: `gpu.h100_trainer` (gpu.aip:7), `base` (gpu.aip:2)." in text

    # completion after `from gpu.`: the library's train templates
    typed = PIPELINE + "train third from gpu."
    change(client, pipeline, typed, 2)
    result = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=pipeline),
        position=position(typed, "gpu.", len(typed) - typed.index("gpu."))))
    assert {item.label for item in result.items} == {"base", "h100_trainer"}
    change(client, pipeline, PIPELINE, 3)

    # editing the library checks the pipeline again: declaring the names it uses... in the pipeline
    fixed = PIPELINE.replace("volume models", "param epochs: int = 3\nvolume models")
    change(client, pipeline, fixed, 4)
    await wait_for(client, pipeline, lambda d: len(d) == 0)
    await wait_for(client, library, lambda d: len(d) == 0)
    broken = LIBRARY.replace("memory = 64Gi", "memory = 64")
    change(client, library, broken, 2)
    in_pipeline = await wait_for(client, pipeline, lambda d: len(d) == 1)
    assert in_pipeline[0].code == "E201" and in_pipeline[0].message.startswith("lib/gpu.aip:4:24: `64` has no unit")
    change(client, library, LIBRARY, 3)
    await wait_for(client, pipeline, lambda d: len(d) == 0)

    # rename a template from a use in the pipeline: the library, the pipeline and a file
    # that is not open (it imports the library under another name) all change
    prepared = await client.text_document_prepare_rename_async(types.PrepareRenameParams(
        text_document=types.TextDocumentIdentifier(uri=pipeline), position=position(fixed, "h100_trainer", 2)))
    assert prepared.start == position(fixed, "h100_trainer")
    edit = await client.text_document_rename_async(types.RenameParams(
        text_document=types.TextDocumentIdentifier(uri=pipeline), position=position(fixed, "h100_trainer", 2),
        new_name="big_trainer"))
    assert set(edit.changes) == {pipeline, library, (folder / "other.aip").as_uri()}
    assert apply_edits(fixed, edit.changes[pipeline]) == fixed.replace("h100_trainer", "big_trainer")
    assert apply_edits(LIBRARY, edit.changes[library]) == LIBRARY.replace("h100_trainer", "big_trainer")
    assert apply_edits(OTHER, edit.changes[(folder / "other.aip").as_uri()]) == OTHER.replace(
        "h100_trainer", "big_trainer")

    # and from its declaration in the library: the base template, used within the library only
    edit = await client.text_document_rename_async(types.RenameParams(
        text_document=types.TextDocumentIdentifier(uri=library), position=position(LIBRARY, "base"),
        new_name="common"))
    assert set(edit.changes) == {library}
    assert apply_edits(LIBRARY, edit.changes[library]) == LIBRARY.replace("base", "common")

    # closing the library: the pipeline reads the file again, and keeps its diagnostics
    client.text_document_did_close(types.DidCloseTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=library)))
    await wait_for(client, library, lambda d: len(d) == 0)


async def test_a_missing_library_is_reported_at_the_import(client: LanguageClient, folder):
    text = 'import "lib/nothere.aip" as x\ntrain a from x.t { }\n'
    uri = open_file(client, folder / "missing.aip", text)
    (diagnostic,) = await wait_for(client, uri, lambda d: len(d) == 1)
    assert diagnostic.code == "E153" and diagnostic.range.start == position(text, '"lib/nothere.aip"')
    found = await client.text_document_definition_async(types.DefinitionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=position(text, "x.t", 2)))
    assert found is None
