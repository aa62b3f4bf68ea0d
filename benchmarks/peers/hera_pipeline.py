"""The benchmark pipeline built with Hera (Argo Workflows' Python SDK) and
compiled to an Argo Workflow, as its users write it.

    python benchmarks/peers/hera_pipeline.py STAGES [OUT]

The same shape as ``benchmarks/generate.py`` and the same content as
``aipc compile -t argo`` writes for it: workflow parameters, two volume claim
templates, one container template per stage with its image, command,
requests/limits, GPU, volume mounts (readonly where the .aip says so) and the
hardening aipc adds (security contexts, a /tmp emptyDir), and the DAG. Labels
on every object are left out; they only make Hera's side slower.
"""

from __future__ import annotations

import sys


def build(stages: int):
    from hera.workflows import DAG, Container, Parameter, Resources, Workflow
    from hera.workflows import models as m

    chain = max(1, stages // 10)
    trainers = stages - chain - 1
    name = f"bench-{stages}"

    def claim(volume: str, size: str):
        return m.PersistentVolumeClaim(
            metadata=m.ObjectMeta(name=volume),
            spec=m.PersistentVolumeClaimSpec(
                access_modes=["ReadWriteMany"],
                resources=m.VolumeResourceRequirements(requests={"storage": m.Quantity(size)}),
            ),
        )

    hardened = m.SecurityContext(
        allow_privilege_escalation=False, privileged=False, read_only_root_filesystem=True,
        run_as_non_root=True, capabilities=m.Capabilities(drop=["ALL"]),
    )
    gpu_toleration = [m.Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]

    def mounts(*pairs):
        out = [m.VolumeMount(name=volume, mount_path=path, read_only=True if readonly else None)
               for volume, path, readonly in pairs]
        return out + [m.VolumeMount(name="tmp", mount_path="/tmp")]

    def template(task: str, image: str, command: list[str], resources: Resources, volume_mounts,
                 gpu: bool = False) -> Container:
        return Container(
            name=task, image=image, command=command, resources=resources,
            env=[m.EnvVar(name="HOME", value="/tmp")], security_context=hardened,
            volume_mounts=volume_mounts, volumes=[m.Volume(name="tmp", empty_dir=m.EmptyDirVolumeSource())],
            tolerations=gpu_toleration if gpu else None,
        )

    with Workflow(
        generate_name=f"{name}-", namespace="bench", entrypoint="main",
        arguments=[Parameter(name="epochs", value="3"), Parameter(name="lr", value="3e-4")],
        service_account_name="argo-workflow",
        security_context=m.PodSecurityContext(
            run_as_non_root=True, run_as_user=65532, run_as_group=65532, fs_group=65532,
            fs_group_change_policy="OnRootMismatch", seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
        ),
        volume_claim_templates=[claim("data", "100Gi"), claim("models", "50Gi")],
    ) as workflow:
        preps = [
            template(f"prep-{i}", f"registry.example.com/etl:1.{i % 10}.0",
                     ["python", "-m", "etl.step", "--index", str(i), "--out", f"/data/step-{i}"],
                     Resources(cpu_request=2, cpu_limit=2, memory_request="4Gi", memory_limit="4Gi"),
                     mounts(("data", "/data", False)))
            for i in range(chain)
        ]
        models = [
            template(f"model-{i}", f"registry.example.com/trainer:2.{i % 10}.0",
                     ["python", "train.py", "--shard", str(i), "--epochs", "{{workflow.parameters.epochs}}",
                      "--lr", "{{workflow.parameters.lr}}"],
                     Resources(cpu_request=4, cpu_limit=8, memory_request="16Gi", memory_limit="32Gi", gpus=1),
                     mounts(("data", "/data", True), ("models", "/models", False)), gpu=True)
            for i in range(trainers)
        ]
        evaluate = template("evaluate", "registry.example.com/trainer:2.0.0",
                            ["python", "evaluate.py", "--models", "/models"],
                            Resources(cpu_request=2, cpu_limit=2, memory_request="8Gi", memory_limit="8Gi"),
                            mounts(("models", "/models", True)))
        with DAG(name="main"):
            previous = None
            for container in preps:
                task = container()
                if previous is not None:
                    previous >> task
                previous = task
            trained = [container() for container in models]
            last = evaluate()
            for task in trained:
                previous >> task
            trained >> last
    return workflow


def main() -> int:
    stages = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    text = build(stages).to_yaml()
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
