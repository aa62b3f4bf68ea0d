"""Facts about compiled output, for the table test (tests/test_targets_table.py).

A fact is a small declarative check of what a target produced: a path into the
YAML read back and the value expected there, or a diagnostic the compiler must
give. Paths read like the YAML they point into:

- ``services.model.shm_size``: keys, separated by dots;
- ``containers[0]``: a list item by index;
- ``volumes[name=dshm]``: the one list item whose ``name`` is ``dshm`` (the key
  may be a dotted path: ``[metadata.name=raw]``);
- ``limits[nvidia.com/gpu]``: a key holding dots or slashes;
- ``manifest>spec.replicas``: ``>`` reads the string so far as YAML and goes on
  inside it (Argo applies serve stages as manifest text).

The expected value is compared with ``==`` (types included: ``'4711'`` is not
``4711``), or is a matcher (:data:`ABSENT`, :class:`Has`, :class:`Re`), also
inside an expected list or mapping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()
"""The path leads nowhere: the key or item does not exist."""


class Missing(LookupError):
    """A path that leads nowhere; the message says where it stopped."""


@dataclass(frozen=True)
class Has:
    """A list holding each of ``items`` (a value, or a matcher for one item)."""

    items: tuple

    def __init__(self, *items) -> None:
        object.__setattr__(self, "items", items)

    def matches(self, value) -> bool:
        return isinstance(value, list) and all(any(_matches(item, v) for v in value) for item in self.items)


@dataclass(frozen=True)
class Re:
    """A string matching ``pattern`` entirely."""

    pattern: str

    def matches(self, value) -> bool:
        return isinstance(value, str) and re.fullmatch(self.pattern, value, re.S) is not None


def _matches(expected, value) -> bool:
    """Equality, with matchers anywhere inside lists and mappings."""
    if isinstance(expected, (Has, Re)):
        return expected.matches(value)
    if isinstance(expected, list):
        return (isinstance(value, list) and len(value) == len(expected)
                and all(_matches(e, v) for e, v in zip(expected, value)))
    if isinstance(expected, dict):
        return (isinstance(value, dict) and value.keys() == expected.keys()
                and all(_matches(expected[k], value[k]) for k in expected))
    return type(value) is type(expected) and value == expected


# ----------------------------------------------------------------------- paths

_TOKEN = re.compile(r"\[([^\]]*)\]|>|([^.\[\]>]+)|\.")


def segments(path: str) -> list[tuple[str, str]]:
    """``("key" | "item" | "yaml", text)`` for each step of ``path``."""
    out: list[tuple[str, str]] = []
    position = 0
    while position < len(path):
        match = _TOKEN.match(path, position)
        if match is None:
            raise ValueError(f"bad path {path!r} at {position}")
        if match.group(1) is not None:
            out.append(("item", match.group(1)))
        elif match.group(0) == ">":
            out.append(("yaml", ">"))
        elif match.group(2) is not None:
            out.append(("key", match.group(2)))
        position = match.end()
    return out


def resolve(root, path: str):
    """The value at ``path``; raises :class:`Missing` when there is none."""
    node, walked = root, ""
    for kind, text in segments(path):
        step = text if kind == "key" else ">" if kind == "yaml" else f"[{text}]"
        if kind == "yaml":
            if not isinstance(node, str):
                raise Missing(f"{walked or '(root)'} is not text to read as YAML")
            node = yaml.safe_load(node)
        elif isinstance(node, list) and re.fullmatch(r"-?\d+", text) and kind == "item":
            if not -len(node) <= int(text) < len(node):
                raise Missing(f"{walked} has {len(node)} items, no {step}")
            node = node[int(text)]
        elif isinstance(node, list) and kind == "item" and "=" in text:
            key, _, wanted = text.partition("=")
            found = [item for item in node if _lookup(item, key) == wanted]
            if len(found) != 1:
                raise Missing(f"{walked} has {len(found)} items with {key} = {wanted!r}, not one")
            node = found[0]
        elif isinstance(node, dict) and text in node:
            node = node[text]
        else:
            keys = f" (keys: {', '.join(map(str, node))})" if isinstance(node, dict) else ""
            raise Missing(f"{walked or '(root)'} has no {step}{keys}")
        walked += step if kind != "key" or not walked else "." + step
    return node


def _lookup(item, key: str) -> str | None:
    try:
        value = resolve(item, key)
    except Missing:
        return None
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None


# ----------------------------------------------------------------------- facts


@dataclass(frozen=True)
class Output:
    """What `aipc compile` printed: its exit status, the documents on stdout (the
    root a target's paths start from), every diagnostic (as `--format json` gives
    them) and the raw text of both streams."""

    status: int
    root: Any
    diagnostics: list[dict]
    text: str


@dataclass(frozen=True)
class At:
    """The value at ``path`` is ``expected``."""

    path: str
    expected: Any

    def check(self, output: Output) -> str | None:
        try:
            value = resolve(output.root, self.path)
        except Missing as missing:
            return None if self.expected is ABSENT else f"{self.path}: {missing}"
        if self.expected is ABSENT:
            return f"{self.path}: expected nothing, found {value!r}"
        if not _matches(self.expected, value):
            return f"{self.path}: expected {self.expected!r}, found {value!r}"
        return None


@dataclass(frozen=True)
class Warns:
    """A warning ``code`` at ``line``:``column`` of the .aip file (``in_file``: of the
    file it imports whose path ends so)."""

    code: str
    line: int
    column: int
    in_file: str | None = None

    def check(self, output: Output) -> str | None:
        found = [(d["code"], d["line"], d["column"]) for d in output.diagnostics if d["severity"] == "warning"
                 and (self.in_file is None or d["file"].endswith(self.in_file))]
        if (self.code, self.line, self.column) not in found:
            where = f" of {self.in_file}" if self.in_file else ""
            return f"no warning {self.code} at {self.line}:{self.column}{where} (warnings: {found})"
        return None


@dataclass(frozen=True)
class Fails:
    """The target rejects the program with exactly these errors, and writes nothing."""

    code: str
    positions: tuple[tuple[int, int], ...] = field(default=())

    def __init__(self, code: str, *positions: tuple[int, int]) -> None:
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "positions", positions)

    def check(self, output: Output) -> str | None:
        errors = sorted((d["code"], d["line"], d["column"]) for d in output.diagnostics if d["severity"] == "error")
        expected = sorted((self.code, line, column) for line, column in self.positions)
        if output.status != 1 or errors != expected or output.root is not None:
            return f"expected exit 1 with errors {expected} and no output; exit {output.status}, errors {errors}"
        return None


@dataclass(frozen=True)
class Quiet:
    """The target compiles the program without a single diagnostic."""

    def check(self, output: Output) -> str | None:
        if output.diagnostics:
            return f"expected no diagnostics, found {[(d['code'], d['line'], d['column']) for d in output.diagnostics]}"
        return None


def fact(item) -> At | Warns | Fails | Quiet:
    """A table entry as a fact: ``(path, expected)`` pairs become :class:`At`."""
    return At(*item) if isinstance(item, tuple) else item


def failures(output: Output, facts) -> list[str]:
    """Why each fact that does not hold fails; empty when all hold."""
    return [message for item in facts if (message := fact(item).check(output)) is not None]
