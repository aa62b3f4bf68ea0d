"""The scheduler with a fake driver: order, the --jobs bound, retries, timeouts,
failure propagation, serve stages, Ctrl-C, and --only/--from selection."""

from __future__ import annotations

import threading
import time

import pytest

from aipc.runner.scheduler import Attempt, Scheduler, Status, Waiting
from aipc.runner.selection import SelectionError, missing_secrets, select_stages
from tests.helpers import compile_ok

IMAGE = 'pipeline "fake" { image = "busybox:1.36" }\n'


class FakeDriver:
    """Each stage sleeps ``durations[name]`` seconds and exits with the next code of
    ``codes[name]`` (0 when absent); records what ran when."""

    def __init__(self, durations=None, codes=None, errors=None, unhealthy=()):
        self.durations = durations or {}
        self.codes = {name: list(values) for name, values in (codes or {}).items()}
        self.errors = errors or {}
        self.unhealthy = set(unhealthy)
        self.lock = threading.Lock()
        self.spans: dict[str, list[tuple[float, float]]] = {}
        self.services: list[str] = []
        self.running = 0
        self.peak = 0
        self.aborted = threading.Event()
        self.abort_calls = 0
        self.started = threading.Event()  # set when the first stage starts running
        self.devices: dict[str, list] = {}  # the GPUs each attempt or service was given

    def _sleep(self, seconds: float, deadline: float | None) -> str:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.aborted.is_set():
                return "cancelled"
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"
            time.sleep(0.005)
        return "done"

    def run_batch(self, stage, attempt, deadline, devices=()):
        with self.lock:
            self.devices.setdefault(stage.name, []).append(devices)
            self.running += 1
            self.peak = max(self.peak, self.running)
        self.started.set()
        started = time.monotonic()
        try:
            if stage.name in self.errors:
                return Attempt(error=self.errors[stage.name])
            how = self._sleep(self.durations.get(stage.name, 0.02), deadline)
            if how == "cancelled":
                return Attempt(cancelled=True)
            if how == "timeout":
                return Attempt(timed_out=True, exit_code=137)
            codes = self.codes.get(stage.name) or [0]
            code = codes.pop(0) if len(codes) > 1 else codes[0]
            return Attempt(exit_code=code)
        finally:
            with self.lock:
                self.running -= 1
                self.spans.setdefault(stage.name, []).append((started, time.monotonic()))

    def start_service(self, stage, devices=()):
        with self.lock:
            self.devices.setdefault(stage.name, []).append(devices)
            self.services.append(stage.name)
            self.spans.setdefault(stage.name, []).append((time.monotonic(), time.monotonic()))
        if stage.name in self.unhealthy:
            return Attempt(error="not healthy after 1s")
        return Attempt(exit_code=0)

    def abort(self):
        self.abort_calls += 1
        self.aborted.set()

    def first_start(self, name):
        return self.spans[name][0][0]

    def last_end(self, name):
        return self.spans[name][-1][1]


class Events:
    def __init__(self):
        self.changes: list[tuple[str, Status, int]] = []
        self.waiting: list[tuple[str, str]] = []  # (stage, why) as announced
        self.notes: list[str] = []

    def stage_changed(self, result):
        self.changes.append((result.name, result.status, result.attempts))
        if result.waiting is not None:
            self.waiting.append((result.name, result.waiting.text))

    def note(self, text):
        self.notes.append(text)


def schedule(source: str, driver: FakeDriver, jobs: int = 4, only=(), start=None, keep_going=False, gpus=None):
    pipeline = compile_ok(IMAGE + source)
    selected = select_stages(pipeline, only, start)
    events = Events()
    result = Scheduler(pipeline, selected, driver, events, jobs, keep_going=keep_going, gpus=gpus).run()
    return result, events


def statuses(result) -> dict[str, Status]:
    return {stage.name: stage.status for stage in result.stages}


