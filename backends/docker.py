"""One stage as one Docker container: what docker-compose writes and `aipc run` creates.

Every decision about a stage's container on a Docker engine is made here, once:
the compose backend writes a :class:`ContainerSpec` as a service, and the runner
(:mod:`aipc.runner.docker_driver`) maps it to Docker SDK arguments, as
`aipc apply` applies the Kubernetes backend's documents. What each piece is:

- the program: ``command`` is the whole argv, so its first item replaces the
  image's entrypoint and the rest are its arguments; a ``script`` runs as
  ``sh -c SCRIPT``; with neither the image's own entrypoint and command run;
- the environment: ``env``, then each key of the stage's secrets that ``env``
  does not set, passed through by name (its value comes from the caller's
  environment and is never written anywhere);
- mounts: the volume and its path, read-only for a ``readonly`` mount and for
  any mount of a ``rox`` volume; each consumer names the volume (a compose
  volume or bind path, a run's Docker volume);
- hardening: every capability dropped, no new privileges, a read-only root and
  a tmpfs at ``/tmp`` unless a volume is mounted there;
- resources: cpu and memory ranges (a limit and a reservation), NVIDIA and AMD
  GPUs as a device request (``amd`` is the driver Docker Engine 28.3+ registers
  with the AMD Container Toolkit), Intel GPUs as the ``/dev/dri`` device nodes
  (Docker has no driver to count them), ``shm`` as the shm size;
- a serve stage publishes its port: host ports from ``port`` up, one per
  replica, so each replica gets its own and the declared port always answers
  (stages whose host ports overlap are reported, B102); it is probed at its
  ``health`` path, and other containers reach it as the stage and as
  ``<pipeline>-<stage>``, the name of its Service on Kubernetes;
- labels: the standard ones (:func:`aipc.compiler.ir.standard_labels`), the
  pipeline's and the stage's.

The GPUs of a device request are the first ``count`` of the machine, or the
``device_ids`` one machine's assignment gives the stage (:mod:`aipc.backends.devices`).

What a Docker container cannot express (a GPU model, a limit on local storage,
a number of Intel GPUs) is reported by :func:`report_unsupported`, and what one
machine has no use for (``schedule``, autoscaling) by :func:`report_scheduling`,
as the same B101 warnings on both targets.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from typing import Iterable, Iterator, Mapping

from aipc import codes
from aipc.compiler import ir
from aipc.compiler.ir import format_bytes
from aipc.diagnostics import Diagnostics, Label, Span

HARDENING_TMP = "/tmp"
INTEL_GPU_DEVICES = "/dev/dri:/dev/dri"  # HOST:CONTAINER, every render node
MAX_PORT = 65535


@dataclass(frozen=True, slots=True)
class Mount:
    volume: ir.Volume  # sized (a named volume), host (a bind mount) or claim (an existing volume)
    target: str
    read_only: bool


@dataclass(frozen=True, slots=True)
class GpuRequest:
    driver: str  # `nvidia` or `amd`
    count: int
    device_ids: tuple[str, ...] = ()  # which GPUs of the machine (`--gpus N`); else the first `count`


@dataclass(frozen=True, slots=True)
class Publish:
    """A serve stage's port, published on the host ports ``first``..``last`` (one per replica)."""

    port: int
    first: int
    last: int


# A field the Docker Engine takes as it is, under the same name (the SDK's
# `containers.create` keyword, and mostly compose's key): `aipc run` passes every
# such field on without knowing it, so a setting added here reaches it unaided.
AS_IS = {"engine": True}


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """A stage's container; strings are as the container gets them (parameters' values in place)."""

    image: str = field(metadata=AS_IS)
    entrypoint: tuple[str, ...] | None
    command: tuple[str, ...] | None
    working_dir: str | None = field(metadata=AS_IS)
    environment: tuple[tuple[str, str], ...]
    secret_keys: tuple[str, ...]  # passed through from the caller's environment by name
    mounts: tuple[Mount, ...]
    tmpfs: tuple[str, ...]
    read_only: bool = field(metadata=AS_IS)
    cap_drop: tuple[str, ...] = field(metadata=AS_IS)
    security_opt: tuple[str, ...] = field(metadata=AS_IS)
    cpu: ir.Range | None  # millicores: reservation..limit
    memory: ir.Range | None  # bytes: reservation..limit
    gpu: GpuRequest | None
    devices: tuple[str, ...]
    shm_size: int | None = field(metadata=AS_IS)  # bytes
    publish: Publish | None
    health: str | None  # the HTTP path probed
    aliases: tuple[str, ...]  # names other containers reach it by, besides its own
    labels: tuple[tuple[str, str], ...]

    def engine_options(self) -> dict:
        """The fields the engine takes as they are, by name (unset ones left out; tuples as lists)."""
        options = {}
        for name in _AS_IS:
            value = getattr(self, name)
            if value is not None:
                options[name] = list(value) if isinstance(value, tuple) else value
        return options


