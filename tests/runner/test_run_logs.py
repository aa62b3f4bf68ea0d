"""A run's output, without an engine: read to its end in bounded memory and time,
kept per pipeline and stage (bounded, the newest part), followed as it grows."""

from __future__ import annotations

import threading
import time

from aipc.runner import state as run_state
from aipc.runner.docker_driver import MAX_LINE, LogPump
from aipc.runner.scheduler import StageResult, Status
from aipc.runner.selection import PipelineId
from aipc.runner.state import PipelineState, RunRecorder, follow_file, state_home
from aipc.compiler import ir


class FakeContainer:
    """A stopped container whose log is ``chunks``."""

    status = "exited"

    def __init__(self, chunks) -> None:
        self.chunks = chunks

    def reload(self) -> None:
        pass

    def logs(self, stream: bool, follow: bool, tail: int | None = None):
        if not stream:  # only the last entry is asked for this way
            assert tail == 1
            return self.chunks[-1] if isinstance(self.chunks, list) and self.chunks else b""
        return iter(self.chunks)


class BrokenStream(FakeContainer):
    """A container whose followed log stream ends early (``cut`` entries in), by
    breaking (``error``) or as if it were complete; read again, it is whole."""

    def __init__(self, entries: list[bytes], cut: int, error: Exception | None, running_until: int = 0) -> None:
        super().__init__(entries)
        self.cut, self.error, self.reads = cut, error, []
        self.running_until = running_until  # reloads that still see it running

    def reload(self) -> None:
        self.status = "running" if self.running_until > 0 else "exited"
        self.running_until -= 1

    def logs(self, stream: bool, follow: bool, tail: int | None = None):
        if not stream:
            return super().logs(stream, follow, tail)
        self.reads.append(follow)
        if len(self.reads) > 1:
            return iter(self.chunks)
        return self._first()

    def _first(self):
        yield from self.chunks[:self.cut]
        if self.error is not None:
            raise self.error


def pumped(chunks) -> list[str]:
    lines: list[str] = []
    pump = LogPump(FakeContainer(chunks), "s", lambda source, line: lines.append(line))
    pump.start()
    pump.drain()
    return lines


def test_lines_are_split_at_newlines_whatever_the_chunks():
    assert pumped([b"a\nb", b"c\n", b"\n", b"d\r\ne"]) == ["a", "bc", "", "d", "e"]
    assert pumped([b"\xff\xfeok\n"]) == ["\ufffd\ufffdok"]


def test_a_huge_line_costs_linear_time_and_bounded_memory():
    # 64 MiB without a newline, in 4 KiB chunks: re-scanning or re-copying the line at
    # each chunk would take minutes (about 550 GB copied); it is passed on in 1 MiB pieces.
    chunk = b"x" * 4096
    count = 64 * 2**20 // len(chunk)
    started = time.monotonic()
    lines = pumped(chunk for _ in range(count))
    assert time.monotonic() - started < 20
    assert [len(line) for line in lines] == [MAX_LINE] * 64


ENTRIES = [f"{number}\n".encode() for number in range(1, 2001)] + [b"the error at the end\n"]


def test_a_stream_that_breaks_is_read_again_and_nothing_is_lost_or_repeated():
    container = BrokenStream(ENTRIES, cut=700, error=ConnectionError("Connection broken: IncompleteRead"))
    lines: list[str] = []
    pump = LogPump(container, "s", lambda source, line: lines.append(line))
    pump.start()
    pump.drain()
    assert lines == [entry.decode().rstrip("\n") for entry in ENTRIES]
    assert container.reads == [True, False]  # the stopped container's log, once more, not followed


def test_a_stream_the_engine_ends_early_is_caught_up_by_the_log_s_last_entry():
    # No error: the stream just stops (the engine closed it as the container stopped).
    container = BrokenStream(ENTRIES, cut=1234, error=None)
    lines = []
    pump = LogPump(container, "s", lambda source, line: lines.append(line))
    pump.start()
    pump.drain()
    assert lines[-2:] == ["2000", "the error at the end"] and len(lines) == len(ENTRIES)


def test_a_stream_that_breaks_while_the_container_runs_is_followed_again():
    container = BrokenStream(ENTRIES, cut=10, error=ConnectionError("reset"), running_until=1)
    lines = []
    pump = LogPump(container, "s", lambda source, line: lines.append(line))
    pump.start()
    pump.drain()
    assert container.reads[:2] == [True, True] and len(lines) == len(ENTRIES)


def test_a_complete_stream_is_not_read_twice():
    container = BrokenStream(ENTRIES, cut=len(ENTRIES), error=None)
    pump = LogPump(container, "s", lambda source, line: None)
    pump.start()
    pump.drain()
    assert container.reads == [True]