DIAMOND = """
data a { command = ["a"] }
data b { after = [a] command = ["b"] }
data c { after = [a] command = ["c"] }
train d { after = [b, c] command = ["d"] }
"""


def test_dependencies_run_in_order_and_independent_stages_overlap():
    driver = FakeDriver(durations={"a": 0.05, "b": 0.2, "c": 0.2, "d": 0.05})
    result, _ = schedule(DIAMOND, driver)
    assert statuses(result) == dict.fromkeys("abcd", Status.SUCCEEDED)
    assert driver.first_start("b") >= driver.last_end("a")
    assert driver.first_start("c") >= driver.last_end("a")
    assert driver.first_start("d") >= max(driver.last_end("b"), driver.last_end("c"))
    # b and c overlap
    assert driver.first_start("c") < driver.last_end("b") and driver.first_start("b") < driver.last_end("c")
    assert driver.peak == 2


def test_jobs_bounds_how_many_stages_run_at_once():
    source = "\n".join(f'data s{i} {{ command = ["x"] }}' for i in range(6))
    driver = FakeDriver(durations={f"s{i}": 0.05 for i in range(6)})
    result, _ = schedule(source, driver, jobs=2)
    assert all(status is Status.SUCCEEDED for status in statuses(result).values())
    assert driver.peak == 2
    driver = FakeDriver(durations={f"s{i}": 0.05 for i in range(6)})
    schedule(source, driver, jobs=1)
    assert driver.peak == 1
    spans = sorted(span for name in driver.spans for span in driver.spans[name])
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:]))


FAILING_BESIDE_A_SLOW_ONE = """
data a { command = ["a"] }
data slow { command = ["slow"] }
data b { after = [a] command = ["b"] }
train c { after = [b] command = ["c"] }
train d { after = [slow] command = ["d"] }
"""


def test_after_a_failure_running_stages_finish_and_nothing_new_starts():
    driver = FakeDriver(durations={"a": 0.02, "slow": 0.3}, codes={"a": [4]})
    result, events = schedule(FAILING_BESIDE_A_SLOW_ONE, driver)
    assert statuses(result) == {"a": Status.FAILED, "slow": Status.SUCCEEDED, "b": Status.SKIPPED,
                                "c": Status.SKIPPED, "d": Status.SKIPPED}
    assert set(driver.spans) == {"a", "slow"}  # d's dependency succeeded, but after the failure
    assert result.get("a").exit_code == 4
    assert [stage.name for stage in result.failed] == ["a"]
    assert "upstream stage `a`" in result.get("c").message
    assert result.get("d").message == "not started: the run failed at `a`"
    assert ("b", Status.SKIPPED, 0) in events.changes
    assert result.done == 1


def test_keep_going_runs_every_stage_whose_dependencies_succeeded():
    driver = FakeDriver(durations={"a": 0.02, "slow": 0.3}, codes={"a": [4]})
    result, _ = schedule(FAILING_BESIDE_A_SLOW_ONE, driver, keep_going=True)
    assert statuses(result) == {"a": Status.FAILED, "slow": Status.SUCCEEDED, "b": Status.SKIPPED,
                                "c": Status.SKIPPED, "d": Status.SUCCEEDED}
    assert set(driver.spans) == {"a", "slow", "d"}
    assert [stage.name for stage in result.failed] == ["a"] and result.done == 2


def test_keep_going_starts_no_service_after_a_failure():
    driver = FakeDriver(codes={"other": [1]})
    result, _ = schedule(SERVICES, driver, keep_going=True)
    assert result.get("prep").status is Status.SUCCEEDED
    assert driver.services == [] and result.get("api").status is Status.SKIPPED


