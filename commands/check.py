"""aipc check: report every problem in one or more .aip files."""

from __future__ import annotations

import sys

from aipc.commands.common import (
    add_format_option, add_param_option, parse_params, print_diagnostics, print_summary, read_input,
)

HELP = "check .aip files and report every problem"
DESCRIPTION = """\
Parse and check .aip files: syntax, names, types and units, parameters, the
dependency graph, and the warnings of LANGUAGE.md. Prints every problem at once.

exit status: 0 no errors (warnings allowed), 1 errors, 2 usage"""


def configure(parser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help=".aip files to check (`-` reads stdin)")
    add_param_option(parser)
    add_format_option(parser)
    parser.add_argument("--target", metavar="TARGET",
                        help="also run the target's own checks (compose, k8s, argo)")


def run(args) -> int:
    from aipc.compiler.check import check_source, source_text
    from aipc.diagnostics import Diagnostic, Source

    params = parse_params(args.params)
    backend = None
    if args.target:
        from aipc.backends import get_backend

        backend = get_backend(args.target)
    all_diagnostics = []
    sources = {}
    failed = False
    for path in args.files:
        source = read_input(path)
        diagnostics, detail = list(source.diagnostics), ""
        if source.data is not None:
            text, diagnostics = source_text(source.data, source.path)
        if source.data is not None and text is not None:
            sources[source.path] = Source(source.path, text)
            checked = check_source(text, source.path, params)
            diagnostics = checked.diagnostics
            if checked.ir is not None:
                count = len(checked.ir.stages)
                detail = f" ({count} stage{'s' if count != 1 else ''})"
                if backend is not None:
                    diagnostics = sorted([*diagnostics, *backend.emit(checked.ir).diagnostics],
                                         key=Diagnostic.sort_key)
        failed = failed or any(d.is_error for d in diagnostics)
        all_diagnostics += diagnostics
        if args.format == "human":
            print_diagnostics(diagnostics, sources, "human", args.color, sys.stdout)
            if diagnostics:
                sys.stdout.write("\n")
            print_summary(source.path, diagnostics, sys.stdout, detail)
    if args.format == "json":
        print_diagnostics(all_diagnostics, sources, "json", args.color, sys.stdout)
    return 1 if failed else 0
