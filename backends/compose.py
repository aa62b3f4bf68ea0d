"""The docker-compose backend: one service per stage, in dependency order.

The output is accepted both by the docker-compose 1.29 that Debian ships and by
the current compose specification, so it uses only keys both know (no top-level
``name``, no ``version``). Each stage's container is decided in
:mod:`aipc.backends.docker` (shared with `aipc run`); this module writes it as
a service, and adds what compose itself decides:

- the container's ``command`` as ``entrypoint: [argv0]`` + ``command: [rest]``,
  ``args`` as ``command`` alone (the image's entrypoint stays), a ``script`` as
  ``entrypoint: [sh, -c]`` + ``command: [script]``; ``pull`` as ``pull_policy``
  (``if_missing`` is ``if_not_present``, which docker-compose 1.29 and the
  compose specification both read);
- the volumes a stage writes are prepared by the service ``aipc-volumes``
  (:func:`aipc.backends.docker.volume_setup`), which those stages wait for;
- ``after`` is ``depends_on`` with ``service_completed_successfully`` for a batch
  dependency, ``service_healthy`` for a serve dependency with ``health`` and
  ``service_started`` for one without;
- ``max_parallel = N`` of a matrix stage is a sliding window of dependencies:
  each instance also waits for the one N places before it to complete
  (``ir.Instance.window_predecessor``), so the instances run in N chains, one at
  a time in each. A failed instance never completes successfully: the rest of
  its chain does not start (docker-compose reports it), the other chains go on;
- sized volumes are named volumes, ``host`` volumes bind mounts (a relative path
  resolves against the compose file's directory), ``claim`` volumes external
  named volumes; read-only mounts (``readonly``, or a ``rox`` volume) end in ``:ro``,
  named volumes in ``nocopy`` (see :class:`aipc.backends.docker.Mount`);
  each output of each stage is a named volume ``<stage>.<output>``, mounted
  read-only (``:ro``) by the stages that read it;
- a serve stage's aliases are network aliases; its published ports are
  ``ADDRESS:FIRST-LAST:PORT``, on 127.0.0.1 unless ``--publish-address`` says
  otherwise (the default of `aipc run` too), ``port`` from ``expose`` up and each
  of ``ports`` from its own number; its health check a ``healthcheck`` with its
  timings (``start`` is ``start_period``, ``failures`` is ``retries``);
- secrets are environment variables passed through by name only: the values
  come from the environment of ``docker-compose`` (or its ``.env`` file); an
  ``env`` value ``SECRET.KEY`` is ``NAME=${KEY}``, which compose fills in from
  the same place;
- a batch stage restarts ``on-failure:RETRIES``;
- every string the user wrote has ``$`` doubled, so compose never interpolates it.

``timeout`` has no compose equivalent and is reported as a B101 warning at the
attribute, as are what no Docker container can express (``gpu_model``,
``disk``, a number of Intel GPUs, ``schedule``, autoscaling, which starts the
low end; see :mod:`aipc.backends.docker`). With ``--gpus N`` each GPU stage's
device reservation names ``device_ids`` of its own (:mod:`aipc.backends.devices`);
without it, ``count``.
"""

from __future__ import annotations

import argparse
import posixpath
from dataclasses import dataclass

from aipc import codes
from aipc.backends import Emitted, devices, docker
from aipc.compiler import ir
from aipc.compiler.ir import format_duration
from aipc.diagnostics import Diagnostics, Label

PULL_POLICY = {
    ir.PullPolicy.ALWAYS: "always",
    ir.PullPolicy.IF_MISSING: "if_not_present",  # `missing` in the compose spec; docker-compose 1.29 knows this
    ir.PullPolicy.NEVER: "never",
}

TARGET = "docker-compose"  # how messages name this target
DEFAULT_FILENAME = "compose.yaml"  # a name docker-compose 1.29 and v2 both find by themselves


def default_filename(pipeline: ir.Pipeline) -> str:
    return DEFAULT_FILENAME


@dataclass(frozen=True)
class Options:
    """What `aipc compile --target compose` can be told besides the program."""

    # The host address serve stages' ports are published on (0.0.0.0: every interface).
    publish_address: str = docker.DEFAULT_PUBLISH_ADDRESS
    # Where the .aip file lies, seen from the directory docker-compose resolves relative
    # paths against (the compose file's; the current one for a file read from stdin):
    # a `host` path is relative to the .aip file, so it is written relative to this.
    input_directory: str = "."
    # The GPUs of the machine: each GPU stage gets device ids of its own (backends/devices.py).
    gpus: int | None = None


