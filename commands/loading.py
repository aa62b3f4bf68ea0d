"""Reading one .aip file into the IR for the commands that act on a pipeline
(graph, plan, apply): check it, print its diagnostics, and hand back the IR."""

from __future__ import annotations

import sys
from typing import TextIO

from aipc.commands.common import parse_params, print_diagnostics, read_input


def load_pipeline(path: str, param_options: list[str], stream: TextIO | None = None,
                  color: str = "auto"):
    """The checked pipeline, or None when the file cannot be read or has errors.

    Every diagnostic (warnings too) is printed to ``stream`` (stderr) in the
    human format; a ``-p`` that is not NAME=VALUE is a usage error.
    """
    from aipc.compiler.check import check_source, source_text
    from aipc.diagnostics import Source

    stream = stream or sys.stderr
    params = parse_params(param_options)
    source = read_input(path)
    if source.data is None:
        print_diagnostics(source.diagnostics, {}, "human", color, stream)
        return None
    text, diagnostics = source_text(source.data, source.path)
    sources = {}
    pipeline = None
    if text is not None:
        sources[source.path] = Source(source.path, text)
        pipeline, diagnostics = check_source(text, source.path, params)
    print_diagnostics(diagnostics, sources, "human", color, stream)
    return pipeline
