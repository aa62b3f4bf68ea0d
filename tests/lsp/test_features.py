"""Completion, hover, navigation and outline on the engine side, broken text included."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aipc.compiler import schema
from aipc.compiler.schema import AttributeSpec, Type
from aipc.lsp.analysis import build_index, hover, outline
from aipc.lsp.completion import chunk_start_at, complete
from aipc.lsp.incremental import IncrementalParser
from aipc.lsp.libraries import same_file
from tests.helpers import EXAMPLES

FRAUD = (EXAMPLES[[p.stem for p in EXAMPLES].index("fraud-detection")]).read_text()
STAGES = {"ingest", "featurize", "model", "evaluate", "api"}


def complete_at(text: str, marker: str = "|"):
    offset = text.index(marker)
    text = text.replace(marker, "", 1)
    document = IncrementalParser("t.aip").parse(text)
    starts = [c.start for c in document.chunks]
    result = complete(text, offset, chunk_start_at(starts, offset), build_index(document))
    return [c.label for c in result.items], result


@pytest.mark.parametrize("typed, expected", [
    ("data x {\n  after = [|", STAGES),
    ("data x {\n  after = [ingest, |", STAGES - {"ingest"}),
    ("data x {\n  after = [mo|", STAGES),
    ("data x {\n  after = [\n    ingest,\n    |\n  ]\n}", STAGES - {"ingest"}),
    ("data x {\n  secrets = [|]\n}", {"s3"}),
    ("data x {\n  mount |", {"raw", "features", "models"}),
    ("data x {\n  mount raw |", {"at"}),
    ("volume q { access = |", {"rwo", "rwx", "rox"}),
    ("data x {\n  resources { gpu_vendor = |", {"nvidia", "amd", "intel"}),
    ("param q: |", {"string", "int", "float", "bool", "duration"}),
    ('data x {\n  command = ["${|"]', {"epochs", "lr", "run_date", "use_amp", "pipeline.name", "stage.name",
                                       "api.host", "api.port", "api.url"}),
    ('data x {\n  script = """\n    run ${ru|\n  """', {"epochs", "lr", "run_date", "use_amp",
                                                         "pipeline.name", "stage.name", "api.host", "api.port",
                                                         "api.url"}),
    ("data x {\n  # a comment |", set()),
    ('data x {\n  image = "no completion in |', set()),
    ("data x {\n  after = [ingest] |", None),
])
def test_completion_contexts(typed, expected):
    labels, _ = complete_at(FRAUD + "\n" + typed)
    if expected is None:  # attribute names of a data stage, minus the one already set
        assert "after" not in labels and {"image", "retries", "timeout", "mount", "resources"} <= set(labels)
        assert not {"port", "replicas", "health"} & set(labels)
    else:
        assert set(labels) == expected


def test_top_level_offers_declarations_but_no_second_header():
    labels, _ = complete_at(FRAUD + "\n|")
    assert labels == ["param", "volume", "secret", "data", "train", "eval", "serve", "import", "template"]
    labels, _ = complete_at("|")
    assert labels[0] == "pipeline"


def test_completion_replaces_the_word_being_typed():
    labels, result = complete_at("data x {\n  ima|\n}")
    assert "image" in labels
    (image,) = [c for c in result.items if c.label == "image"]
    assert image.insert == "image = " and result.replace == (11, 14)
    labels, result = complete_at("data x {\n  ima| = \"a\"\n}")
    assert [c.insert for c in result.items if c.label == "image"] == [None]  # `=` is already there


def test_completion_inside_resources_and_map_forms():
    labels, _ = complete_at("train t {\n  resources {\n    cpu = 2\n    |\n  }\n}")
    assert set(labels) == {"memory", "gpu", "gpu_vendor", "gpu_model", "shm", "disk"}
    labels, _ = complete_at("train t {\n  resources = { cpu = 2, |")
    assert "memory" in labels and "cpu" not in labels


def test_completion_of_scheduling_blocks_in_the_header_and_stages():
    labels, _ = complete_at('pipeline "p" {\n  |\n}')
    assert "schedule" in labels and "gpu_labels" in labels and "autoscale" not in labels
    labels, _ = complete_at('pipeline "p" {\n  schedule {\n    queue = "q"\n    |\n  }\n}')
    assert labels == ["node", "tolerate", "priority"]
    labels, _ = complete_at('pipeline "p" { schedule = { | } }')
    assert labels == ["node", "tolerate", "priority", "queue"]
    labels, _ = complete_at('pipeline "p" { gpu_labels = | }')
    assert labels == ["gfd", "gke", "karpenter"]
    assert "autoscale" not in complete_at("train t {\n  |\n}")[0]  # a serve stage's block
    assert {"schedule", "autoscale"} <= set(complete_at("serve s {\n  |\n}")[0])
    assert complete_at("serve s {\n  autoscale { | }\n}")[0] == ["cpu", "metric", "target"]


def test_hover_on_units_attributes_and_names():
    document = IncrementalParser("t.aip").parse(FRAUD)
    index = build_index(document)

    def at(needle: str, shift: int = 0) -> str:
        answer = hover(document, index, FRAUD.index(needle) + shift)
        assert answer is not None, needle
        return answer[0]

    assert at("memory = 8Gi..16Gi", 15).startswith("`16Gi` = 17179869184 bytes")
    assert at("memory = 8Gi..16Gi", 10).startswith("`8Gi` = 8589934592 bytes")
    assert at("size = 200Gi", 8).startswith("`200Gi` = 214748364800 bytes")
    assert "Who may mount it" in at("access = rwx")
    assert at("replicas = 3").startswith("**`replicas`**: a whole number (serve stages)")
    assert "**volume** `raw`" in at("mount raw ", 7)
    assert "stage that trains" in at("train model")


def test_hover_on_an_attribute_a_stage_kind_does_not_take():
    text = 'serve s {\n  image = "i:1"\n  retries = 2\n}\n'
    document = IncrementalParser("t.aip").parse(text)
    answer = hover(document, build_index(document), text.index("retries"))
    assert "only for batch stages, not `serve`" in answer[0]


def test_definition_and_references_of_every_kind():
    document = IncrementalParser("t.aip").parse(FRAUD)
    index = build_index(document)
    use = FRAUD.index("secrets = [s3]") + 11
    assert index.definition(use).name_span.start == FRAUD.index("s3 {")
    assert index.references(FRAUD.index("s3 {"), include_declaration=False) == [(use, use + 2)]
    uses = index.references(FRAUD.index("epochs: int"), include_declaration=True)
    assert [FRAUD[s.start:s.end] for s in uses] == ["epochs", "epochs"]


def test_outline_of_a_file_with_a_broken_declaration():
    text = FRAUD.replace("data featurize {", "data featurize {{{")
    document = IncrementalParser("t.aip").parse(text)
    names = [s.name for s in outline(document, build_index(document)) if s.kind == "stage"]
    assert "ingest" in names and "api" in names


NOISE = st.lists(st.sampled_from(list('{}[]=,:."\n #$/') + ["data ", "mount ", "after", " x", "1Gi", '"""', "${",
                                                          "\t", "\U0001F642"]), max_size=20).map("".join)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.floats(0, 1), NOISE)
