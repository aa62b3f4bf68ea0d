"""aipc against its peers: whole-process and in-process timings and peak memory.

    python benchmarks/run.py                  # the full run (about 10 minutes)
    python benchmarks/run.py --quick          # 3 runs, peers up to 100 stages (about 1 minute)
    python benchmarks/run.py --runs 9 --sizes 10,1000 --peer-sizes 1000
    python benchmarks/run.py --markdown results.md --json results.json
    python benchmarks/run.py --quick --no-peers --baseline main   # this tree against main, side by side

Pipelines of 10, 100, 1000 and 10000 stages come from generate.py (a chain of
N/10 data stages, parallel training stages with one GPU each, one evaluation
stage joining them). For each size it measures, in fresh processes:

- `aipc check` and `aipc compile -t k8s|argo|compose`, output to a file;
- the same pipeline built and compiled with Hera (peers/hera_pipeline.py, to an
  Argo Workflow) and with the Kubeflow Pipelines SDK (peers/kfp_pipeline.py,
  with kfp-kubernetes for the volumes), by default up to 1000 stages;

each the median wall time of --runs runs, taken round-robin so that every tool
meets the same machine load, with the peak resident memory of each process. It
then times aipc's phases in one warm process (inprocess.py), profiles the
imports of a cold `aipc check`, prints the results with the ratios to Hera,
and checks the goals of issue 8. Exit status 1 when a goal is missed.

With --baseline REF (a branch, tag or commit), a wheel of that commit is built
too (from `git archive`, into .tools/bench/aipc-COMMIT, kept for later runs:
a commit does not change) and its `aipc check` and `aipc compile` run in the
same rounds as this tree's, on the same files (the order reversed every other
round); the report gives, for each measurement, this tree's median CPU time
over REF's (and the wall-time ratios), flags every CPU ratio above 1.10 and
exits 1 if any is.

Each tool runs from its own virtual environment under .tools/bench/, made on
first use (pip needs the package index): aipc from a wheel of this working
tree, rebuilt on every run (in a venv named after the tree's path, so that
trees sharing .tools do not install over each other), so its modules are
byte-compiled at install as for a user; Hera with PyYAML; kfp with
kfp-kubernetes (they pin versions that conflict with aipc's test dependencies,
hence a venv of their own).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOOLS = ROOT / ".tools" / "bench"
sys.path.insert(0, str(HERE))
from generate import pipeline  # noqa: E402

GOALS = {
    "k8s_1000_seconds": 0.5,  # whole process, 1000-stage compile to Kubernetes
    "k8s_1000_vs_hera": 0.55,  # at most this share of Hera's time, same run
    "check_10_seconds": 0.20,  # cold check of a 10-stage file
    "peak_1000_mib": 80,  # peak memory at 1000 stages
    "linear_10000_vs_1000": 12,  # 10000 stages at most this many times 1000
}
TARGETS = ("k8s", "argo", "compose")
BASELINE_LIMIT = 1.10  # this tree's median at most this many times the baseline's (issue 11)


# ------------------------------------------------------------------ environments


def venv(name: str, requirements: list[str], fresh: bool = False) -> Path:
    """The Python of .tools/bench/NAME, with ``requirements`` installed."""
    directory = TOOLS / name
    python = directory / "bin" / "python"
    marker = directory / "requirements.txt"
    wanted = "\n".join(requirements)
    if fresh and directory.exists():
        shutil.rmtree(directory)
    if not python.exists() or not marker.exists() or marker.read_text() != wanted:
        print(f"setting up {directory} ({', '.join(requirements)})", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(directory)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-qq", *requirements], check=True)
        marker.write_text(wanted)
    return python


@contextlib.contextmanager
def locked(directory: Path):
    """An exclusive lock on ``directory`` (a file next to it) while it is set up:
    two runs sharing .tools/bench wait for each other instead of mixing installs."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.with_name(directory.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def install_aipc(source: Path, directory: Path) -> Path:
    """Build a wheel of the aipc tree at ``source`` and install it, with its
    dependencies, into the venv ``directory``; its Python."""
    wheels = Path(tempfile.mkdtemp(prefix="aipc-wheel-"))
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-qq", "-w", str(wheels), str(source)],
                       check=True)
        (wheel,) = wheels.glob("aipc-*.whl")
        python = directory / "bin" / "python"
        if not python.exists():
            print(f"setting up {directory}", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(directory)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-qq", "--force-reinstall", "--no-deps", str(wheel)],
                       check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-qq", str(wheel)], check=True)  # its dependencies
    finally:
        shutil.rmtree(wheels)
    return python


def aipc_venv() -> Path:
    """A venv with a wheel of the working tree (byte-compiled at install, as for a user)."""
    # Named after the tree's path: worktrees share .tools, and one tree's run must
    # not measure the wheel another tree installed a moment before.
    tree = hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
    directory = TOOLS / f"aipc-tree-{tree}"
    with locked(directory), tempfile.TemporaryDirectory(prefix="aipc-source-") as copy:
        # Built from a copy: an in-tree build would leave build/ behind, whose stale
        # files (of modules since deleted) later builds would put in the wheel.
        source = Path(copy) / "source"
        shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
            ".git", ".venv", ".tools", ".hypothesis", ".pytest_cache", "build", "dist", "*.egg-info", "tests",
            "node_modules", "__pycache__"))
        return install_aipc(source, directory)


