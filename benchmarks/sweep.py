"""A sweep of 50 x 20 = 1000 instances against the same 1000 stages written by hand.

    python benchmarks/sweep.py               # 7 runs of each
    python benchmarks/sweep.py --runs 15

Goal (issue 18): compiling the matrix stage takes at most 1.5x the time of
compiling the 1000 stages written out, for `aipc check` and `aipc compile` to
every target. The programs come from generate.py (`sweep` and `unrolled`): one
preparation stage, 1000 training stages with the same image, command (their
learning rate and seed in it), mounts and resources, and one evaluation stage
after all of them. Both compile to the same 1002 workloads.

Measured with the aipc this Python imports, each command in fresh processes
(`python -m aipc`, output to a file), the median CPU time (user + system) and
wall time of --runs runs taken round-robin; then check, emit and write in one
warm process, median CPU time. Exit status 1 when a ratio is above the goal.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import sweep, unrolled  # noqa: E402

GOAL = 1.5
COMMANDS = {
    "aipc check": ["check"],
    "compile k8s": ["compile", "--target", "k8s"],
    "compile argo": ["compile", "--target", "argo"],
    "compile compose": ["compile", "--target", "compose"],
}


def run_once(arguments: list[str], path: Path, output: Path) -> tuple[float, float]:
    """(CPU, wall) seconds of one `python -m aipc` process."""
    command = [sys.executable, "-m", "aipc", *arguments, str(path)]
    if arguments[0] == "compile":
        command += ["-o", str(output)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"`{' '.join(command)}` failed")
    return usage.ru_utime + usage.ru_stime, wall


def whole_process(files: dict[str, Path], runs: int, directory: Path) -> dict[tuple[str, str], tuple[float, float]]:
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for round_number in range(runs):
        for label, arguments in COMMANDS.items():
            order = list(files.items())
            if round_number % 2:
                order.reverse()  # both programs meet the same load
            for program, path in order:
                samples.setdefault((label, program), []).append(
                    run_once(arguments, path, directory / f"{program}.yaml"))
    return {key: (statistics.median(c for c, _ in values), statistics.median(w for _, w in values))
            for key, values in samples.items()}


def in_process(texts: dict[str, str], runs: int) -> dict[tuple[str, str], float]:
    from aipc.backends import TARGETS, get_backend
    from aipc.backends.writer import to_yaml
    from aipc.compiler.check import check_source

    clock = time.process_time
    samples: dict[tuple[str, str], list[float]] = {}
    gc.disable()  # as in the CLI
    for _ in range(runs):
        for program, text in texts.items():
            start = clock()
            checked = check_source(text, f"{program}.aip")
            samples.setdefault(("check", program), []).append(clock() - start)
            assert checked.ir is not None and len(checked.ir.stages) == 1002
            for target in TARGETS:
                start = clock()
                to_yaml(get_backend(target).emit(checked.ir).documents)
                samples.setdefault((f"emit + write {target}", program), []).append(clock() - start)
    return {key: statistics.median(values) for key, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    texts = {"matrix": sweep(50, 20), "unrolled": unrolled(50, 20)}
    with tempfile.TemporaryDirectory(prefix="aipc-sweep-bench-") as name:
        directory = Path(name)
        files = {}
        for program, text in texts.items():
            files[program] = directory / f"{program}.aip"
            files[program].write_text(text)
        whole = whole_process(files, args.runs, directory)
    warm = in_process(texts, args.runs)

    missed = []
    print(f"50 x 20 matrix (1000 instances, {len(texts['matrix'])} bytes) against 1000 stages written out "
          f"({len(texts['unrolled'])} bytes); median of {args.runs} runs\n")
    print("| command | matrix CPU | unrolled CPU | CPU ratio | matrix wall | unrolled wall | wall ratio |")
    print("|:---|---:|---:|---:|---:|---:|---:|")
    for label in COMMANDS:
        (cpu, wall), (cpu_by_hand, wall_by_hand) = whole[(label, "matrix")], whole[(label, "unrolled")]
        ratio = cpu / cpu_by_hand
        flag = f" **over {GOAL}x**" if ratio > GOAL else ""
        if flag:
            missed.append(label)
        print(f"| {label} | {cpu:.3f} s | {cpu_by_hand:.3f} s | {ratio:.2f}x{flag} | {wall:.3f} s | "
              f"{wall_by_hand:.3f} s | {wall / wall_by_hand:.2f}x |")
    print("\nIn one warm process (median CPU time):\n")
    print("| phase | matrix | unrolled | ratio |")
    print("|:---|---:|---:|---:|")
    for phase in dict.fromkeys(phase for phase, _ in warm):
        matrix, by_hand = warm[(phase, "matrix")], warm[(phase, "unrolled")]
        print(f"| {phase} | {matrix * 1000:.1f} ms | {by_hand * 1000:.1f} ms | {matrix / by_hand:.2f}x |")
    if missed:
        print(f"\ngoal missed (at most {GOAL}x the hand-written stages): {', '.join(missed)}")
        return 1
    print(f"\ngoal met: every command within {GOAL}x of the hand-written stages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
