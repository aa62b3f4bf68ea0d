"""One stage as one Docker container: what docker-compose writes and `aipc run` creates.

Every decision about a stage's container on a Docker engine is made here, once:
the compose backend writes a :class:`ContainerSpec` as a service, and the runner
(:mod:`aipc.runner.docker_driver`) maps it to Docker SDK arguments, as
`aipc apply` applies the Kubernetes backend's documents. What each piece is:

- the program: ``command`` is the whole argv, so its first item replaces the
  image's entrypoint and the rest are its arguments; ``args`` are the command
  given to the image's own entrypoint; a ``script`` runs as ``sh -c SCRIPT``;
  with none of them the image's own entrypoint and command run; ``pull`` says
  when the image is pulled;
- the environment: ``env``, each ``SECRET.KEY`` value taken from the caller's
  variable KEY, HOME and USER unless the stage sets them, then each key of the
  stage's secrets that ``env`` does not set, passed through by name (secret
  values come from the caller's environment and are never written anywhere);
- mounts: the volume and its path, read-only for a ``readonly`` mount and for
  any mount of a ``rox`` volume, and without Docker's copy of the image's files
  into an empty volume (``nocopy``: a volume shows only its own content, as on
  Kubernetes); each consumer names the volume (a compose volume or bind path, a
  run's Docker volume); each output is a volume of its own,
  ``<stage>.<output>``, which its inputs mount read-only (a fan-in mounts each
  instance's at ``PATH/<instance>``);
- hardening, the same as on Kubernetes (:data:`aipc.compiler.ir.HARDENED`,
  relaxed by the stage's ``security``): the user 65532:65532 (or the stage's
  ``user``) in the volume group 65532 (``group_add``, what ``fsGroup`` is on
  Kubernetes), every capability dropped (``cap_add``: the stage's
  ``capabilities``), no new privileges (unless ``privileged``), a read-only root
  (unless ``read_only = false``) with a tmpfs at ``/tmp`` unless a volume, an
  output or an input is mounted there, as large as the memory limit (its pages
  count against it) and allowing executables, as an emptyDir does, and at most
  :data:`aipc.compiler.ir.DEFAULT_PIDS` processes;
- volumes and outputs written by a stage belong to the volume group before it
  starts: :func:`volume_setup` is a one-off container that makes each one's root
  group-writable by 65532 (``chgrp``, ``chmod g+rwxs``), as the kubelet does for
  ``fsGroup``; compose runs it as the service ``aipc-volumes``, `aipc run`
  before any stage for the volumes and before each attempt of a stage for the
  outputs that attempt renews. It runs the image of the first stage that writes
  one, which needs ``sh``, ``chgrp`` and ``chmod``;
- resources: cpu and memory ranges (a limit and a reservation; the defaults
  when the stage sets none, as on Kubernetes), NVIDIA and AMD
  GPUs as a device request (``amd`` is the driver Docker Engine 28.3+ registers
  with the AMD Container Toolkit), Intel GPUs as the ``/dev/dri`` device nodes
  (Docker has no driver to count them), ``shm`` as the shm size;
- a serve stage publishes its ports: ``port`` on host ports from ``expose``
  (default ``port``) up, one per replica, so each replica gets its own and the
  exposed port always answers, and each of ``ports`` on host ports from its own
  number up (ports that overlap are reported, B102); other containers reach it
  as the stage and as ``<pipeline>-<stage>``, the name of its Service on
  Kubernetes, on its container ports (what ``${STAGE.host}`` and
  ``${STAGE.port}`` become here);
- its health check, the same for compose's ``healthcheck`` and the container
  `aipc run` creates: ``command`` as an argv (``CMD``), ``http`` as a shell probe
  that GETs the path with whatever HTTP client the image has, ``tcp`` as one that
  connects with whatever the image has, with the stage's timings;
- labels: the standard ones (:func:`aipc.compiler.ir.standard_labels`), the
  pipeline's and the stage's; an instance of a matrix stage also carries its
  matrix stage (``aipc.dev/matrix``) and its exact coordinates as JSON
  (``aipc.dev/matrix-coordinates``), which Kubernetes keeps in annotations.

The GPUs of a device request are the first ``count`` of the machine, or the
``device_ids`` one machine's assignment gives the stage (:mod:`aipc.backends.devices`).

What a Docker container cannot express (a GPU model, a limit on local storage,
a number of Intel GPUs, registry credentials from ``pull_secrets``) is reported
by :func:`report_unsupported`, and what one machine has no use for
(``schedule``, autoscaling) by :func:`report_scheduling`, as the same B101
warnings on both targets.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import shlex
from dataclasses import dataclass, field, fields
from typing import Iterable, Iterator, Mapping

from aipc import codes
from aipc.compiler import ir
from aipc.compiler.ir import format_bytes
from aipc.diagnostics import Diagnostics, Label, Span

HARDENING_TMP = "/tmp"
VOLUMES_SERVICE = "aipc-volumes"  # the one-off container preparing volumes (stage names have no `-`)
VOLUMES_ROOT = "/aipc/volumes"  # where it mounts them
# Each volume's root to the volume group, group-writable and setgid (new files get the group), as
# the kubelet does for fsGroup; FSETID keeps the setgid bit, which root is not in the group to set.
_VOLUMES_SCRIPT = f'chgrp {ir.VOLUME_GROUP} "$@" && chmod g+rwxs "$@"'
_VOLUMES_CAPABILITIES = ("CHOWN", "FOWNER", "FSETID")
DEFAULT_PUBLISH_ADDRESS = "127.0.0.1"  # where compose and `aipc run` publish serve stages' ports
INTEL_GPU_DEVICES = "/dev/dri:/dev/dri"  # HOST:CONTAINER, every render node
MAX_PORT = 65535


@dataclass(frozen=True, slots=True)
class Mount:
    volume: ir.Volume  # sized (a named volume), host (a bind mount) or claim (an existing volume)
    target: str
    read_only: bool

    @property
    def no_copy(self) -> bool:
        """A Docker volume is mounted without copying the image's files at the path into
        it when it is empty (with their owner, which would undo the volume group): as a
        Kubernetes volume, it shows only its own content."""
        return self.volume.kind is not ir.VolumeKind.HOST


@dataclass(frozen=True, slots=True)
class GpuRequest:
    driver: str  # `nvidia` or `amd`
    count: int
    device_ids: tuple[str, ...] = ()  # which GPUs of the machine (`--gpus N`); else the first `count`


@dataclass(frozen=True, slots=True)
class Publish:
    """A serve stage's port, published on the host ports ``first``..``last`` (one per replica)."""

    name: str  # its name among the stage's ports (`http` for `port`)
    port: int  # the container port
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """A container's health check, as Docker runs it; times in seconds."""

    test: tuple[str, ...]  # ("CMD", argv...) or ("CMD-SHELL", script)
    interval: int
    timeout: int
    retries: int
    start_period: int


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
    pull: ir.PullPolicy | None
    environment: tuple[tuple[str, str], ...]
    secret_env: tuple[tuple[str, str], ...]  # (NAME, KEY): NAME gets the caller's variable KEY
    secret_keys: tuple[str, ...]  # passed through from the caller's environment by name
    mounts: tuple[Mount, ...]
    tmpfs: tuple[tuple[str, str], ...]  # (path, mount options)
    user: str = field(metadata=AS_IS)  # "uid:gid"
    group_add: tuple[str, ...] = field(metadata=AS_IS)
    read_only: bool = field(metadata=AS_IS)
    cap_drop: tuple[str, ...] = field(metadata=AS_IS)
    cap_add: tuple[str, ...] = field(metadata=AS_IS)
    privileged: bool | None = field(metadata=AS_IS)  # None unless privileged
    security_opt: tuple[str, ...] = field(metadata=AS_IS)
    pids_limit: int = field(metadata=AS_IS)
    cpu: ir.Range  # millicores: reservation..limit
    memory: ir.Range  # bytes: reservation..limit
    gpu: GpuRequest | None
    devices: tuple[str, ...]
    shm_size: int | None = field(metadata=AS_IS)  # bytes
    publish: tuple[Publish, ...]  # `port` first, then the extra `ports`
    healthcheck: HealthCheck | None
    aliases: tuple[str, ...]  # names other containers reach it by, besides its own
    labels: tuple[tuple[str, str], ...]
    hostname: str | None = field(default=None, metadata=AS_IS)  # a node of a group: `<job>-<rank>`, as on Kubernetes

    def engine_options(self) -> dict:
        """The fields the engine takes as they are, by name (unset ones left out; tuples as lists)."""
        options = {}
        for name in _AS_IS:
            value = getattr(self, name)
            if value is not None and value != ():
                options[name] = list(value) if isinstance(value, tuple) else value
        return options