def baseline_venv(ref: str) -> tuple[Path, str]:
    """A venv with a wheel of git ``ref`` (exported with `git archive`, so the
    working tree and its worktrees are untouched), and the commit it names.
    Kept between runs: a commit's wheel does not change."""
    found = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        raise SystemExit(f"--baseline {ref}: not a commit of this repository")
    commit = found.stdout.strip()
    directory = TOOLS / f"aipc-{commit[:12]}"
    marker = directory / "aipc-commit.txt"
    with locked(directory):
        installed = all((directory / "bin" / name).exists() for name in ("python", "aipc"))
        if marker.exists() and marker.read_text() == commit and installed:  # else: a broken install, made again
            return directory / "bin" / "python", commit
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit],
                                 capture_output=True, check=True).stdout
        with tempfile.TemporaryDirectory(prefix="aipc-baseline-") as export:
            source = Path(export) / "source"
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(source, filter="data")
            python = install_aipc(source, directory)
        marker.write_text(commit)
    return python, commit


def versions(python: Path, packages: list[str]) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys; "
            f"print(json.dumps({{p: m.version(p) for p in {packages!r}}}))")
    return json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                                     check=True).stdout)


# ------------------------------------------------------------------ measuring


def run_once(command: list[str], output: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and peak resident KiB of one child process."""
    with open(output, "wb") as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, cwd=output.parent)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(command)} failed ({child.returncode}):\n{err.read().decode()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def measure(commands: dict[tuple, list[str]], runs: dict[tuple, int], work: Path) -> dict[tuple, dict]:
    """Round-robin: each round runs every command once, so all meet the same load."""
    samples: dict[tuple, list[tuple[float, float, int]]] = {key: [] for key in commands}
    for key, command in commands.items():  # warm-up: disk cache, lark's grammar cache
        run_once(command, work / "warmup.out")
    for round_ in range(max(runs.values())):
        order = list(commands.items())
        for key, command in (order if round_ % 2 == 0 else reversed(order)):  # no one always goes first
            if round_ < runs[key]:
                samples[key].append(run_once(command, work / f"{'-'.join(map(str, key))}.out"))
        print(f"  round {round_ + 1}/{max(runs.values())} done", file=sys.stderr)
    return {
        key: {"wall": statistics.median(s[0] for s in values), "cpu": statistics.median(s[1] for s in values),
              "wall_min": min(s[0] for s in values), "peak_kib": max(s[2] for s in values), "runs": len(values)}
        for key, values in samples.items()
    }


PROFILED = ("networkx", "pydantic", "aipc.dsl.model", "lark", "argparse", "aipc.compiler.ir",
            "aipc.diagnostics", "aipc.compiler.lower", "aipc.compiler.check", "aipc.commands.common")


def import_profile(python: Path, path: Path, runs: int = 5) -> list[tuple[str, float]]:
    """Cumulative import times of a cold `aipc check` (best of ``runs``), in ms,
    for the libraries and modules that dominate it."""
    best: dict[str, float] = {}
    probe = f"from aipc.cli import main; main(['check', {str(path)!r}])"
    for _ in range(runs):
        err = subprocess.run([str(python), "-X", "importtime", "-c", probe], capture_output=True, text=True).stderr
        for line in err.splitlines():
            if line.startswith("import time:") and "cumulative" not in line:
                name = line.split("|")[2].strip()
                best[name] = min(best.get(name, 1e9), int(line.split("|")[1]) / 1000)
    return [(name, best[name]) for name in PROFILED if name in best]


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                           if line.startswith("model name"))
        meminfo = Path("/proc/meminfo").read_text().splitlines()[0].split()
        info["memory"] = f"{int(meminfo[1]) / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    info["load_before"] = os.getloadavg()
    return info


# ------------------------------------------------------------------ reporting


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|:---|" + "|".join("---:" for _ in headers[1:]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def seconds(value: float | None) -> str:
    return "—" if value is None else (f"{value:.3f} s" if value < 10 else f"{value:.1f} s")


def report(results: dict, sizes: list[int]) -> tuple[str, list[tuple[str, str, bool]]]:
    whole, inproc = results["whole"], results["inprocess"]

    def get(tool: str, size: int, field: str = "wall"):
        entry = whole.get(f"{tool}/{size}")
        return entry[field] if entry else None

    rows = []
    for size in sizes:
        hera, kfp = get("hera", size), get("kfp", size)
        row = [str(size)] + [seconds(get(tool, size)) for tool in ("check", *TARGETS)]
        row += [seconds(hera), seconds(kfp)]
        row += [f"{get(t, size) / hera:.2f}x" if hera else "—" for t in ("k8s", "argo")]
        row += [f"{kfp / hera:.1f}x" if kfp and hera else "—"]
        row += [f"{get('k8s', size, 'peak_kib') / 1024:.0f} MiB"]
        row += [f"{get('hera', size, 'peak_kib') / 1024:.0f} MiB" if hera else "—"]
        row += [f"{get('kfp', size, 'peak_kib') / 1024:.0f} MiB" if kfp else "—"]
        rows.append(row)
    text = ["### Whole process (median wall time; peak resident memory)", "",
            table(["stages", "aipc check", "compile k8s", "compile argo", "compile compose", "Hera", "KFP",
                   "k8s / Hera", "argo / Hera", "KFP / Hera", "peak k8s", "peak Hera", "peak KFP"], rows)]

    phase_rows = []
    for size in sizes:
        entry = inproc[str(size)]
        phase_rows.append([str(size)] + [f"{entry[p] * 1000:.1f} ms" for p in
                                         ("parse", "check", "emit k8s", "write k8s", "emit argo", "write argo",
                                          "emit compose", "write compose")]
                          + [f"{entry['peak check bytes'] / 2**20:.1f} MiB"])
    text += ["", "### In one warm process (median CPU time per phase, collector off as in the CLI; "
             "Python's peak allocation for a check)", "",
             table(["stages", "parse", "check (parse + lower)", "emit k8s", "write k8s", "emit argo", "write argo",
                    "emit compose", "write compose", "check peak"], phase_rows)]

    goals = []
    k8s_1000, hera_1000 = get("k8s", 1000), get("hera", 1000)
    if k8s_1000 is not None:
        goals.append((f"compile to k8s, 1000 stages, whole process <= {GOALS['k8s_1000_seconds']} s",
                      seconds(k8s_1000), k8s_1000 <= GOALS["k8s_1000_seconds"]))
        if hera_1000:
            goals.append((f"... at most {GOALS['k8s_1000_vs_hera']}x Hera's time in the same run",
                          f"{k8s_1000 / hera_1000:.2f}x", k8s_1000 / hera_1000 <= GOALS["k8s_1000_vs_hera"]))
        peak = max(get(t, 1000, "peak_kib") for t in ("check", *TARGETS)) / 1024
        goals.append((f"peak memory at 1000 stages <= {GOALS['peak_1000_mib']} MiB", f"{peak:.0f} MiB",
                      peak <= GOALS["peak_1000_mib"]))
    check_10 = get("check", 10)
    if check_10 is not None:
        goals.append((f"cold check, 10 stages <= {GOALS['check_10_seconds']} s", seconds(check_10),
                      check_10 <= GOALS["check_10_seconds"]))
    if get("check", 10000) is not None and k8s_1000 is not None:
        for tool in ("check", *TARGETS):
            ratio = get(tool, 10000) / get(tool, 1000)
            goals.append((f"{tool}: 10000 stages <= {GOALS['linear_10000_vs_1000']}x 1000 stages", f"{ratio:.1f}x",
                          ratio <= GOALS["linear_10000_vs_1000"]))
    text += ["", "### Goals (issue 8)", "",
             table(["goal", "measured", "met"], [[g, m, "yes" if ok else "**no**"] for g, m, ok in goals])]
    text += ["", "### Imports of a cold `aipc check` (cumulative, nested ones included; best of 5)", "",
             table(["module", "ms"], [[f"`{name}`", f"{ms:.1f}"] for name, ms in results["imports"]])]
    return "\n".join(text), goals


def baseline_report(results: dict, sizes: list[int], ref: str) -> tuple[str, list[str]]:
    """This tree against the baseline, measurement by measurement: the ratios of
    the median CPU time (user + system of the process: what the tree costs,
    little moved by other work on a shared machine; it decides the flag), of the
    median and of the fastest wall time, and both peaks; the measurements whose
    CPU ratio is over BASELINE_LIMIT."""
    whole, commit = results["whole"], results["machine"]["baseline"]
    rows, over = [], []
    for size in sizes:
        for tool in ("check", *TARGETS):
            mine, base = whole[f"{tool}/{size}"], whole[f"baseline-{tool}/{size}"]
            ratio = mine["cpu"] / base["cpu"]
            name = "aipc check" if tool == "check" else f"compile {tool}"
            if ratio > BASELINE_LIMIT:
                over.append(f"{name} {size}")
            rows.append([name, str(size), seconds(mine["cpu"]), seconds(base["cpu"]), f"{ratio:.2f}x",
                         f"{mine['wall'] / base['wall']:.2f}x", f"{mine['wall_min'] / base['wall_min']:.2f}x",
                         f"{mine['peak_kib'] / 1024:.0f} / {base['peak_kib'] / 1024:.0f} MiB",
                         f"**over {BASELINE_LIMIT}x**" if ratio > BASELINE_LIMIT else ""])
    text = [f"### This tree against {ref} ({commit[:12]}), in the same rounds", "",
            table(["command", "stages", "CPU", f"CPU {ref}", "CPU ratio", "wall ratio (median)",
                   "wall ratio (fastest)", f"peak, this / {ref}", ""], rows)]
    return "\n".join(text), over


# ------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per measurement (median)")
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--peer-sizes", default="10,100,1000", help="sizes for Hera and KFP")
    parser.add_argument("--kfp-runs", type=int, default=3, help="KFP is slow: fewer runs")
    parser.add_argument("--big-runs", type=int, default=3, help="runs at 10000 stages")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--quick", action="store_true", help="--runs 3 --peer-sizes 10,100 --sizes 10,100,1000")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    parser.add_argument("--baseline", metavar="REF",
                        help=f"also measure git REF's aipc in the same rounds; exit 1 if this tree takes more "
                             f"than {BASELINE_LIMIT}x its time anywhere (and only then)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.kfp_runs, args.sizes, args.peer_sizes = 3, 1, "10,100,1000", "10,100"
    sizes = [int(s) for s in args.sizes.split(",")]
    peer_sizes = [] if args.no_peers else [int(s) for s in args.peer_sizes.split(",")]

    info = machine()
    aipc_python = aipc_venv()
    pythons = {"aipc": aipc_python}
    if peer_sizes:
        pythons["hera"] = venv("hera", ["hera>=5.16", "PyYAML"])
        pythons["kfp"] = venv("kfp", ["kfp>=2.7", "kfp-kubernetes>=1.2"])
    info["versions"] = versions(aipc_python, ["aipc", "lark", "pydantic", "networkx", "PyYAML"])
    if peer_sizes:
        info["versions"] |= versions(pythons["hera"], ["hera", "pydantic"]) | versions(pythons["kfp"],
                                                                                       ["kfp", "kfp-kubernetes"])
    aipc_script = str(aipc_python.parent / "aipc")
    baseline_script = None
    if args.baseline:
        baseline_python, info["baseline"] = baseline_venv(args.baseline)
        baseline_script = str(baseline_python.parent / "aipc")

    with tempfile.TemporaryDirectory(prefix="aipc-bench-") as directory:
        work = Path(directory)
        files = {}
        for size in sizes:
            files[size] = work / f"bench-{size}.aip"
            files[size].write_text(pipeline(size))
        commands: dict[tuple, list[str]] = {}
        runs: dict[tuple, int] = {}
        for size in sizes:
            many = args.big_runs if size >= 10000 else args.runs
            for tool in ("check", *TARGETS):
                arguments = ["check"] if tool == "check" else ["compile", "-t", tool]
                commands[(tool, size)] = [aipc_script, *arguments, str(files[size])]
                runs[(tool, size)] = many
                if baseline_script:  # right after this tree's: the two meet the same load
                    commands[(f"baseline-{tool}", size)] = [baseline_script, *arguments, str(files[size])]
                    runs[(f"baseline-{tool}", size)] = many
        for size in peer_sizes:
            commands[("hera", size)] = [str(pythons["hera"]), str(HERE / "peers" / "hera_pipeline.py"), str(size)]
            runs[("hera", size)] = args.runs
            commands[("kfp", size)] = [str(pythons["kfp"]), str(HERE / "peers" / "kfp_pipeline.py"), str(size)]
            runs[("kfp", size)] = args.kfp_runs
        print(f"measuring {len(commands)} commands, up to {max(runs.values())} rounds", file=sys.stderr)
        whole = measure(commands, runs, work)
        print("in-process phases", file=sys.stderr)
        inproc = json.loads(subprocess.run(
            [str(aipc_python), str(HERE / "inprocess.py"), str(args.runs), *map(str, files.values())],
            capture_output=True, text=True, check=True).stdout)
        imports = import_profile(aipc_python, files[min(sizes)])

    info["load_after"] = os.getloadavg()
    results = {
        "machine": info,
        "whole": {f"{tool}/{size}": value for (tool, size), value in whole.items()},
        "inprocess": {str(size): inproc[str(files[size])] for size in sizes},
        "imports": imports,
    }
    text, goals = report(results, sizes)
    over = None
    if args.baseline:
        compared, over = baseline_report(results, sizes, args.baseline)
        text += "\n\n" + compared
    header = (f"Machine: {info.get('cpu', '?')}, {info['cpus']} CPUs, {info.get('memory', '?')}; "
              f"{info['platform']}; Python {info['python']}; load average {info['load_before'][0]:.2f} before, "
              f"{info['load_after'][0]:.2f} after.\nVersions: "
              + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".")
    print(header + "\n\n" + text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(header + "\n\n" + text + "\n")
    if over is not None:  # the question asked was the comparison
        if over:
            print(f"\nover {BASELINE_LIMIT}x {args.baseline}: " + ", ".join(over), file=sys.stderr)
        return 1 if over else 0
    return 0 if all(ok for _, _, ok in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