def test_no_text_and_no_position_breaks_the_features(where, noise):
    at = int(where * len(FRAUD))
    text = FRAUD[:at] + noise + FRAUD[at:]
    document = IncrementalParser("t.aip").parse(text)
    index = build_index(document)
    starts = [c.start for c in document.chunks]
    outline(document, index)
    for offset in range(max(0, at - 3), min(len(text), at + len(noise) + 3) + 1):
        complete(text, offset, chunk_start_at(starts, offset), index)
        hover(document, index, offset)
        index.definition(offset)
        index.references(offset)


def test_stages_being_edited_are_still_offered():
    labels, _ = complete_at('data a { image = "i:1" }\ndata b {\n  image = \n}\ndata c {\n  after = [|')
    assert set(labels) == {"a", "b"}


def test_an_interpolation_s_reference_is_its_name():
    text = 'param lr: float = 0.1\ndata x { image = "i:1" command = ["${ lr }", "${lr}"] }\n'
    index = build_index(IncrementalParser("t.aip").parse(text))
    spans = index.references(text.index("lr }"), include_declaration=True)
    assert [(s.start, text[s.start:s.end]) for s in spans] == [
        (text.index("lr:"), "lr"), (text.index("lr }"), "lr"), (text.index("lr}"), "lr")]


