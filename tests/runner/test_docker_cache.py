"""The cache of `aipc run` on the real Docker engine (issue 19's acceptance): a
three-stage pipeline handing outputs on runs once (all run), again (all cached,
well under a second each), after its image is rebuilt under the same tag (all
run), after a change that leaves the first stage's output bytes identical (the
first runs, the rest stay cached), after an output volume is deleted (that stage
runs), with --rerun and with --no-cache; `aipc down -v` clears it."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from tests.runner.test_docker_run import Pipeline, aipc, lines_of, summary_row

pytestmark = pytest.mark.docker

PROGRAM = '''\
data make {
  script = "echo 41 > /out/raw/value; mkdir /out/raw/sub; echo x > /out/raw/sub/f"
  output raw at "/out/raw"
}
train fit {
  script = "cat /in/raw/sub/f; touch /in/raw/new 2>/dev/null && echo WROTE; expr $(cat /in/raw/value) + 1 > /out/model/weights"
  input make.raw at "/in/raw"
  output model at "/out/model"
}
eval score {
  script = "cat /in/model/weights"
  input fit.model at "/in/model"
}
'''


@pytest.fixture
def image(busybox_image):
    """An image of this test's own, rebuilt under the same tag with ``build()``."""
    tag = f"aipc-test/cache-{uuid.uuid4().hex[:8]}:1"

    def build(generation: int) -> None:
        dockerfile = f"FROM {busybox_image}\nLABEL generation={generation}\n"
        subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, text=True, check=True,
                       capture_output=True)

    build(1)
    yield tag, build
    subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)


@pytest.fixture
def pipeline_cleanup():
    """Registers a pipeline whose containers, network and volumes (the cache's records
    too) are removed after the test."""
    made: list[Pipeline] = []
    yield lambda pipeline: made.append(pipeline) or pipeline
    from aipc.runner.docker_driver import connect, down
    from aipc.runner.selection import PipelineId

    for pipeline in made:
        down(connect(), str(pipeline.path), volumes=True, pipeline=PipelineId(pipeline.name))
        assert pipeline.containers() == [] and pipeline.volumes() == [] and pipeline.networks() == []


def statuses(out: str) -> dict[str, str]:
    return {stage: summary_row(out, stage)[1] for stage in ("make", "fit", "score")}


def test_a_pipeline_runs_once_and_then_only_what_changed(tmp_path, image, capsys, pipeline_cleanup):
    tag, build = image
    made = pipeline_cleanup(Pipeline(tmp_path, tag).write(PROGRAM))
    path = str(made.path)

    def run(*options: str, predicted: dict[str, str] | None = None) -> dict[str, str]:
        """The stages' statuses after `aipc run`, which `aipc plan --cache` said before."""
        code, out, err = aipc(capsys, "plan", path, "--cache", *options)
        assert code == 0, out + err
        plan = dict(line.strip().split(None, 1) for line in out.split("aipc run, on this Docker engine:\n")[1]
                    .splitlines())
        code, out, err = aipc(capsys, "run", path, "--progress", "plain", *options)
        assert code == 0, out + err
        assert "WROTE" not in out  # an input is read-only
        done = statuses(out)
        for stage, status in done.items():  # what the plan said
            expected = predicted.get(stage) if predicted else None
            assert plan[stage] == expected if expected else plan[stage].startswith(
                "cached" if status == "cached" else "runs"), (stage, plan[stage], status)
        return done, out

    ran = {"make": "succeeded", "fit": "succeeded", "score": "succeeded"}
    cached = {"make": "cached", "fit": "cached", "score": "cached"}
    assert run()[0] == ran
    again, out = run()
    assert again == cached
    assert all(float(summary_row(out, stage)[2].rstrip("s")) < 1.0 for stage in cached)

    build(2)  # the same tag, another image: every stage's image changed
    assert run(predicted={"make": "runs: changed: image"})[0] == ran
    assert run()[0] == cached

    # the first stage changes, and writes the same bytes: its dependants stay cached
    made.write(PROGRAM.replace('script = "echo 41', 'script = "true; echo 41'))
    changed, out = run(predicted={"make": "runs: changed: command", "fit": "cached if `make.raw` comes out as before"})
    assert changed == {"make": "succeeded", "fit": "cached", "score": "cached"}
    assert "make: runs, changed: command" in out

    subprocess.run(["docker", "volume", "rm", f"aipc-{made.name}-fit.model"], check=True, capture_output=True)
    assert run(predicted={"fit": "runs: its output `model` is gone or was replaced"})[0] == {
        "make": "cached", "fit": "succeeded", "score": "cached"}

    assert run("--rerun", "fit")[0] == {"make": "cached", "fit": "succeeded", "score": "succeeded"}
    assert run("--no-cache")[0] == ran

    code, out, err = aipc(capsys, "down", path, "-v")
    assert code == 0, out + err
    assert made.volumes() == []
    assert run()[0] == ran


def test_matrix_outputs_pair_and_fan_in_on_the_engine(tmp_path, busybox_image, capsys, pipeline_cleanup):
    made = pipeline_cleanup(Pipeline(tmp_path, busybox_image).write('''
train model {
  matrix { seed = [1, 2] }
  script = "echo ${matrix.seed} > /out/w/seed"
  output weights at "/out/w"
}
eval score {
  matrix = model
  script = "echo scored $(cat /in/w/seed) > /out/r/seed"
  input  model.weights at "/in/w"
  output report at "/out/r"
}
eval pick {
  script = "ls /in/all; cat /in/all/*/seed"
  input score.report at "/in/all"
}
'''))
    code, out, err = aipc(capsys, "run", str(made.path), "--progress", "plain")
    assert code == 0, out + err
    assert lines_of(out, "pick") == [
        "score-1", "score-2", "scored 1", "scored 2"]  # one subdirectory per instance, each paired
