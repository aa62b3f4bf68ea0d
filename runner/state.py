"""What ``aipc run`` keeps after it ends: each stage's log and state of its last
run, per pipeline, for ``aipc logs`` and ``aipc ps``.

Where: ``$XDG_STATE_HOME/aipc/pipelines/NAMESPACE/NAME/`` (``~/.local/state``
when ``XDG_STATE_HOME`` is not set; ``_`` stands for no namespace), one directory
per pipeline as :class:`~aipc.runner.selection.PipelineId` names it, so renaming
the .aip file keeps its logs. It is per user and on the machine that runs
``aipc``, which is where the output was read (the Docker engine may be remote),
and it holds nothing that is not in the run's own output: secret values are
never written into it, as they are never printed.

What: ``run.json`` (the last run: its id, the file, the process, when it started
and ended, the stages it selected), and per stage ``STAGE.json`` (its status,
attempts, exit code, times, message, the run that ran it last) and ``STAGE.log``
(its output as the run printed it, without the stage prefix; lines of another
attempt or replica start with ``STAGE#N | ``). A stage's log is bounded: when it
reaches :data:`LOG_HALF` bytes it becomes ``STAGE.log.1`` and a new one starts,
so the newest :data:`LOG_HALF` to 2 x :data:`LOG_HALF` bytes are kept and the
oldest part of a longer log is cut (``aipc logs`` says so). A run replaces the
log of each stage it runs and leaves the others' as they were.

Files are written with a temporary file and a rename, so a reader never sees
half a state file; a state directory that cannot be written costs the logs,
not the run (:meth:`PipelineState.open` says why once).
"""

from __future__ import annotations

import collections
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping

from aipc.runner.selection import PipelineId

LOG_HALF = 4 * 2**20  # bytes: a stage's log keeps its newest 4 to 8 MiB
TAIL_LINES = 15  # the last lines of a failed stage that the summary repeats
NO_NAMESPACE = "_"


def state_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/aipc``, or ``~/.local/state/aipc`` (the XDG base directory default)."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "aipc"


