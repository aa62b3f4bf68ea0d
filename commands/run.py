"""aipc run: run a pipeline on the local Docker engine."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from typing import Callable

from aipc.commands import UsageError
from aipc.commands.common import add_param_option, check_file, parse_params, print_diagnostics

TARGET = "`aipc run`"  # how the warnings about what a Docker container cannot express name this command

HELP = "run a pipeline on the local Docker engine"
DESCRIPTION = """\
Check a .aip file, then run it on the local Docker engine (the `run` extra:
pip install 'aipc[run]'). Batch stages run in dependency order, independent ones
in parallel (at most --jobs at a time, and at most max_parallel instances of a
matrix stage), with their retries and timeouts; each line of output is
prefixed with its stage.

When a stage fails (after its retries), no new stage starts: the stages already
running finish, the others are skipped, and the run exits 1 naming the failed
stage, repeating its last lines and the command that re-runs from it. With
--keep-going every batch stage whose dependencies succeeded still runs.

A serve stage that a batch stage waits for (`after`) starts as soon as its own
dependencies allow, and the batch stage once it is healthy; the other serve
stages start last, once the batch stages succeeded. Services keep running: in
the foreground until Ctrl-C, or with --detach until `aipc down FILE`. Ctrl-C
stops and removes the run's containers. A run belongs to the pipeline (its name
and namespace), not to the file name: `aipc ps FILE` shows what runs, `aipc logs
FILE [STAGE]` each stage's output of its last run. Named volumes persist between
runs (`aipc down -v` removes them, and the cache with them); host folders are
relative to the .aip file, and one that does not exist is an error when the run
only reads it. Secrets come from the environment: every key of every secret a
selected stage uses must be set.

A batch stage that already succeeded with the same image (its content, not its
tag), command, env, mounts and input contents, and whose outputs still exist, is
not run again: it is reported as cached. --no-cache and --rerun STAGE force work.

GPUs: a stage that asks for GPUs gets devices of its own and starts once enough
of the machine's GPUs are free (it shows as "waiting for GPUs" until then);
stages that run at the same time never share one. The machine's NVIDIA GPUs are
counted with nvidia-smi in a container, or given with --gpus N (needed for AMD
GPUs). --gpu-request env hands containers their GPUs through
NVIDIA_VISIBLE_DEVICES, for engines whose default runtime is the NVIDIA
container runtime.

