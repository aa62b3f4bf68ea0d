"""aipc lsp: the language server, over stdin and stdout."""

from __future__ import annotations

HELP = "run the language server (LSP over stdio) for editors"
DESCRIPTION = """\
Run the aipc language server on stdin/stdout, for an editor to start: it
reports `aipc check`'s diagnostics as you type, and offers hover, completion,
go to definition, references, rename, an outline and formatting. See
editors/README.md for VS Code, Neovim and other editors."""


def configure(parser) -> None:
    parser.add_argument("--stdio", action="store_true",
                        help="speak over stdin/stdout (the default and only transport)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the server does")
    parser.add_argument("--log-file", metavar="PATH", help="write the log here instead of stderr")


def run(args) -> int:
    import sys

    try:
        from aipc.lsp.server import serve
    except ImportError as missing:
        print(f"aipc lsp: error: the language server needs the `lsp` extra ({missing.name} is not installed): "
              "pip install 'aipc[lsp]'", file=sys.stderr)
        return 1
    serve(verbose=args.verbose, log_file=args.log_file)
    return 0