def _address(text: str) -> str:
    try:
        return docker.publish_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def gpu_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a whole number of GPUs") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_arguments(group) -> None:
    group.add_argument("--publish-address", "--compose-publish-address", dest="publish_address",
                       metavar="ADDRESS", type=_address, default=docker.DEFAULT_PUBLISH_ADDRESS,
                       help="compose: the host address serve stages' ports are published on, an IP address or "
                       f"localhost (default {docker.DEFAULT_PUBLISH_ADDRESS}, as `aipc run`; 0.0.0.0 for every "
                       "interface)")
    group.add_argument("--gpus", metavar="N", type=gpu_count,
                       help="compose: the machine has N GPUs; give each GPU stage device_ids of its own, so "
                       "that stages that may run at the same time never share one (an error when they need "
                       "more than N)")


def options_from(args) -> Options:
    return Options(publish_address=getattr(args, "publish_address", None) or docker.DEFAULT_PUBLISH_ADDRESS,
                   input_directory=getattr(args, "input_directory", "."), gpus=getattr(args, "gpus", None))


def emit(pipeline: ir.Pipeline, options: Options | None = None) -> Emitted:
    options = options or Options()
    sink = Diagnostics(pipeline.file)
    assigned = None
    assignment = None
    if options.gpus is not None:
        assignment = devices.assign_devices(pipeline, options.gpus)
        if isinstance(assignment, devices.Shortfall):
            devices.report_shortfall(assignment, sink)
            return Emitted((), tuple(sink.sorted()))
        report_shared_replicas(pipeline, assignment, sink)
        assigned = {name: assignment.of(name) for name in assignment.devices}
    setup = docker.volume_setup(pipeline, pipeline.stages)
    services = {docker.VOLUMES_SERVICE: build_volume_setup(setup[0], options)} if setup is not None else {}
    waiting = setup[1] if setup is not None else ()
    for stage, spec in docker.each_container(pipeline, pipeline.stages, sink, TARGET, assigned):
        report_timeout(stage, sink)
        if stage.nodes is None:
            services[stage.name] = build_service(pipeline, stage, spec, options, sink, stage.name in waiting)
        else:  # each node its own service, and with --gpus its own devices
            per_node = assignment.devices.get(stage.name) if assignment is not None else None
            for rank in range(stage.nodes):
                node = docker.node_spec(pipeline, stage, spec, rank, per_node[rank] if per_node else None)
                services[docker.node_service(stage, rank)] = build_service(pipeline, stage, node, options, sink,
                                                                           stage.name in waiting)
    document: dict = {"services": services}
    volumes = build_volumes(pipeline)
    if volumes:
        document["volumes"] = volumes
    return Emitted((document,), tuple(sink.sorted()))


# ----------------------------------------------------------------------- services


def build_service(pipeline: ir.Pipeline, stage: ir.Stage, spec: docker.ContainerSpec, options: Options,
                  sink: Diagnostics, after_volume_setup: bool = False) -> dict:
    """One service (one node of a multi-node stage), its keys in a fixed order: what
    runs first, then how."""
    service: dict = {"image": escape(spec.image)}
    if spec.pull is not None:
        service["pull_policy"] = PULL_POLICY[spec.pull]
    service.update(build_program(spec))
    if spec.working_dir is not None:
        service["working_dir"] = escape(spec.working_dir)
    environment = build_environment(spec)
    if environment:
        service["environment"] = environment
    depends_on = build_depends_on(pipeline, stage)
    if after_volume_setup:
        depends_on = {docker.VOLUMES_SERVICE: {"condition": "service_completed_successfully"}, **depends_on}
    if depends_on:
        service["depends_on"] = depends_on
    if spec.mounts:
        service["volumes"] = [build_mount(mount, options) for mount in spec.mounts]
    if spec.publish:
        service["ports"] = [build_port(publish, options) for publish in spec.publish]
    if spec.hostname is not None:
        service["hostname"] = spec.hostname
    if spec.aliases:
        service["networks"] = {"default": {"aliases": list(spec.aliases)}}
    if spec.healthcheck is not None:
        service["healthcheck"] = build_healthcheck(spec.healthcheck)
    deploy = build_deploy(stage, spec)
    if deploy:
        service["deploy"] = deploy
    if spec.devices:
        service["devices"] = list(spec.devices)
    if spec.shm_size is not None:
        service["shm_size"] = compose_bytes(spec.shm_size)
    service["restart"] = build_restart(stage)
    service.update(build_hardening(spec))
    service["labels"] = {key: escape(value) for key, value in spec.labels}
    return service