def test_a_service_address_is_a_use_of_its_stage():
    """`${api.url}` is a reference to the stage `api`: definition, references and
    rename (whose edits are these spans) see it."""
    text = FRAUD + '\neval smoke {\n  image = "t:1"\n  after = [api]\n  env = { URL = "${api.url}/v1" }\n}\n'
    index = build_index(IncrementalParser("t.aip").parse(text))
    use = text.index("${api.url}") + 2
    assert index.definition(use).name_span.start == text.index("api {")
    spans = index.references(text.index("api {"), include_declaration=True)
    assert [text[s.start:s.end] for s in spans] == ["api", "api", "api"]
    assert (use, use + 3) in [(s.start, s.end) for s in spans]


def test_a_new_attribute_needs_nothing_in_the_language_server(monkeypatch):
    """Completion, hover and navigation read the schema and the resolver: an attribute
    added to the schema (here a list of stage names) works in the editor as it is."""
    spec = AttributeSpec("waits_for", Type.STAGE_LIST, "Stages to wait for.", example="waits_for = [ingest]")
    monkeypatch.setitem(schema.STAGE, "waits_for", spec)
    labels, _ = complete_at(FRAUD + "\ndata x {\n  |")
    assert "waits_for" in labels
    labels, _ = complete_at(FRAUD + "\ndata x {\n  waits_for = [ingest, |")
    assert set(labels) == STAGES - {"ingest"}
    text = FRAUD + '\ndata x {\n  image = "i:1"\n  waits_for = [ingest]\n}\n'
    document = IncrementalParser("t.aip").parse(text)
    index = build_index(document)
    use = text.rindex("ingest]")
    assert index.definition(use).name_span.start == text.index("data ingest") + 5
    assert hover(document, index, text.rindex("waits_for"))[0].startswith("**`waits_for`**: a list of stage names")


# ------------------------------------------------------------ matrix stages (issue 18)

SWEEP = (EXAMPLES[[p.stem for p in EXAMPLES].index("sweep")]).read_text()


def test_hover_on_a_matrix_stage_lists_its_instances():
    document = IncrementalParser("sweep.aip").parse(SWEEP)
    index = build_index(document)
    text, _ = hover(document, index, SWEEP.index("train model") + 7)
    assert ("Runs as 5 instances: `model-1e-4-1`, `model-1e-4-2`, `model-3e-4-1`, `model-3e-4-2`, "
            "`model-3e-4-3`.") in text
    text, _ = hover(document, index, SWEEP.index("after   = [model]") + 12)  # a use names the stage too
    assert "Runs as 5 instances" in text
    text, _ = hover(document, index, SWEEP.index("eval score") + 6)
    assert "`score-3e-4-3`" in text
    text, _ = hover(document, index, SWEEP.index("eval pick_best") + 6)
    assert "instances" not in text
    text, _ = hover(document, index, SWEEP.index("lr = [") + 1)
    assert text == "**`lr`**: an axis of the matrix; each instance sees one of its values as `${matrix.lr}`"
    text, _ = hover(document, index, SWEEP.index("matrix {") + 1)
    assert text.startswith("`matrix { AXIS = [VALUES] ... }`")


def test_hover_on_a_stage_from_a_template_lists_the_instances_of_the_merged_matrix():
    """The template holds one axis, the stage another: the instances are the merge's."""
    from aipc.lsp.libraries import merged_stage

    text = ('template t: train { image = "i:1"  matrix { lr = [1, 2] } }\n'
            'train fit from t { matrix { seed = [7] } }\n')
    document = IncrementalParser("t.aip").parse(text)
    answer, _ = hover(document, build_index(document), text.index("fit"),
                      merged=lambda name: merged_stage(document.program, name, None, lambda s: text[s.start:s.end]))
    assert "merged with its templates" in answer
    assert "Runs as 2 instances: `fit-1-7`, `fit-2-7`." in answer


def test_hover_on_a_large_matrix_names_the_first_instances():
    values = ", ".join(str(i) for i in range(30))
    text = f'data big {{ image = "i:1"  matrix {{ x = [{values}] }} }}'
    document = IncrementalParser("t.aip").parse(text)
    answer, _ = hover(document, build_index(document), text.index("big"))
    assert "Runs as 30 instances: `big-0`, `big-1`" in answer and "`big-19`, and 10 more." in answer


