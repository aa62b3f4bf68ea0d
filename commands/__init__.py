"""Subcommands of the `aipc` command line, one module each (see aipc.cli)."""
