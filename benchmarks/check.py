"""Cold `aipc check`, whole process: the time an editor or CI waits.

    python benchmarks/check.py [--runs 11]

Runs the installed `aipc` console script (next to this Python) on generated
pipelines of 10 and 1000 stages, reports the median wall time of several runs,
compares the 10-stage time with its goal, and lists any heavy library the
check path imported (it should import none).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import pipeline  # noqa: E402

GOAL_10 = 0.20  # seconds, whole process, on a 2-core machine
HEAVY = ("docker", "kubernetes", "pygls", "lsprotocol", "rich", "yaml", "hera")


def aipc_command() -> list[str]:
    script = Path(sys.executable).with_name("aipc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "aipc"]


def median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout.decode()}{result.stderr.decode()}")
    return statistics.median(times)


def heavy_imports(path: Path) -> list[str]:
    probe = (f"import sys; from aipc.cli import main; main(['check', {str(path)!r}]); "
             f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout
    return eval(out.strip().splitlines()[-1])  # a list literal printed by the probe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, aipc at {shutil.which('aipc') or 'python -m aipc'}")
    with tempfile.TemporaryDirectory() as directory:
        rows = []
        for stages in (10, 1000):
            path = Path(directory) / f"bench-{stages}.aip"
            path.write_text(pipeline(stages))
            median_seconds(aipc_command() + ["check", str(path)], 1)  # warm the disk and lark's cache
            rows.append((stages, median_seconds(aipc_command() + ["check", str(path)], args.runs)))
        heavy = heavy_imports(Path(directory) / "bench-10.aip")
    print(f"{'stages':>8}  {'median':>9}  goal")
    for stages, seconds in rows:
        goal = f"<= {GOAL_10:.2f} s {'met' if seconds <= GOAL_10 else 'MISSED'}" if stages == 10 else ""
        print(f"{stages:>8}  {seconds:>7.3f} s  {goal}")
    print(f"heavy libraries imported by check: {', '.join(heavy) if heavy else 'none'}")
    return 0 if not heavy else 1


if __name__ == "__main__":
    sys.exit(main())
