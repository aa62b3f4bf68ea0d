"""aipc ps: what `aipc run` has running for a pipeline."""

from __future__ import annotations

import sys
import time

from aipc.commands import UsageError

HELP = "show what `aipc run` has running for a pipeline"
DESCRIPTION = """\
Show the containers `aipc run` has running for the pipeline this .aip file
declares (a run belongs to the pipeline's name and namespace, not the file's
name): each one's stage, the run it belongs to, since when it runs, and the host
ports it answers on; then the last run and how it ended.

exit status: 0 shown (also when nothing runs), 1 no such file or no Docker
engine, 2 usage"""

HEADER = ("stage", "container", "run", "state", "since", "ports")


def configure(parser) -> None:
    parser.add_argument("file", metavar="FILE", help="the .aip file of the pipeline")


def run(args) -> int:
    if args.file == "-":
        raise UsageError("aipc ps needs the file of the pipeline, not stdin")
    from aipc.commands.common import run_target

    target = run_target(args.file)
    if target is None:
        return 1
    try:
        from aipc.runner.docker_driver import EngineUnavailable, connect, engine_message, owned
        from aipc.runner.selection import LABEL_RUN, LABEL_STAGE, PipelineId
        from aipc.runner.state import PipelineState
    except ImportError as missing:
        print(f"aipc ps: error: it needs the `run` extra ({missing.name} is not installed): pip install 'aipc[run]'",
              file=sys.stderr)
        return 1
    import docker.errors
    import requests.exceptions

    pipeline = PipelineId(target.name, target.namespace)
    try:
        client = connect()
        containers = owned(lambda f: client.containers.list(all=True, sparse=True, filters=f), args.file, pipeline)
    except EngineUnavailable as problem:
        print(f"aipc ps: error: {problem}", file=sys.stderr)
        return 1
    except (docker.errors.DockerException, requests.exceptions.RequestException) as problem:
        print(f"aipc ps: error: the Docker engine failed: {engine_message(problem)}", file=sys.stderr)
        return 1
    rows = []
    for container in containers:
        attrs = container.attrs
        labels = attrs.get("Labels") or {}
        rows.append((labels.get(LABEL_STAGE, "?"), (attrs.get("Names") or ["?"])[0].lstrip("/"),
                     labels.get(LABEL_RUN, "?"), attrs.get("Status") or attrs.get("State") or "?",
                     _moment(attrs.get("Created")), ports_text(attrs.get("Ports") or [])))
    rows.sort(key=lambda row: (row[2], row[0], row[1]))
    if rows:
        print(f"pipeline {pipeline}:")
        sys.stdout.write(table([HEADER, *rows]))
    else:
        print(f"nothing of pipeline {pipeline} is running")
    last = last_run_text(PipelineState(pipeline))
    if last:
        print(last)
    return 0


def _moment(epoch) -> str:
    if not epoch:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(epoch)))


def ports_text(ports: list[dict]) -> str:
    """`127.0.0.1:8080->8080/tcp`, each published port once."""
    shown = sorted({f"{port['IP']}:{port['PublicPort']}->{port['PrivatePort']}/{port.get('Type', 'tcp')}"
                    if ":" not in port.get("IP", "") else
                    f"[{port['IP']}]:{port['PublicPort']}->{port['PrivatePort']}/{port.get('Type', 'tcp')}"
                    for port in ports if port.get("PublicPort")})
    return ", ".join(shown) or "-"


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n" for row in rows)


def last_run_text(state) -> str | None:
    """One line about the pipeline's last run, from what `aipc run` recorded."""
    from aipc.runner.docker_driver import shown_path

    run = state.last_run()
    if not run:
        return None
    text = f"last run {run.get('run')} from {shown_path(run.get('file') or '?')}, started {_moment(run.get('started'))}"
    if state.run_in_progress() is not None:
        return text + f": still running (process {run.get('pid')})"
    if run.get("ended") is None:
        return text + ": it ended without recording how (the process was killed)"
    failed = [name for name in run.get("stages") or []
              if (state.stage(name) or {}).get("status") in ("failed", "timed out")]
    how = OUTCOMES.get(run.get("outcome"), "ended")
    if failed:
        how += " (" + ", ".join(f"`{name}`" for name in failed) + ")"
    return text + f"; it {how} at {_moment(run.get('ended'))}"


OUTCOMES = {"succeeded": "succeeded", "failed": "failed", "interrupted": "was interrupted",
            "serving": "left its serve stages running", "stopped": "served until they stopped"}
