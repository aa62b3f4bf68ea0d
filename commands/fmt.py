"""aipc fmt: rewrite .aip files in the one canonical layout."""

from __future__ import annotations

import difflib
import os
import sys
import tempfile

from aipc.commands.common import print_diagnostics, read_input

HELP = "format .aip files in the canonical layout"
DESCRIPTION = """\
Rewrite .aip files in place in the one canonical layout: two-space indentation,
`=` aligned inside a block, one attribute per line in multi-line blocks,
comments kept, LF line ends. Formatting never changes what a file means; a
file with syntax errors is left alone and its errors are printed. `-` formats
stdin to stdout.

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
    from aipc.diagnostics import Source
    from aipc.dsl.format import format_text

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
            print(f"aipc fmt: {source.path}: not formatted, it has syntax errors", file=sys.stderr)
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
            _write_atomic(path, formatted.text)
        except OSError as error:
            print(f"aipc fmt: error: cannot write `{path}`: {error.strerror or error}", file=sys.stderr)
            failed = True
            continue
        print(f"reformatted {path}", file=sys.stderr)
    if args.check:
        for path in would_change:
            print(f"would reformat {path}", file=sys.stderr)
    if failed:
        return 1
    return 1 if args.check and would_change else 0


def _diff(before: str, after: str, path: str) -> list[str]:
    return list(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                     fromfile=f"{path} (original)", tofile=f"{path} (formatted)"))


def _write_atomic(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` in one step, keeping its permissions."""
    directory = os.path.dirname(os.path.abspath(path))
    mode = os.stat(path).st_mode & 0o7777
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".aipc-fmt-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
