"""Graphviz for the graph tests."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture(scope="session")
def graphviz_dot() -> str:
    """Graphviz's `dot`. The test command installs it, so with AIPC_REQUIRE_DOCKER=1
    (set by scripts/test.sh) a missing `dot` fails the test instead of skipping it."""
    program = shutil.which("dot")
    if program:
        return program
    message = "Graphviz's `dot` is not installed (scripts/test.sh installs the graphviz package)"
    if os.environ.get("AIPC_REQUIRE_DOCKER") == "1":
        pytest.fail(message + " (AIPC_REQUIRE_DOCKER=1)")
    pytest.skip(message)
