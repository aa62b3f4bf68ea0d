"""What outlives a run and what an earlier run holds, on the real Docker engine:
`aipc logs` and `aipc ps`, failure semantics as documented, a run that belongs to
the pipeline (not the file name), ports and names that something else holds,
host folders, and logs read to their end."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tests.runner.test_docker_run import (  # noqa: F401 - `pipeline` is a fixture
    ROOT, Pipeline, aipc, free_port, lines_of, pipeline, read_until, start_run, summary_row,
)

pytestmark = pytest.mark.docker


def test_a_failure_stops_new_stages_and_keep_going_runs_the_independent_ones(pipeline, capsys):
    pipeline.write("""
data broken { script = "echo about to fail; exit 3" }
data slow { script = "sleep 2; echo slow done" }
train after_slow { after = [slow] script = "echo after slow ran" }
""")
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain", "--jobs", "2")
    assert code == 1
    assert lines_of(out, "slow") == ["slow done"]  # running when `broken` failed: it finished
    assert lines_of(out, "after_slow") == []  # nothing new started after the failure
    assert summary_row(out, "after_slow")[1] == "skipped"
    assert "after_slow: skipped: not started: the run failed at `broken`" in out

    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain", "--jobs", "2", "--keep-going")
    assert code == 1
    assert lines_of(out, "after_slow") == ["after slow ran"]
    assert [summary_row(out, name)[1] for name in ("broken", "slow", "after_slow")] == [
        "failed", "cached", "succeeded"]  # `slow` succeeded before, unchanged
    assert re.search(r"run failed: stage `broken` failed \(exited with code 3\); 2 of 3 stages done in", out)


@pytest.mark.parametrize("words", [
    ["--only", "b", "{file}"], ["{file}", "--only", "b"], ["--only", "a,b", "{file}"], ["{file}", "--only", "a,b"],
    ["--only", "a", "--only", "b", "{file}"],
], ids=["only-first", "file-first", "comma-first", "comma-after", "repeated"])
def test_only_takes_stages_before_or_after_the_file(pipeline, capsys, words):
    pipeline.write("""
data a { script = "echo a ran" }
data b { script = "echo b ran" }
data c { script = "echo c ran" }
""")
    args = [word.format(file=pipeline.path) for word in words]
    code, out, err = aipc(capsys, "run", *args, "--progress", "plain")
    assert code == 0, out + err
    ran = {stage for stage in "abc" if lines_of(out, stage)}
    assert ran == ({"b"} if "a,b" not in words and words.count("--only") == 1 else {"a", "b"})


FAILING_MODEL = """
data ingest { script = "echo ingested 10 rows; echo second line" }
train model {
  after  = [ingest]
  script = "for i in $(seq 1 20); do echo epoch $i; done; echo 'ValueError: nan loss'; exit 2"
}
eval score { after = [model] script = "echo never" }
"""


def test_logs_of_the_last_run_and_the_failure_summary(pipeline, capsys):
    pipeline.write(FAILING_MODEL)
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 1
    # The summary repeats the failed stage's last lines and says how to re-run from it.
    end = out[out.index("the last lines of `model`:"):].splitlines()
    tail = end[1:end.index(f"re-run from it: aipc run {pipeline.path} --from model")]
    assert tail == [f"  epoch {i}" for i in range(7, 21)] + ["  ValueError: nan loss"]  # the last 15

    # Each stage's output is kept and `aipc logs` prints it, after the run.
    code, out, err = aipc(capsys, "logs", str(pipeline.path), "ingest")
    assert (code, out) == (0, "ingested 10 rows\nsecond line\n")
    code, out, err = aipc(capsys, "logs", str(pipeline.path))
    assert code == 0
    assert out.splitlines()[:3] == ["ingest | ingested 10 rows", "ingest | second line", "model  | epoch 1"]
    assert out.splitlines()[-1] == "model  | ValueError: nan loss"
    code, out, err = aipc(capsys, "logs", str(pipeline.path), "score")
    assert code == 1 and "`score` did not run the last time (not started: upstream stage `model` did not " \
                         "succeed)" in err
    code, out, err = aipc(capsys, "logs", str(pipeline.path), "modle")
    assert code == 2 and "did you mean `model`?" in err

    # Re-running from the failed stage replaces its log and keeps the others'.
    pipeline.write(FAILING_MODEL.replace("exit 2", "echo fixed"))
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain", "--from", "model")
    assert code == 0, out + err
    code, out, err = aipc(capsys, "logs", str(pipeline.path), "model")
    assert out.splitlines()[-1] == "fixed"
    code, out, err = aipc(capsys, "logs", str(pipeline.path), "ingest")
    assert out == "ingested 10 rows\nsecond line\n"
    code, out, err = aipc(capsys, "ps", str(pipeline.path))
    assert code == 0 and f"nothing of pipeline `{pipeline.name}` is running" in out
    assert re.search(r"last run \w{8} from .*pipeline.aip, started [\d-]+ [\d:]+; it succeeded at", out), out


def test_logs_follow_a_run_in_progress_until_the_stage_ends(pipeline, capsys):
    pipeline.write("""
