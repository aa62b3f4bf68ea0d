"""aipc explain: what a diagnostic code means, with an example."""

from __future__ import annotations

import sys
import textwrap

from aipc.commands import UsageError

HELP = "explain a diagnostic code (E102, W301...)"
DESCRIPTION = "Print what a diagnostic code means and an example that triggers it.\n`aipc explain --list` lists every code."


def configure(parser) -> None:
    parser.add_argument("code", nargs="?", help="a code such as E102")
    parser.add_argument("--list", action="store_true", help="list every code with its title")


def run(args) -> int:
    from aipc.codes import CODES

    if args.list or not args.code:
        for code in CODES.values():
            sys.stdout.write(f"{code.id}  {code.title}\n")
        return 0
    code = CODES.get(args.code.strip().upper())
    if code is None:
        raise UsageError(f"unknown code `{args.code}`; `aipc explain --list` lists them")
    sys.stdout.write(f"{code.id}: {code.title}\n\n")
    sys.stdout.write(textwrap.fill(code.explanation, width=80) + "\n\n")
    sys.stdout.write("Example:\n\n" + textwrap.indent(code.example, "    ") + "\n")
    return 0
