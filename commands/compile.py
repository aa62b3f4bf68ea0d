"""aipc compile: check a .aip file and write what its target runs."""

from __future__ import annotations

import os
import sys

from aipc.commands import UsageError
from aipc.commands.common import add_format_option, add_param_option, check_file, parse_params, print_diagnostics

HELP = "compile a .aip file to docker-compose, Kubernetes or Argo YAML"
DESCRIPTION = """\
Check a .aip file and compile it for a target. The YAML goes to stdout, or with
-o to a file (written atomically: a failed compile leaves nothing behind, and
an existing file is replaced only on success). Diagnostics go to stderr.

exit status: 0 compiled (warnings allowed), 1 errors, 2 usage"""


def configure(parser) -> None:
    from aipc.backends import ALIASES, TARGETS, get_backend

    parser.add_argument("file", metavar="FILE", help="the .aip file (`-` reads stdin)")
    parser.add_argument("-t", "--target", required=True, metavar="TARGET",
                        help="one of: " + ", ".join(TARGETS) + (
                            " (also " + ", ".join(ALIASES) + ")" if ALIASES else ""))
    parser.add_argument("-o", "--output", metavar="PATH",
                        help="write to this file (or into this directory, under the target's usual name)")
    add_param_option(parser)
    add_format_option(parser)
    for name in TARGETS:
        backend = get_backend(name)
        if hasattr(backend, "add_arguments"):
            backend.add_arguments(parser.add_argument_group(f"{name} options"))


def output_path(output: str, default_name: str) -> str:
    if output.endswith(os.sep) or os.path.isdir(output):
        return os.path.join(output, default_name)
    return output


def run(args) -> int:
    from aipc.backends import UnknownTarget, get_backend
    from aipc.backends.writer import to_yaml, write_atomic
    from aipc.diagnostics import Diagnostic

    try:
        backend = get_backend(args.target)
    except UnknownTarget as error:
        raise UsageError(str(error)) from None
    checked = check_file(args.file, parse_params(args.params))
    pipeline, diagnostics, sources = checked.pipeline, checked.diagnostics, checked.sources
    emitted = None
    if pipeline is not None:
        options = backend.options_from(args) if hasattr(backend, "options_from") else None
        emitted = backend.emit(pipeline, options)
        diagnostics = sorted([*diagnostics, *emitted.diagnostics], key=Diagnostic.sort_key)
    print_diagnostics(diagnostics, sources, args.format, args.color, sys.stderr)
    if emitted is None or any(d.is_error for d in diagnostics):
        return 1
    text = to_yaml(emitted.documents)
    if args.output:
        path = output_path(args.output, backend.default_filename(pipeline))
        try:
            write_atomic(path, text)
        except OSError as error:
            print(f"aipc compile: error: cannot write `{path}`: {error.strerror or error}", file=sys.stderr)
            return 1
        print(f"aipc: wrote {path}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
