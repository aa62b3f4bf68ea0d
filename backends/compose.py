"""The docker-compose backend: one service per stage, in dependency order.

The output is accepted both by the docker-compose 1.29 that Debian ships and by
the current compose specification, so it uses only keys both know (no top-level
``name``, no ``version``). What each construct becomes:

- a stage is a service; ``command`` replaces the image's entrypoint
  (``entrypoint: [argv0]`` + ``command: [rest]``), a ``script`` runs as
  ``entrypoint: [sh, -c]`` + ``command: [script]``;
- ``after`` is ``depends_on`` with ``service_completed_successfully`` for a batch
  dependency, ``service_healthy`` for a serve dependency with ``health`` and
  ``service_started`` for one without;
- sized volumes are named volumes, ``host`` volumes bind mounts (a relative path
  resolves against the compose file's directory), ``claim`` volumes external
  named volumes; ``readonly`` mounts end in ``:ro``;
- GPUs are device reservations (``driver: nvidia`` or ``driver: amd``, the driver
  Docker Engine 28.3+ registers with the AMD Container Toolkit); Intel GPUs have
  no such driver, so ``/dev/dri`` is passed through and the count is reported as
  not expressible;
- a serve stage is reachable from the other services as ``<stage>`` and as
  ``<pipeline>-<stage>``, the name of its Service on Kubernetes (a network alias);
- a serve stage publishes its port: ``PORT:PORT`` for one replica and the host
  range ``PORT-(PORT+replicas-1):PORT`` for several, so each replica gets its own
  host port (the engine hands them out) and the declared port always answers;
  stages whose host ports overlap are reported (B102);
- secrets are environment variables passed through by name only: the values
  come from the environment of ``docker-compose`` (or its ``.env`` file);
- every string the user wrote has ``$`` doubled, so compose never interpolates it.

``timeout``, ``gpu_model`` and ``disk`` have no compose equivalent and are
reported as B101 warnings at the attribute.
"""

from __future__ import annotations

import argparse
import ipaddress
import shlex
from dataclasses import dataclass

from aipc import codes
from aipc.backends import Emitted
from aipc.compiler import ir
from aipc.compiler.ir import format_bytes, format_duration
from aipc.diagnostics import Diagnostics, Label

# The probe a serve stage's healthcheck runs. It uses whichever HTTP client the
# image has: wget (busybox, alpine, most distributions), curl, or Python's
# standard library (python:*-slim images have neither wget nor curl). Proxy
# variables are dropped so that a probe of 127.0.0.1 never goes through a proxy.
HEALTH_INTERVAL = 5  # seconds between probes
HEALTH_TIMEOUT = 4  # seconds one probe may take
HEALTH_RETRIES = 3  # failed probes in a row that make the service unhealthy
HEALTH_START_PERIOD = 300  # seconds of start-up (loading a model) in which failures do not count
_PYTHON_PROBE = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=%d)" % (HEALTH_TIMEOUT - 1)

HARDENING_TMP = "/tmp"
INTEL_GPU_DEVICES = "/dev/dri:/dev/dri"
MAX_PORT = 65535


DEFAULT_FILENAME = "compose.yaml"  # a name docker-compose 1.29 and v2 both find by themselves


def default_filename(pipeline: ir.Pipeline) -> str:
    return DEFAULT_FILENAME


@dataclass(frozen=True)
class Options:
    """What `aipc compile --target compose` can be told besides the program."""

    # The host address serve stages' ports are published on; None: every interface.
    publish_address: str | None = None


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not an IP address (e.g. 127.0.0.1)") from None


def add_arguments(group) -> None:
    group.add_argument("--compose-publish-address", metavar="ADDRESS", type=_address,
                       help="publish serve stages' ports on this host address only, e.g. 127.0.0.1 "
                       "(default: every interface)")


def options_from(args) -> Options:
    return Options(publish_address=getattr(args, "compose_publish_address", None))


def emit(pipeline: ir.Pipeline, options: Options | None = None) -> Emitted:
    options = options or Options()
    sink = Diagnostics(pipeline.file)
    host_ports = plan_host_ports(pipeline, sink)
    services = {
        stage.name: build_service(pipeline, stage, host_ports.get(stage.name), options, sink)
        for stage in pipeline.stages
    }
    document: dict = {"services": services}
    volumes = build_volumes(pipeline)
    if volumes:
        document["volumes"] = volumes
    return Emitted((document,), tuple(sink.sorted()))


# ----------------------------------------------------------------------- services


def build_service(pipeline: ir.Pipeline, stage: ir.Stage, host_ports: tuple[int, int] | None,
                  options: Options, sink: Diagnostics) -> dict:
    """One service, its keys in a fixed order: what runs first, then how."""
    report_unsupported(stage, sink)
    service: dict = {"image": text(stage.image)}
    service.update(build_program(stage))
    if stage.workdir is not None:
        service["working_dir"] = text(stage.workdir)
    environment = build_environment(stage)
    if environment:
        service["environment"] = environment
    depends_on = build_depends_on(pipeline, stage)
    if depends_on:
        service["depends_on"] = depends_on
    if stage.mounts:
        service["volumes"] = [build_mount(mount) for mount in stage.mounts]
    if not stage.is_batch:
        service["ports"] = [build_port(stage, host_ports, options)]
        service["networks"] = build_networks(pipeline, stage)
        if stage.health is not None:
            service["healthcheck"] = build_healthcheck(stage)
    deploy = build_deploy(stage)
    if deploy:
        service["deploy"] = deploy
    devices = build_devices(stage, sink)
    if devices:
        service["devices"] = devices
    if stage.resources.shm is not None:
        service["shm_size"] = compose_bytes(stage.resources.shm)
    service["restart"] = build_restart(stage)
    service.update(build_hardening(stage))
    service["labels"] = build_labels(pipeline, stage)
    return service


def build_program(stage: ir.Stage) -> dict:
    """``command`` is the argv that replaces the image's entrypoint; ``script`` runs
    with ``sh -c``; with neither the image's own entrypoint and command run."""
    if stage.script is not None:
        return {"entrypoint": ["sh", "-c"], "command": [text(stage.script)]}
    if stage.command:
        program: dict = {"entrypoint": [text(stage.command[0])]}
        if len(stage.command) > 1:
            program["command"] = [text(argument) for argument in stage.command[1:]]
        return program
    return {}


def build_environment(stage: ir.Stage) -> list[str]:
    """``NAME=value`` for ``env``, then a bare ``NAME`` for each secret key: compose
    passes the caller's value through and the output never holds it. An ``env``
    entry of the same name wins, as it does over ``envFrom`` on Kubernetes."""
    environment = [f"{name}={text(value)}" for name, value in stage.env]
    taken = {name for name, _ in stage.env}
    for secret in stage.secrets:
        for key in secret.keys:
            if key not in taken:
                environment.append(key)
                taken.add(key)
    return environment


def build_depends_on(pipeline: ir.Pipeline, stage: ir.Stage) -> dict:
    depends_on = {}
    for name in stage.after:
        dependency = pipeline.stage(name)
        if dependency.is_batch:
            condition = "service_completed_successfully"
        elif dependency.health is not None:
            condition = "service_healthy"
        else:
            condition = "service_started"
        depends_on[name] = {"condition": condition}
    return depends_on


def build_mount(mount: ir.Mount) -> str | dict:
    """The short syntax (``raw:/data/raw:ro``), which also creates a missing host
    directory; the long one only when a path holds a `:` the short one splits on."""
    volume = mount.volume
    if volume.kind is ir.VolumeKind.HOST:
        source = host_source(volume.host_path or ".")
    else:
        source = volume.name
    if ":" in source or ":" in mount.path:
        long_form = {"type": "bind" if volume.kind is ir.VolumeKind.HOST else "volume",
                     "source": escape(source), "target": escape(mount.path)}
        if mount.readonly:
            long_form["read_only"] = True
        return long_form
    return escape(f"{source}:{mount.path}" + (":ro" if mount.readonly else ""))


def host_source(path: str) -> str:
    """A host path as compose reads it: relative paths must start with `.` (else
    compose takes them for a volume name) and resolve against the compose file."""
    if path.startswith(("/", ".", "~")):
        return path
    return "./" + path


def plan_host_ports(pipeline: ir.Pipeline, sink: Diagnostics) -> dict[str, tuple[int, int]]:
    """The host ports of each serve stage, ``(first, last)``: one per replica, from
    the declared port up. Overlaps between stages are reported: compose would fail
    to start the later stage's containers."""
    planned: dict[str, tuple[int, int]] = {}
    for stage in pipeline.stages:
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
        for other, (other_first, other_last) in planned.items():
            if first <= other_last and other_first <= last:
                other_stage = pipeline.stage(other)
                sink.warning(codes.HOST_PORTS_OVERLAP, stage.span_of("port"),
                             f"the host ports of `{stage.name}` ({port_range(first, last)}) overlap "
                             f"those of `{other}` ({port_range(other_first, other_last)})",
                             label="published on the host from here",
                             related=[Label(other_stage.span_of("port"), f"`{other}` publishes from here")],
                             help=f"on docker-compose each replica takes its own host port: keep serve "
                             f"stages' ports at least as far apart as their replicas ({other_stage.replicas} "
                             f"for `{other}`)")
        planned[stage.name] = (first, last)
    return planned


