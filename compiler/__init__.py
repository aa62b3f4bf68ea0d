"""Name resolution, types and units, the dependency graph, and lowering to the IR.

``check_source`` is loaded on first use, so that importing the IR alone (as the
backends do) does not load the parser and the checker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aipc.compiler.check import Checked, check_source

__all__ = ["Checked", "check_source"]


def __getattr__(name: str):
    if name in __all__:
        from aipc.compiler import check

        return getattr(check, name)
    raise AttributeError(f"module 'aipc.compiler' has no attribute {name!r}")
