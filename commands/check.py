"""aipc check: report every problem in one or more .aip files."""

from __future__ import annotations

import sys

from aipc.commands import UsageError
from aipc.commands.common import (
    add_format_option, add_param_option, check_file, parse_params, print_diagnostics, print_summary,
)

HELP = "check .aip files and report every problem"
DESCRIPTION = """\
Parse and check .aip files and the files they import: syntax, names, templates,
types and units, parameters, the dependency graph, and the warnings of
LANGUAGE.md. Prints every problem at once, each in the file it is in. A file of
templates alone (a library) is checked as far as it can be without a stage
that uses its templates.

exit status: 0 no errors (warnings allowed), 1 errors, 2 usage"""


def configure(parser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help=".aip files to check (`-` reads stdin)")
    add_param_option(parser)
    add_format_option(parser)
    parser.add_argument("--target", metavar="TARGET",
                        help="also run the target's own checks (compose, k8s, argo)")


def run(args) -> int:
    from aipc.diagnostics import Diagnostic

    params = parse_params(args.params)
    backend = None
    if args.target:
        from aipc.backends import UnknownTarget, get_backend

        try:
            backend = get_backend(args.target)
        except UnknownTarget as error:
            raise UsageError(str(error)) from None
    all_diagnostics = []
    sources = {}
    failed = False
    for path in args.files:
        checked = check_file(path, params)
        diagnostics, detail = checked.diagnostics, ""
        sources.update(checked.sources)
        if checked.pipeline is not None:
            detail = f" ({stage_count(checked.pipeline)})"
            if not checked.pipeline.stages and checked.templates:  # a library: checked as far as it can be without a user
                detail = f" (a library of {checked.templates} template{'s' if checked.templates != 1 else ''})"
            if backend is not None:
                diagnostics = sorted([*diagnostics, *backend.emit(checked.pipeline).diagnostics],
                                     key=Diagnostic.sort_key)
        failed = failed or any(d.is_error for d in diagnostics)
        all_diagnostics += diagnostics
        if args.format == "human":
            print_diagnostics(diagnostics, sources, "human", args.color, sys.stdout)
            if diagnostics:
                sys.stdout.write("\n")
            print_summary(checked.path, diagnostics, sys.stdout, detail)
    if args.format == "json":
        print_diagnostics(all_diagnostics, sources, "json", args.color, sys.stdout)
    return 1 if failed else 0


def stage_count(pipeline) -> str:
    """``3 stages``, or ``3 stages, 2 of them matrix stages with 10 instances``."""
    count = len(pipeline.stages) - sum(len(m.instances) - 1 for m in pipeline.matrices)
    text = f"{count} stage{'s' if count != 1 else ''}"
    if pipeline.matrices:
        matrices, instances = len(pipeline.matrices), sum(len(m.instances) for m in pipeline.matrices)
        text += (f", {matrices} of them matrix stage{'s' if matrices != 1 else ''} "
                 f"with {instances} instance{'s' if instances != 1 else ''}")
    return text
