"""Property: a pipeline whose stages start from templates compiles to byte-identical
output, on every target, as the same pipeline written out by hand, over generated
chains of templates (in the file or imported) and the stages that use them.

The hand-written twin is merged here in plain Python (``{**template, **stage}``
per rule of LANGUAGE.md), independently of aipc's expansion."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aipc.backends import TARGETS, get_backend
from aipc.backends.writer import to_yaml
from aipc.compiler import check_source
from aipc.compiler.sources import Unreadable

MAPS = ("env", "labels", "resources", "mounts")  # merged key by key (mounts by path)

layers = st.fixed_dictionaries({}, optional={
    "image": st.sampled_from(['"ghcr.io/acme/a:1"', '"ghcr.io/acme/b:2"', '"python:3.11-slim"']),
    "run": st.one_of(  # `command` and `script` fill one slot
        st.tuples(st.just("command"), st.lists(st.sampled_from(['"python"', '"train.py"', '"--fast"', '"${epochs}"']),
                                               min_size=1, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")),
        st.tuples(st.just("script"), st.sampled_from(['"python a.py"', '"""\n    set -eu\n    python b.py\n  """']))),
    "workdir": st.sampled_from(['"/work"', '"/app"']),
    "retries": st.integers(0, 3).map(str),
    "timeout": st.sampled_from(["1m", "2h", "1h30m"]),
    "env": st.dictionaries(st.sampled_from(["A", "B", "LEVEL"]), st.sampled_from(['"1"', '"2"', '"${epochs}"']),
                           min_size=1),
    "labels": st.dictionaries(st.sampled_from(["team", "tier"]), st.sampled_from(['"x"', '"y"']), min_size=1),
    "resources": st.dictionaries(st.sampled_from(["cpu", "memory", "gpu", "shm"]),
                                 st.sampled_from(["1", "2"]), min_size=1).map(
        lambda d: {k: (v + "Gi" if k in ("memory", "shm") else v) for k, v in d.items()}),
    "mounts": st.dictionaries(st.sampled_from(["/data", "/models", "/cache/"]),
                              st.tuples(st.sampled_from(["data", "models"]), st.booleans()), min_size=1),
})

programs = st.fixed_dictionaries({
    "templates": st.lists(layers, min_size=1, max_size=3),  # t0, then t1 from t0, t2 from t1
    "stages": st.lists(st.tuples(st.integers(0, 2), layers), min_size=1, max_size=3),
    "imported": st.booleans(),
})


def body(layer: dict) -> str:
    lines = []
    for key, value in layer.items():
        if key == "run":
            lines.append(f"  {value[0]} = {value[1]}")
        elif key == "mounts":
            lines += [f'  mount {volume} at "{path}"' + (" readonly" if readonly else "")
                      for path, (volume, readonly) in value.items()]
        elif key == "resources":
            lines.append("  resources { " + "  ".join(f"{k} = {v}" for k, v in value.items()) + " }")
        elif key in ("env", "labels"):
            lines.append(f"  {key} = {{ " + ", ".join(f"{k} = {v}" for k, v in value.items()) + " }")
        else:
            lines.append(f"  {key} = {value}")
    return "{\n" + "\n".join(lines) + "\n}\n"


def merge(*chain: dict) -> dict:
    out: dict = {}
    for layer in chain:
        for key, value in layer.items():
            if key in MAPS:
                normal = {k.rstrip("/") or "/": v for k, v in value.items()} if key == "mounts" else value
                out[key] = {**out.get(key, {}), **normal}
            else:
                out[key] = value
    return out


HEAD = 'param epochs: int = 3\nvolume data { size = 1Gi  access = rwx }\nvolume models { size = 1Gi  access = rwx }\n'


def sources(program: dict) -> tuple[dict[str, str], str]:
    """The program with templates (and its library), and its hand-written twin."""
    templates = program["templates"]
    template_text = "".join(f"template t{i}: train" + (f" from t{i - 1} " if i else " ") + body(layer)
                            for i, layer in enumerate(templates))
    for_base = {i: templates[:i + 1] for i in range(len(templates))}
    prefix = "lib." if program["imported"] else ""
    with_templates, by_hand = HEAD, HEAD
    for n, (base, own) in enumerate(program["stages"]):
        base = min(base, len(templates) - 1)
        with_templates += f"train s{n} from {prefix}t{base} " + body(own)
        merged = merge({"image": '"default:1"'}, *for_base[base], own)
        by_hand += f"train s{n} " + body(merged)
    files = {"lib/lib.aip": template_text} if program["imported"] else {}
    root = ('import "lib/lib.aip"\n' if program["imported"] else template_text) + with_templates
    files["p.aip"] = root
    return files, by_hand


def compiled(text: str, files: dict[str, str]):
    def read(path: str) -> str:
        if path not in files:
            raise Unreadable(f"cannot read `{path}`", None)
        return files[path]

    checked = check_source(text, "p.aip", read=read)
    errors = [f"{d.code} {d.message}" for d in checked.diagnostics if d.is_error]
    return checked.ir, errors


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs)
def test_templates_compile_to_what_the_same_pipeline_written_out_compiles_to(program):
    files, by_hand = sources(program)
    # every stage needs an image: the first template (or the twin's default) gives one
    files["p.aip"] = files["p.aip"].replace("train s", 'pipeline "p" { image = "default:1" }\ntrain s', 1)
    by_hand = by_hand.replace("train s", 'pipeline "p" { image = "default:1" }\ntrain s', 1)
    expanded, errors = compiled(files["p.aip"], files)
    twin, twin_errors = compiled(by_hand, {})
    assert errors == twin_errors, (files, by_hand)
    if errors:
        return
    for target in TARGETS:
        backend = get_backend(target)
        assert to_yaml(backend.emit(expanded).documents) == to_yaml(backend.emit(twin).documents), target
