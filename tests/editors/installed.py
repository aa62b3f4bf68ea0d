"""The tools the editor tests need, which scripts/test.sh installs (under .tools/ or from Debian)."""

from __future__ import annotations

import os
import shutil

import pytest


def missing(what: str) -> None:
    """Stop the test: a failure under AIPC_REQUIRE_DOCKER=1 (the test command's setting, so CI
    cannot pass without the tool), a skip otherwise."""
    message = f"{what} is not installed (scripts/test.sh installs it)"
    if os.environ.get("AIPC_REQUIRE_DOCKER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def tool(name: str, installed: str | None = None) -> str:
    """A command: the path the test command installed it at, else ``name`` on the PATH."""
    for candidate in (installed, shutil.which(name)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    missing(f"`{name}`")
    raise AssertionError("unreachable")