_AS_IS = tuple(f.name for f in fields(ContainerSpec) if f.metadata.get("engine"))


def rendered(text: ir.Text) -> str:
    """A stage's string as its container gets it: each parameter's value in place."""
    return text.render(param=ir.param_value)


def container_specs(pipeline: ir.Pipeline, stages: Iterable[ir.Stage], sink: Diagnostics,
                    target: str) -> dict[str, ContainerSpec]:
    """The container of each of ``stages`` (in their order), by stage name; what
    ``target`` (how messages name it: "docker-compose", "`aipc run`") cannot
    express goes to ``sink``."""
    return {stage.name: spec for stage, spec in each_container(pipeline, stages, sink, target)}


def each_container(pipeline: ir.Pipeline, stages: Iterable[ir.Stage], sink: Diagnostics, target: str,
                   devices: Mapping[str, tuple[str, ...]] | None = None) -> Iterator[tuple[ir.Stage, ContainerSpec]]:
    """``container_specs`` one stage at a time, for a caller that writes each as it
    comes; ``devices``: the GPU device ids each stage gets (compose's ``--gpus``)."""
    stages = list(stages)
    ports = plan_host_ports(pipeline, stages, sink)
    report_scheduling(stages, sink, target)
    for stage in stages:
        report_unsupported(stage, sink, target)
        yield stage, container_spec(pipeline, stage, ports.get(stage.name),
                                    devices.get(stage.name, ()) if devices else ())


def container_spec(pipeline: ir.Pipeline, stage: ir.Stage, publish: Publish | None,
                   devices: tuple[str, ...] = ()) -> ContainerSpec:
    entrypoint, command = program(stage)
    resources = stage.resources
    serving = not stage.is_batch
    return ContainerSpec(
        image=rendered(stage.image),
        entrypoint=entrypoint,
        command=command,
        working_dir=rendered(stage.workdir) if stage.workdir is not None else None,
        environment=tuple([(name, rendered(value)) for name, value in stage.env]),
        secret_keys=secret_keys(stage) if stage.secrets else (),
        mounts=tuple([Mount(m.volume, m.path, m.read_only) for m in stage.mounts]),
        tmpfs=() if any([m.path == HARDENING_TMP for m in stage.mounts]) else (HARDENING_TMP,),
        read_only=True,
        cap_drop=("ALL",),
        security_opt=("no-new-privileges:true",),
        cpu=resources.cpu,
        memory=resources.memory,
        gpu=((GpuRequest(resources.gpu_vendor.value, len(devices), devices) if devices
              else gpu_request(resources.gpu_vendor.value, resources.gpu))
             if resources.gpu > 0 and resources.gpu_vendor is not ir.GpuVendor.INTEL else None),
        devices=(INTEL_GPU_DEVICES,) if resources.gpu > 0 and resources.gpu_vendor is ir.GpuVendor.INTEL else (),
        shm_size=resources.shm,
        publish=publish,
        health=rendered(stage.health) if serving and stage.health is not None else None,
        aliases=(pipeline.object_name(stage.name),) if serving else (),
        labels=tuple(pipeline.labels_for(stage.name, stage.kind.value, stage.labels).items()),
    )


@functools.lru_cache(maxsize=None)
def gpu_request(driver: str, count: int) -> GpuRequest:
    return GpuRequest(driver, count)  # one per kind: most GPU stages of a pipeline ask alike


def program(stage: ir.Stage) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """``(entrypoint, command)``: ``command`` is the argv that replaces the image's
    entrypoint; ``script`` runs with ``sh -c``; with neither, both are None."""
    if stage.script is not None:
        return ("sh", "-c"), (rendered(stage.script),)
    if stage.command:
        argv = tuple([rendered(argument) for argument in stage.command])
        return argv[:1], argv[1:]
    return None, None


def secret_keys(stage: ir.Stage) -> tuple[str, ...]:
    """Each key of the stage's secrets, once, unless ``env`` sets it: an ``env``
    entry of the same name wins, as it does over ``envFrom`` on Kubernetes."""
    taken = {name for name, _ in stage.env}
    keys = []
    for secret in stage.secrets:
        for key in secret.keys:
            if key not in taken:
                keys.append(key)
                taken.add(key)
    return tuple(keys)