def test_retries_run_until_success_and_count_attempts():
    source = 'data flaky { command = ["x"] retries = 3 }\ndata broken { command = ["x"] retries = 1 }'
    driver = FakeDriver(codes={"flaky": [1, 1, 0], "broken": [2]})
    result, events = schedule(source, driver)
    assert result.get("flaky").status is Status.SUCCEEDED
    assert result.get("flaky").attempts == 3 and result.get("flaky").max_attempts == 4
    assert len(driver.spans["flaky"]) == 3
    assert result.get("broken").status is Status.FAILED and result.get("broken").attempts == 2
    assert [change for change in events.changes if change[0] == "flaky" and change[1] is Status.RUNNING] == [
        ("flaky", Status.RUNNING, 1), ("flaky", Status.RUNNING, 1),
        ("flaky", Status.RUNNING, 2), ("flaky", Status.RUNNING, 2), ("flaky", Status.RUNNING, 3)]


def test_an_engine_error_is_not_retried():
    driver = FakeDriver(errors={"gpu": "could not select device driver"})
    result, _ = schedule('train gpu { command = ["x"] retries = 2 }', driver)
    stage = result.get("gpu")
    assert stage.status is Status.FAILED and stage.attempts == 1
    assert stage.message == "could not select device driver"


def test_a_timeout_kills_the_stage_and_is_not_retried():
    driver = FakeDriver(durations={"slow": 5.0})
    started = time.monotonic()
    result, _ = schedule('data slow { command = ["x"] timeout = 1s retries = 2 }\n'
                         'train after_slow { after = [slow] command = ["y"] }', driver)
    assert time.monotonic() - started < 3
    assert result.get("slow").status is Status.TIMED_OUT
    assert result.get("slow").exit_code == 137
    assert "timeout of 1s" in result.get("slow").message
    assert len(driver.spans["slow"]) == 1
    assert result.get("after_slow").status is Status.SKIPPED


SERVICES = """
data prep { command = ["p"] }
data other { command = ["o"] }
serve api { after = [prep] command = ["s"] port = 8080 }
serve ui { after = [api] command = ["u"] port = 8081 }
"""


def test_serve_stages_start_after_every_batch_stage_and_after_their_services():
    driver = FakeDriver(durations={"prep": 0.02, "other": 0.3})
    result, _ = schedule(SERVICES, driver)
    assert statuses(result) == {"prep": Status.SUCCEEDED, "other": Status.SUCCEEDED,
                                "api": Status.SERVING, "ui": Status.SERVING}
    assert driver.services == ["api", "ui"]
    assert driver.first_start("api") >= driver.last_end("other")
    assert [stage.name for stage in result.serving] == ["api", "ui"]


def test_no_service_starts_after_a_failure():
    driver = FakeDriver(codes={"other": [1]})
    result, _ = schedule(SERVICES, driver)
    assert driver.services == []
    assert result.get("api").status is Status.SKIPPED
    assert "the run failed at `other`" in result.get("api").message


def test_an_unhealthy_service_fails_and_skips_the_services_after_it():
    driver = FakeDriver(unhealthy={"api"})
    result, _ = schedule(SERVICES, driver)
    assert result.get("api").status is Status.FAILED
    assert result.get("ui").status is Status.SKIPPED
    assert driver.services == ["api"]


WAITED_FOR = """
data slow { command = ["slow"] }
serve db { command = ["db"] port = 5432 }
serve cache { after = [db] command = ["cache"] port = 6379 }
data load { after = [cache] command = ["load"] }
serve api { after = [load] command = ["api"] port = 8080 }
serve ui { command = ["ui"] port = 8081 }
"""


