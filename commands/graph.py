"""aipc graph: draw a pipeline's stages, dependencies and volumes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from aipc.commands import UsageError
from aipc.commands.common import add_param_option

HELP = "draw the pipeline: DOT, Mermaid, SVG or PNG"
DESCRIPTION = """\
Draw the dependency graph of a .aip file: stages (shape and colour by kind,
with their GPUs), volumes (cylinders), dependencies (bold arrows) and mounts
(a solid arrow from a stage that writes a volume, a dashed arrow from a volume
to a stage that mounts it readonly). A matrix stage is one node with its
number of instances and axes; an arrow between matrix stages whose instances
pair is labelled "one to one".

  dot      Graphviz source (the default)
  mermaid  a Mermaid flowchart; GitHub renders it inside a ```mermaid fence,
           which is added when -o names a .md file
  svg, png drawn by Graphviz's `dot` program (install the `graphviz` package)

Without --format, the format follows the extension of -o (.dot/.gv, .mmd,
.md, .svg, .png). PNG is binary: it is not written to a terminal.

exit status: 0 drawn (warnings allowed), 1 errors in the input, no `dot` or
output that could not be written, 2 usage"""

FORMATS = ("dot", "mermaid", "svg", "png")
EXTENSIONS = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid", ".md": "mermaid",
              ".svg": "svg", ".png": "png"}
DEFAULT_EXTENSIONS = {"dot": "dot", "mermaid": "mmd", "svg": "svg", "png": "png"}  # for `-o DIR/`
DOT_TIMEOUT = 120  # seconds; `dot` takes well under a second for any real pipeline


class GraphvizError(Exception):
    """`dot` is missing or failed; the message says what to do."""


def configure(parser) -> None:
    parser.add_argument("file", metavar="FILE", help="the .aip file (`-` reads stdin)")
    add_param_option(parser)
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="output format (default: from the extension of -o, else dot)")
    parser.add_argument("-o", "--output", metavar="PATH",
                        help="write to this file instead of stdout (into a directory: PIPELINE.EXT; `DIR/` creates it)")


def output_format(args) -> str:
    if args.format:
        return args.format
    if args.output:
        return EXTENSIONS.get(os.path.splitext(args.output)[1].lower(), "dot")
    return "dot"


def render_with_graphviz(dot_text: str, fmt: str) -> bytes:
    """Run Graphviz's `dot -T<fmt>` on the DOT text and return what it draws."""
    program = shutil.which("dot")
    if program is None:
        raise GraphvizError(
            f"--format {fmt} needs Graphviz's `dot` program, which is not on PATH; install Graphviz "
            "(`apt-get install graphviz`, `dnf install graphviz`, `brew install graphviz`) "
            "or write --format dot or --format mermaid")
    try:
        result = subprocess.run([program, f"-T{fmt}"], input=dot_text.encode("utf-8"),
                                capture_output=True, timeout=DOT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise GraphvizError(f"`{program}` did not finish within {DOT_TIMEOUT} seconds") from None
    except OSError as error:
        raise GraphvizError(f"cannot run `{program}`: {error.strerror or error}") from None
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip() or f"exit status {result.returncode}"
        raise GraphvizError(f"`{program} -T{fmt}` failed: {detail}")
    return result.stdout


def run(args) -> int:
    from aipc.commands.common import load_pipeline
    from aipc.diagnostics import visible
    from aipc.output import write_output
    from aipc.viz.graph import to_dot, to_mermaid

    fmt = output_format(args)
    if fmt == "png" and not args.output and sys.stdout.isatty():
        raise UsageError("PNG is binary and stdout is a terminal: write it with -o FILE.png "
                         "(or redirect stdout to a file)")
    pipeline = load_pipeline(args.file, args.params)
    if pipeline is None:
        return 1
    if fmt == "mermaid":
        fenced = bool(args.output) and args.output.lower().endswith(".md")
        data = to_mermaid(pipeline, fenced=fenced).encode("utf-8")
    elif fmt == "dot":
        data = to_dot(pipeline).encode("utf-8")
    else:
        try:
            data = render_with_graphviz(to_dot(pipeline), fmt)
        except GraphvizError as error:
            print(f"aipc graph: error: {error}", file=sys.stderr)
            return 1
    if not args.output:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    path = write_output(args.output, data, f"{pipeline.dns_name}.{DEFAULT_EXTENSIONS[fmt]}")
    print(f"aipc: wrote {visible(path)}", file=sys.stderr)
    return 0