def process_alive(pid: int | None, host: str | None) -> bool:
    """Whether the process that wrote a state file still runs (on this machine)."""
    if not pid or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _write_json(path: Path, data: dict) -> None:
    temporary = path.with_name(path.name + f".{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class StoredLog:
    """A stage's kept output: its lines, and whether older output was cut."""

    lines: list[str]
    cut: bool


class PipelineState:
    """The state directory of one pipeline."""

    def __init__(self, pipeline: PipelineId, home: Path | None = None) -> None:
        self.pipeline = pipeline
        self.directory = (home or state_home()) / "pipelines" / (pipeline.namespace or NO_NAMESPACE) / pipeline.name

    def run_file(self) -> Path:
        return self.directory / "run.json"

    def stage_file(self, stage: str) -> Path:
        return self.directory / f"{stage}.json"

    def log_file(self, stage: str) -> Path:
        return self.directory / f"{stage}.log"

    # -- reading ---------------------------------------------------------------------------

    def last_run(self) -> dict | None:
        return _read_json(self.run_file())

    def stage(self, stage: str) -> dict | None:
        return _read_json(self.stage_file(stage))

    def stages_with_logs(self) -> list[str]:
        """The stages that have a kept log, by name."""
        try:
            return sorted(path.name[:-4] for path in self.directory.glob("*.log"))
        except OSError:
            return []

    def log(self, stage: str) -> StoredLog | None:
        """A stage's kept output, or None when it has none."""
        path = self.log_file(stage)
        parts = []
        for part in (path.with_name(path.name + ".1"), path):
            try:
                parts.append(part.read_bytes())
            except FileNotFoundError:
                continue
            except OSError:
                return None
        if not parts:
            return None
        text = b"".join(parts).decode("utf-8", "replace")
        state = self.stage(stage) or {}
        return StoredLog(text.splitlines(), bool(state.get("cut")))

    def run_in_progress(self) -> dict | None:
        """The last run, if the process running it is still there."""
        run = self.last_run()
        if run and run.get("ended") is None and process_alive(run.get("pid"), run.get("host")):
            return run
        return None


class StageLog:
    """Appends one stage's output to its bounded log file (thread-safe)."""

    def __init__(self, path: Path, on_cut: Callable[[], None]) -> None:
        self.path = path
        self.on_cut = on_cut
        self.lock = threading.Lock()
        self.handle = open(path, "wb")  # a new run of the stage replaces its log
        self.size = 0

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace") + b"\n"
        with self.lock:
            if self.handle is None:
                return
            if self.size and self.size + len(data) > LOG_HALF:
                self._rotate()
            self.handle.write(data)
            self.handle.flush()  # `aipc logs --follow` in another terminal reads it as it grows
            self.size += len(data)

    def _rotate(self) -> None:
        older = self.path.with_name(self.path.name + ".1")
        if older.exists():
            self.on_cut()  # the oldest part goes now
        self.handle.close()
        os.replace(self.path, older)
        self.handle = open(self.path, "wb")
        self.size = 0

    def close(self) -> None:
        with self.lock:
            if self.handle is not None:
                self.handle.close()
                self.handle = None


class RunRecorder:
    """A reporter (:mod:`aipc.runner.report`) that also keeps what it is told: every
    line the run prints (:meth:`log`) and every change of a stage's state
    (:meth:`stage_changed`) is recorded, then passed on to ``reporter``.

    It also keeps each stage's last lines in memory (:meth:`tail`), for the
    failure summary. Problems writing the state directory are reported once
    and then ignored: the run goes on without its logs kept.
    """

    def __init__(self, state: PipelineState, run_id: str, file: str, selected: list[str], reporter,
                 clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.run_id = run_id
        self.file = file
        self.selected = list(selected)
        self.reporter = reporter
        self.clock = clock
        self.lock = threading.Lock()
        self.logs: dict[str, StageLog] = {}
        self.tails: dict[str, collections.deque] = {name: collections.deque(maxlen=TAIL_LINES) for name in selected}
        self.run: dict = {}
        self.cut: set[str] = set()  # stages whose oldest output was dropped
        self.failed = False
        self.started_at = clock()

    def _try(self, action: Callable[[], object]) -> object:
        if self.failed:
            return None
        try:
            return action()
        except OSError as error:
            self.failed = True
            self.note(f"cannot keep this run's logs in {self.state.directory}: {error.strerror or error} "
                      "(`aipc logs` will not show them)")
            return None

    def open(self) -> None:
        """Record the start of the run (the state of the stages it runs is reset)."""
        def start() -> None:
            self.state.directory.mkdir(parents=True, exist_ok=True)
            self.run = {"run": self.run_id, "file": self.file, "pid": os.getpid(), "host": socket.gethostname(),
                        "started": self.started_at, "ended": None, "stages": self.selected, "outcome": None}
            _write_json(self.state.run_file(), self.run)
            for name in self.selected:
                _write_json(self.state.stage_file(name), {"run": self.run_id, "status": "pending"})
                for path in (self.state.log_file(name), self.state.log_file(name).with_name(f"{name}.log.1")):
                    path.unlink(missing_ok=True)
        self._try(start)

    def note(self, text: str) -> None:
        self.reporter.note(text)

    def log(self, source: str, line: str) -> None:
        self.reporter.log(source, line)
        stage, _, _ = source.partition("#")
        text = line if source == stage else f"{source} | {line}"
        tail = self.tails.get(stage)
        if tail is not None:
            tail.append(text)
        if self.failed:
            return
        writer = self.logs.get(stage)
        if writer is None:
            with self.lock:
                writer = self.logs.get(stage)
                if writer is None:
                    writer = self._try(lambda: StageLog(self.state.log_file(stage), lambda: self._mark_cut(stage)))
                    if writer is None:
                        return
                    self.logs[stage] = writer
        self._try(lambda: writer.write(text))

    def _mark_cut(self, stage: str) -> None:
        self.cut.add(stage)  # the stage's next record says so (close() records every stage)

    def stage_changed(self, result) -> None:
        """Record a stage's state (a :class:`~aipc.runner.scheduler.StageResult`)."""
        self.reporter.stage_changed(result)
        self._record(result)

    def _record(self, result) -> None:
        now, monotonic = self.clock(), time.monotonic()

        def wall(moment: float | None) -> float | None:
            return None if moment is None else now - (monotonic - moment)

        def record() -> None:
            _write_json(self.state.stage_file(result.name), {
                "run": self.run_id, "status": result.status.value, "attempts": result.attempts,
                "max_attempts": result.max_attempts, "exit_code": result.exit_code,
                "started": wall(result.started), "ended": wall(result.ended), "message": result.message,
                "cut": result.name in self.cut,
            })
        self._try(record)
        if not result.status.is_active and result.status.value != "pending":
            writer = self.logs.get(result.name)
            if writer is not None and result.status.value != "serving":
                writer.close()

    def tail(self, stage: str) -> list[str]:
        return list(self.tails.get(stage, ()))

    def close(self, stages, outcome: str) -> None:
        """Record the end of the run: the final state of each stage (``StageResult``s)
        and ``outcome`` (`succeeded`, `failed`, `interrupted`, `serving` or `stopped`)."""
        for result in stages:
            self._record(result)
        for writer in list(self.logs.values()):
            writer.close()
        if self.run:
            self.run.update(ended=self.clock(), outcome=outcome)
            self._try(lambda: _write_json(self.state.run_file(), self.run))


def follow_file(path: Path, keep_going: Callable[[], bool], poll: float = 0.25) -> Iterator[str]:
    """The lines of ``path`` from its start, then those appended to it as they
    come, while ``keep_going()`` holds (and once more after, for the last lines).
    A log that rotates is followed into its new file."""
    handle = None
    pending = b""

    def drain() -> Iterator[str]:
        nonlocal pending
        chunk = handle.read()
        if chunk:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", "replace")

    try:
        while True:
            going = keep_going()
            if handle is None:
                try:
                    handle = open(path, "rb")
                except FileNotFoundError:
                    pass
            if handle is not None:
                yield from drain()
                try:
                    rotated = os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
                except FileNotFoundError:
                    rotated = False
                if rotated:  # the last lines of the old file, then the new one
                    yield from drain()
                    handle.close()
                    handle = None
                    continue
            if not going:
                break
            time.sleep(poll)
    finally:
        if handle is not None:
            handle.close()
    if pending:
        yield pending.decode("utf-8", "replace")