def test_drain_waits_for_a_log_that_keeps_coming():
    def slow():
        for number in range(30):
            time.sleep(0.05)
            yield f"line {number}\n".encode()

    assert pumped(slow())[-1] == "line 29"


def result(name, status, **fields):
    stage = StageResult(name, ir.StageKind.DATA, status, **fields)
    return stage


class Shown:
    def __init__(self):
        self.lines, self.notes = [], []

    def log(self, source, line):
        self.lines.append((source, line))

    def note(self, text):
        self.notes.append(text)

    def stage_changed(self, result):
        pass


def test_a_run_keeps_each_stage_log_and_state_per_pipeline(tmp_path):
    state = PipelineState(PipelineId("churn", "ml"), tmp_path)
    assert state.directory == tmp_path / "pipelines" / "ml" / "churn"
    shown = Shown()
    recorder = RunRecorder(state, "r1", "/p/churn.aip", ["prep", "train"], shown)
    recorder.open()
    recorder.log("prep", "reading")
    recorder.log("train", "epoch 1")
    recorder.log("train#2", "epoch 1 again")
    recorder.stage_changed(result("prep", Status.SUCCEEDED, exit_code=0, started=1.0, ended=2.0))
    assert shown.lines == [("prep", "reading"), ("train", "epoch 1"), ("train#2", "epoch 1 again")]
    assert state.run_in_progress()["run"] == "r1"  # this process is alive
    recorder.close([result("prep", Status.SUCCEEDED), result("train", Status.FAILED, exit_code=3)], "failed")
    assert state.run_in_progress() is None and state.last_run()["outcome"] == "failed"
    assert state.log("prep").lines == ["reading"]
    assert state.log("train").lines == ["epoch 1", "train#2 | epoch 1 again"]
    assert state.stage("train")["status"] == "failed" and state.stage("train")["exit_code"] == 3
    assert recorder.tail("train") == ["epoch 1", "train#2 | epoch 1 again"]
    assert state.stages_with_logs() == ["prep", "train"]

    # A later run of one stage replaces that stage's log and leaves the other's.
    again = RunRecorder(state, "r2", "/p/renamed.aip", ["train"], Shown())
    again.open()
    again.log("train", "fixed")
    again.close([result("train", Status.SUCCEEDED)], "succeeded")
    assert state.log("train").lines == ["fixed"] and state.log("prep").lines == ["reading"]
    assert state.last_run()["file"] == "/p/renamed.aip"


def test_a_long_log_keeps_its_newest_part_and_says_it_was_cut(tmp_path, monkeypatch):
    monkeypatch.setattr(run_state, "LOG_HALF", 1000)
    state = PipelineState(PipelineId("p"), tmp_path)
    recorder = RunRecorder(state, "r", "/p.aip", ["s"], Shown())
    recorder.open()
    for number in range(1000):
        recorder.log("s", f"line {number:04d}")  # 10 bytes each: 10,000 bytes in all
    recorder.close([result("s", Status.SUCCEEDED)], "succeeded")
    kept = state.log("s")
    assert kept.cut
    assert 100 <= len(kept.lines) <= 200 and kept.lines[-1] == "line 0999"
    assert kept.lines == [f"line {n:04d}" for n in range(1000 - len(kept.lines), 1000)]  # no gap
    assert recorder.tail("s")[-1] == "line 0999" and len(recorder.tail("s")) == run_state.TAIL_LINES


def test_a_state_directory_that_cannot_be_written_costs_the_logs_not_the_run(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    shown = Shown()
    recorder = RunRecorder(PipelineState(PipelineId("p"), blocked), "r", "/p.aip", ["s"], shown)
    recorder.open()
    recorder.log("s", "still shown")
    recorder.close([result("s", Status.SUCCEEDED)], "succeeded")
    assert shown.lines == [("s", "still shown")] and recorder.tail("s") == ["still shown"]
    assert len(shown.notes) == 1 and "cannot keep this run's logs" in shown.notes[0]


def test_the_state_home_follows_xdg(monkeypatch, tmp_path):
    assert state_home({"XDG_STATE_HOME": "/x"}).as_posix() == "/x/aipc"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert state_home({}) == tmp_path / ".local" / "state" / "aipc"


def test_following_a_file_reads_what_comes_and_crosses_a_rotation(tmp_path):
    path = tmp_path / "s.log"
    path.write_text("first\n")
    done = threading.Event()
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(follow_file(path, lambda: not done.is_set(), poll=0.01)))
    reader.start()
    with open(path, "a") as handle:
        handle.write("second\n")
    time.sleep(0.1)
    path.rename(tmp_path / "s.log.1")
    path.write_text("third\n")
    time.sleep(0.1)
    done.set()
    reader.join(timeout=5)
    assert seen == ["first", "second", "third"]