def build_program(spec: docker.ContainerSpec) -> dict:
    program: dict = {}
    if spec.entrypoint is not None:
        program["entrypoint"] = [escape(argument) for argument in spec.entrypoint]
    if spec.command:
        program["command"] = [escape(argument) for argument in spec.command]
    return program


def build_environment(spec: docker.ContainerSpec) -> list[str]:
    """``NAME=value`` for ``env`` (and HOME and USER), ``NAME=${KEY}`` for a secret's
    key under another name, then a bare ``NAME`` for each secret key: compose
    fills in or passes through the caller's values and the output never holds one."""
    return ([f"{name}={escape(value)}" for name, value in spec.environment]
            + ["%s=${%s}" % (name, key) for name, key in spec.secret_env] + list(spec.secret_keys))


def build_volume_setup(spec: docker.ContainerSpec, options: Options) -> dict:
    """The one-off service that gives written volumes to the volume group (see docker.volume_setup)."""
    service: dict = {"image": escape(spec.image)}
    if spec.pull is not None:
        service["pull_policy"] = PULL_POLICY[spec.pull]
    service.update(build_program(spec))
    service["volumes"] = [build_mount(mount, options) for mount in spec.mounts]
    service["network_mode"] = "none"
    service["deploy"] = build_deploy_resources(spec)
    service["restart"] = "no"
    service.update(build_hardening(spec))
    service["labels"] = {key: escape(value) for key, value in spec.labels}
    return service


def build_depends_on(pipeline: ir.Pipeline, stage: ir.Stage) -> dict:
    depends_on = {}
    window = stage.instance.window_predecessor if stage.instance is not None else None
    for name in stage.after + ((window,) if window is not None else ()):
        dependency = pipeline.stage(name)
        if dependency.is_batch:
            condition = "service_completed_successfully"
        elif dependency.health is not None:
            condition = "service_healthy"
        else:
            condition = "service_started"
        for service in services_of(dependency):
            depends_on[service] = {"condition": condition}
    return depends_on


def services_of(stage: ir.Stage) -> list[str]:
    """A stage's services: its own, or one per node of a multi-node stage, each of
    which a dependant waits for, so that it starts only once every node succeeded."""
    if stage.nodes is None:
        return [stage.name]
    return [docker.node_service(stage, rank) for rank in range(stage.nodes)]


def build_mount(mount: docker.Mount, options: Options) -> str | dict:
    """The short syntax (``raw:/data/raw:ro``), which also creates a missing host
    directory; the long one only when a path holds a `:` the short one splits on."""
    volume = mount.volume
    if volume.kind is ir.VolumeKind.HOST:
        source = host_source(volume.host_path or ".", options.input_directory)
    else:
        source = volume.name
    if ":" in source or ":" in mount.target:
        long_form = {"type": "bind" if volume.kind is ir.VolumeKind.HOST else "volume",
                     "source": escape(source), "target": escape(mount.target)}
        if mount.read_only:
            long_form["read_only"] = True
        if mount.no_copy:
            long_form["volume"] = {"nocopy": True}
        return long_form
    mode = ",".join((["ro"] if mount.read_only else []) + (["nocopy"] if mount.no_copy else []))
    return escape(f"{source}:{mount.target}" + (f":{mode}" if mode else ""))


def host_source(path: str, input_directory: str = ".") -> str:
    """A host path as compose reads it. A relative path is relative to the .aip file
    (as `aipc run` reads it), compose resolves it against the compose file: it is
    written from there (``input_directory``), and starts with `.` (else compose takes
    it for a volume name)."""
    if path.startswith(("/", "~")):
        return path
    if input_directory == "." and path.startswith("."):
        return path  # as written
    joined = posixpath.normpath(posixpath.join(input_directory, path))
    if joined.startswith("/") or joined == "." or joined == ".." or joined.startswith("../"):
        return joined
    return "./" + joined


def build_port(publish: docker.Publish, options: Options) -> str:
    """``ADDRESS:FIRST-LAST:PORT``: the container port on host ports of one address."""
    published = f"{docker.port_range(publish.first, publish.last)}:{publish.port}"
    address = options.publish_address
    return f"[{address}]:{published}" if ":" in address else f"{address}:{published}"


def build_healthcheck(check: docker.HealthCheck) -> dict:
    """The container's health check (see :func:`aipc.backends.docker.health_check`)."""
    return {
        "test": [escape(part) for part in check.test],
        "interval": format_duration(check.interval),
        "timeout": format_duration(check.timeout),
        "retries": check.retries,
        "start_period": format_duration(check.start_period),
    }


