"""The one writer: documents to YAML text, and files written atomically.

YAML comes from PyYAML's C emitter when it is available. Keys keep the order
the backend built them in (no sorting here: backends choose a readable order),
multi-line strings are literal blocks, and no anchors or aliases are emitted
even when one object appears twice.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Iterable

import yaml

_Base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_Base):  # type: ignore[misc, valid-type]
    def ignore_aliases(self, data) -> bool:
        return True


# Plain scalars that YAML 1.1 (PyYAML) reads as strings but YAML 1.2 readers (Go's
# yaml.v3 in compose v2 and kubectl, ruamel) read as numbers, booleans or null:
# `3e-4`, `0o17`. PyYAML already quotes what YAML 1.1 would not read as a string.
_YAML12_NON_STRING = re.compile(
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|0o[0-7]+|0x[0-9a-fA-F]+"
    r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)|null|Null|NULL|~|true|True|TRUE|false|False|FALSE"
)


def _represent_str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    if style is None and _YAML12_NON_STRING.fullmatch(value):
        style = "'"
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def to_yaml(documents: Iterable[dict]) -> str:
    """A YAML stream; several documents are separated by `---`."""
    documents = list(documents)
    return yaml.dump_all(
        documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
        allow_unicode=True, width=4096, explicit_start=len(documents) > 1,
    )


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one,
    never half of either; on any failure the temporary file is removed."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".aipc-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
