"""Benchmark pipelines of a fixed shape, for any number of stages.

A chain of N/10 data stages, then the rest as parallel training stages with one
GPU each, all joined by one evaluation stage. Every stage has an image, a
command, cpu and memory, and a mounted volume.

    python benchmarks/generate.py 1000 > /tmp/p1000.aip

:func:`sweep` and :func:`unrolled` are one sweep written as a matrix stage and
the same stages written by hand (benchmarks/sweep.py compares them).
"""

from __future__ import annotations

import sys


def pipeline(stages: int) -> str:
    if stages < 3:
        raise ValueError("the shape needs at least 3 stages")
    chain = max(1, stages // 10)
    trainers = stages - chain - 1
    out = [
        f'pipeline "bench-{stages}" {{',
        '  description = "generated benchmark pipeline"',
        '  namespace   = "bench"',
        "}",
        "",
        "param epochs: int = 3",
        'param lr: float = 3e-4',
        "",
        'volume data   { size = 100Gi  access = rwx }',
        'volume models { size = 50Gi   access = rwx }',
        "",
    ]
    for i in range(chain):
        after = f"\n  after   = [prep_{i - 1}]" if i else ""
        out.append(f'''data prep_{i} {{
  image   = "registry.example.com/etl:1.{i % 10}.0"{after}
  command = ["python", "-m", "etl.step", "--index", "{i}", "--out", "/data/step-{i}"]
  mount data at "/data"
  resources {{ cpu = 2  memory = 4Gi }}
}}
''')
    for i in range(trainers):
        out.append(f'''train model_{i} {{
  image   = "registry.example.com/trainer:2.{i % 10}.0"
  after   = [prep_{chain - 1}]
  command = ["python", "train.py", "--shard", "{i}", "--epochs", "${{epochs}}", "--lr", "${{lr}}"]
  mount data   at "/data" readonly
  mount models at "/models"
  resources {{ cpu = 4..8  memory = 16Gi..32Gi  gpu = 1 }}
}}
''')
    after = ", ".join(f"model_{i}" for i in range(trainers))
    out.append(f'''eval evaluate {{
  image   = "registry.example.com/trainer:2.0.0"
  after   = [{after}]
  command = ["python", "evaluate.py", "--models", "/models"]
  mount models at "/models" readonly
  resources {{ cpu = 2  memory = 8Gi }}
}}
''')
    return "\n".join(out)


SWEEP_HEADER = """\
pipeline "bench-sweep" {
  namespace = "bench"
}

param epochs: int = 3

volume data   { size = 100Gi  access = rwx }
volume models { size = 50Gi   access = rwx }

data prep {
  image   = "registry.example.com/etl:1.0.0"
  command = ["python", "-m", "etl.prepare", "--out", "/data"]
  mount data at "/data"
  resources { cpu = 2  memory = 4Gi }
}
"""


def learning_rates(count: int) -> list[str]:
    return [f"{i + 1}e-5" for i in range(count)]


# One training stage (`matrix` is empty or a matrix line), and the evaluation after them.
TRAINER = """\
train {name} {{
  image   = "registry.example.com/trainer:2.1.0"{matrix}
  after   = [prep]
  command = ["python", "train.py", "--lr", "{lr}", "--seed", "{seed}", "--epochs", "${{epochs}}",
             "--out", "/models/${{stage.name}}"]
  mount data   at "/data" readonly
  mount models at "/models"
  resources {{ cpu = 4..8  memory = 16Gi..32Gi  gpu = 1 }}
}}
"""
EVALUATE = """\
eval evaluate {{
  image   = "registry.example.com/trainer:2.1.0"
  after   = [{after}]
  command = ["python", "evaluate.py", "--models", "/models"]
  mount models at "/models" readonly
  resources {{ cpu = 2  memory = 8Gi }}
}}
"""


def sweep(rates: int = 50, seeds: int = 20) -> str:
    """A sweep of ``rates`` x ``seeds`` training instances as one matrix stage, joined by one evaluation."""
    matrix = (f'\n  matrix  {{ lr = [{", ".join(learning_rates(rates))}]  '
              f'seed = [{", ".join(str(s) for s in range(seeds))}] }}')
    trainer = TRAINER.format(name="model", matrix=matrix, lr="${matrix.lr}", seed="${matrix.seed}")
    return "\n".join([SWEEP_HEADER, trainer, EVALUATE.format(after="model")])


def unrolled(rates: int = 50, seeds: int = 20) -> str:
    """The same pipeline as :func:`sweep`, each instance written by hand as a stage."""
    names = [(f"model_{lr.replace('-', '_')}_{seed}", lr, seed) for lr in learning_rates(rates) for seed in range(seeds)]
    trainers = [TRAINER.format(name=name, matrix="", lr=lr, seed=seed) for name, lr, seed in names]
    return "\n".join([SWEEP_HEADER, *trainers, EVALUATE.format(after=", ".join(name for name, _, _ in names))])


if __name__ == "__main__":
    sys.stdout.write(pipeline(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
