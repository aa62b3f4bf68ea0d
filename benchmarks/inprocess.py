"""In-process timings and memory of aipc's phases; run by benchmarks/run.py with
the benchmark environment's Python (a wheel install, not the repository).

    python benchmarks/inprocess.py RUNS FILE...

Prints one JSON object: for each file, the median CPU time of each phase over
RUNS runs in one warm process (parse; check = parse + lower; emit and write for
each target) and the peak of memory Python allocated for a check and a
compile to Kubernetes (tracemalloc, measured in a separate pass so that it does
not slow the timings).

The cyclic garbage collector is off, as in `aipc check` and `aipc compile`
(the CLI turns it off; the library leaves it alone, and with the collector on
its passes over a 10000-stage IR cost more than the check or emit itself).
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
import tracemalloc

from aipc.backends import TARGETS, get_backend
from aipc.backends.writer import to_yaml
from aipc.compiler.check import check_source
from aipc.dsl.parser import parse

clock = time.process_time


def timed(function):
    start = clock()
    result = function()
    return result, clock() - start


def measure(text: str, path: str, runs: int) -> dict:
    samples: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        samples.setdefault(name, []).append(seconds)

    for _ in range(runs):
        _, seconds = timed(lambda: parse(text, path))
        add("parse", seconds)
        checked, seconds = timed(lambda: check_source(text, path))
        add("check", seconds)
        assert checked.ir is not None, [d.message for d in checked.diagnostics if d.is_error]
        for target in TARGETS:
            backend = get_backend(target)
            emitted, seconds = timed(lambda: backend.emit(checked.ir))
            add(f"emit {target}", seconds)
            _, seconds = timed(lambda: to_yaml(emitted.documents))
            add(f"write {target}", seconds)
            assert not gc.isenabled()  # check_source and to_yaml leave it as they found it (off)
        del checked
    result = {name: statistics.median(values) for name, values in samples.items()}

    tracemalloc.start()
    checked = check_source(text, path)
    result["peak check bytes"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    to_yaml(get_backend("k8s").emit(checked.ir).documents)
    result["peak k8s emit+write bytes"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result


def main() -> int:
    gc.disable()
    runs = int(sys.argv[1])
    out = {}
    for path in sys.argv[2:]:
        with open(path, encoding="utf-8") as source:
            text = source.read()
        out[path] = measure(text, path, runs if len(text) < 1_000_000 else min(runs, 3))
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
