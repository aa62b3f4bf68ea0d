"""benchmarks/run.py --baseline: the side-by-side report and its flag. (The
measuring itself builds wheels and takes minutes: it runs by hand.)"""

from __future__ import annotations

import importlib.util

import pytest

from tests.helpers import ROOT


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measured(cpu: float, wall: float | None = None) -> dict:
    wall = cpu if wall is None else wall
    return {"wall": wall, "cpu": cpu, "wall_min": wall, "peak_kib": 50 * 1024, "runs": 3}


def test_a_cpu_ratio_over_the_limit_is_flagged(run):
    whole = {}
    for tool in ("check", *run.TARGETS):
        whole[f"{tool}/10"] = measured(0.20)
        whole[f"baseline-{tool}/10"] = measured(0.20)
    whole["k8s/10"] = measured(0.23)  # 1.15x
    whole["check/10"] = measured(0.21, wall=0.40)  # 1.05x of CPU; the wall time doubled by load does not count
    text, over = run.baseline_report({"whole": whole, "machine": {"baseline": "0123456789abcdef"}}, [10], "main")
    assert over == ["compile k8s 10"]
    assert "main (0123456789ab)" in text
    (k8s,) = [line for line in text.splitlines() if line.startswith("| compile k8s |")]
    assert "1.15x" in k8s and "**over 1.1x**" in k8s
    (check,) = [line for line in text.splitlines() if line.startswith("| aipc check |")]
    assert "1.05x" in check and "2.00x" in check and "over" not in check


def test_an_unknown_baseline_is_a_clear_error(run):
    with pytest.raises(SystemExit, match="--baseline no-such-ref: not a commit of this repository"):
        run.baseline_venv("no-such-ref")


def test_the_sweep_benchmark_compares_like_with_like():
    """benchmarks/sweep.py: the matrix stage and the stages written out are the same
    1002 workloads, one for one, names aside."""
    spec = importlib.util.spec_from_file_location("bench_generate", ROOT / "benchmarks" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    from aipc.compiler import ir
    from tests.helpers import compile_ok, plain

    swept = compile_ok(generate.sweep(5, 4), path="s.aip")
    by_hand = compile_ok(generate.unrolled(5, 4), path="s.aip")
    assert len(swept.stages) == len(by_hand.stages) == 22 and len(swept.matrices[0].instances) == 20

    def shape(stage: ir.Stage):
        command = tuple(argument.replace(f"/models/{stage.name}", "/models/NAME") for argument in plain(stage.command))
        mounts = tuple((mount.volume.name, mount.path, mount.readonly) for mount in stage.mounts)
        return (stage.kind, plain(stage.image), command, stage.resources, mounts, stage.level)

    assert sorted(map(shape, swept.stages), key=repr) == sorted(map(shape, by_hand.stages), key=repr)
