"""aipc down: remove what `aipc run` started from a .aip file."""

from __future__ import annotations

import os
import sys

from aipc.commands import UsageError

HELP = "stop and remove the containers `aipc run` started for a pipeline"
DESCRIPTION = """\
Stop and remove every container and network that `aipc run` started for the
pipeline this .aip file declares (serve stages left running by `aipc run
--detach`, and anything an interrupted run left behind). A run belongs to the
pipeline's name and namespace, so a run started before the file was renamed or
moved is found too, and so is one started from this file under another pipeline
name. Named volumes are kept unless -v is given. The file need not check: only
its `pipeline` header (or its name) identifies the pipeline.

exit status: 0 done (also when nothing was running), 1 no Docker engine or a
removal failed, 2 usage"""


def configure(parser) -> None:
    parser.add_argument("file", metavar="FILE", help="the .aip file of the pipeline")
    parser.add_argument("-v", "--volumes", action="store_true",
                        help="also remove the pipeline's named volumes (their data is lost)")


def run(args) -> int:
    if args.file == "-":
        raise UsageError("aipc down needs the file given to `aipc run`, not stdin")
    try:
        from aipc.runner.docker_driver import EngineUnavailable, connect, down
    except ImportError as missing_module:
        print(f"aipc down: error: it needs the `run` extra ({missing_module.name} is not installed): "
              "pip install 'aipc[run]'", file=sys.stderr)
        return 1
    try:
        client = connect()
    except EngineUnavailable as problem:
        print(f"aipc down: error: {problem}", file=sys.stderr)
        return 1
    import docker.errors
    import requests.exceptions

    from aipc.commands.common import run_target
    from aipc.runner.docker_driver import engine_message
    from aipc.runner.selection import PipelineId

    target = run_target(args.file) if os.path.exists(args.file) else None
    pipeline = PipelineId(target.name, target.namespace) if target is not None else None
    try:
        removed = down(client, args.file, volumes=args.volumes, pipeline=pipeline)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as problem:
        print(f"aipc down: error: the Docker engine failed: {engine_message(problem)}", file=sys.stderr)
        return 1
    for kind, names in (("container", removed.containers), ("network", removed.networks),
                        ("volume", removed.volumes)):
        for name in names:
            print(f"removed {kind} {name}")
    for problem in removed.problems:
        print(f"aipc down: error: {problem}", file=sys.stderr)
    if not (removed.containers or removed.networks or removed.volumes or removed.problems):
        if pipeline is None:
            print(f"nothing of `{args.file}` is running (the file does not exist either)")
        else:
            print(f"nothing of pipeline {pipeline} is running")
    return 1 if removed.problems else 0