_AS_IS = tuple(f.name for f in fields(ContainerSpec) if f.metadata.get("engine"))


def rendered(text: ir.Text) -> str:
    """A stage's string as its container gets it: each parameter's value in place, each
    service address as the network alias and container port."""
    return text.render(param=ir.param_value, service=ir.container_address)


def publish_address(text: str) -> str:
    """A host address to publish ports on: an IP address (``[::1]`` too), or ``localhost``
    as 127.0.0.1. Anything else is a ValueError: Docker reads an address it cannot
    parse as every interface."""
    if text.strip().lower() == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        raise ValueError(f"`{text}` is not an IP address (e.g. 127.0.0.1, 0.0.0.0 or ::1) nor localhost") from None


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
    report_pull_secrets(pipeline, sink, target)
    report_scheduling(stages, sink, target)
    for stage in stages:
        report_unsupported(stage, sink, target)
        yield stage, container_spec(pipeline, stage, ports.get(stage.name, ()),
                                    devices.get(stage.name, ()) if devices else ())


def container_spec(pipeline: ir.Pipeline, stage: ir.Stage, publish: tuple[Publish, ...],
                   devices: tuple[str, ...] = ()) -> ContainerSpec:
    entrypoint, command = program(stage)
    resources = stage.resources
    serving = not stage.is_batch
    security = stage.security
    memory = resources.memory or ir.DEFAULT_MEMORY
    return ContainerSpec(
        image=rendered(stage.image),
        entrypoint=entrypoint,
        command=command,
        working_dir=rendered(stage.workdir) if stage.workdir is not None else None,
        pull=stage.pull,
        environment=(*[(name, rendered(value)) for name, value in stage.env], *stage.base_env()),
        secret_env=tuple([(name, key.key) for name, key in stage.secret_env]),
        secret_keys=secret_keys(stage) if stage.secrets else (),
        mounts=tuple([Mount(m.volume, m.path, m.read_only) for m in (*stage.mounts, *stage.artifact_mounts())]),
        tmpfs=() if stage.mounts_at(HARDENING_TMP) else ((HARDENING_TMP, tmpfs_options(memory.limit)),),
        **hardening(security),
        cpu=resources.cpu or ir.DEFAULT_CPU,
        memory=memory,
        gpu=((GpuRequest(resources.gpu_vendor.value, len(devices), devices) if devices
              else gpu_request(resources.gpu_vendor.value, resources.gpu))
             if resources.gpu > 0 and resources.gpu_vendor is not ir.GpuVendor.INTEL else None),
        devices=(INTEL_GPU_DEVICES,) if resources.gpu > 0 and resources.gpu_vendor is ir.GpuVendor.INTEL else (),
        shm_size=resources.shm,
        publish=publish,
        healthcheck=health_check(stage.health) if serving and stage.health is not None else None,
        aliases=(pipeline.object_name(stage.name),) if serving else (),
        labels=container_labels(pipeline, stage),
    )


