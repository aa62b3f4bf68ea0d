"""Subcommands of the `aipc` command line, one module each (see aipc.cli).

:class:`UsageError` lives here rather than in :mod:`aipc.cli`: the CLI imports
the commands, and the commands raise it, so both import it from this package.
"""


class UsageError(Exception):
    """A command line that cannot be carried out (exit 2)."""
