"""Coverage-guided fuzzing of the checker and every backend with atheris
(libFuzzer for Python), for long runs outside CI.

The test suite's hostile-input tests (tests/hostile/) run a fixed, bounded set
of generated and mutated inputs on every build; this target lets libFuzzer
search for hours, guided by which lines each input reaches.

    python -m venv .tools/fuzz
    .tools/fuzz/bin/pip install atheris .            # aipc and its dependencies, no test extra
    mkdir -p .tools/fuzz-corpus && cp examples/*.aip .tools/fuzz-corpus/
    .tools/fuzz/bin/python benchmarks/fuzz_atheris.py .tools/fuzz-corpus \\
        -max_total_time=3600 -timeout=10 -rss_limit_mb=1024 -dict=benchmarks/aip.dict

Any libFuzzer option works (``-jobs=2 -workers=2`` on two cores). A finding
is written as ``crash-*``/``timeout-*``/``oom-*`` in the working directory;
reproduce it with ``python benchmarks/fuzz_atheris.py crash-...`` or
``aipc check crash-...`` and add it to tests/hostile/ when fixed.

The property: for any bytes, ``check_source`` returns an IR or at least one
error, never raises; with an IR, every backend emits documents (or its own
diagnostics) and the YAML written for them reads back as the same documents.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import yaml

    from aipc.backends import TARGETS, get_backend
    from aipc.backends.writer import to_yaml
    from aipc.compiler.check import check_source


def test_one_input(data: bytes) -> None:
    checked = check_source(data, "fuzz.aip", {})
    if checked.ir is None:
        if not any(d.is_error for d in checked.diagnostics):
            raise AssertionError("no IR and no error")
        return
    for target in TARGETS:
        emitted = get_backend(target).emit(checked.ir)
        documents = list(emitted.documents)
        if list(yaml.safe_load_all(to_yaml(documents))) != documents:
            raise AssertionError(f"{target}: the YAML does not read back as the documents")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
