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

With --gpus N, the devices each GPU stage gets on one machine of N GPUs, as
`aipc compile --target compose --gpus N` assigns them: stages that may run at
the same time never share one (an error when they need more than N).

A table on a terminal, plain text otherwise; --format json for programs
(CPU in millicores, memory in bytes; the stages are instances, and
"matrices" lists each matrix stage with its own).

exit status: 0 planned (warnings allowed), 1 errors in the input or more GPUs at
once than --gpus, 2 usage"""


def configure(parser) -> None:
    from aipc.backends.compose import gpu_count

    parser.add_argument("file", metavar="FILE", help="the .aip file (`-` reads stdin)")
    add_param_option(parser)
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="table (default) or json")
    parser.add_argument("--instances", action="store_true",
                        help="list each instance of a matrix stage (default: one line per matrix stage)")
    parser.add_argument("--gpus", type=gpu_count, metavar="N",
                        help="also show the GPU devices each stage gets on one machine with N GPUs")


def run(args) -> int:
    from aipc.backends.devices import Shortfall, report_shortfall
    from aipc.commands.common import check_file, parse_params, print_diagnostics
    from aipc.diagnostics import Diagnostics
    from aipc.viz.plan import plan_pipeline, render_rich, render_text, to_json

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
    if args.format == "json":
        sys.stdout.write(to_json(plan))
    elif sys.stdout.isatty() and os.environ.get("TERM") != "dumb":
        from rich.console import Console

        render_rich(plan, Console(highlight=False), args.instances)
    else:
        sys.stdout.write(render_text(plan, args.instances))
    return 1 if isinstance(plan.devices, Shortfall) else 0
