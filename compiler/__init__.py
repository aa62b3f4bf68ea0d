"""Name resolution, types and units, the dependency graph, and lowering to the IR."""

from aipc.compiler.check import Checked, check_source

__all__ = ["Checked", "check_source"]
