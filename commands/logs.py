"""aipc logs: what the stages of a pipeline printed when they last ran."""

from __future__ import annotations

import sys
import threading

from aipc.commands import UsageError

HELP = "print what each stage printed the last time `aipc run` ran it"
DESCRIPTION = """\
Print what the stages of the pipeline this .aip file declares printed the last
time `aipc run` ran them: one stage's output with STAGE, otherwise every stage's
in the pipeline's order, each line prefixed with its stage. Lines of a second
attempt or replica start with `STAGE#N | `.

`aipc run` keeps them per pipeline (its name and namespace, not the file's
name) in $XDG_STATE_HOME/aipc (~/.local/state/aipc by default): the newest 4 to
8 MiB of each stage (the start of a longer output is cut, and this says so).
Serve stages still running after `aipc run --detach` are read from the Docker
engine instead. With --follow it goes on printing what a run in progress (in
another terminal) or a running service prints, until it ends or Ctrl-C.

exit status: 0 printed, 1 no such file, nothing kept of that stage, or no Docker
engine for a running service, 2 usage"""

ACTIVE = ("pending", "running", "starting", "serving")  # a stage's states in which more output may come


def configure(parser) -> None:
    parser.add_argument("file", metavar="FILE", help="the .aip file of the pipeline")
    parser.add_argument("stage", metavar="STAGE", nargs="?", help="just this stage")
    parser.add_argument("-f", "--follow", action="store_true",
                        help="keep printing what a stage of a run in progress, or a running service, prints")


class Printer:
    """Lines to stdout, with a stage prefix when several stages are shown."""

    def __init__(self, prefixed: bool, width: int) -> None:
        self.prefixed = prefixed
        self.width = width
        self.lock = threading.Lock()

    def __call__(self, stage: str, line: str) -> None:
        text = f"{stage.ljust(self.width)} | {line}\n" if self.prefixed else line + "\n"
        with self.lock:
            sys.stdout.write(text)
            sys.stdout.flush()


def run(args) -> int:
    if args.file == "-":
        raise UsageError("aipc logs needs the file of the pipeline, not stdin")
    from aipc.commands.common import run_target
    from aipc.runner.selection import PipelineId
    from aipc.runner.state import PipelineState, StoredLog

    target = run_target(args.file)
    if target is None:
        return 1
    pipeline = PipelineId(target.name, target.namespace)
    state = PipelineState(pipeline)
    declared = [stage.name for stage in target.pipeline.stages] if target.pipeline is not None else []
    kept = state.stages_with_logs()
    if args.stage is not None:
        if args.stage not in declared and args.stage not in kept and state.stage(args.stage) is None:
            from aipc.compiler.values import did_you_mean

            known = declared or kept
            hint = did_you_mean(args.stage, known) or (f"the stages are: {', '.join(known)}" if known else "")
            raise UsageError(f"`{args.stage}` is not a stage of pipeline {pipeline}" + (f"; {hint}" if hint else ""))
        stages = [args.stage]
    else:
        running = set((state.run_in_progress() or {}).get("stages") or ()) if args.follow else set()
        stages = [name for name in declared if name in kept or name in running or _serving(state, name)]
        stages += [name for name in kept if name not in stages]  # stages the file no longer declares
    if not stages:
        print(f"aipc logs: nothing is kept of pipeline {pipeline}: run it with `aipc run {args.file}`",
              file=sys.stderr)
        return 1
    printer = Printer(prefixed=args.stage is None, width=max(len(name) for name in stages))
    live = _live_services(args.file, pipeline, stages, state)
    if live is None:
        return 1
    problems = 0
    tasks = []
    for stage in stages:
        if stage in live:
            tasks.append(lambda stage=stage: _from_engine(live[stage], stage, printer, args.follow))
            continue
        stored = state.log(stage)
        if stored is None and args.follow and _in_progress(state, stage):
            stored = StoredLog([], cut=False)  # it has not printed yet: follow it from its start
        if stored is None:
            why, ran = _nothing_kept(state.stage(stage), stage)
            print(f"aipc logs: {why}", file=sys.stderr)
            problems += 0 if ran else 1
            continue
        if stored.cut:
            print(f"aipc logs: the start of `{stage}`'s output was cut: aipc keeps the newest 4 to 8 MiB of "
                  "each stage", file=sys.stderr)
        tasks.append(lambda stage=stage, stored=stored: _from_state(state, stage, stored, printer, args.follow))
    if args.follow:
        _in_threads(tasks)
    else:
        for task in tasks:  # one stage after the other, in the pipeline's order
            task()
    return 1 if problems and len(stages) == problems else 0


