"""aipc compile: check a .aip file and write what its target runs."""

from __future__ import annotations

import sys

from aipc.commands import UsageError
from aipc.commands.common import add_format_option, add_param_option, check_file, parse_params, print_diagnostics

HELP = "compile a .aip file to docker-compose, Kubernetes or Argo YAML"
DESCRIPTION = """\
Check a .aip file and compile it for a target. The YAML goes to stdout, or with
-o to a file (written atomically: a failed compile leaves nothing behind, and
an existing file is replaced only on success, keeping its mode; a device, FIFO
or /dev/stdout is written to, a symbolic link keeps pointing at the new file).
`-o DIR/` writes the target's usual file name in DIR, creating it. Diagnostics
go to stderr.

exit status: 0 compiled (warnings allowed), 1 errors (or output that could not be
written), 2 usage"""


def configure(parser) -> None:
    from aipc.backends import ALIASES, TARGETS, get_backend

    parser.add_argument("file", metavar="FILE", help="the .aip file (`-` reads stdin)")
    parser.add_argument("-t", "--target", required=True, metavar="TARGET",
                        help="one of: " + ", ".join(TARGETS) + (
                            " (also " + ", ".join(ALIASES) + ")" if ALIASES else ""))
    parser.add_argument("-o", "--output", metavar="PATH",
                        help="write to this file (or into this directory, under the target's usual name; "
                             "`DIR/` creates it)")
    add_param_option(parser)
    add_format_option(parser)
    for name in TARGETS:
        backend = get_backend(name)
        if hasattr(backend, "add_arguments"):
            backend.add_arguments(parser.add_argument_group(f"{name} options"))


def run(args) -> int:
    from aipc.backends import UnknownTarget, get_backend
    from aipc.backends.writer import to_yaml
    from aipc.diagnostics import Diagnostic, visible
    from aipc.output import output_path, write_output

    try:
        backend = get_backend(args.target)
    except UnknownTarget as error:
        raise UsageError(str(error)) from None
    checked = check_file(args.file, parse_params(args.params))
    pipeline, diagnostics, sources = checked.pipeline, checked.diagnostics, checked.sources
    emitted = None
    if pipeline is not None:
        args.input_directory = input_directory(args.file, args.output and output_path(
            args.output, backend.default_filename(pipeline)))
        options = backend.options_from(args) if hasattr(backend, "options_from") else None
        emitted = backend.emit(pipeline, options)
        diagnostics = sorted([*diagnostics, *emitted.diagnostics], key=Diagnostic.sort_key)
    print_diagnostics(diagnostics, sources, args.format, args.color, sys.stderr)
    if emitted is None or any(d.is_error for d in diagnostics):
        return 1
    text = to_yaml(emitted.documents)
    if args.output:
        path = write_output(args.output, text.encode("utf-8"), backend.default_filename(pipeline))
        print(f"aipc: wrote {visible(path)}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def input_directory(source: str, destination: str | None) -> str:
    """The .aip file's directory, relative to the directory the output's relative paths
    are resolved against: the output file's, or the current one for stdout (and for a
    device or FIFO, which a consumer reads as a stream)."""
    import os
    import stat

    here = os.getcwd()
    base = here
    if destination is not None:
        try:
            regular = stat.S_ISREG(os.stat(destination).st_mode)
        except OSError:
            regular = True  # to be created
        if regular:
            base = os.path.dirname(os.path.realpath(destination))
    source_dir = here if source == "-" else os.path.dirname(os.path.realpath(source))
    return os.path.relpath(source_dir, base)
