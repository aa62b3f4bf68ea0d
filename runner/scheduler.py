"""The order a run follows, independent of how a stage is executed.

Batch stages start once every selected dependency has succeeded (a serve
dependency: is healthy), at most ``jobs`` at a time, in the pipeline's
topological order, and at most ``max_parallel`` instances of a matrix stage.
A stage that fails (after its retries) or passes its timeout marks every
stage downstream of it skipped, and no new stage starts after it:
stages already running finish, the others are skipped. With ``keep_going`` every
batch stage whose dependencies succeeded still runs.

Serve stages come in two sorts. One that a batch stage waits for, directly or
through other serve stages (a database the training job writes to), starts as
soon as its own dependencies allow, so the batch stage can start once it is
healthy: what docker-compose does with ``service_healthy``. The others (the
model server at the end of a pipeline) start last, once every selected batch
stage has finished and none failed: the pipeline's result is served only when
the pipeline succeeded. No serve stage starts after a failure; each waits for
its own dependencies (a serve stage after a serve stage until that one is healthy).

A pending stage says why it waits (:class:`Waiting`): each of
:attr:`Scheduler.gates`, in order, may hold it back with a reason. The reasons
are an open set: dependencies and a free slot here, others (GPUs, a window of a
sweep) are more gates.

GPUs on one machine (``gpus``: the machine's device ids) are such a gate: a GPU
stage starts once enough GPUs are free, with devices of its own (one set per
container: each replica of a serve stage gets its own), and gives them back when
it ends. A service keeps its GPUs while it serves: a stage that waits for GPUs
only services hold fails. Without ``gpus`` every stage starts at once and its
driver asks for a number of GPUs.

All state changes happen on the thread that calls :meth:`Scheduler.run`;
workers only execute stages through the :class:`Driver` and post what happened.
Interrupting :meth:`Scheduler.run` (Ctrl-C) aborts the driver, waits for the
workers, and re-raises.
"""

from __future__ import annotations

import enum
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from aipc.backends.devices import device_demand, gpus_per_container
from aipc.compiler import ir


