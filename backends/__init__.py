"""The backend registry: one module per target, each a pure function IR -> documents.

A backend module defines ``DEFAULT_FILENAME``, a frozen ``Options`` dataclass,
``add_arguments(group)`` and ``options_from(args)`` for its command-line flags
(``aipc compile`` adds ``args.input_directory``: the .aip file's directory seen from
where the output's relative paths resolve), and ``emit(pipeline, options) -> Emitted``. It imports only the IR and the
diagnostics module (never ``aipc.dsl``), does not re-validate the program, and
reports what its target cannot express as diagnostics with the construct's span.
Registering a target is one line in ``TARGETS``.

A stage's strings are ``ir.Text``: each backend writes them through one render
function of its own (the YAML writer refuses a Text). Besides the targets,
:mod:`aipc.backends.docker` lowers a stage to the container a Docker engine
runs, which the compose target writes and ``aipc run`` creates.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType

from aipc.diagnostics import Diagnostic

# target name -> module; the first name is the canonical one
TARGETS: dict[str, str] = {
    "compose": "aipc.backends.compose",
    "k8s": "aipc.backends.kubernetes",
    "argo": "aipc.backends.argo",
}
ALIASES: dict[str, str] = {
    "docker-compose": "compose",
    "kubernetes": "k8s",
}


@dataclass(frozen=True)
class Emitted:
    """What a backend produced: plain documents (dicts in output key order) and
    the target-specific diagnostics. Any error diagnostic means nothing is written."""

    documents: tuple[dict, ...]
    diagnostics: tuple[Diagnostic, ...] = field(default=())

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.diagnostics)


class UnknownTarget(ValueError):
    pass


def get_backend(name: str) -> ModuleType:
    canonical = ALIASES.get(name, name)
    if canonical not in TARGETS:
        known = ", ".join(TARGETS) or "none yet"
        raise UnknownTarget(f"unknown target `{name}` (known targets: {known})")
    return importlib.import_module(TARGETS[canonical])
