"""The benchmark pipeline built with the Kubeflow Pipelines SDK (kfp v2) and
kfp-kubernetes for the volumes, compiled to KFP's pipeline YAML.

    python benchmarks/peers/kfp_pipeline.py STAGES [OUT]

The same shape as ``benchmarks/generate.py``: one container component per
stage (image, command with the pipeline parameters as inputs), cpu and memory
requests and limits, one GPU on each training stage, the two volumes created as
PersistentVolumeClaims and mounted, and the dependencies with ``.after``.
kfp-kubernetes has no read-only mount, so every mount is read-write here.
"""

import sys

# No `from __future__ import annotations`: kfp reads the components' annotations
# as types (`epochs: int`), not strings.


def build(stages: int):
    from kfp import dsl, kubernetes

    chain = max(1, stages // 10)
    trainers = stages - chain - 1

    def component(name: str, image: str, command: list, trains: bool):
        if trains:
            def body(epochs: int, lr: float):
                return dsl.ContainerSpec(image=image, command=[*command, "--epochs", epochs, "--lr", lr])
        else:
            def body():
                return dsl.ContainerSpec(image=image, command=command)
        body.__name__ = name.replace("-", "_")
        return dsl.container_component(body)

    preps = [component(f"prep-{i}", f"registry.example.com/etl:1.{i % 10}.0",
                       ["python", "-m", "etl.step", "--index", str(i), "--out", f"/data/step-{i}"], False)
             for i in range(chain)]
    models = [component(f"model-{i}", f"registry.example.com/trainer:2.{i % 10}.0",
                        ["python", "train.py", "--shard", str(i)], True)
              for i in range(trainers)]
    evaluate = component("evaluate", "registry.example.com/trainer:2.0.0",
                         ["python", "evaluate.py", "--models", "/models"], False)

    @dsl.pipeline(name=f"bench-{stages}", description="generated benchmark pipeline")
    def pipeline(epochs: int = 3, lr: float = 3e-4):
        data = kubernetes.CreatePVC(pvc_name_suffix="-data", access_modes=["ReadWriteMany"], size="100Gi")
        models_volume = kubernetes.CreatePVC(pvc_name_suffix="-models", access_modes=["ReadWriteMany"],
                                             size="50Gi")

        def configure(task, cpu, memory, gpu, volumes):
            task.set_cpu_request(cpu[0]).set_cpu_limit(cpu[1])
            task.set_memory_request(memory[0]).set_memory_limit(memory[1])
            if gpu:
                task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
            for volume, path in volumes:
                kubernetes.mount_pvc(task, pvc_name=volume.outputs["name"], mount_path=path)
            return task

        previous = None
        for op in preps:
            task = configure(op(), ("2", "2"), ("4Gi", "4Gi"), False, [(data, "/data")])
            if previous is not None:
                task.after(previous)
            previous = task
        trained = []
        for op in models:
            task = configure(op(epochs=epochs, lr=lr), ("4", "8"), ("16Gi", "32Gi"), True,
                             [(data, "/data"), (models_volume, "/models")])
            trained.append(task.after(previous))
        last = configure(evaluate(), ("2", "2"), ("8Gi", "8Gi"), False, [(models_volume, "/models")])
        last.after(*trained)

    return pipeline


def main() -> int:
    import os
    import tempfile

    from kfp import compiler

    stages = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    pipeline = build(stages)
    if len(sys.argv) > 2:
        compiler.Compiler().compile(pipeline_func=pipeline, package_path=sys.argv[2])
    else:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "pipeline.yaml")
            compiler.Compiler().compile(pipeline_func=pipeline, package_path=path)
            with open(path, encoding="utf-8") as compiled:
                sys.stdout.write(compiled.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