def build_deploy(stage: ir.Stage, spec: docker.ContainerSpec) -> dict:
    deploy: dict = {}
    if not stage.is_batch:
        deploy["replicas"] = stage.replicas
    deploy.update(build_deploy_resources(spec))
    return deploy


def build_deploy_resources(spec: docker.ContainerSpec) -> dict:
    return {"resources": build_resources(spec)}


def build_resources(spec: docker.ContainerSpec) -> dict:
    """Limits are the high end of a range, reservations the low end; NVIDIA and AMD
    GPUs are device reservations."""
    limits = {"cpus": compose_cpus(spec.cpu.limit), "memory": compose_bytes(spec.memory.limit)}
    reservations: dict = {"memory": compose_bytes(spec.memory.request)}
    if spec.cpu is not ir.DEFAULT_CPU:  # docker-compose 1.29 ignores a cpu reservation with a warning: only one asked for
        reservations = {"cpus": compose_cpus(spec.cpu.request), **reservations}
    if spec.gpu is not None and spec.gpu.device_ids:  # `count` and `device_ids` exclude each other
        reservations["devices"] = [{"driver": spec.gpu.driver, "device_ids": list(spec.gpu.device_ids),
                                    "capabilities": ["gpu"]}]
    elif spec.gpu is not None:
        reservations["devices"] = [{"driver": spec.gpu.driver, "count": spec.gpu.count, "capabilities": ["gpu"]}]
    return {"limits": limits, "reservations": reservations}


def build_restart(stage: ir.Stage) -> str:
    if not stage.is_batch:
        return "unless-stopped"
    return f"on-failure:{stage.retries}" if stage.retries > 0 else "no"


def build_hardening(spec: docker.ContainerSpec) -> dict:
    """Who the container runs as and what it may do; each relaxation of the stage's
    ``security`` is the one key that says it (``user``, ``read_only``, ``cap_add``,
    ``privileged`` and no ``no-new-privileges``)."""
    hardening: dict = {"user": spec.user, "group_add": list(spec.group_add), "read_only": spec.read_only}
    if spec.tmpfs:
        hardening["tmpfs"] = [f"{path}:{options}" for path, options in spec.tmpfs]
    hardening["cap_drop"] = list(spec.cap_drop)
    if spec.cap_add:
        hardening["cap_add"] = list(spec.cap_add)
    if spec.privileged:
        hardening["privileged"] = True
    if spec.security_opt:
        hardening["security_opt"] = list(spec.security_opt)
    hardening["pids_limit"] = spec.pids_limit
    return hardening


def report_timeout(stage: ir.Stage, sink: Diagnostics) -> None:
    """compose has no deadline for a container (`aipc run` enforces it itself)."""
    if stage.timeout is not None:
        sink.warning(codes.IGNORED_ON_TARGET, stage.span_of("timeout"),
                     f"docker-compose has no deadline for a container: `timeout = "
                     f"{format_duration(stage.timeout)}` of `{stage.name}` is ignored",
                     label="ignored on docker-compose",
                     help=f"bound the whole run yourself (`timeout {stage.timeout}s docker-compose up`), "
                     "or use the kubernetes or argo target, which enforce it")


def report_shared_replicas(pipeline: ir.Pipeline, assignment: devices.Assignment, sink: Diagnostics) -> None:
    """compose has one device list per service, so its replicas share them (the
    nodes of a multi-node stage are services of their own, each with its devices)."""
    for stage in pipeline.stages:
        if stage.name in assignment.devices and not stage.is_batch and devices.containers(stage) > 1:
            sink.warning(codes.IGNORED_ON_TARGET, stage.span_of("gpu"),
                         f"docker-compose gives every replica of `{stage.name}` the same GPUs: its "
                         f"{stage.replicas} replicas share devices {', '.join(assignment.of(stage.name))}",
                         label="shared by the replicas",
                         help="`aipc run --gpus N` gives each replica GPUs of its own; or run one replica")


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
    for output in pipeline.outputs():  # `model.metrics`: no volume's name has a `.`
        volumes[output.key] = build_named_volume(pipeline, output.volume)
    return volumes


def build_named_volume(pipeline: ir.Pipeline, volume: ir.Volume) -> dict:
    return {"labels": {key: escape(value) for key, value in pipeline.labels_for(volume.name, None).items()}}


def build_external_volume(volume: ir.Volume) -> dict:
    """An existing volume, by its own name (docker-compose 1.29 allows no labels here)."""
    return {"external": True, "name": escape(volume.claim or volume.name)}


# ------------------------------------------------------------------------- values


def escape(text: str) -> str:
    """User text as compose data: `$` would start an interpolation, `$$` is a `$`."""
    return text.replace("$", "$$")


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
