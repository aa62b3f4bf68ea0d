"""aipc plan: what runs together, and the GPUs, CPU and memory it takes."""

from __future__ import annotations

import os
import sys

from aipc.commands.common import add_param_option

HELP = "show the execution levels and their GPU, CPU and memory totals"
DESCRIPTION = """\
Print the execution plan of a .aip file, to read before spending money.

A stage's level is the length of the longest chain of dependencies before it:
stages of one level never depend on each other and can run together. For each
level: its stages, the GPUs (per vendor), CPU and memory (request / limit)
summed over every stage running in it, and the volumes it writes. A serve
stage keeps running once started, so it counts in every later level (once
per replica). Then the peak GPU demand and the level where it happens; when
stages of different levels could overlap (a stage starts as soon as its own
dependencies finish) and hold more GPUs at once, the worst case too.

A matrix stage is one line with its number of instances and its axes
(--instances lists each instance); under max_parallel, a level counts only as
many of its instances as may run at once.

A table on a terminal, plain text otherwise; --format json for programs
(CPU in millicores, memory in bytes; the stages are instances, and
"matrices" lists each matrix stage with its own).

exit status: 0 planned (warnings allowed), 1 errors in the input, 2 usage"""


def configure(parser) -> None:
    parser.add_argument("file", metavar="FILE", help="the .aip file (`-` reads stdin)")
    add_param_option(parser)
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="table (default) or json")
    parser.add_argument("--instances", action="store_true",
                        help="list each instance of a matrix stage (default: one line per matrix stage)")


def run(args) -> int:
    from aipc.commands.common import load_pipeline
    from aipc.viz.plan import plan_pipeline, render_rich, render_text, to_json

    pipeline = load_pipeline(args.file, args.params)
    if pipeline is None:
        return 1
    plan = plan_pipeline(pipeline)
    if args.format == "json":
        sys.stdout.write(to_json(plan))
    elif sys.stdout.isatty() and os.environ.get("TERM") != "dumb":
        from rich.console import Console

        render_rich(plan, Console(highlight=False), args.instances)
    else:
        sys.stdout.write(render_text(plan, args.instances))
    return 0