def hardening(security: ir.Security) -> dict:
    """The ContainerSpec fields of the hardened default, with what ``security`` relaxes."""
    return dict(
        user=f"{security.uid}:{security.gid}",
        group_add=(str(ir.VOLUME_GROUP),),
        read_only=security.read_only,
        cap_drop=("ALL",),
        cap_add=security.capabilities,
        privileged=True if security.privileged else None,
        security_opt=() if security.privileged else ("no-new-privileges:true",),
        pids_limit=ir.DEFAULT_PIDS,
    )


def tmpfs_options(size: int) -> str:
    """The /tmp tmpfs: ``size`` bytes (in a unit the kernel's tmpfs reads), and
    executables allowed, as on a Kubernetes emptyDir (Docker's default is noexec,
    which breaks caches of compiled kernels such as Triton's under HOME=/tmp)."""
    for unit, factor in (("g", 2**30), ("m", 2**20), ("k", 2**10)):
        if size % factor == 0:
            return f"size={size // factor}{unit},exec"
    return f"size={size},exec"


# What the volume setup prepares: every Docker volume a stage may write (host folders are the
# caller's and left alone). `aipc run` prepares volumes and outputs apart: it renews outputs.
SET_UP_KINDS = frozenset(ir.VolumeKind) - {ir.VolumeKind.HOST}