def test_a_service_a_batch_stage_waits_for_starts_early_and_the_batch_stage_once_it_is_healthy():
    # `load` waits for `cache`, which waits for `db`: both start at once, while `slow`
    # runs; `load` starts once `cache` serves. `api` and `ui` still start last.
    driver = FakeDriver(durations={"slow": 0.4, "load": 0.02})
    result, events = schedule(WAITED_FOR, driver)
    assert set(statuses(result).values()) <= {Status.SUCCEEDED, Status.SERVING}
    assert driver.services[:2] == ["db", "cache"]
    assert driver.first_start("db") < driver.last_end("slow")
    assert driver.first_start("load") >= driver.first_start("cache")
    serving = [i for i, change in enumerate(events.changes) if change[:2] == ("cache", Status.SERVING)]
    running = [i for i, change in enumerate(events.changes) if change[:2] == ("load", Status.RUNNING)]
    assert serving[0] < running[0]
    assert sorted(driver.services[2:]) == ["api", "ui"]
    assert min(driver.first_start("api"), driver.first_start("ui")) >= driver.last_end("slow")


def test_a_batch_stage_after_an_unhealthy_service_is_skipped():
    driver = FakeDriver(unhealthy={"db"})
    result, _ = schedule(WAITED_FOR, driver)
    assert result.get("db").status is Status.FAILED
    assert {name: result.get(name).status for name in ("cache", "load", "api", "ui")} == dict.fromkeys(
        ("cache", "load", "api", "ui"), Status.SKIPPED)
    assert "load" not in driver.spans and driver.services == ["db"]


def test_no_service_starts_after_a_failure_even_one_a_batch_stage_waits_for():
    driver = FakeDriver(codes={"slow": [1]}, durations={"slow": 0.01})
    result, _ = schedule('data slow { command = ["slow"] }\n'
                         'data gate { after = [slow] command = ["gate"] }\n'
                         'serve db { after = [gate] command = ["db"] port = 5432 }\n'
                         'data load { after = [db] command = ["load"] }\n', driver)
    assert driver.services == [] and result.get("load").status is Status.SKIPPED


def test_ctrl_c_aborts_the_driver_and_marks_the_stages():
    pipeline = compile_ok(IMAGE + DIAMOND)
    driver = FakeDriver(durations={"a": 60.0})
    events = Events()
    scheduler = Scheduler(pipeline, select_stages(pipeline), driver, events, jobs=2)
    # Ctrl-C while `a` runs: sent when the driver has started it, not after a fixed
    # delay (on a loaded machine a delay may end before the scheduler is even running).
    interrupter = threading.Thread(target=_interrupt_main_once, args=(driver.started,), daemon=True)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        interrupter.start()
        scheduler.run()
    # Far less than `a` would take: the abort ended it, nothing waited for it.
    assert time.monotonic() - started < 30
    assert driver.abort_calls == 1
    result = scheduler.interrupted_result()
    assert result.interrupted
    assert statuses(result) == {"a": Status.CANCELLED, "b": Status.SKIPPED, "c": Status.SKIPPED,
                                "d": Status.SKIPPED}


def _interrupt_main_once(running: threading.Event):
    import _thread

    running.wait(timeout=60)
    _thread.interrupt_main()


def test_only_runs_exactly_the_named_stages_without_their_dependencies():
    driver = FakeDriver()
    result, _ = schedule(DIAMOND, driver, only=["b", "d"])
    assert [stage.name for stage in result.stages] == ["b", "d"]
    assert set(driver.spans) == {"b", "d"}
    assert driver.first_start("d") >= driver.last_end("b")  # order among the selected stays


def test_from_runs_a_stage_and_everything_downstream():
    driver = FakeDriver()
    result, _ = schedule(DIAMOND, driver, start="b")
    assert [stage.name for stage in result.stages] == ["b", "d"]
    pipeline = compile_ok(IMAGE + DIAMOND)
    assert select_stages(pipeline, start="a") == ("a", "b", "c", "d")
    assert select_stages(pipeline, start="d") == ("d",)
    assert select_stages(pipeline) == ("a", "b", "c", "d")


