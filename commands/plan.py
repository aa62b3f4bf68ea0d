"""aipc plan: what runs together, and the GPUs, CPU and memory it takes."""

from __future__ import annotations

import os
import sys

from aipc.commands.common import add_param_option
from aipc.commands.run import add_cache_arguments

HELP = "show the execution levels and their GPU, CPU and memory totals"
DESCRIPTION = """\
Print the execution plan of a .aip file, to read before spending money.

A stage's level is the length of the longest chain of dependencies before it:
stages of one level never depend on each other and can run together. For each
level: its stages, the GPUs (per vendor), CPU and memory (request / limit)
summed over every stage running in it, and the volumes and outputs
(`STAGE.OUTPUT`) it writes. A serve
stage keeps running once started, so it counts in every later level (once
per replica). Then the peak GPU demand and the level where it happens; when
stages of different levels could overlap (a stage starts as soon as its own
dependencies finish) and hold more GPUs at once, the worst case too.

A matrix stage is one line with its number of instances and its axes
(--instances lists each instance); under max_parallel, a level counts only as
many of its instances as may run at once.

With --gpus N, the devices each GPU stage gets on one machine of N GPUs, as
`aipc compile --target compose --gpus N` assigns them: stages that may run at
the same time never share one (an error when they need more than N).

A table on a terminal, plain text otherwise; --format json for programs
(CPU in millicores, memory in bytes; the stages are instances, and
"matrices" lists each matrix stage with its own).

--cache asks the local Docker engine what `aipc run` would do with each stage:
cached, or runs and why (which part of its key changed since the last run: the
image, the command, env, workdir, security, mounts or an input; or --no-cache,
an output deleted, no run yet). A stage after one that runs is cached only if
what that one writes comes out as before: the plan says so.

exit status: 0 planned (warnings allowed), 1 errors in the input or more GPUs at
once than --gpus (or no Docker engine for --cache), 2 usage"""


def configure(parser) -> None:
    from aipc.backends.compose import gpu_count

    parser.add_argument("file", metavar="FILE", help="the .aip file (`-` reads stdin)")
    add_param_option(parser)
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="table (default) or json")
    parser.add_argument("--cache", action="store_true",
                        help="also say, per stage, whether `aipc run` would find it cached on the local Docker "
                             "engine, and if not, what changed since the last run (with --no-cache and --rerun "
                             "as `aipc run` would take them)")
    add_cache_arguments(parser)
    parser.add_argument("--instances", action="store_true",
                        help="list each instance of a matrix stage (default: one line per matrix stage)")
    parser.add_argument("--gpus", type=gpu_count, metavar="N",
                        help="also show the GPU devices each stage gets on one machine with N GPUs")


def run(args) -> int:
    from aipc.backends.devices import Shortfall, report_shortfall
    from aipc.commands.common import check_file, parse_params, print_diagnostics
    from aipc.diagnostics import Diagnostics
    from aipc.viz.plan import plan_pipeline, render_rich, render_text, to_json

    if (args.no_cache or args.rerun) and not args.cache:
        from aipc.commands import UsageError

        raise UsageError("--no-cache and --rerun say what `aipc run` is asked to do: they go with --cache")
    checked = check_file(args.file, parse_params(args.params))
    print_diagnostics(checked.diagnostics, checked.sources, "human", "auto", sys.stderr)
    pipeline = checked.pipeline
    if pipeline is None:
        return 1
    plan = plan_pipeline(pipeline, args.gpus)
    if isinstance(plan.devices, Shortfall):
        sink = Diagnostics(checked.path)
        report_shortfall(plan.devices, sink)
        print_diagnostics(sink.sorted(), checked.sources, "human", "auto", sys.stderr)
    cache = None
    if args.cache:
        from aipc.commands.run import rerun_stages

        cache = predict_cache(pipeline, args.file, no_cache=args.no_cache, rerun=rerun_stages(pipeline, args.rerun))
        if cache is None:
            return 1
    if args.format == "json":
        text = to_json(plan)
        if cache is not None:
            import json

            data = json.loads(text)
            data["cache"] = {name: {"cached": d.cached, "unless": list(d.unless), "reason": d.reason}
                             for name, d in cache.items()}
            text = json.dumps(data, indent=2) + "\n"
        sys.stdout.write(text)
    elif sys.stdout.isatty() and os.environ.get("TERM") != "dumb":
        from rich.console import Console

        render_rich(plan, Console(highlight=False), args.instances)
    else:
        sys.stdout.write(render_text(plan, args.instances))
    if cache is not None and args.format != "json":
        width = max(len(name) for name in cache)
        sys.stdout.write("\naipc run, on this Docker engine:\n" + "".join(
            f"  {name:<{width}}  {decision.describe()}\n" for name, decision in cache.items()))
    return 1 if isinstance(plan.devices, Shortfall) else 0


def predict_cache(pipeline, path: str, no_cache: bool, rerun: set[str]):
    """What `aipc run` would decide for each stage, or None (said) without an engine."""
    from aipc.backends.docker import container_specs
    from aipc.commands.common import docker_client
    from aipc.diagnostics import Diagnostics

    client = docker_client("plan", "--cache")
    if client is None:
        return None
    from aipc.runner.cache import RunCache
    from aipc.runner.selection import RunNames

    specs = container_specs(pipeline, pipeline.stages, Diagnostics(pipeline.file), "`aipc run`")
    return RunCache(client, pipeline, specs, RunNames.new(pipeline, path), no_cache=no_cache, rerun=rerun).predict(
        pipeline.stages)