def volume_setup(pipeline: ir.Pipeline, stages: Iterable[ir.Stage],
                 kinds: frozenset[ir.VolumeKind] = SET_UP_KINDS) -> tuple[ContainerSpec, tuple[str, ...]] | None:
    """The one-off container that gives the volumes of ``kinds`` that ``stages`` write
    (their writable mounts and their outputs) to the volume group, and the stages
    that must wait for it; None when no stage writes one."""
    writers: list[ir.Stage] = []
    volumes: dict[str, ir.Volume] = {}
    for stage in stages:
        written = [m.volume for m in (*stage.mounts, *stage.artifact_mounts())
                   if not m.read_only and m.volume.kind in kinds]
        if written:
            writers.append(stage)
            for volume in written:
                volumes.setdefault(volume.name, volume)
    if not writers:
        return None
    paths = tuple(f"{VOLUMES_ROOT}/{name}" for name in sorted(volumes))
    spec = ContainerSpec(
        image=rendered(writers[0].image), entrypoint=("sh", "-c"), command=(_VOLUMES_SCRIPT, VOLUMES_SERVICE, *paths),
        working_dir=None, pull=writers[0].pull, environment=(), secret_env=(), secret_keys=(),
        mounts=tuple(Mount(volumes[name], path, False) for name, path in zip(sorted(volumes), paths)),
        tmpfs=(), **{**hardening(ir.Security(uid=0, gid=0)), "cap_add": _VOLUMES_CAPABILITIES},
        cpu=ir.DEFAULT_CPU, memory=ir.DEFAULT_MEMORY, gpu=None, devices=(), shm_size=None, publish=(),
        healthcheck=None, aliases=(), labels=tuple(pipeline.labels_for(VOLUMES_SERVICE, "volume").items()),
    )
    return spec, tuple(stage.name for stage in writers)
def node_spec(pipeline: ir.Pipeline, stage: ir.Stage, spec: ContainerSpec, rank: int,
              devices: tuple[str, ...] | None = None) -> ContainerSpec:
    """The container of node ``rank`` of a multi-node stage: the stage's, with the
    group's variables, its rank among them, and the name the other nodes reach it
    by (node 0's is ``MASTER_ADDR``), as on Kubernetes (:func:`aipc.compiler.ir.node_host`);
    ``devices``: the GPUs of this node alone (compose's ``--gpus``)."""
    master = ir.node_host(pipeline.name, stage.name, 0)
    variables = tuple((name, value or str(rank)) for name, value in ir.node_environment(stage, master, str(rank)))
    host = ir.node_host(pipeline.name, stage.name, rank)
    gpu = spec.gpu
    if gpu is not None and devices:
        gpu = GpuRequest(gpu.driver, len(devices), tuple(devices))
    return dataclasses.replace(spec, environment=spec.environment + variables, aliases=(*spec.aliases, host),
                               hostname=host.partition(".")[0], gpu=gpu)


def node_service(stage: ir.Stage, rank: int) -> str:
    """The compose service (and `aipc run` container) of node ``rank`` of a group."""
    return f"{stage.name}-node-{rank}"


def container_labels(pipeline: ir.Pipeline, stage: ir.Stage) -> tuple[tuple[str, str], ...]:
    """The standard labels, the pipeline's and the stage's, and an instance's exact coordinates."""
    labels = pipeline.labels_for(stage.name, stage.kind.value, stage.labels)
    if stage.instance is not None:
        labels[ir.COORDINATES_ANNOTATION] = stage.instance.coordinates_json()
    return tuple(labels.items())


@functools.lru_cache(maxsize=None)
def gpu_request(driver: str, count: int) -> GpuRequest:
    return GpuRequest(driver, count)  # one per kind: most GPU stages of a pipeline ask alike