data ticker { script = "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.5; done" }
""")
    process = start_run(pipeline)
    try:
        read_until(process, ["tick 1"])
        started = time.monotonic()
        code, out, err = aipc(capsys, "logs", str(pipeline.path), "ticker", "--follow")
        assert code == 0, err
        assert out.splitlines() == [f"tick {i}" for i in range(1, 7)]
        assert time.monotonic() - started > 1  # it waited for the lines still to come
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0


def test_logs_follow_every_stage_of_a_run_in_progress_also_those_still_to_start(pipeline, capsys):
    pipeline.write("""
data first { script = "echo one; sleep 1; echo two" }
train second { after = [first] script = "echo three" }
""")
    process = start_run(pipeline)
    try:
        read_until(process, ["one"])
        code, out, err = aipc(capsys, "logs", str(pipeline.path), "--follow")
        assert code == 0, err
        assert out.splitlines() == ["first  | one", "first  | two", "second | three"]
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()


def test_a_detached_run_belongs_to_the_pipeline_ps_logs_and_down_find_it_after_a_rename(pipeline, capsys):
    port = free_port()
    pipeline.write(f"""
serve web {{ script = "echo serving on {port}; exec httpd -f -v -p {port} -h /www" port = {port} health = "/healthz" }}
""")
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain", "--detach")
    assert code == 0, out + err
    [container] = pipeline.containers()
    assert summary_row(out, "web")[3] == "-"  # a serving stage has no exit code
    renamed = pipeline.directory / "renamed.aip"
    pipeline.path.rename(renamed)
    try:
        code, out, err = aipc(capsys, "ps", str(renamed))
        assert code == 0
        header, row = out.splitlines()[1:3]
        assert header.split() == ["stage", "container", "run", "state", "since", "ports"]
        cells = row.split()
        assert cells[:2] == ["web", container] and cells[3] == "Up"
        assert f"127.0.0.1:{port}->{port}/tcp" in row
        assert "left its serve stages running" in out

        code, out, err = aipc(capsys, "logs", str(renamed), "web")
        assert code == 0 and out.splitlines()[0] == f"serving on {port}"  # from the engine: it still runs

        code, out, err = aipc(capsys, "down", str(renamed))
        assert code == 0 and f"removed container {container}" in out
    finally:
        renamed.rename(pipeline.path)
    assert pipeline.containers() == []


def test_a_second_file_that_claims_a_running_pipeline_is_told_so(pipeline, capsys):
    port = free_port()
    pipeline.write(f'serve web {{ command = ["httpd", "-f", "-p", "{port}", "-h", "/www"] port = {port} }}\n')
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain", "--detach")
    assert code == 0, out + err
    twin = pipeline.directory / "twin.aip"
    twin.write_text(pipeline.path.read_text().replace(str(port), str(port + 1)))
    code, out, err = aipc(capsys, "run", str(twin), "--progress", "plain", "--detach")
    assert code == 1
    assert re.search(rf"pipeline `{pipeline.name}` is in use by run \w{{8}} from `[^`]*pipeline.aip`, and "
                     rf"`[^`]*twin.aip` declares the same pipeline", err), err
    assert f"aipc down " in err and "another name or `namespace`" in err
    assert len(pipeline.containers()) == 1


def test_running_again_while_a_detached_service_holds_its_port_names_the_run(pipeline, capsys):
    port = free_port()
    pipeline.write(f"""