@pytest.mark.parametrize("stage, expected", [
    ("model", {"matrix.lr", "matrix.seed"}),
    ("score", {"matrix.lr", "matrix.seed"}),  # `matrix = model` sweeps model's axes
    ("pick_best", set()),
])
def test_completion_of_matrix_axes(stage, expected):
    start = SWEEP.index(f" {stage} {{")
    end = SWEEP.index("\n}\n", start) + 1  # the stage's closing brace
    text = SWEEP[:end] + '  env = { X = "${matrix.|" }\n' + SWEEP[end:]
    labels, result = complete_at(text)
    assert {label for label in labels if label.startswith("matrix.")} == expected
    assert {"pipeline.name", "stage.name"} <= set(labels)
    if expected:
        (lr,) = [c for c in result.items if c.label == "matrix.lr"]
        assert lr.insert == "matrix.lr}"


def test_completion_after_matrix_equals_offers_the_other_stages():
    labels, _ = complete_at(SWEEP + "\neval again {\n  matrix = |\n}")
    assert set(labels) == {"model", "score", "pick_best"}


def test_the_security_block_completes_in_a_stage_and_in_the_header():
    text = 'pipeline "p" {\n  |\n}\n'
    labels, _ = complete_at(text)
    assert "security" in labels and "pull_secrets" in labels and "resources" not in labels
    labels, _ = complete_at('pipeline "p" {\n  security { | }\n}\n')
    assert set(labels) == {"user", "read_only", "capabilities", "privileged"}
    labels, _ = complete_at('data x {\n  security { user = root  | }\n}\n')
    assert set(labels) == {"read_only", "capabilities", "privileged"}
    labels, _ = complete_at('data x {\n  |\n}\n')
    assert {"security", "args", "pull"} <= set(labels)
    labels, _ = complete_at('data x {\n  pull = |\n}\n')
    assert set(labels) == {"always", "if_missing", "never"}


def test_completion_and_hover_of_portable_gpu_models():
    from aipc.compiler import gpus

    labels, result = complete_at("train t {\n  resources { gpu = 8  gpu_model = | }\n}")
    assert labels == list(gpus.PORTABLE_NAMES)
    (h100,) = [c for c in result.items if c.label == "H100-80GB"]
    assert h100.insert == '"H100-80GB"'
    assert "`cloud.google.com/gke-accelerator` in `nvidia-h100-80gb`" in h100.documentation
    text = 'train t {\n  resources { gpu = 8  gpu_model = "H1| }\n}'
    labels, result = complete_at(text)
    assert "H100-80GB" in labels and result.replace == (text.index('"H1') + 1, text.index("|"))
    assert [c.insert for c in result.items if c.label == "L4"] == ['L4"']
    labels, _ = complete_at('train t {\n  image = "tr|\n}')  # no suggestions for a free string
    assert labels == []
    source = 'train t {\n  resources { gpu = 8  gpu_model = "h100-80gb" }\n}\n'
    document = IncrementalParser("t.aip").parse(source)
    answer = hover(document, build_index(document), source.index("h100-80gb") + 2)
    assert answer is not None
    assert "`H100-80GB`: a portable NVIDIA GPU model" in answer[0]
    assert "- gfd: `nvidia.com/gpu.product` in `NVIDIA-H100-80GB-HBM3`, `NVIDIA-H100-PCIe`" in answer[0]
    raw = source.replace("h100-80gb", "Tesla-T4")
    document = IncrementalParser("t.aip").parse(raw)
    answer = hover(document, build_index(document), raw.index("Tesla-T4") + 2)
    assert answer is not None and "GPU model; the nodes it selects" not in answer[0]  # a label value as is


def test_hover_on_the_schedule_block_and_its_keys():
    source = 'pipeline "p" {\n  schedule { queue = "team-a" }\n}\ntrain t {\n  schedule { tolerate = ["spot"] }\n}\n'
    document = IncrementalParser("t.aip").parse(source)
    index = build_index(document)
    block = hover(document, index, source.index("schedule"))
    assert block is not None and block[0].startswith("`schedule { node, tolerate, priority, queue }`")
    key = hover(document, index, source.index("tolerate"))
    assert key is not None and "KEY=VALUE:EFFECT" in key[0]
    queue = hover(document, index, source.index("queue"))
    assert queue is not None and "kueue.x-k8s.io/queue-name" in queue[0]


def test_a_file_name_no_file_system_takes_is_still_compared_not_a_crash():
    # An editor may hand over a path with a NUL byte: os.path.realpath raises on it.
    assert same_file("/w/p\0.aip", "/w/p\0.aip") and not same_file("/w/p\0.aip", "/w/q.aip")