exit status: 0 success, 1 errors in the input, a failed stage or no Docker
engine, 2 usage, 130 interrupted"""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def publish_address(text: str) -> str:
    from aipc.backends.docker import publish_address as parse  # no YAML, no Docker SDK

    try:
        return parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def configure(parser) -> None:
    from aipc.backends.compose import gpu_count

    parser.add_argument("file", metavar="FILE", help="the .aip file")
    add_param_option(parser)
    selection = parser.add_mutually_exclusive_group()
    selection.add_argument("--only", action="append", default=[], metavar="STAGE[,STAGE...]",
                           help="run just these stages (comma-separated, or --only again; a matrix stage's name "
                                "means all of its instances); the stages they depend on are not run and must "
                                "have produced their data already")
    selection.add_argument("--from", dest="from_stage", metavar="STAGE",
                           help="run this stage (a matrix stage: all of its instances) and everything downstream of it")
    parser.add_argument("-k", "--keep-going", action="store_true",
                        help="after a failure, still run every batch stage whose dependencies succeeded "
                             "(by default no new stage starts after a failure; running ones finish)")
    parser.add_argument("-j", "--jobs", type=positive_int, default=max(1, os.cpu_count() or 1), metavar="N",
                        help="run at most N stages at a time (default: the number of CPUs)")
    add_cache_arguments(parser)
    parser.add_argument("-d", "--detach", action="store_true",
                        help="return once the serve stages are up, leaving them running (stop: aipc down FILE)")
    parser.add_argument("--progress", choices=("auto", "live", "plain"), default="auto",
                        help="live status table or plain lines (default: live on a terminal)")
    parser.add_argument("--publish-address", type=publish_address, default="127.0.0.1", metavar="ADDRESS",
                        help="host address serve stages publish their ports on (replica n of `port` on "
                             "EXPOSE+n-1), an IP address or localhost; default 127.0.0.1, 0.0.0.0 for every "
                             "interface")
    parser.add_argument("--health-timeout", type=positive_seconds, default=None, metavar="SECONDS",
                        help="how long a serve stage may take to become healthy (default: what its health "
                             "check allows, `start` and then `failures` checks)")
    parser.add_argument("--gpus", type=gpu_count, metavar="N",
                        help="the machine has N GPUs (device ids 0 to N-1); default: count the NVIDIA GPUs with "
                             "nvidia-smi when a selected stage needs GPUs")
    parser.add_argument("--gpu-request", choices=("device", "env"), default="device",
                        help="how a container gets its GPUs: a Docker device request (default), or env: "
                             "NVIDIA_VISIBLE_DEVICES, read by the NVIDIA container runtime when it is the "
                             "engine's default runtime (other containers get `void`)")


def add_cache_arguments(parser) -> None:
    """--no-cache and --rerun, of `aipc run` and `aipc plan --cache`."""
    parser.add_argument("--no-cache", action="store_true",
                        help="run every selected batch stage, even one that already succeeded with the same "
                             "image, command, env, mounts and inputs (what it leaves is recorded all the same)")
    parser.add_argument("--rerun", action="append", default=[], metavar="STAGE",
                        help="run this stage and every stage downstream of it even if cached (repeatable; a "
                             "matrix stage's name means all of its instances)")


def rerun_stages(pipeline, names: list[str]) -> set[str]:
    """The stages --rerun names, and every stage downstream of them."""
    from aipc.runner.selection import downstream, stages_named

    rerun: set[str] = set()
    for stage in names:
        if not stages_named(pipeline, stage):
            raise UsageError(f"--rerun: the pipeline has no stage `{stage}`")
        rerun |= downstream(pipeline, stage)
    return rerun


def error(text: str) -> None:
    print(f"aipc run: error: {text}", file=sys.stderr)


class Interrupts:
    """SIGINT, SIGTERM and SIGHUP (the terminal closed) raise KeyboardInterrupt once;
    later ones are ignored so the clean-up that follows the first cannot itself be
    cut short."""

    def __init__(self, note) -> None:
        self.note = note
        self.fired = False
        self.previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.fired:
            self.note("still stopping and removing the run's containers...")
            return
        self.fired = True
        raise KeyboardInterrupt

    def __enter__(self) -> "Interrupts":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM)):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def run(args) -> int:
    if args.file == "-":
        raise UsageError("aipc run needs a file, not stdin: host volumes are relative to it and "
                         "`aipc down FILE` finds the run's containers by it")
    checked = check_file(args.file, parse_params(args.params))
    print_diagnostics(checked.diagnostics, checked.sources, "human", "auto", sys.stderr)  # warnings too
    pipeline = checked.pipeline
    if pipeline is None:
        return 1

    from aipc.backends.docker import container_specs
    from aipc.diagnostics import Diagnostics
    from aipc.runner.selection import RunNames, SelectionError, missing_secrets, select_stages

    only = [name.strip() for value in args.only for name in value.split(",") if name.strip()]
    if args.only and not only:
        raise UsageError("--only needs the name of a stage")
    try:
        selected = select_stages(pipeline, only, args.from_stage)
    except SelectionError as problem:
        raise UsageError(str(problem)) from None
    rerun = rerun_stages(pipeline, args.rerun)
    # Each stage's container, as docker-compose would have it; the same warnings for what Docker cannot express.
    sink = Diagnostics(checked.path)
    specs = container_specs(pipeline, [pipeline.stage(name) for name in selected], sink, TARGET)
    print_diagnostics(sink.sorted(), checked.sources, "human", "auto", sys.stderr)
    missing = missing_secrets(pipeline, selected, os.environ)
    if missing:
        error("secrets need these environment variables, which are not set: " + ", ".join(missing))
        return 1

    try:
        from aipc.runner.docker_driver import DockerDriver, EngineUnavailable, PreflightError, connect
        from aipc.runner.report import make_reporter
        from aipc.runner.scheduler import Scheduler, Status
    except ImportError as missing_module:
        error(f"`aipc run` needs the `run` extra ({missing_module.name} is not installed): "
              "pip install 'aipc[run]'")
        return 1
    try:
        client = connect()
    except EngineUnavailable as problem:
        error(str(problem))
        return 1

    from aipc.runner.report import Ending
    from aipc.runner.selection import PipelineId
    from aipc.runner.state import PipelineState, RunRecorder

    names = RunNames.new(pipeline, args.file)
    shown = make_reporter(args.progress, selected)
    reporter = RunRecorder(PipelineState(PipelineId.of(pipeline)), names.run_id, names.file, list(selected), shown)
    driver = DockerDriver(client, pipeline, specs, names, reporter.log, reporter.note, environ=dict(os.environ),
                          base_dir=os.path.dirname(os.path.realpath(args.file)), bind_address=args.publish_address,
                          health_timeout=args.health_timeout, gpu_request=args.gpu_request)
    from aipc.runner.cache import RunCache
    cache = RunCache(client, pipeline, specs, names, no_cache=args.no_cache, rerun=rerun)
    scheduler = Scheduler(pipeline, selected, driver, reporter, args.jobs, keep_going=args.keep_going, cache=cache)
    started = time.monotonic()

    def finish(result, outcome: str) -> None:
        """The summary, and the run's end recorded for `aipc logs` and `aipc ps`."""
        tails = {stage.name: reporter.tail(stage.name) for stage in result.failed}
        shown.summary(result, Ending(time.monotonic() - started, tails, rerun_command(args)))
        reporter.close(result.stages, outcome)

    keep_services = False
    with Interrupts(reporter.note):
        try:
            try:
                driver.prepare([pipeline.stage(name) for name in selected])
                gpus = machine_gpus(args, driver, [pipeline.stage(name) for name in selected], specs)
            except PreflightError as problem:
                for text in problem.problems:
                    error(text)
                return 1
            if gpus is not None:
                scheduler.use_gpus(gpus)
            reporter.open()
            reporter.note(f"run {names.run_id} of {names.pipeline}: {intro(pipeline, selected, args.jobs)}")
            shown.start([scheduler.results[name] for name in selected])
            result = scheduler.run()
            if result.failed or not result.serving:
                for stage in result.serving:  # a failed run does not leave services behind
                    stage.status, stage.message = Status.STOPPED, "stopped: the run failed"
                finish(result, "failed" if result.failed else "succeeded")
                return 1 if result.failed else 0
            for replica in driver.services():
                if replica.url:
                    reporter.note(f"{replica.stage} (replica {replica.number}) is serving at {replica.url}")
            if args.detach:
                keep_services = True
                finish(result, "serving")
                reporter.note(f"the serve stages keep running; see them with `aipc ps {args.file}`, their "
                              f"output with `aipc logs {args.file}`, stop them with `aipc down {args.file}`")
                return 0
            reporter.note("serving; press Ctrl-C to stop and remove the services")
            replicas = serve_in_foreground(driver, reporter, result)
            finish(result, "stopped")
            return 1 if any(r.exit_code for r in replicas) else 0
        except KeyboardInterrupt:
            with contextlib.suppress(KeyboardInterrupt):
                reporter.note("interrupted: stopping and removing the run's containers")
                driver.abort()
            finish(scheduler.interrupted_result(), "interrupted")
            return 130
        finally:
            shown.stop()
            driver.close(keep_services=keep_services)