def plan_host_ports(pipeline: ir.Pipeline, stages: list[ir.Stage], sink: Diagnostics) -> dict[str, Publish]:
    """The published ports of each serve stage: host ports from the declared port
    up, one per replica. Overlaps between stages are reported: the engine would
    fail to start the later stage's containers."""
    planned: dict[str, Publish] = {}
    for stage in stages:
        if stage.is_batch or stage.port is None:
            continue
        first = stage.port
        last = min(MAX_PORT, first + stage.replicas - 1)
        if last - first + 1 < stage.replicas:
            sink.warning(codes.HOST_PORTS_OVERLAP, stage.span_of("replicas"),
                         f"{stage.replicas} replicas of `{stage.name}` need host ports {first}-"
                         f"{first + stage.replicas - 1}, beyond {MAX_PORT}",
                         label="too many replicas for this port",
                         help="use a lower port or fewer replicas")
        for other, published in planned.items():
            if first <= published.last and published.first <= last:
                other_stage = pipeline.stage(other)
                sink.warning(codes.HOST_PORTS_OVERLAP, stage.span_of("port"),
                             f"the host ports of `{stage.name}` ({port_range(first, last)}) overlap "
                             f"those of `{other}` ({port_range(published.first, published.last)})",
                             label="published on the host from here",
                             related=[Label(other_stage.span_of("port"), f"`{other}` publishes from here")],
                             help=f"on docker-compose each replica takes its own host port: keep serve "
                             f"stages' ports at least as far apart as their replicas ({other_stage.replicas} "
                             f"for `{other}`)")
        planned[stage.name] = Publish(stage.port, first, last)
    return planned


def port_range(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def report_unsupported(stage: ir.Stage, sink: Diagnostics, target: str) -> None:
    """What a Docker container has no way to say, at the attribute that says it."""
    resources = stage.resources
    if resources.gpu_model is not None:
        sink.warning(codes.IGNORED_ON_TARGET, stage.span_of("gpu_model"),
                     f"{target} cannot select a GPU model: `gpu_model = \"{resources.gpu_model}\"` "
                     f"of `{stage.name}` is ignored",
                     label=f"ignored on {target}",
                     help="the stage gets whichever GPUs the host has; the kubernetes and argo targets "
                     "select the model by its node labels")
    if resources.disk is not None:
        sink.warning(codes.IGNORED_ON_TARGET, stage.span_of("disk"),
                     f"{target} cannot limit a container's local storage: `disk = "
                     f"{format_bytes(resources.disk)}` of `{stage.name}` is ignored",
                     label=f"ignored on {target}",
                     help="mount a volume for large scratch data instead")
    if resources.gpu > 0 and resources.gpu_vendor is ir.GpuVendor.INTEL:
        sink.warning(codes.IGNORED_ON_TARGET, stage.span_of("gpu"),
                     f"{target} cannot reserve a number of Intel GPUs: `{stage.name}` gets every GPU "
                     f"of the host (/dev/dri), not {resources.gpu}",
                     label="the count is ignored",
                     help="limit the GPUs the container sees yourself, e.g. with ZE_AFFINITY_MASK in `env`")


_SCHEDULE_KEYS = {
    "node": "select nodes by label", "tolerate": "tolerate node taints",
    "priority": "give containers a priority class", "queue": "queue workloads in Kueue",
}


def report_scheduling(stages: list[ir.Stage], sink: Diagnostics, target: str) -> None:
    """`schedule` keys and autoscaling, which one Docker host does not have: once per
    place they are written (a header key that every stage inherits is one warning)."""
    reported: set[tuple[str, Span]] = set()
    for stage in stages:
        for key, span in stage.schedule.spans:
            if (key, span) in reported:
                continue
            reported.add((key, span))
            sink.warning(codes.IGNORED_ON_TARGET, span,
                         f"{target} runs on one machine and cannot {_SCHEDULE_KEYS[key]}: `{key}` of "
                         f"`schedule` is ignored",
                         label=f"ignored on {target}",
                         help="the kubernetes and argo targets apply it; here every stage runs on this machine")
        autoscale = stage.autoscale
        if autoscale is not None:
            sink.warning(codes.IGNORED_ON_TARGET, autoscale.span,
                         f"{target} does not autoscale: `{stage.name}` runs {stage.replicas} "
                         f"replica{'s' if stage.replicas != 1 else ''}, the low end of "
                         f"{autoscale.minimum}..{autoscale.maximum}"
                         + (" (at least one)" if autoscale.minimum == 0 else ""),
                         label=f"{stage.replicas} on {target}",
                         help="the kubernetes and argo targets scale it with a HorizontalPodAutoscaler")