def test_unknown_stage_names_suggest_the_closest():
    pipeline = compile_ok(IMAGE + DIAMOND + 'data ingest { command = ["i"] }')
    with pytest.raises(SelectionError, match=r"--only: `ingets` is not a stage of `fake`; did you mean `ingest`"):
        select_stages(pipeline, only=["ingets"])
    with pytest.raises(SelectionError, match=r"--from: `zzz` .* the stages are: a, b, c, d, ingest"):
        select_stages(pipeline, start="zzz")


def test_missing_secrets_are_listed_for_the_selected_stages_only():
    pipeline = compile_ok(IMAGE + """
    secret s3 { keys = ["AWS_KEY", "AWS_SECRET"] }
    secret hf { keys = ["HF_TOKEN"] }
    data a { command = ["a"] secrets = [s3] }
    train b { after = [a] command = ["b"] secrets = [hf, s3] }
    """)
    environ = {"AWS_KEY": "x"}
    assert missing_secrets(pipeline, ("a", "b"), environ) == ("AWS_SECRET", "HF_TOKEN")
    assert missing_secrets(pipeline, ("a",), environ) == ("AWS_SECRET",)
    assert missing_secrets(pipeline, ("a",), {"AWS_KEY": "", "AWS_SECRET": ""}) == ()


def test_jobs_must_be_positive():
    pipeline = compile_ok(IMAGE + DIAMOND)
    with pytest.raises(ValueError):
        Scheduler(pipeline, select_stages(pipeline), FakeDriver(), Events(), jobs=0)


def test_a_pending_stage_says_why_it_waits_and_other_reasons_are_gates():
    pipeline = compile_ok(IMAGE + """
    data a { command = ["a"] }
    data b { command = ["b"] }
    train c { after = [a] command = ["c"] }
    """)
    seen: dict[str, list] = {}

    class Watching(FakeDriver):
        def run_batch(self, stage, attempt, deadline, devices=()):
            outcome = super().run_batch(stage, attempt, deadline, devices)
            for name, result in scheduler.results.items():  # as the scheduler left them meanwhile
                seen.setdefault(name, []).append(result.waiting.text if result.waiting else None)
            return outcome

    events = Events()
    scheduler = Scheduler(pipeline, select_stages(pipeline), Watching(durations={"a": 0.1}), events, jobs=1)
    scheduler.run()
    assert seen["b"][0] == "waiting for a free slot (1 running, --jobs 1)"
    assert seen["c"][0] == "waiting for `a`"
    # a free slot is news (announced), dependencies are not
    announced = [(name, status) for name, status, _ in events.changes if status is Status.PENDING]
    assert announced == [("b", Status.PENDING), ("c", Status.PENDING)]
    assert all(result.waiting is None for result in scheduler.results.values())

    # Another reason is one more gate: here a stage that waits for a made-up resource.
    driver = FakeDriver(durations={"a": 0.1, "c": 0.1})
    events = Events()
    gated = Scheduler(pipeline, select_stages(pipeline), driver, events, jobs=4)

    def gpus_free(stage):
        if stage.name == "b" and gated.results["c"].status is not Status.SUCCEEDED:
            return Waiting("gpus", "waiting for 2 GPUs")
        return None

    gated.gates.append(gpus_free)
    assert all(result.status is Status.SUCCEEDED for result in gated.run().stages)
    assert driver.first_start("b") >= driver.last_end("c")
    assert ("b", Status.PENDING, 0) in events.changes


# ------------------------------------------------------------------ GPUs on one machine

FOUR_GPU_STAGES = "\n".join(f'train t{i} {{ command = ["x"]  resources {{ gpu = 2 }} }}' for i in range(4)) + """
data cpu { command = ["x"] }
"""


def overlapping(driver: FakeDriver, first: str, second: str) -> bool:
    (a_start, a_end), (b_start, b_end) = driver.spans[first][0], driver.spans[second][0]
    return a_start < b_end and b_start < a_end