data prep {{ script = "echo prepared" }}
serve web {{ after = [prep] command = ["httpd", "-f", "-p", "{port}", "-h", "/www"] port = {port} }}
""")
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain", "--detach")
    assert code == 0, out + err
    run_id = re.search(r"run (\w{8}) of", out).group(1)
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 1
    assert "port is already allocated" not in out + err
    assert re.search(rf"`web` publishes host port {port}, which `web` of an earlier run of this pipeline holds "
                     rf"\(run {run_id} from `[^`]*pipeline.aip`, up since [\d-]+ [\d:]+\): stop that run with "
                     rf"`aipc down [^`]*pipeline.aip` and run again", err), err
    assert "prepared" not in out  # found before anything ran


def test_host_folders_that_do_not_exist(pipeline, capsys):
    pipeline.write("""
volume inputs { host = "./inputs" }
volume results { host = "./results" }
data read { script = "ls /in" mount inputs at "/in" readonly }
data write { script = "echo done > /out/done.txt" mount results at "/out" }
""")
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 1
    assert ("volume `inputs`: the host folder `" in err and "inputs` does not exist, and `read` only reads it" in err)
    assert not (pipeline.directory / "inputs").exists() and not (pipeline.directory / "results").exists()

    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain", "--only", "write")
    assert code == 0, out + err
    assert re.search(r"created the host folder \S*results of volume `results`, which did not exist \(`write` "
                     r"writes it\)", out), out
    assert (pipeline.directory / "results" / "done.txt").read_text() == "done\n"


def test_a_volume_or_container_that_aipc_did_not_create_is_not_taken_over(pipeline, capsys, monkeypatch):
    pipeline.write("""
volume work { size = 1Gi }
data use { script = "ls /work" mount work at "/work" }
""")
    squatter = f"aipc-{pipeline.name}-work"
    subprocess.run(["docker", "volume", "create", squatter], check=True, capture_output=True)
    try:
        code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
        assert code == 1
        assert (f"volume `work`: a Docker volume named `{squatter}` already exists and aipc did not create it "
                "(it has no aipc labels), so aipc does not use it") in err
    finally:
        subprocess.run(["docker", "volume", "rm", squatter], check=True, capture_output=True)

    run_id = uuid.uuid4().hex[:8]
    monkeypatch.setattr("aipc.runner.selection._random.token_hex", lambda n: run_id)
    taken = f"aipc-{pipeline.name}-use-{run_id}-1"
    subprocess.run(["docker", "create", "--name", taken, pipeline.image, "true"], check=True, capture_output=True)
    try:
        code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
        assert code == 1
        assert (f"use: failed: a container named `{taken}` already exists and this run did not create it: aipc "
                "does not take it over") in out
        inspect = subprocess.run(["docker", "inspect", taken], capture_output=True)
        assert inspect.returncode == 0  # left alone
    finally:
        subprocess.run(["docker", "rm", "-f", taken], capture_output=True)


def test_a_chatty_stage_shows_every_line_up_to_its_error(pipeline, capsys):
    # 400,000 lines and then the error: the container is removed only once its log was read to the end.
    pipeline.write("""
data chatty { script = "seq 1 400000; echo 'the error at the end'; exit 1" }
""")
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 1
    printed = lines_of(out, "chatty")
    assert len(printed) == 400_001
    assert printed[-2:] == ["400000", "the error at the end"]
    assert "  the error at the end" in out[out.index("the last lines of `chatty`"):]
    code, out, err = aipc(capsys, "logs", str(pipeline.path), "chatty")
    assert out.endswith("400000\nthe error at the end\n")


def test_a_huge_line_arrives_whole(pipeline, capsys):
    pipeline.write("""
data wide { script = "head -c 3000000 /dev/zero | tr '\\\\0' x; echo; echo after" }
""")
    started = time.monotonic()
    code, out, err = aipc(capsys, "run", str(pipeline.path), "--progress", "plain")
    assert code == 0, err
    printed = lines_of(out, "wide")
    assert "".join(printed[:-1]) == "x" * 3_000_000  # in pieces of at most 1 MiB, nothing dropped
    assert printed[-1] == "after"
    assert time.monotonic() - started < 60