class Status(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed out"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    STARTING = "starting"  # a serve stage waiting to be healthy
    SERVING = "serving"
    STOPPED = "stopped"  # a serve stage that ended (stopped or exited)
    CACHED = "cached"  # a batch stage skipped: it succeeded before with the same key (runner/cache.py)

    @property
    def is_failure(self) -> bool:
        return self in (Status.FAILED, Status.TIMED_OUT)

    @property
    def is_active(self) -> bool:
        return self in (Status.RUNNING, Status.STARTING)


DONE = frozenset({Status.SUCCEEDED, Status.SERVING, Status.STOPPED, Status.CACHED})  # counted in "n of m done"
COMPLETE = frozenset({Status.SUCCEEDED, Status.SERVING, Status.CACHED})  # what a dependant may start after


@dataclass(frozen=True)
class Attempt:
    """What one execution of a stage ended with.

    ``error`` is set when the engine refused to run the container at all (a
    missing GPU driver, a port in use): such a stage fails without retries.
    """

    exit_code: int | None = None
    timed_out: bool = False
    error: str | None = None
    cancelled: bool = False
    detail: str | None = None  # an explanation to show with a failure (killed: out of memory)
    outputs: tuple[tuple[str, str], ...] = ()  # after a success: each output's content digest
    cached: bool = False  # not run: it succeeded before with the same key

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not (self.timed_out or self.error or self.cancelled)


# The GPU device ids a stage's containers get, one tuple per container (a batch
# stage's one container, each replica of a serve stage); () when GPUs are not assigned.
Devices = tuple[tuple[str, ...], ...]


class Driver(Protocol):
    """Executes stages. Methods other than :meth:`abort` are called from worker threads."""

    def run_batch(self, stage: ir.Stage, attempt: int, deadline: float | None, devices: Devices = ()) -> Attempt:
        """Run one attempt to completion; kill it at ``deadline`` (a ``time.monotonic``
        value) and return ``timed_out``."""

    def start_service(self, stage: ir.Stage, devices: Devices = ()) -> Attempt:
        """Start every replica and return once they are healthy (exit code 0) or
        have failed to become so."""

    def abort(self) -> None:
        """Stop and remove everything started so far; called from the scheduling
        thread while workers may still be inside the methods above."""


class Cache(Protocol):
    """Decides, from a worker thread, whether a batch stage may be skipped
    (:class:`aipc.runner.cache.RunCache`)."""

    def decide(self, stage: ir.Stage): ...

    def record(self, stage: ir.Stage, parts, digests) -> None: ...


@dataclass(frozen=True)
class Waiting:
    """Why a pending stage has not started. ``kind`` is a short word (an open set:
    `dependencies`, `slot`, `services`...); ``text`` says it to a person."""

    kind: str
    text: str

    @property
    def worth_announcing(self) -> bool:
        """Waiting for dependencies is what the order says anyway; anything else is news."""
        return self.kind != "dependencies"


@dataclass
class StageResult:
    name: str
    kind: ir.StageKind
    status: Status = Status.PENDING
    attempts: int = 0
    max_attempts: int = 1
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None
    message: str | None = None
    waiting: Waiting | None = None  # while pending: why

    @property
    def is_batch(self) -> bool:
        return self.kind.is_batch

    def duration(self, now: float | None = None) -> float | None:
        if self.started is None:
            return None
        end = self.ended if self.ended is not None else (now if now is not None else time.monotonic())
        return max(0.0, end - self.started)


class Reporter(Protocol):
    def stage_changed(self, result: StageResult) -> None: ...

    def note(self, text: str) -> None: ...


@dataclass
class RunResult:
    stages: list[StageResult] = field(default_factory=list)
    interrupted: bool = False

    @property
    def failed(self) -> list[StageResult]:
        return [result for result in self.stages if result.status.is_failure]

    @property
    def serving(self) -> list[StageResult]:
        return [result for result in self.stages if result.status is Status.SERVING]

    @property
    def done(self) -> int:
        """How many stages did their part: succeeded, or serving (or served until stopped)."""
        return sum(1 for result in self.stages if result.status in DONE)

    def get(self, name: str) -> StageResult:
        for result in self.stages:
            if result.name == name:
                return result
        raise KeyError(name)


# Messages a worker posts to the scheduling thread.
@dataclass(frozen=True)
class _AttemptStarted:
    name: str
    attempt: int


@dataclass(frozen=True)
class _AttemptFailed:
    name: str
    attempt: int
    outcome: Attempt


@dataclass(frozen=True)
class _Note:
    name: str
    text: str


@dataclass(frozen=True)
class _Finished:
    name: str
    outcome: Attempt
    attempts: int


class GpuPool:
    """The machine's GPUs, by device id; a stage takes the lowest free ones."""

    def __init__(self, devices: Sequence[str]) -> None:
        self.devices = tuple(devices)
        self.free = list(self.devices)
        self.held: dict[str, Devices] = {}

    demand = staticmethod(device_demand)

    def take(self, stage: ir.Stage) -> Devices:
        """Devices for each of the stage's containers (the caller checked there are enough)."""
        need = self.demand(stage)
        if need == 0:
            return ()
        taken, self.free = self.free[:need], self.free[need:]
        size = gpus_per_container(stage)
        devices = tuple(tuple(taken[i:i + size]) for i in range(0, need, size))
        self.held[stage.name] = devices
        return devices

    def give_back(self, name: str) -> None:
        for ids in self.held.pop(name, ()):
            self.free.extend(ids)
        order = {device: index for index, device in enumerate(self.devices)}
        self.free.sort(key=order.__getitem__)


class Scheduler:
    """Runs the selected stages of a pipeline through a driver. Use once."""

    POLL = 0.1  # seconds between checks for Ctrl-C while waiting for workers
    ABORT_GRACE = 60.0  # seconds to wait for workers after an abort

    def __init__(self, pipeline: ir.Pipeline, selected: Sequence[str], driver: Driver, reporter: Reporter,
                 jobs: int, clock: Callable[[], float] = time.monotonic, keep_going: bool = False,
                 gpus: Sequence[str] | None = None, cache: Cache | None = None) -> None:
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        self.pipeline = pipeline
        self.driver = driver
        self.reporter = reporter
        self.jobs = jobs
        self.clock = clock
        self.keep_going = keep_going
        self.cache = cache
        chosen = set(selected)
        self.stages = [stage for stage in pipeline.stages if stage.name in chosen]
        self.by_name = {stage.name: stage for stage in self.stages}
        # Dependencies outside the selection are taken as done (`--only`, `--from`).
        self.needs = {stage.name: tuple(d for d in stage.after if d in chosen) for stage in self.stages}
        self.needed_early = self._services_batch_stages_wait_for()
        self.results = {
            stage.name: StageResult(stage.name, stage.kind,
                                    max_attempts=1 + (stage.retries if stage.is_batch else 0))
            for stage in self.stages
        }
        self._events: queue.Queue = queue.Queue()
        self._workers: dict[str, threading.Thread] = {}
        self._aborting = threading.Event()
        # What may hold a pending stage back, in order: the first reason given is the
        # one shown; a stage starts when none holds it.
        self.gates: list[Callable[[ir.Stage], Waiting | None]] = [
            self._wait_for_dependencies, self._wait_for_batch_stages, self._wait_for_window, self._wait_for_slot,
        ]
        self.gpus: GpuPool | None = None
        if gpus is not None:
            self.use_gpus(gpus)

    def use_gpus(self, gpus: Sequence[str]) -> None:
        """The machine's GPU device ids, once known (before :meth:`run`): GPU stages
        then wait for free ones and get their own."""
        self.gpus = GpuPool(gpus)
        self.gates.append(self._wait_for_gpus)

    def _services_batch_stages_wait_for(self) -> frozenset[str]:
        """Serve stages a selected batch stage waits for, directly or through serve stages."""
        early: set[str] = set()
        for stage in reversed(self.stages):  # dependants before their dependencies
            if stage.is_batch or stage.name in early:
                early.update(d for d in self.needs[stage.name] if not self.by_name[d].is_batch)
        return frozenset(early)

    # -- the scheduling loop ------------------------------------------------------------

    def run(self) -> RunResult:
        try:
            while True:
                self._start_ready()
                if not any(result.status.is_active for result in self.results.values()):
                    self._fail_starved()
                    break
                try:
                    event = self._events.get(timeout=self.POLL)
                except queue.Empty:
                    continue
                self._handle(event)
        except BaseException:
            self._abort()
            raise
        self._skip_unstarted()
        return RunResult([self.results[stage.name] for stage in self.stages])

    def _running(self) -> int:
        return len(self._workers)

    def _batch_settled(self) -> bool:
        return all(self.results[stage.name].status not in (Status.PENDING, Status.RUNNING)
                   for stage in self.stages if stage.is_batch)

    def _run_failed(self) -> bool:
        return any(result.status.is_failure for result in self.results.values())

    # -- gates: why a pending stage waits --------------------------------------------------

    def _wait_for_dependencies(self, stage: ir.Stage) -> Waiting | None:
        waiting = [d for d in self.needs[stage.name] if self.results[d].status not in COMPLETE]
        return Waiting("dependencies", f"waiting for {_names(waiting)}") if waiting else None

    def _wait_for_batch_stages(self, stage: ir.Stage) -> Waiting | None:
        if stage.is_batch or stage.name in self.needed_early or self._batch_settled():
            return None
        return Waiting("services", "waiting for the batch stages to finish (serve stages start last)")

    def _wait_for_window(self, stage: ir.Stage) -> Waiting | None:
        """An instance of a matrix stage with `max_parallel` waits while that many of its run."""
        matrix = stage.instance.matrix if stage.instance is not None else None
        if matrix is None or matrix.max_parallel is None:
            return None
        running = sum(1 for name in self._workers if self.by_name[name].group == matrix.stage)  # at most --jobs
        if running < matrix.max_parallel:
            return None
        return Waiting("window", f"waiting for an instance of `{matrix.stage}` to finish "
                                 f"({running} running, max_parallel {matrix.max_parallel})")

    def _wait_for_slot(self, stage: ir.Stage) -> Waiting | None:
        running = self._running()
        if running < self.jobs:
            return None
        return Waiting("slot", f"waiting for a free slot ({running} running, --jobs {self.jobs})")

    def _wait_for_gpus(self, stage: ir.Stage) -> Waiting | None:
        assert self.gpus is not None
        need = GpuPool.demand(stage)
        if need <= len(self.gpus.free):
            return None
        return Waiting("gpus", f"waiting for GPUs (needs {need} of the {len(self.gpus.devices)})")

    def _fail_starved(self) -> None:
        """Stages still waiting for GPUs when nothing runs: services hold the rest."""
        if self.gpus is None:
            return
        holders = [name for name in self.gpus.held if self.results[name].status is Status.SERVING]
        for stage in self.stages:
            result = self.results[stage.name]
            if result.status is not Status.PENDING or result.waiting is None or result.waiting.kind != "gpus":
                continue
            need, total = GpuPool.demand(stage), len(self.gpus.devices)
            result.status, result.waiting, result.ended = Status.FAILED, None, self.clock()
            if need > total:
                result.message = f"needs {_gpus_text(need)}; the machine has {total}"
            else:
                hold = f"{_names(holders)} holds" if len(holders) == 1 else f"{_names(holders) or 'services'} hold"
                result.message = (f"needs {_gpus_text(need)}, but only {len(self.gpus.free)} of the {total} are "
                                  f"free: {hold} the rest while serving")
            self.reporter.stage_changed(result)
            self._skip_downstream(stage.name)

    def _start_ready(self) -> None:
        stop = self._run_failed()  # after a failure nothing new starts (but batch stages with --keep-going)
        for stage in self.stages:
            result = self.results[stage.name]
            if result.status is not Status.PENDING:
                continue
            if stop and not (self.keep_going and stage.is_batch):
                continue  # _skip_unstarted says why once the running ones finished
            waiting = None
            for gate in self.gates:
                waiting = gate(stage)
                if waiting is not None:
                    break
            if waiting is None:
                result.waiting = None
                self._launch(stage, self.gpus.take(stage) if self.gpus is not None else ())
            elif waiting != result.waiting:
                result.waiting = waiting
                if waiting.worth_announcing:
                    self.reporter.stage_changed(result)

    def _launch(self, stage: ir.Stage, devices: Devices = ()) -> None:
        result = self.results[stage.name]
        result.status = Status.RUNNING if stage.is_batch else Status.STARTING
        result.started = self.clock()
        result.attempts = 0 if stage.is_batch else 1
        target = self._run_batch if stage.is_batch else self._start_service
        worker = threading.Thread(target=target, args=(stage, devices), name=f"aipc-{stage.name}", daemon=True)
        self._workers[stage.name] = worker
        if not stage.is_batch:
            self.reporter.stage_changed(result)
        worker.start()

    def _handle(self, event) -> None:
        result = self.results[event.name]
        if isinstance(event, _Note):
            self.reporter.note(event.text)
        elif isinstance(event, _AttemptStarted):
            result.attempts = event.attempt
            self.reporter.stage_changed(result)
        elif isinstance(event, _AttemptFailed):
            result.exit_code = event.outcome.exit_code
            result.message = _describe(event.outcome, retrying=True)
            self.reporter.stage_changed(result)
            result.message = None
        elif isinstance(event, _Finished):
            self._workers.pop(event.name, None)
            if self.gpus is not None and not (event.outcome.ok and not result.is_batch):
                self.gpus.give_back(event.name)  # a service that serves keeps its GPUs
            self._finish(result, event.outcome)

    def _finish(self, result: StageResult, outcome: Attempt) -> None:
        # A service that came up has no exit code (yet): it runs on.
        result.exit_code = None if outcome.ok and not result.is_batch else outcome.exit_code
        if not (outcome.ok and not result.is_batch):
            result.ended = self.clock()  # a service's time runs on while it serves
        if outcome.ok and outcome.cached:
            result.status = Status.CACHED
        elif outcome.ok:
            result.status = Status.SUCCEEDED if result.is_batch else Status.SERVING
        elif outcome.cancelled:
            result.status = Status.CANCELLED
        elif outcome.timed_out:
            result.status = Status.TIMED_OUT
        else:
            result.status = Status.FAILED
        if not outcome.ok:
            result.message = _describe(outcome, retrying=False)
            stage = self.by_name[result.name]
            if outcome.timed_out and stage.timeout:
                result.message = f"killed: its timeout of {stage.timeout}s passed"
        self.reporter.stage_changed(result)
        if result.status.is_failure:
            self._skip_downstream(result.name)

    def _skip_downstream(self, failed: str) -> None:
        blocked = {failed}
        for stage in self.stages:
            if any(d in blocked for d in self.needs[stage.name]):
                blocked.add(stage.name)
                result = self.results[stage.name]
                if result.status is Status.PENDING:
                    result.status, result.waiting = Status.SKIPPED, None
                    result.message = f"not started: upstream stage `{failed}` did not succeed"
                    self.reporter.stage_changed(result)

    def _skip_unstarted(self) -> None:
        failed = [result.name for result in self.results.values() if result.status.is_failure]
        for result in self.results.values():
            if result.status is Status.PENDING:
                result.status, result.waiting = Status.SKIPPED, None
                result.message = (f"not started: the run failed at {_names(failed)}" if failed
                                  else "not started")
                self.reporter.stage_changed(result)

    # -- workers --------------------------------------------------------------------------

    def _run_batch(self, stage: ir.Stage, devices: Devices) -> None:
        deadline = self.clock() + stage.timeout if stage.timeout else None
        attempts = 1 + stage.retries
        outcome = Attempt(cancelled=True)
        number = 0
        decision = None
        try:
            if self.cache is not None:
                decision = self.cache.decide(stage)
                if decision.cached:
                    self._events.put(_Finished(stage.name, Attempt(exit_code=0, cached=True), 0))
                    return
                if decision.reason:
                    self._events.put(_Note(stage.name, f"{stage.name}: runs, {decision.reason}"))
            for number in range(1, attempts + 1):
                if self._aborting.is_set():
                    outcome = Attempt(cancelled=True)
                    break
                if deadline is not None and self.clock() >= deadline:
                    outcome = Attempt(timed_out=True, exit_code=outcome.exit_code)
                    break
                self._events.put(_AttemptStarted(stage.name, number))
                outcome = self.driver.run_batch(stage, number, deadline, devices)
                if outcome.ok or outcome.timed_out or outcome.cancelled or outcome.error:
                    break
                if number < attempts:
                    self._events.put(_AttemptFailed(stage.name, number, outcome))
            if outcome.ok and self.cache is not None:
                try:
                    self.cache.record(stage, decision.parts if decision is not None else {}, dict(outcome.outputs))
                except Exception as error:  # noqa: BLE001 - the stage succeeded all the same
                    self._events.put(_Note(stage.name, f"{stage.name}: could not record it in the cache: {error}"))
        except Exception as error:  # noqa: BLE001 - a driver bug must not hang the run
            outcome = Attempt(error=f"internal error in the runner: {type(error).__name__}: {error}")
        if self._aborting.is_set() and not outcome.ok:
            outcome = Attempt(cancelled=True, exit_code=outcome.exit_code)
        self._events.put(_Finished(stage.name, outcome, number))

    def _start_service(self, stage: ir.Stage, devices: Devices) -> None:
        try:
            outcome = self.driver.start_service(stage, devices)
        except Exception as error:  # noqa: BLE001
            outcome = Attempt(error=f"internal error in the runner: {type(error).__name__}: {error}")
        if self._aborting.is_set() and not outcome.ok:
            outcome = Attempt(cancelled=True)
        self._events.put(_Finished(stage.name, outcome, 1))

    # -- Ctrl-C -------------------------------------------------------------------------

    def _abort(self) -> None:
        self._aborting.set()
        self.driver.abort()
        deadline = time.monotonic() + self.ABORT_GRACE
        for worker in list(self._workers.values()):
            worker.join(timeout=max(0.0, deadline - time.monotonic()))

    def interrupted_result(self) -> RunResult:
        """The state after Ctrl-C (during :meth:`run` or while services were serving),
        for the summary."""
        now = self.clock()
        for result in self.results.values():
            if result.status.is_active:
                result.status, result.ended, result.message = Status.CANCELLED, now, "interrupted"
            elif result.status is Status.SERVING:
                result.status, result.ended, result.message = Status.STOPPED, now, "stopped by Ctrl-C"
            elif result.status is Status.PENDING:
                result.status, result.message = Status.SKIPPED, "not started: interrupted"
        return RunResult([self.results[stage.name] for stage in self.stages], interrupted=True)


def _describe(outcome: Attempt, retrying: bool) -> str:
    if outcome.cancelled:
        return "interrupted"
    if outcome.error:
        return outcome.error
    if outcome.timed_out:
        return "killed: the stage's timeout passed"
    text = f"exited with code {outcome.exit_code}"
    if outcome.detail:
        text += f" ({outcome.detail})"
    return text + ("; retrying" if retrying else "")


def _gpus_text(count: int) -> str:
    return f"{count} GPU{'s' if count != 1 else ''}"


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)