def test_gpu_stages_wait_for_free_gpus_and_never_share_one():
    driver = FakeDriver(durations={f"t{i}": 0.15 for i in range(4)})
    result, events = schedule(FOUR_GPU_STAGES, driver, jobs=8, gpus=["0", "1", "2", "3"])
    assert all(status is Status.SUCCEEDED for status in statuses(result).values())
    assert driver.peak <= 3  # two GPU stages and the CPU stage at most
    for name in ("t0", "t1", "t2", "t3"):
        (devices,) = driver.devices[name]
        assert len(devices) == 1 and len(devices[0]) == 2  # one container, two GPUs
    for first, second in [("t0", "t1"), ("t0", "t2"), ("t0", "t3"), ("t1", "t2"), ("t1", "t3"), ("t2", "t3")]:
        if overlapping(driver, first, second):
            assert set(driver.devices[first][0][0]).isdisjoint(driver.devices[second][0][0])
    assert sorted(set(events.waiting)) == [("t2", "waiting for GPUs (needs 2 of the 4)"),
                                           ("t3", "waiting for GPUs (needs 2 of the 4)")]
    assert driver.devices["cpu"] == [()]
    # the stages that waited started only once an earlier one had given its GPUs back
    assert min(driver.first_start("t2"), driver.first_start("t3")) >= min(driver.last_end("t0"), driver.last_end("t1"))


def test_a_waiting_stage_is_described_with_the_gpus_it_needs():
    from aipc.runner.report import describe_change

    driver = FakeDriver(durations={"t0": 0.1, "t1": 0.1})
    result, events = schedule('train t0 { command = ["x"] resources { gpu = 2 } }\n'
                              'train t1 { command = ["x"] resources { gpu = 2 } }', driver, gpus=["0", "1", "2"])
    assert statuses(result) == {"t0": Status.SUCCEEDED, "t1": Status.SUCCEEDED}
    assert events.waiting == [("t1", "waiting for GPUs (needs 2 of the 3)")]  # announced once
    waiting = result.get("t1")
    waiting.status, waiting.waiting = Status.PENDING, Waiting("gpus", "waiting for GPUs (needs 2 of the 3)")
    assert describe_change(waiting) == "t1: waiting for GPUs (needs 2 of the 3)"


def test_each_replica_of_a_service_gets_gpus_of_its_own():
    driver = FakeDriver()
    result, _ = schedule('serve api { port = 80  replicas = 3  resources { gpu = 1 } }', driver,
                         gpus=["0", "1", "2", "3"])
    assert result.get("api").status is Status.SERVING
    assert driver.devices["api"] == [(("0",), ("1",), ("2",))]


def test_a_failed_stage_gives_its_gpus_back():
    driver = FakeDriver(codes={"bad": [3]}, durations={"bad": 0.05, "next": 0.05})
    result, _ = schedule('train bad { command = ["x"] resources { gpu = 2 } }\n'
                         'train next { command = ["x"] resources { gpu = 2 } }', driver, gpus=["0", "1"],
                         keep_going=True)
    assert statuses(result) == {"bad": Status.FAILED, "next": Status.SUCCEEDED}
    assert driver.devices["next"] == [(("0", "1"),)]


def test_a_stage_waiting_for_gpus_that_services_hold_fails_and_says_so():
    driver = FakeDriver()
    result, _ = schedule('serve a { port = 80  resources { gpu = 2 } }\n'
                         'serve b { port = 81  resources { gpu = 2 } }', driver, gpus=["0", "1", "2"])
    assert result.get("a").status is Status.SERVING
    assert result.get("b").status is Status.FAILED
    assert result.get("b").message == "needs 2 GPUs, but only 1 of the 3 are free: `a` holds the rest while serving"


def test_without_the_machines_gpus_stages_are_not_held_back():
    driver = FakeDriver(durations={f"t{i}": 0.1 for i in range(4)})
    result, events = schedule(FOUR_GPU_STAGES, driver, jobs=8)
    assert driver.peak == 5 and all(driver.devices[f"t{i}"] == [()] for i in range(4))
    assert events.waiting == []


