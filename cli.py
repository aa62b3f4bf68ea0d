"""The `aipc` command line: a thin shell over the library.

Each subcommand lives in its own module under :mod:`aipc.commands` with
``configure(parser)`` and ``run(args) -> exit code``; modules import their heavy
dependencies inside ``run`` so that ``aipc check`` starts quickly. Exit codes:
0 success (warnings allowed), 1 errors in the input, 2 usage, 3 internal error.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys

from aipc import __version__
from aipc.output import OutputError, install_streams, report_output_error
from aipc.commands import UsageError

# Subcommands in the order `aipc --help` lists them.
COMMANDS = (
    "check",
    "compile",
    "graph",
    "plan",
    "apply",
    "explain",
    "fmt",
    "lsp",
    "run",
    "ps",
    "logs",
    "down",
)

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
BUG_REPORT_URL = "https://github.com/aipc-dev/aipc/issues"


def _requested(argv: list[str]) -> str | None:
    """The subcommand named on the command line, if any (the first word that is one)."""
    for word in argv:
        if word in COMMANDS:
            return word
        if not word.startswith("-"):
            return None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the requested subcommand's options are set up, so that
    `aipc check` does not import what `aipc compile` needs for its flags."""
    requested = _requested(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="aipc",
        description="The AI pipeline compiler: check a .aip pipeline and compile it to "
        "docker-compose, Kubernetes or Argo Workflows.",
    )
    parser.add_argument("--version", action="version", version=f"aipc {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"aipc.commands.{name.replace('-', '_')}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.DESCRIPTION,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == requested:
            module.configure(sub)
        sub.set_defaults(run=module.run)
    return parser


# The cyclic garbage collector is a policy of the process, so it is decided here
# and nowhere in the library (the language server calls check_source from
# threads). Parsing, lowering and writing YAML build
# a great many small objects that reference counting frees and that make no
# cycles worth collecting; the collector's passes over the growing model would
# cost as much as the work itself on a large file, and grow faster than linearly
# (10000 stages: 13.5 s of CPU with it, 3.1 s without). So every command runs
# without it, except those that run for minutes or hours: the language server,
# `aipc run` (Docker SDK clients, log threads) and `aipc apply` (the Kubernetes
# client, waiting on the cluster) collect, with thresholds high enough that a
# check costs about what it does without the collector (1000 stages: 0.23 s,
# 0.48 s at the default thresholds; 10000 stages: 2.8 s, 6.8 s).
LONG_RUNNING_COMMANDS = frozenset({"lsp", "run", "apply"})
LONG_RUNNING_THRESHOLDS = (50_000, 20, 100)

# Commands that run for a moment and exit. Run from the command line, their
# process also skips tearing the interpreter down at exit (freeing every module
# and object one by one costs 40-100 ms that nobody waits for): it flushes its
# output and ends.
BRIEF_COMMANDS = frozenset({"check", "compile"})


def main(argv: list[str] | None = None) -> int:
    """Run one command; ``argv`` None means the process's own command line."""
    requested = _requested(sys.argv[1:] if argv is None else argv)
    if requested != "lsp":  # the language server speaks its own protocol on stdio
        install_streams()
    collecting, thresholds = gc.isenabled(), gc.get_threshold()
    if requested in LONG_RUNNING_COMMANDS:
        gc.set_threshold(*LONG_RUNNING_THRESHOLDS)
    else:
        gc.disable()
    try:
        code = _dispatch(argv)
    finally:
        gc.set_threshold(*thresholds)
        if collecting:
            gc.enable()
    if argv is None and requested in BRIEF_COMMANDS:
        _exit_at_once(code)
    return code


def _exit_at_once(code: int) -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # stdout closed early (`aipc check ... | head`): not an error of ours
        pass
    try:
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)


def _dispatch(argv: list[str] | None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code = args.run(args)
        sys.stdout.flush()  # where a full disk shows, if nothing wrote past the buffer
        return code
    except OutputError as error:  # an I/O error, not a bug: exit 1 naming what was not written
        report_output_error(f"aipc {args.command}", error)
        return EXIT_ERRORS
    except UsageError as error:
        print(f"aipc {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("aipc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (`aipc compile ... | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as error:  # noqa: BLE001 - the one place that catches everything
        if os.environ.get("AIPC_DEBUG"):
            raise
        from aipc.redact import redact

        print(f"aipc: internal error ({type(error).__name__}: {redact(str(error))}); this is a bug in aipc, "
              f"please report it with the input at {BUG_REPORT_URL} (AIPC_DEBUG=1 shows a traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL
