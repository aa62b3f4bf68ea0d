"""Small helpers the tests share (imported as `from tests.helpers import ...`)."""

from __future__ import annotations

from pathlib import Path

from aipc.compiler import check_source
from aipc.compiler import ir


ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.aip"))


def strip_spans(value):
    """A model dump without positions, for comparing models from different texts."""
    if isinstance(value, dict):
        return {k: strip_spans(v) for k, v in value.items() if not k.endswith("span")}
    if isinstance(value, (list, tuple)):
        return [strip_spans(v) for v in value]
    return value


def compile_ok(text: str, params: dict | None = None, path: str = "test.aip") -> ir.Pipeline:
    """The IR of a program that must check without errors."""
    checked = check_source(text, path, params or {})
    errors = [d for d in checked.diagnostics if d.is_error]
    assert not errors, [f"{d.code} {d.message}" for d in errors]
    assert checked.ir is not None
    return checked.ir


def compile_example(path: Path, params: dict | None = None) -> ir.Pipeline:
    """The IR of an example, checked where it lives (examples import lib/ml.aip)."""
    return compile_ok(path.read_text(), params, path=str(path))


def codes_of(text: str, params: dict | None = None) -> list[str]:
    return [d.code for d in check_source(text, "test.aip", params or {}).diagnostics]


def strings_in(value):
    """Every key and string of a YAML document read back, depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, str):
        yield value


def plain(value):
    """IR strings (ir.Text) as the Kubernetes target writes them, each parameter's
    value in place, in whatever tuples hold them: `plain(stage.env)`."""
    if isinstance(value, ir.Text):
        return value.render(param=ir.param_value, service=ir.service_address)
    if isinstance(value, tuple):
        return tuple(plain(item) for item in value)
    return value