def program(stage: ir.Stage) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """``(entrypoint, command)``: ``command`` is the argv that replaces the image's
    entrypoint; ``args`` the command the image's entrypoint gets (entrypoint None);
    ``script`` runs with ``sh -c``; with none of them, both are None."""
    if stage.script is not None:
        return ("sh", "-c"), (rendered(stage.script),)
    if stage.command:
        argv = tuple([rendered(argument) for argument in stage.command])
        return argv[:1], argv[1:]
    if stage.args:
        return None, tuple([rendered(argument) for argument in stage.args])
    return None, None


def secret_keys(stage: ir.Stage) -> tuple[str, ...]:
    """Each key of the stage's secrets, once, unless ``env`` sets it: an ``env``
    entry of the same name wins, as it does over ``envFrom`` on Kubernetes."""
    taken = {name for name, _ in stage.env} | {name for name, _ in stage.secret_env}
    keys = []
    for secret in stage.secrets:
        for key in secret.keys:
            if key not in taken:
                keys.append(key)
                taken.add(key)
    return tuple(keys)


def plan_host_ports(pipeline: ir.Pipeline, stages: list[ir.Stage], sink: Diagnostics
                    ) -> dict[str, tuple[Publish, ...]]:
    """The published ports of each serve stage: ``port`` on host ports from
    ``expose`` up and each of ``ports`` from its number up, one host port per
    replica. Overlaps are reported: the engine would fail to start the later
    containers."""
    planned: dict[str, tuple[Publish, ...]] = {}
    taken: list[tuple[str, Publish]] = []  # (stage, publish) so far
    for stage in stages:
        if stage.is_batch or stage.port is None:
            continue
        publishes = []
        for named, first, attribute in _published(stage):
            last = min(MAX_PORT, first + stage.replicas - 1)
            if last - first + 1 < stage.replicas:
                sink.warning(codes.HOST_PORTS_OVERLAP, stage.span_of("replicas"),
                             f"{stage.replicas} replicas of `{stage.name}` need host ports {first}-"
                             f"{first + stage.replicas - 1}, beyond {MAX_PORT}",
                             label="too many replicas for this port",
                             help="use a lower port or fewer replicas")
            publish = Publish(named.name, named.port, first, last)
            for other, published in taken:
                if first <= published.last and published.first <= last:
                    _report_overlap(pipeline, stage, publish, attribute, other, published, sink)
            taken.append((stage.name, publish))
            publishes.append(publish)
        planned[stage.name] = tuple(publishes)
    return planned


def _published(stage: ir.Stage) -> Iterator[tuple[ir.NamedPort, int, str]]:
    """Each port a serve stage publishes, its first host port, and the attribute that says so."""
    for index, named in enumerate(stage.named_ports()):
        if index == 0:
            yield named, stage.service_port or named.port, "expose" if stage.expose is not None else "port"
        else:
            yield named, named.port, "ports"


def _describe_publish(stage: ir.Stage, publish: Publish) -> str:
    """```a` (8080-8082)``, ```a` `metrics` (9090)``."""
    which = "" if publish.name == stage.port_name else f" `{publish.name}`"
    return f"`{stage.name}`{which} ({port_range(publish.first, publish.last)})"


def _report_overlap(pipeline: ir.Pipeline, stage: ir.Stage, publish: Publish, attribute: str, other: str,
                    published: Publish, sink: Diagnostics) -> None:
    other_stage = pipeline.stage(other)
    other_attribute = ("ports" if published.name != other_stage.port_name
                       else "expose" if other_stage.expose is not None else "port")
    sink.warning(codes.HOST_PORTS_OVERLAP, stage.span_of(attribute),
                 f"the host ports of {_describe_publish(stage, publish)} overlap those of "
                 f"{_describe_publish(other_stage, published)}",
                 label="published on the host from here",
                 related=[Label(other_stage.span_of(other_attribute), f"`{other}` publishes from here")]
                 if other != stage.name or other_attribute != attribute else (),
                 help=f"on docker-compose each replica takes its own host port: keep published ports at "
                 f"least as far apart as their replicas ({other_stage.replicas} for `{other}`); `expose` "
                 "publishes `port` on another host port")