def _nothing_kept(info: dict | None, stage: str) -> tuple[str, bool]:
    """Why a stage has no log, and whether it ran."""
    if info is None:
        return f"nothing is kept of `{stage}`: it has not run yet", False
    if info.get("status") in ("pending", "skipped"):
        return f"`{stage}` did not run the last time ({info.get('message') or info.get('status')})", False
    return f"`{stage}` printed nothing the last time it ran", True


def _in_progress(state, stage: str) -> bool:
    """Whether a run in progress has the stage still to run or running."""
    run = state.run_in_progress()
    info = state.stage(stage) or {}
    return run is not None and info.get("run") == run["run"] and info.get("status") in ACTIVE


def _serving(state, stage: str) -> bool:
    return (state.stage(stage) or {}).get("status") == "serving"


def _live_services(file: str, pipeline, stages: list[str], state) -> dict | None:
    """The running containers of the stages that serve (after `aipc run --detach`), by
    stage: their output is read from the engine. None when the engine is needed and
    cannot be reached."""
    if state.run_in_progress() is not None or not any(_serving(state, stage) for stage in stages):
        return {}
    from aipc.commands.common import docker_client

    client = docker_client("logs", "reading a running service")
    if client is None:
        return None
    from aipc.runner.docker_driver import owned
    from aipc.runner.selection import LABEL_ROLE, LABEL_STAGE

    found: dict[str, list] = {}
    for container in owned(lambda f: client.containers.list(filters=f), file, pipeline):
        labels = container.labels
        if labels.get(LABEL_ROLE) == "serve" and labels.get(LABEL_STAGE) in stages:
            found.setdefault(labels[LABEL_STAGE], []).append(container)
    return {stage: sorted(containers, key=lambda c: c.name) for stage, containers in found.items()}


def _from_engine(containers: list, stage: str, printer: Printer, follow: bool) -> None:
    from aipc.runner.docker_driver import LogPump

    pumps = []
    for number, container in enumerate(containers, 1):
        pump = LogPump(container, stage, lambda _, line, number=number: printer(
            stage, line if len(containers) == 1 else f"{stage}#{number} | {line}"), follow=follow)
        pump.start()
        pumps.append(pump)
    for pump in pumps:
        while pump.is_alive():
            pump.join(timeout=0.5)


def _from_state(state, stage: str, stored, printer: Printer, follow: bool) -> None:
    from aipc.runner.state import follow_file

    if not follow or not _in_progress(state, stage):
        for line in stored.lines:
            printer(stage, line)
        return
    # A run in progress writes this log: what it kept so far, then what comes, until the stage ends.
    older = state.log_file(stage).with_name(f"{stage}.log.1")
    if older.exists():
        for line in older.read_text(encoding="utf-8", errors="replace").splitlines():
            printer(stage, line)

    def going() -> bool:
        return (state.run_in_progress() is not None
                and (state.stage(stage) or {}).get("status") in ACTIVE)

    for line in follow_file(state.log_file(stage), going):
        printer(stage, line)


def _in_threads(tasks) -> None:
    """Run each task (one per stage) at once; Ctrl-C ends them all."""
    if len(tasks) == 1:
        tasks[0]()
        return
    threads = [threading.Thread(target=task, daemon=True) for task in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.5)
