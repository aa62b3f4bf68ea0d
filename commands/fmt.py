"""aipc fmt: rewrite .aip files in the one canonical layout."""

from __future__ import annotations

import difflib
import sys

from aipc.commands.common import print_diagnostics, read_input

HELP = "format .aip files in the canonical layout"
DESCRIPTION = """\
Rewrite .aip files in place in the one canonical layout: two-space indentation,
`=` aligned inside a block, one attribute per line in multi-line blocks,
comments kept, LF line ends. Formatting never changes what a file means; a
file with syntax errors is left alone and its errors are printed. `-` formats
stdin to stdout. A file keeps its mode, its hard links and the symbolic links to
it (it is replaced atomically unless it has other hard links); a read-only file
is an error, not rewritten.

exit status: 0 done (or, with --check, nothing to reformat), 1 syntax errors or
(with --check) files that would be reformatted, 2 usage"""


def configure(parser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help=".aip files to format (`-` reads stdin)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if any file would be reformatted")
    parser.add_argument("--diff", action="store_true",
                        help="write nothing; print a unified diff of the changes to stdout")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour diagnostics (default: auto, only on a terminal)")


def run(args) -> int:
    from aipc.compiler.check import source_text
    from aipc.diagnostics import Source, visible
    from aipc.dsl.format import format_text
    from aipc.output import OutputError, write_output

    failed = False
    would_change = []
    for path in args.files:
        source = read_input(path)
        text, diagnostics = None, list(source.diagnostics)
        if source.data is not None:
            text, diagnostics = source_text(source.data, source.path)
        if text is None:
            print_diagnostics(diagnostics, {}, "human", args.color, sys.stderr)
            failed = True
            continue
        formatted = format_text(text, source.path)
        if formatted.text is None:
            print_diagnostics(formatted.diagnostics, {source.path: Source(source.path, text)}, "human",
                              args.color, sys.stderr)
            print(f"aipc fmt: {visible(source.path)}: not formatted, it has syntax errors", file=sys.stderr)
            failed = True
            continue
        original = source.data.decode("utf-8", errors="replace")
        changed = formatted.text != original
        if args.diff:
            if changed:
                sys.stdout.writelines(_diff(original, formatted.text, source.path))
        elif path == "-" and not args.check:
            sys.stdout.write(formatted.text)
        if not changed:
            continue
        would_change.append(source.path)
        if args.check or args.diff or path == "-":
            continue
        try:
            write_output(path, formatted.text.encode("utf-8"))
        except OutputError as error:
            print(f"aipc fmt: error: {error}", file=sys.stderr)
            failed = True
            continue
        print(f"reformatted {visible(path)}", file=sys.stderr)
    if args.check:
        for path in would_change:
            print(f"would reformat {visible(path)}", file=sys.stderr)
    if failed:
        return 1
    return 1 if args.check and would_change else 0


def _diff(before: str, after: str, path: str) -> list[str]:
    return list(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                     fromfile=f"{path} (original)", tofile=f"{path} (formatted)"))