def test_the_live_view_says_a_stage_waits_for_gpus_not_for_its_dependencies():
    from io import StringIO

    from rich.console import Console

    from aipc.compiler import ir
    from aipc.runner.report import LiveReporter
    from aipc.runner.scheduler import StageResult

    reporter = LiveReporter(["t1", "t2"], Console(file=StringIO()))
    reporter.results = [
        StageResult("t1", ir.StageKind.TRAIN, waiting=Waiting("gpus", "waiting for GPUs (needs 2 of the 4)")),
        StageResult("t2", ir.StageKind.TRAIN, waiting=Waiting("dependencies", "waiting for `t1`"))]
    screen = Console(file=StringIO(), width=120)
    screen.print(reporter._table())
    rows = [row for row in screen.file.getvalue().splitlines() if " t1 " in row or " t2 " in row]
    assert "waiting for GPUs (needs 2 of the 4)" in rows[0] and "waiting for `t1`" in rows[1]


# ------------------------------------------------------------ matrix stages (issue 18)

SWEEP = """
train model {
  matrix  { lr = [1, 2]  seed = [1, 2, 3] }
  max_parallel = 2
  command = ["train", "${matrix.lr}", "${matrix.seed}"]
}
eval score { matrix = model  after = [model]  command = ["score"] }
eval best  { after = [score]  command = ["best"] }
"""
MODELS = [f"model-{lr}-{seed}" for lr in (1, 2) for seed in (1, 2, 3)]


def overlap(driver: FakeDriver, names) -> int:
    """The most of ``names`` that ran at one instant."""
    edges = sorted((t, change) for name in names for start, end in driver.spans[name]
                   for t, change in ((start, 1), (end, -1)))
    running = peak = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return peak


def test_max_parallel_bounds_the_instances_of_a_matrix_stage_not_the_others():
    driver = FakeDriver(durations={**dict.fromkeys(MODELS, 0.1), **{n.replace("model", "score"): 0.3 for n in MODELS}})
    result, _ = schedule(SWEEP, driver, jobs=8)
    assert all(status is Status.SUCCEEDED for status in statuses(result).values())
    assert overlap(driver, MODELS) == 2
    assert overlap(driver, [n.replace("model", "score") for n in MODELS]) > 2  # score has no limit
    for model in MODELS:  # each score instance after its own model instance only
        assert driver.first_start(model.replace("model", "score")) >= driver.last_end(model)
    assert driver.first_start("best") >= max(driver.last_end(n.replace("model", "score")) for n in MODELS)


def test_a_matrix_stage_name_selects_all_of_its_instances():
    pipeline = compile_ok(IMAGE + SWEEP)
    assert select_stages(pipeline, ["model"]) == tuple(MODELS)
    assert select_stages(pipeline, ["score-2-3"]) == ("score-2-3",)
    assert select_stages(pipeline, start="score") == tuple(n.replace("model", "score") for n in MODELS) + ("best",)
    with pytest.raises(SelectionError, match="did you mean `model`"):
        select_stages(pipeline, ["modle"])


def test_a_large_sweep_is_scheduled_in_time_linear_in_its_instances():
    """Each scheduling pass counts what runs once (it used to count it again for
    each stage, and 500 instances took minutes)."""
    values = ", ".join(str(i) for i in range(500))
    source = f'train m {{ matrix {{ x = [{values}] }}  max_parallel = 3  command = ["x"] }}\neval e {{ after = [m] }}'
    driver = FakeDriver(durations=dict.fromkeys([f"m-{i}" for i in range(500)], 0.0))
    started = time.monotonic()
    result, _ = schedule(source, driver, jobs=8)
    assert time.monotonic() - started < 30
    assert all(status is Status.SUCCEEDED for status in statuses(result).values())
    assert driver.peak <= 3