def machine_gpus(args, driver, stages, specs) -> list[str] | None:
    """The machine's GPU device ids, when a stage needs GPUs: ``--gpus N``, or the
    NVIDIA GPUs the engine has; None leaves GPUs unassigned (AMD ones without
    --gpus: each stage asks for a number). Raises PreflightError for a stage that
    needs more GPUs than there are."""
    from aipc.backends.devices import device_demand
    from aipc.runner.docker_driver import PreflightError

    needing = [stage for stage in stages if device_demand(stage)]
    if args.gpus is not None:
        gpus = [str(number) for number in range(args.gpus)]
        source = "--gpus"
    elif any(specs[stage.name].gpu.driver == "nvidia" for stage in needing):
        gpus = driver.count_gpus(specs[needing[0].name].image)
        source = "found with nvidia-smi"
    else:
        return None
    too_many = [f"`{stage.name}` needs {device_demand(stage)}" for stage in needing if device_demand(stage) > len(gpus)]
    if too_many:
        raise PreflightError([f"the machine has {len(gpus)} GPU{'s' if len(gpus) != 1 else ''} ({source}), and "
                              + ", ".join(too_many) + "; ask for fewer, or run it where there are more"])
    if needing:
        driver.note(f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''} ({source}): a GPU stage starts once its "
                    "GPUs are free")
    return gpus


def intro(pipeline, selected, jobs: int) -> str:
    """`3 stages, at most 2 at a time`: the bound only when more could run together."""
    from collections import Counter

    widest = max(Counter(pipeline.stage(name).level for name in selected).values(), default=0)
    text = f"{len(selected)} stage{'s' if len(selected) != 1 else ''}"
    return text + (f", at most {jobs} at a time" if widest > jobs else "")


def rerun_command(args) -> Callable[[str], str]:
    """The command line that runs the pipeline again from a stage, with the same parameters."""
    import shlex

    def command(stage: str) -> str:
        params = [word for value in args.params for word in ("-p", value)]
        return shlex.join(["aipc", "run", args.file, *params, "--from", stage])
    return command


def serve_in_foreground(driver, reporter, result):
    """Stream the services' logs until they all exit on their own (Ctrl-C, the usual
    end, is handled by the caller); returns the replicas with their exit codes."""
    from aipc.runner.scheduler import Status

    def exited(replica) -> None:
        reporter.note(f"{replica.stage} (replica {replica.number}) exited with code {replica.exit_code}")

    replicas = driver.wait_services(exited)
    for stage in result.serving:
        codes = [r.exit_code for r in replicas if r.stage == stage.name]
        stage.status = Status.STOPPED
        stage.exit_code = next((code for code in codes if code), codes[0] if codes else None)
        stage.ended = time.monotonic()
    return replicas