def build_networks(pipeline: ir.Pipeline, stage: ir.Stage) -> dict:
    """A serve stage also answers to the name its Service has on Kubernetes, so
    `http://<pipeline>-<stage>:PORT` reaches it from other stages on every target."""
    return {"default": {"aliases": [pipeline.object_name(stage.name)]}}


def port_range(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def build_port(stage: ir.Stage, host_ports: tuple[int, int] | None, options: Options) -> str:
    first, last = host_ports or (stage.port, stage.port)
    published = f"{port_range(first, last)}:{stage.port}"
    address = options.publish_address
    if address is None:
        return published
    return f"[{address}]:{published}" if ":" in address else f"{address}:{published}"


def build_healthcheck(stage: ir.Stage) -> dict:
    """An HTTP GET of the health path that works in common images (see the probe)."""
    url = shlex.quote(f"http://127.0.0.1:{stage.port}{rendered(stage.health)}")
    python = shlex.quote(_PYTHON_PROBE)
    probe = (
        "unset http_proxy HTTP_PROXY all_proxy ALL_PROXY; "
        f"if command -v wget >/dev/null 2>&1; then wget -q -O /dev/null {url}; "
        f"elif command -v curl >/dev/null 2>&1; then curl -fsS -o /dev/null {url}; "
        f"elif command -v python3 >/dev/null 2>&1; then python3 -c {python} {url}; "
        f"else python -c {python} {url}; fi"
    )
    return {
        "test": ["CMD-SHELL", escape(probe)],
        "interval": format_duration(HEALTH_INTERVAL),
        "timeout": format_duration(HEALTH_TIMEOUT),
        "retries": HEALTH_RETRIES,
        "start_period": format_duration(HEALTH_START_PERIOD),
    }


def build_deploy(stage: ir.Stage) -> dict:
    deploy: dict = {}
    if not stage.is_batch:
        deploy["replicas"] = stage.replicas
    resources = build_resources(stage.resources)
    if resources:
        deploy["resources"] = resources
    return deploy


def build_resources(resources: ir.Resources) -> dict:
    """Limits are the high end of a range, reservations the low end; NVIDIA and AMD
    GPUs are device reservations."""
    limits: dict = {}
    reservations: dict = {}
    if resources.cpu is not None:
        limits["cpus"] = compose_cpus(resources.cpu.limit)
        reservations["cpus"] = compose_cpus(resources.cpu.request)
    if resources.memory is not None:
        limits["memory"] = compose_bytes(resources.memory.limit)
        reservations["memory"] = compose_bytes(resources.memory.request)
    if resources.gpu > 0 and resources.gpu_vendor is not ir.GpuVendor.INTEL:
        reservations["devices"] = [build_gpu_reservation(resources)]
    out: dict = {}
    if limits:
        out["limits"] = limits
    if reservations:
        out["reservations"] = reservations
    return out


def build_gpu_reservation(resources: ir.Resources) -> dict:
    return {"driver": resources.gpu_vendor.value, "count": resources.gpu, "capabilities": ["gpu"]}


def build_devices(stage: ir.Stage, sink: Diagnostics) -> list[str]:
    """Intel GPUs: Docker has no device driver for them, so the render nodes are
    passed through, all of them."""
    resources = stage.resources
    if resources.gpu == 0 or resources.gpu_vendor is not ir.GpuVendor.INTEL:
        return []
    sink.warning(codes.IGNORED_ON_TARGET, stage.span_of("gpu"),
                 f"docker-compose cannot reserve a number of Intel GPUs: `{stage.name}` gets every GPU "
                 f"of the host (/dev/dri), not {resources.gpu}",
                 label="the count is ignored",
                 help="limit the GPUs the container sees yourself, e.g. with ZE_AFFINITY_MASK in `env`")
    return [INTEL_GPU_DEVICES]


def build_restart(stage: ir.Stage) -> str:
    if not stage.is_batch:
        return "unless-stopped"
    return f"on-failure:{stage.retries}" if stage.retries > 0 else "no"


def build_hardening(stage: ir.Stage) -> dict:
    """No capabilities, no privilege escalation, a read-only root file system and a
    writable /tmp (unless a volume is mounted there)."""
    hardening: dict = {"read_only": True}
    if not any(mount.path == HARDENING_TMP for mount in stage.mounts):
        hardening["tmpfs"] = [HARDENING_TMP]
    hardening["cap_drop"] = ["ALL"]
    hardening["security_opt"] = ["no-new-privileges:true"]
    return hardening


def build_labels(pipeline: ir.Pipeline, stage: ir.Stage) -> dict:
    labels = {
        "app.kubernetes.io/name": stage.name,
        "app.kubernetes.io/part-of": pipeline.name,
        "app.kubernetes.io/component": stage.kind.value,
        "app.kubernetes.io/managed-by": "aipc",
    }
    return add_user_labels(labels, (*pipeline.labels, *stage.labels))


def add_user_labels(labels: dict, user_labels) -> dict:
    """The user's labels after the standard ones (the checker keeps them apart);
    a stage's label replaces the pipeline's of the same key."""
    for key, value in user_labels:
        labels[key] = escape(value)
    return labels


def report_unsupported(stage: ir.Stage, sink: Diagnostics) -> None:
    """What compose has no way to say, at the attribute that says it."""
    if stage.timeout is not None:
        sink.warning(codes.IGNORED_ON_TARGET, stage.span_of("timeout"),
                     f"docker-compose has no deadline for a container: `timeout = "
                     f"{format_duration(stage.timeout)}` of `{stage.name}` is ignored",
                     label="ignored on docker-compose",
                     help=f"bound the whole run yourself (`timeout {stage.timeout}s docker-compose up`), "
                     "or use the kubernetes or argo target, which enforce it")
    if stage.resources.gpu_model is not None:
        sink.warning(codes.IGNORED_ON_TARGET, stage.span_of("gpu_model"),
                     f"docker-compose cannot select a GPU model: `gpu_model = \"{stage.resources.gpu_model}\"` "
                     f"of `{stage.name}` is ignored",
                     label="ignored on docker-compose",
                     help="the stage gets whichever GPUs the host has; the kubernetes and argo targets "
                     "select the model with a node selector")
    if stage.resources.disk is not None:
        sink.warning(codes.IGNORED_ON_TARGET, stage.span_of("disk"),
                     f"docker-compose cannot limit a container's local storage: `disk = "
                     f"{format_bytes(stage.resources.disk)}` of `{stage.name}` is ignored",
                     label="ignored on docker-compose",
                     help="mount a volume for large scratch data instead")


# ------------------------------------------------------------------------ volumes


def build_volumes(pipeline: ir.Pipeline) -> dict:
    """Top-level named volumes: sized ones created by compose, claims external.
    Host volumes are bind mounts and need no declaration."""
    volumes = {}
    for volume in pipeline.volumes:
        if volume.kind is ir.VolumeKind.SIZED:
            volumes[volume.name] = build_named_volume(pipeline, volume)
        elif volume.kind is ir.VolumeKind.CLAIM:
            volumes[volume.name] = build_external_volume(volume)
    return volumes


def build_named_volume(pipeline: ir.Pipeline, volume: ir.Volume) -> dict:
    labels = {
        "app.kubernetes.io/name": volume.name,
        "app.kubernetes.io/part-of": pipeline.name,
        "app.kubernetes.io/managed-by": "aipc",
    }
    return {"labels": add_user_labels(labels, pipeline.labels)}


def build_external_volume(volume: ir.Volume) -> dict:
    """An existing volume, by its own name (docker-compose 1.29 allows no labels here)."""
    return {"external": True, "name": escape(volume.claim or volume.name)}


# ------------------------------------------------------------------------- values


def escape(text: str) -> str:
    """User text as compose data: `$` would start an interpolation, `$$` is a `$`."""
    return text.replace("$", "$$")


def rendered(text: ir.Text) -> str:
    """A stage's string on this target: each parameter's value in place."""
    return text.render(param=ir.param_value)


def text(value: ir.Text) -> str:
    """A stage's string as compose data: each parameter's value in place, `$` doubled."""
    return escape(rendered(value))


def compose_cpus(millicores: int) -> str:
    """Cores as compose writes them: ``2``, ``0.5``, ``0.001``."""
    whole, fraction = divmod(millicores, 1000)
    if fraction == 0:
        return str(whole)
    return f"{whole}.{fraction:03d}".rstrip("0")


def compose_bytes(value: int) -> str:
    """Bytes in the units both docker-compose 1.29 and the compose spec read:
    ``16g``, ``512m``, ``64k`` (powers of 1024) or plain bytes ``1000b``."""
    for unit, size in (("g", 2**30), ("m", 2**20), ("k", 2**10)):
        if value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}b"