def port_range(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def report_pull_secrets(pipeline: ir.Pipeline, sink: Diagnostics, target: str) -> None:
    """Registry credentials come from the caller's `docker login` on a Docker engine."""
    if pipeline.pull_secrets:
        sink.warning(codes.IGNORED_ON_TARGET, pipeline.pull_secrets_span,
                     f"{target} pulls images with the credentials of the caller's `docker login`, not "
                     f"with `pull_secrets`", label=f"ignored on {target}",
                     help="log in to the registry (`docker login REGISTRY`) before running; the kubernetes "
                     "and argo targets use these Secrets as imagePullSecrets")


# ------------------------------------------------------------------ health checks

# The probes of `http` and `tcp` health checks run inside the container with
# whatever the image has. HTTP: wget (busybox, alpine, most distributions), curl,
# or Python's standard library (python:*-slim images have neither); proxy
# variables are dropped so that a probe of 127.0.0.1 never goes through a proxy.
# TCP: bash's /dev/tcp (Debian-based images such as postgres), nc (`-z` where it
# exists; busybox's nc connects and exits at the end of its input), or Python.
_PYTHON_HTTP = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=%d)"
_PYTHON_TCP = "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), %d).close()"


def health_check(health: ir.Health) -> HealthCheck:
    """A stage's health check as Docker runs it (compose's `healthcheck`, `aipc run`)."""
    if health.kind is ir.HealthKind.COMMAND:
        test: tuple[str, ...] = ("CMD", *[rendered(argument) for argument in health.command or ()])
    elif health.kind is ir.HealthKind.HTTP:
        test = ("CMD-SHELL", http_probe(health.port or 0, rendered(health.path) if health.path else "/",
                                        health.timeout))
    else:
        test = ("CMD-SHELL", tcp_probe(health.port or 0, health.timeout))
    return HealthCheck(test, health.interval, health.timeout, health.failures, health.start)


def describe_health(health: ir.Health) -> str:
    """A health check in a few words, for messages: ``GET /health on port 8000``."""
    if health.kind is ir.HealthKind.COMMAND:
        return "`" + " ".join(rendered(argument) for argument in health.command or ()) + "`"
    if health.kind is ir.HealthKind.HTTP:
        return f"GET {rendered(health.path) if health.path else '/'} on port {health.port}"
    return f"a TCP connection to port {health.port}"


def http_probe(port: int, path: str, timeout: int) -> str:
    url = shlex.quote(f"http://127.0.0.1:{port}{path}")
    python = shlex.quote(_PYTHON_HTTP % max(1, timeout - 1))  # ends before Docker stops it
    return (
        "unset http_proxy HTTP_PROXY all_proxy ALL_PROXY; "
        f"if command -v wget >/dev/null 2>&1; then wget -q -O /dev/null {url}; "
        f"elif command -v curl >/dev/null 2>&1; then curl -fsS -o /dev/null {url}; "
        f"elif command -v python3 >/dev/null 2>&1; then python3 -c {python} {url}; "
        f"else python -c {python} {url}; fi"
    )


def tcp_probe(port: int, timeout: int) -> str:
    python = shlex.quote(_PYTHON_TCP % max(1, timeout - 1))
    bash = shlex.quote(f"exec 3<>/dev/tcp/127.0.0.1/{port}")
    return (
        f"if command -v bash >/dev/null 2>&1; then bash -c {bash}; "
        f"elif command -v nc >/dev/null 2>&1; then nc -z 127.0.0.1 {port} 2>/dev/null "
        f"|| nc -w {timeout} 127.0.0.1 {port} </dev/null >/dev/null 2>&1; "
        f"elif command -v python3 >/dev/null 2>&1; then python3 -c {python} {port}; "
        f"else python -c {python} {port}; fi"
    )


def report_unsupported(stage: ir.Stage, sink: Diagnostics, target: str) -> None:
    """What a Docker container has no way to say, at the attribute that says it."""
    resources = stage.resources
    if stage.nodes is not None and stage.nodes > 1 and (stage.instance is None or stage.instance.index == 0):
        each = " (each instance)" if stage.instance is not None else ""  # said once for a matrix stage
        sink.warning(codes.NODES_ON_ONE_HOST, stage.span_of("nodes"),
                     f"{target} runs the {stage.nodes} nodes of `{stage.group}`{each} as {stage.nodes} containers "
                     "on this one host: enough to test the rendezvous, not to train faster",
                     label="all on one host",
                     help="the containers find each other by the same names and variables as on a cluster; "
                     "use the kubernetes or argo target to run them on several machines")
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
