"""The scheduler's :class:`~aipc.runner.scheduler.Driver` on the Docker SDK.

What a stage's container is, is decided once for docker-compose and for this
driver: :mod:`aipc.backends.docker` lowers it to a ``ContainerSpec`` (program,
environment, mounts, hardening, resources, GPUs, published ports, aliases,
labels), and :func:`container_options` maps that to the SDK's arguments, as
`aipc apply` applies the Kubernetes backend's documents. This driver adds what
belongs to one run: names, the run's labels (:mod:`aipc.runner.selection`,
which is how ``aipc down`` and the Ctrl-C clean-up find everything), the run's
Docker volumes (given to the volume group by the spec's one-off container
before any stage runs) and network, the address ports are published on, the
images as each stage's ``pull`` says, and ``--init`` so that stopping a
container is prompt.

GPUs: with the machine's GPUs known (``aipc run --gpus N``, or counted by
:meth:`DockerDriver.count_gpus`), the scheduler hands each container its device
ids, which reach the engine one of two ways (``--gpu-request``):

- ``device`` (the default): a device request naming them (``docker run --gpus
  '"device=0,1"'``); the engine's NVIDIA or AMD driver hands them over;
- ``env``: ``NVIDIA_VISIBLE_DEVICES=0,1`` in the container's environment, which the
  NVIDIA container runtime reads when it is the engine's default runtime
  (``"default-runtime": "nvidia"`` in daemon.json, common on GPU machines and what
  Kubernetes' GPU nodes run); every other container gets ``void``, so an image
  that sets ``all`` (the CUDA images do) sees no GPU (docs.nvidia.com
  container-toolkit, "Specialized Configurations with Docker", GPU Enumeration).
  The engine then needs no GPU driver of its own.
"""

from __future__ import annotations

import collections
import ipaddress
import os
import queue
import re
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import docker
import docker.errors
import docker.types
import requests.exceptions
from docker.utils import parse_repository_tag

from aipc.backends.docker import (
    SET_UP_KINDS, VOLUMES_SERVICE, ContainerSpec, HealthCheck, Mount, describe_health, node_service, node_spec,
    port_range, volume_setup,
)
from aipc.compiler import ir
from aipc.redact import redact
from aipc.runner.cache import LABEL_GENERATION, tree_digest
from aipc.runner.scheduler import Attempt, Devices
from aipc.runner.selection import (
    LABEL_FILE, LABEL_PIPELINE, LABEL_RUN, LABEL_STAGE, PipelineId, RunNames, label_filter,
)

WAIT_SLICE = 30.0  # seconds per `docker wait` call; a deadline is checked between them
LOG_STALL = 30.0  # seconds a container's log may go without a byte before the runner stops reading it
MAX_LINE = 2**20  # bytes: a longer line is passed on in pieces of this size (nothing is dropped)
STOP_GRACE = 5  # seconds between SIGTERM and SIGKILL when a service is stopped
SETTLE = 1.0  # a service without `health` counts as started when still running after this
SECOND = 1_000_000_000  # the engine's durations are in nanoseconds
# The volume setup of a run prepares the volumes stages write once, before any stage; each attempt
# prepares the outputs it renews.
OUTPUT_KINDS = frozenset({ir.VolumeKind.ARTIFACT})
VOLUME_KINDS = SET_UP_KINDS - OUTPUT_KINDS


class EngineUnavailable(Exception):
    """No Docker engine answers."""


class NameTaken(Exception):
    """A Docker object under a name aipc computed exists and is not this run's."""


class PreflightError(Exception):
    """Something the run needs is missing; nothing has been started."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def connect() -> docker.DockerClient:
    """A client for the engine of the environment (``DOCKER_HOST`` or the local socket)."""
    try:
        client = docker.from_env()
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as error:
        where = redact(os.environ.get("DOCKER_HOST") or "the local socket (unix:///var/run/docker.sock)")
        raise EngineUnavailable(
            f"no Docker engine answers at {where}: {engine_message(error)}; "
            "start Docker (or set DOCKER_HOST) and try again") from None
    return client


def engine_message(error: BaseException) -> str:
    """The engine's own words for an error, on one line, without credentials."""
    text = getattr(error, "explanation", None) or str(error) or type(error).__name__
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return redact(" ".join(str(text).split()))


def shown_path(path: str) -> str:
    """A path as a message shows it: relative to the current directory when under it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def explain_start_error(error: BaseException, spec: ContainerSpec) -> str:
    """Why the engine would not start a container, with what to do about it."""
    message = engine_message(error)
    if "could not select device driver" in message and spec.gpu is not None:
        if spec.gpu.driver == "nvidia":
            # NVIDIA's install guide: install nvidia-container-toolkit, then `nvidia-ctk runtime
            # configure --runtime=docker` and restart Docker
            # (https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html).
            return (f"{message}; this Docker engine cannot give containers NVIDIA GPUs: install the NVIDIA "
                    "Container Toolkit on the host, run `sudo nvidia-ctk runtime configure --runtime=docker` "
                    "and restart Docker (or run the stage where there are GPUs)")
        return (f"{message}; this Docker engine cannot give containers {spec.gpu.driver.upper()} GPUs: "
                f"install the AMD Container Toolkit (Docker Engine 28.3 or later) on the host and restart Docker")
    if ("port is already allocated" in message or "address already in use" in message) and spec.publish:
        ports = ", ".join(port_range(p.first, p.last) for p in spec.publish)
        return (f"a host port of {ports} is in use by another program on this machine ({message}); "
                "stop it, or give the stage another `port`")
    return message


# -- what a stage becomes ------------------------------------------------------------------

def host_path(volume: ir.Volume, base_dir: str) -> str:
    """A host volume's path: relative paths are relative to the .aip file's directory."""
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(volume.host_path or ".")))


def mount_option(mount: Mount, names: RunNames, base_dir: str) -> docker.types.Mount:
    volume = mount.volume
    if volume.kind is ir.VolumeKind.HOST:
        return docker.types.Mount(mount.target, host_path(volume, base_dir), type="bind", read_only=mount.read_only)
    return docker.types.Mount(mount.target, names.volume(volume), type="volume", read_only=mount.read_only,
                              no_copy=mount.no_copy)


GPU_REQUESTS = ("device", "env")  # how a container's GPUs reach the engine (--gpu-request)
VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"


def resource_options(spec: ContainerSpec, devices: tuple[str, ...] = (), gpu_request: str = "device") -> dict:
    """``devices``: the GPUs this container gets (else the first ``count`` of the machine)."""
    options: dict = {}
    if spec.gpu is not None and gpu_request == "env" and spec.gpu.driver == "nvidia" and devices:
        pass  # NVIDIA_VISIBLE_DEVICES names them (container_options)
    elif spec.gpu is not None and devices:
        options["device_requests"] = [docker.types.DeviceRequest(driver=spec.gpu.driver, device_ids=list(devices),
                                                                 capabilities=[["gpu"]])]
    elif spec.gpu is not None:
        options["device_requests"] = [docker.types.DeviceRequest(driver=spec.gpu.driver, count=spec.gpu.count,
                                                                 capabilities=[["gpu"]])]
    if spec.devices:
        options["devices"] = [f"{device}:rwm" for device in spec.devices]  # HOST:CONTAINER:cgroup permissions
    options["nano_cpus"] = spec.cpu.limit * 1_000_000  # every container has limits: the stage's or the defaults
    options["cpu_shares"] = max(2, spec.cpu.request * 1024 // 1000)
    options["mem_limit"] = spec.memory.limit
    if spec.memory.request < spec.memory.limit:
        options["mem_reservation"] = spec.memory.request
    return options


def container_options(stage: ir.Stage, spec: ContainerSpec, names: RunNames, number: int, *,
                      environ: Mapping[str, str], base_dir: str, network: str | None,
                      bind_address: str = "127.0.0.1", devices: tuple[str, ...] = (),
                      gpu_request: str = "device", rank: int | None = None) -> dict:
    """Keyword arguments of ``client.containers.create`` for one attempt (batch) or
    replica (serve) of ``stage``, whose container is ``spec``; ``devices``: its GPUs;
    ``rank``: which node of a multi-node stage's attempt it is."""
    options = spec_options(spec, names, environ=environ, base_dir=base_dir, devices=devices,
                           gpu_request=gpu_request)
    if gpu_request == "env":  # the assignment wins over an `env` of the stage: GPUs are shared
        visible = ",".join(devices) if spec.gpu is not None and spec.gpu.driver == "nvidia" and devices else "void"
        options["environment"][VISIBLE_DEVICES] = visible
    options["name"] = names.container(stage.name if rank is None else node_service(stage, rank), number)
    options["labels"] = {**dict(spec.labels), **names.stage_labels(stage)}  # ours last: `aipc down` finds it
    if network:
        options["network"] = network
        aliases = sorted({stage.name, ir.dns_label(stage.name), *spec.aliases})
        options["networking_config"] = {network: docker.types.EndpointConfig("1.41", aliases=aliases)}
    if spec.publish:
        # Replica n answers on the n-th host port of each range.
        options["ports"] = {f"{publish.port}/tcp": (bind_address, publish.first + number - 1)
                            for publish in spec.publish}
    if spec.healthcheck is not None:
        options["healthcheck"] = health_option(spec.healthcheck)
    return options


def spec_options(spec: ContainerSpec, names: RunNames, *, environ: Mapping[str, str], base_dir: str,
                 devices: tuple[str, ...] = (), gpu_request: str = "device") -> dict:
    """What a container spec is as ``client.containers.create`` arguments, whatever runs it."""
    environment = {**dict(spec.environment), **{name: environ.get(key, "") for name, key in spec.secret_env},
                   **{key: environ.get(key, "") for key in spec.secret_keys}}
    options: dict = {
        **spec.engine_options(),  # image, working_dir, hardening...: what the engine takes as it is
        "environment": environment,
        "mounts": [mount_option(mount, names, base_dir) for mount in spec.mounts],
        "init": True,
    }
    if spec.entrypoint is not None:
        options["entrypoint"] = list(spec.entrypoint)
        options["command"] = list(spec.command or ())
    elif spec.command is not None:  # `args`: the image's own entrypoint gets them
        options["command"] = list(spec.command)
    if spec.tmpfs:
        options["tmpfs"] = dict(spec.tmpfs)
    options.update(resource_options(spec, devices, gpu_request))
    return options


def writable_by_stages(path: str) -> None:
    """A host folder aipc created for stages that write it: given to the volume group
    (group-writable, new files inherit the group), as a Docker volume is; by anyone
    when the caller may not give a folder to that group (not root)."""
    try:
        os.chown(path, -1, ir.VOLUME_GROUP)
        os.chmod(path, 0o2775)
    except PermissionError:
        os.chmod(path, 0o777)


def health_option(check: HealthCheck) -> docker.types.Healthcheck:
    """The health check compose writes, as the engine's (times in nanoseconds)."""
    return docker.types.Healthcheck(test=list(check.test), interval=check.interval * SECOND,
                                    timeout=check.timeout * SECOND, retries=check.retries,
                                    start_period=check.start_period * SECOND)


def used_volumes(stages: Iterable[ir.Stage]) -> list[ir.Volume]:
    seen: dict[str, ir.Volume] = {}
    for stage in stages:
        for mount in stage.mounts:
            seen.setdefault(mount.volume.name, mount.volume)
        for artifact in stage.artifact_mounts():
            seen.setdefault(artifact.key, artifact.volume)
    return [seen[name] for name in sorted(seen)]


def _names(names: Iterable[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def _same_file(one: str, other: str) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False


def _addresses_overlap(one: str | None, other: str | None) -> bool:
    """Whether ports bound on two host addresses collide (`0.0.0.0` and `::` take every address)."""
    everywhere = {None, "", "0.0.0.0", "::"}
    if one in everywhere or other in everywhere:
        return True
    try:
        return ipaddress.ip_address(one) == ipaddress.ip_address(other)
    except ValueError:
        return one == other


class LogPump(threading.Thread):
    """Reads a container's log to its end and passes it on line by line.

    The engine sends the log in chunks; a line is split only at a newline, and a
    line longer than :data:`MAX_LINE` is passed on in pieces of that size, so
    memory stays bounded and no byte is copied more than a few times (a huge
    line is not re-scanned at every chunk). The stream ends once the container
    has stopped and the engine has sent everything: :meth:`drain` waits for that,
    as long as bytes keep coming.

    A followed stream can end before the log does (the connection breaks, or the
    engine closes it as the container stops while the reader is behind). So once
    it ends, the log's last entry is compared with what arrived; when they differ,
    the log is read again without following and what the stream missed is passed
    on: the engine sends the same bytes in the same order, so the first
    ``received`` bytes are skipped. A stream that broke while the container still
    runs is followed again the same way.
    """

    RESUMES = 5  # times a stream may end early in a row, without a byte more, before the pump gives up

    def __init__(self, container, source: str, log: Callable[[str, str], None], follow: bool = True) -> None:
        super().__init__(name=f"logs-{source}", daemon=True)
        self.container = container
        self.source = source
        self.log = log
        self.follow = follow  # False: what the log holds now, then stop
        self.received = 0  # bytes passed on so far
        self.read = 0  # bytes read from the engine, skipped ones too; drain() watches it move
        self._pending = bytearray()
        self._recent: collections.deque[bytes] = collections.deque()  # the last chunks (TAIL bytes and a few)
        self._recent_size = 0

    TAIL = 2**16

    def _emit(self, data: bytes) -> None:
        self.log(self.source, data.rstrip(b"\r").decode("utf-8", "replace"))

    def _take(self, chunk: bytes) -> None:
        self.received += len(chunk)
        self._recent.append(chunk)
        self._recent_size += len(chunk)
        while self._recent_size - len(self._recent[0]) >= self.TAIL:
            self._recent_size -= len(self._recent.popleft())
        pending = self._pending
        end = chunk.rfind(b"\n")
        if end < 0:  # still the same line
            pending += chunk
            while len(pending) >= MAX_LINE:
                self._emit(bytes(pending[:MAX_LINE]))
                del pending[:MAX_LINE]
            return
        pending += chunk[:end]
        for line in bytes(pending).split(b"\n"):
            self._emit(line)
        self._pending = bytearray(chunk[end + 1:])

    def _pass_on(self, follow: bool) -> bool:
        """Reads the log (from its start, skipping what was passed on); True when the
        stream ended by itself, False when it broke."""
        skip = self.received
        try:
            for chunk in self.container.logs(stream=True, follow=follow):
                self.read += len(chunk)
                if skip:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk, skip = chunk[skip:], 0
                self._take(chunk)
        except Exception:  # noqa: BLE001 - the connection broke, or the container went away (Ctrl-C, removed)
            return False
        return True

    def _complete(self) -> bool | None:
        """Whether the stopped container's log ends with what arrived; None while it
        still runs (or once it is gone: nothing more can be read)."""
        try:
            self.container.reload()
            if self.container.status in ("running", "restarting", "paused"):
                return None
            last = self.container.logs(stream=False, follow=False, tail=1)
        except Exception:  # noqa: BLE001 - removed meanwhile (Ctrl-C, aipc down)
            return True
        return b"".join(self._recent).endswith(last)

    def run(self) -> None:
        follow, idle = self.follow, 0
        while True:
            before = self.received
            ended = self._pass_on(follow)
            if not self.follow:
                break
            complete = self._complete()
            if complete:
                break
            idle = 0 if self.received > before else idle + 1
            if idle >= self.RESUMES or (complete is None and ended):
                break  # a running container whose stream ends by itself: it is being removed
            follow = complete is None
        if self._pending:
            self._emit(bytes(self._pending))

    def drain(self) -> None:
        """Wait until the whole log has been read (the container has ended), for as
        long as it keeps coming: a stream that stalls for LOG_STALL seconds is left."""
        seen, since = -1, time.monotonic()
        while self.is_alive():
            self.join(timeout=0.5)
            if self.read != seen:
                seen, since = self.read, time.monotonic()
            elif time.monotonic() - since > LOG_STALL:
                self.log(self.source, f"[aipc: the engine stopped sending this log for {LOG_STALL:g}s; "
                                      "the rest of it was not read]")
                return


# -- the driver ----------------------------------------------------------------------------

@dataclass
class Replica:
    stage: str
    number: int
    container: object
    url: str | None = None
    exit_code: int | None = None


@dataclass
class DockerDriver:
    """Runs one pipeline's stages as containers; remembers every container it made."""

    client: docker.DockerClient
    pipeline: ir.Pipeline
    specs: Mapping[str, ContainerSpec]  # the container of each stage it may run, by name
    names: RunNames
    log: Callable[[str, str], None]  # (source, line): a stage's output
    note: Callable[[str], None]  # a status message
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    base_dir: str = "."
    bind_address: str = "127.0.0.1"
    health_timeout: float | None = None  # None: as long as each service's health check allows
    gpu_request: str = "device"  # how containers get their GPUs: a device request, or NVIDIA_VISIBLE_DEVICES
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _live: dict = field(default_factory=dict, init=False)  # container id -> (container, is_service)
    _replicas: list[Replica] = field(default_factory=list, init=False)
    _aborted: bool = field(default=False, init=False)
    _network: str | None = field(default=None, init=False)

    # -- before anything starts ----------------------------------------------------------

    def prepare(self, stages: list[ir.Stage]) -> None:
        """Images, volumes and the network; raises PreflightError listing every problem
        (nothing has been created then)."""
        try:
            problems = self._check_other_files()
            problems += self._check_images({self.specs[stage.name].image: self.specs[stage.name].pull
                                            for stage in stages})
            volumes = used_volumes(stages)
            problems += self._check_claims(volumes)
            problems += self._check_volume_owners(volumes)
            problems += self._check_host_folders(stages)
            problems += self._check_ports(stages)
            if problems:
                raise PreflightError(problems)
            problems = self._create_volumes(volumes, stages)
            if problems:
                raise PreflightError(problems)
            self._set_up_volumes(stages)
            self._create_network()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            raise PreflightError([f"the Docker engine failed: {engine_message(error)}"]) from None

    def _check_other_files(self) -> list[str]:
        """Containers of this pipeline started from another .aip file that still exists:
        two files claim the pipeline. (One whose file is gone was moved or renamed:
        its run is this pipeline's, and `aipc down` with the new name finds it.)"""
        others: dict[str, str] = {}
        for container in self.client.containers.list(all=True, sparse=True,
                                                     filters=label_filter(LABEL_PIPELINE, self.names.key)):
            labels = container.attrs.get("Labels") or {}
            file = labels.get(LABEL_FILE)
            if not file or file == self.names.file or not os.path.exists(file) or _same_file(file, self.names.file):
                continue
            others.setdefault(file, labels.get(LABEL_RUN, "?"))
        return [f"pipeline {self.names.pipeline} is in use by run {run} from `{shown_path(file)}`, and "
                f"`{shown_path(self.names.file)}` declares the same pipeline: a run belongs to the pipeline's "
                "name and namespace, so two files cannot run it at once; give one of them another name or "
                f"`namespace` in its `pipeline` header, or stop that run with `aipc down {shown_path(file)}`"
                for file, run in sorted(others.items())]

    def _check_ports(self, stages: list[ir.Stage]) -> list[str]:
        """Host ports the serve stages publish that a running container holds already
        (an earlier `aipc run --detach`, most often)."""
        wanted = [(stage, self.specs[stage.name].publish) for stage in stages
                  if not stage.is_batch and self.specs[stage.name].publish]
        if not wanted:
            return []
        problems: list[str] = []
        running = self.client.containers.list(sparse=True)
        for stage, publishes in wanted:
            for container in running:
                held = [port["PublicPort"] for port in container.attrs.get("Ports") or []
                        if port.get("PublicPort") is not None
                        and any(p.first <= port["PublicPort"] <= p.last for p in publishes)
                        and _addresses_overlap(port.get("IP"), self.bind_address)]
                if held:
                    problems.append(self._port_holder(stage, min(held), container.attrs))
        return problems

    def _port_holder(self, stage: ir.Stage, port: int, attrs: dict) -> str:
        labels = attrs.get("Labels") or {}
        name = (attrs.get("Names") or ["?"])[0].lstrip("/")
        if LABEL_RUN not in labels:
            return (f"`{stage.name}` publishes host port {port}, which the container `{name}` holds (aipc did not "
                    f"start it): stop it (`docker stop {name}`) or give `{stage.name}` another `port`")
        file = shown_path(labels.get(LABEL_FILE, "?"))
        owner = labels.get(LABEL_PIPELINE)
        whose = "an earlier run of this pipeline" if owner == self.names.key else f"pipeline `{owner}`"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(attrs.get("Created") or 0))
        return (f"`{stage.name}` publishes host port {port}, which `{labels.get(LABEL_STAGE, name)}` of {whose} "
                f"holds (run {labels[LABEL_RUN]} from `{file}`, up since {since}): stop that run with "
                f"`aipc down {file}` and run again")

    def _check_images(self, images: Mapping[str, ir.PullPolicy | None]) -> list[str]:
        """Each image on this machine, pulled when missing (or always, or never, as ``pull`` says)."""
        problems = []
        for image in sorted(images):
            policy = images[image]
            if policy is not ir.PullPolicy.ALWAYS:
                try:
                    self.client.images.get(image)
                    continue
                except docker.errors.ImageNotFound:
                    if policy is ir.PullPolicy.NEVER:
                        problems.append(f"image `{image}` is not on this machine, and `pull = never` forbids "
                                        "pulling it")
                        continue
                except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
                    problems.append(f"image `{image}`: {engine_message(error)}")
                    continue
                self.note(f"pulling image {image} (not on this machine)")
            else:
                self.note(f"pulling image {image} (`pull = always`)")
            repository, tag = parse_repository_tag(image)
            try:
                self.client.images.pull(repository, tag=tag or "latest")
            except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
                problems.append(f"image `{image}` is not on this machine and cannot be pulled: "
                                f"{engine_message(error)}")
        return problems

    def _check_claims(self, volumes: list[ir.Volume]) -> list[str]:
        problems = []
        for volume in volumes:
            if volume.kind is not ir.VolumeKind.CLAIM:
                continue
            name = self.names.volume(volume)
            try:
                self.client.volumes.get(name)
            except docker.errors.NotFound:
                problems.append(f"volume `{volume.name}` claims the Docker volume `{name}`, which does not "
                                f"exist; create it with `docker volume create {name}`")
            except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
                problems.append(f"volume `{volume.name}`: {engine_message(error)}")
        return problems

    def _check_volume_owners(self, volumes: list[ir.Volume]) -> list[str]:
        """A Docker volume under the name aipc computes is used only if aipc made it for
        this pipeline (its labels say so): one that aipc did not create, or made for
        another pipeline, is never taken over."""
        problems = []
        for volume in volumes:
            if volume.kind not in (ir.VolumeKind.SIZED, ir.VolumeKind.ARTIFACT):
                continue
            name = self.names.volume(volume)
            try:
                existing = self.client.volumes.get(name)
            except docker.errors.NotFound:
                continue
            owner = (existing.attrs.get("Labels") or {}).get(LABEL_PIPELINE)
            if owner == self.names.key:
                continue
            if owner is None:
                problems.append(f"volume `{volume.name}`: a Docker volume named `{name}` already exists and aipc did "
                                "not create it (it has no aipc labels), so aipc does not use it: remove it "
                                f"(`docker volume rm {name}`) if nothing needs it, or mount it on purpose with "
                                f"`claim = \"{name}\"`")
            else:
                problems.append(f"volume `{volume.name}`: the Docker volume `{name}` belongs to pipeline `{owner}`, "
                                f"not to {self.names.pipeline}: give one of the pipelines or volumes another name")
        return problems

    def _host_folder_uses(self, stages: list[ir.Stage]) -> dict[str, tuple[ir.Volume, list[str], list[str]]]:
        """Each host volume the stages mount: the stages that write it and those that only read it."""
        uses: dict[str, tuple[ir.Volume, list[str], list[str]]] = {}
        for stage in stages:
            for mount in self.specs[stage.name].mounts:
                if mount.volume.kind is ir.VolumeKind.HOST:
                    _, writers, readers = uses.setdefault(mount.volume.name, (mount.volume, [], []))
                    (readers if mount.read_only else writers).append(stage.name)
        return uses

    def _check_host_folders(self, stages: list[ir.Stage]) -> list[str]:
        """A host folder that does not exist is an error when the run only reads it:
        the stages would run on an empty folder."""
        problems = []
        for volume, writers, readers in self._host_folder_uses(stages).values():
            path = host_path(volume, self.base_dir)
            if not writers and not os.path.exists(path):
                problems.append(f"volume `{volume.name}`: the host folder `{shown_path(path)}` does not exist, and "
                                f"{_names(readers)} only read{'s' if len(readers) == 1 else ''} it: create it with "
                                f"the input {'it expects' if len(readers) == 1 else 'they expect'}, or correct "
                                f"`host = \"{volume.host_path}\"` (relative to the .aip file)")
        return problems

    def _create_volumes(self, volumes: list[ir.Volume], stages: list[ir.Stage]) -> list[str]:
        problems = []
        folders = self._host_folder_uses(stages)
        for volume in volumes:
            if volume.kind is ir.VolumeKind.HOST:
                path = host_path(volume, self.base_dir)
                if os.path.exists(path):
                    continue  # a directory, or a file to bind
                try:
                    os.makedirs(path)
                    writable_by_stages(path)
                except OSError as error:
                    problems.append(f"volume `{volume.name}`: cannot create `{path}`: {error.strerror or error}")
                    continue
                writers = folders[volume.name][1]
                self.note(f"created the host folder {shown_path(path)} of volume `{volume.name}`, which did not "
                          f"exist ({_names(writers)} write{'s' if len(writers) == 1 else ''} it)")
            elif volume.kind in (ir.VolumeKind.SIZED, ir.VolumeKind.ARTIFACT):
                name = self.names.volume(volume)
                try:
                    self.client.volumes.get(name)
                except docker.errors.NotFound:
                    try:
                        self.client.volumes.create(name, driver="local", labels=self.names.volume_labels(volume))
                        self.note(f"created volume {name}")
                    except docker.errors.APIError as error:
                        problems.append(f"volume `{volume.name}`: cannot create `{name}`: {engine_message(error)}")
        return problems

    def _set_up_volumes(self, stages: list[ir.Stage]) -> None:
        """Run the one-off container that gives the volumes these stages write to the
        volume group (what compose runs as the service `aipc-volumes`, there with the
        outputs: here each attempt renews its outputs, and sets them up then)."""
        problem = self._run_volume_setup(volume_setup(self.pipeline, stages, VOLUME_KINDS), VOLUMES_SERVICE, 1)
        if problem is not None:
            raise PreflightError([f"preparing the volumes for the stages' user {problem}"])

    def _run_volume_setup(self, setup: tuple[ContainerSpec, tuple[str, ...]] | None, name: str,
                          number: int) -> str | None:
        """Run a volume setup (docker.volume_setup) to its end: None when it succeeded or
        there is none, else what went wrong."""
        if setup is None:
            return None
        spec = setup[0]
        options = spec_options(spec, self.names, environ=self.environ, base_dir=self.base_dir)
        options.update(name=self.names.container(name, number), network_mode="none",
                       labels={**dict(spec.labels), **self.names.run_labels()})
        container = self.client.containers.create(**options)
        try:
            container.start()
            code = self._wait(container, time.monotonic() + 120)
            if code != 0:
                output = container.logs().decode("utf-8", "replace").strip().splitlines()[-3:]
                return (f"(image `{spec.image}`, which needs sh, chgrp and chmod) failed with code {code}: "
                        + " / ".join(output))
        finally:
            self._discard(container, graceful=False)
        return None

    def _create_network(self) -> None:
        name = self.names.network
        if self.client.networks.list(names=[name]):
            raise PreflightError([f"a Docker network named `{name}` already exists and this run did not create "
                                  "it: aipc does not take it over; remove it (`docker network rm "
                                  f"{name}`) or run again"])
        try:
            self.client.networks.create(name, driver="bridge", labels=self.names.run_labels())
        except docker.errors.APIError as error:
            raise PreflightError([f"cannot create the network `{name}`: {engine_message(error)}"]) from None
        self._network = name

    # -- containers ----------------------------------------------------------------------

    def count_gpus(self, image: str) -> list[str]:
        """The device ids of the engine's NVIDIA GPUs, read with ``nvidia-smi -L`` in a
        container of ``image`` given every GPU: the NVIDIA container toolkit mounts
        ``nvidia-smi`` into it for the ``utility`` capability (moby
        daemon/nvidia_linux.go turns a device request's capabilities into
        NVIDIA_DRIVER_CAPABILITIES). Raises PreflightError when there are none."""
        options: dict = {"image": image, "entrypoint": ["nvidia-smi"], "command": ["-L"],
                         "name": self.names.container("gpus", 0), "labels": self.names.run_labels()}
        if self.gpu_request == "env":
            options["environment"] = {VISIBLE_DEVICES: "all", "NVIDIA_DRIVER_CAPABILITIES": "utility"}
        else:
            options["device_requests"] = [docker.types.DeviceRequest(driver="nvidia", count=-1,
                                                                     capabilities=[["gpu", "utility"]])]
        container = None
        try:
            container = self.client.containers.create(**options)
            container.start()
            code = container.wait(timeout=60).get("StatusCode")
            output = container.logs().decode("utf-8", "replace")
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            code, output = None, engine_message(error)
        finally:
            if container is not None:
                self._discard(container, graceful=False)
        found = re.findall(r"^GPU (\d+):", output, re.M) if code == 0 else []
        if not found:
            raise PreflightError([
                f"the stages need GPUs, and the Docker engine offers none (nvidia-smi -L: "
                f"{' '.join(output.split())[:300] or f'exit code {code}'}); on a machine with NVIDIA GPUs install the "
                "NVIDIA Container Toolkit, use --gpu-request env when its runtime is Docker's default, or say "
                "how many GPUs there are with --gpus N"])
        return found

    def _create(self, stage: ir.Stage, number: int, is_service: bool, devices: tuple[str, ...] = (),
                rank: int | None = None):
        """A created (not started) container, or None when the run was aborted meanwhile.
        A container that already has the name is not this run's: it is left alone."""
        spec = self.specs[stage.name]
        if rank is not None:
            spec = node_spec(self.pipeline, stage, spec, rank)
        options = container_options(stage, spec, self.names, number, environ=self.environ,
                                    base_dir=self.base_dir, network=self._network,
                                    bind_address=self.bind_address, devices=devices, gpu_request=self.gpu_request,
                                    rank=rank)
        try:
            container = self.client.containers.create(**options)
        except docker.errors.APIError as error:
            if error.status_code == 409:  # Conflict: the name is taken
                raise NameTaken(f"a container named `{options['name']}` already exists and this run did not "
                                f"create it: aipc does not take it over; remove it (`docker rm {options['name']}`) "
                                "or run again") from None
            raise
        with self._lock:
            aborted = self._aborted
            if not aborted:
                self._live[container.id] = (container, is_service)
        if aborted:
            self._discard(container, graceful=False)
            return None
        return container

    def _discard(self, container, graceful: bool) -> None:
        """Stop (SIGTERM first when graceful) and remove; a container already gone is fine."""
        try:
            if graceful:
                container.stop(timeout=STOP_GRACE)
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            message = engine_message(error)
            if "already in progress" not in message and "No such container" not in message:
                self.note(f"could not remove container {container.name}: {message}")
        with self._lock:
            self._live.pop(container.id, None)

    def _follow(self, container, source: str) -> "LogPump":
        pump = LogPump(container, source, self.log)
        pump.start()
        return pump

    def _wait(self, container, deadline: float | None) -> int | None:
        """The exit code, or None when ``deadline`` passes first."""
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            window = WAIT_SLICE if remaining is None else max(0.05, min(WAIT_SLICE, remaining))
            try:
                return container.wait(timeout=window).get("StatusCode")
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                container.reload()  # raises if the engine itself went away

    # -- Driver: batch stages --------------------------------------------------------------

    def run_batch(self, stage: ir.Stage, attempt: int, deadline: float | None, devices: Devices = ()) -> Attempt:
        if stage.nodes is not None:
            return self._run_group(stage, attempt, deadline, devices)
        try:
            problem = self._renew_outputs(stage, attempt)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            return Attempt(error=f"cannot empty its outputs: {engine_message(error)}")
        if problem is not None:
            return Attempt(error=problem)
        try:
            container = self._create(stage, attempt, is_service=False, devices=devices[0] if devices else ())
        except NameTaken as error:
            return Attempt(error=str(error))
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            return Attempt(error=f"cannot create the container: {engine_message(error)}")
        if container is None:
            return Attempt(cancelled=True)
        try:
            return self._execute(stage, container, attempt, deadline)
        except docker.errors.NotFound:
            return Attempt(cancelled=True) if self._aborted else Attempt(error="the container disappeared")
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            if self._aborted:
                return Attempt(cancelled=True)
            return Attempt(error=engine_message(error))
        finally:
            self._discard(container, graceful=False)

    def _execute(self, stage: ir.Stage, container, attempt: int, deadline: float | None) -> Attempt:
        try:
            container.start()
        except docker.errors.APIError as error:
            return Attempt(error=f"Docker cannot start it: {explain_start_error(error, self.specs[stage.name])}")
        source = stage.name if attempt == 1 else f"{stage.name}#{attempt}"
        logs = self._follow(container, source)
        exit_code = self._wait(container, deadline)
        timed_out = exit_code is None
        if timed_out:
            try:
                container.kill()
            except docker.errors.APIError:
                pass  # it ended just now
            exit_code = self._wait(container, time.monotonic() + WAIT_SLICE)
        if not self._aborted:
            logs.drain()  # every line, before the container goes
        detail = None
        container.reload()
        if container.attrs.get("State", {}).get("OOMKilled"):
            detail = "killed: out of memory"
        if self._aborted:
            return Attempt(cancelled=True, exit_code=exit_code)
        outputs = self._digest_outputs(stage, container) if exit_code == 0 and not timed_out else ()
        return Attempt(exit_code=exit_code, timed_out=timed_out, detail=detail, outputs=outputs)

    def _renew_outputs(self, stage: ir.Stage, attempt: int) -> str | None:
        """Each attempt writes its outputs into new, empty volumes: nothing of an earlier
        run is left in them, and their creation time tells the cache they changed. They
        are given to the volume group (docker.volume_setup) before the stage starts:
        None when done, else what went wrong."""
        for output in stage.artifact_mounts():
            if output.read_only:
                continue
            name = self.names.volume(output.volume)
            try:
                self.client.volumes.get(name).remove()
            except docker.errors.NotFound:
                pass
            self.client.volumes.create(name, driver="local", labels={
                **self.names.volume_labels(output.volume), LABEL_GENERATION: uuid.uuid4().hex})
        setup = volume_setup(self.pipeline, [stage], OUTPUT_KINDS)
        problem = self._run_volume_setup(setup, f"{VOLUMES_SERVICE}-{stage.name}", attempt)
        return None if problem is None else f"preparing its outputs for the stage's user {problem}"

    def _digest_outputs(self, stage: ir.Stage, container) -> tuple[tuple[str, str], ...]:
        """The content digest of each output, read from the stopped container through the
        engine (its archive of the path), before the container goes."""
        return tuple((output.name, tree_digest(container.get_archive(output.path)[0])) for output in stage.outputs)

    # -- Driver: multi-node stages ---------------------------------------------------------

    def _run_group(self, stage: ir.Stage, attempt: int, deadline: float | None, devices: Devices = ()) -> Attempt:
        """One attempt of a multi-node stage: its N containers together (each node's
        variables, names and rank from backends/docker.py). It succeeds when every
        node exits 0; the first node that fails (or the deadline) stops the others,
        and a retry runs the whole group again, as a JobSet restarts it. ``devices``:
        each node's GPUs, one tuple per node (the scheduler's, when it assigns them)."""
        containers: list = []
        try:
            for rank in range(stage.node_count):
                container = self._create(stage, attempt, is_service=False,
                                         devices=devices[rank] if devices else (), rank=rank)
                if container is None:
                    return Attempt(cancelled=True)
                containers.append(container)
            return self._execute_group(stage, containers, attempt, deadline)
        except NameTaken as error:
            return Attempt(error=str(error))
        except docker.errors.NotFound:
            return Attempt(cancelled=True) if self._aborted else Attempt(error="a container disappeared")
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            if self._aborted:
                return Attempt(cancelled=True)
            return Attempt(error=engine_message(error))
        finally:
            for container in containers:
                self._discard(container, graceful=False)

    def _execute_group(self, stage: ir.Stage, containers: list, attempt: int, deadline: float | None) -> Attempt:
        pumps = []
        for rank, container in enumerate(containers):
            try:
                container.start()
            except docker.errors.APIError as error:
                return Attempt(error=f"Docker cannot start node {rank}: "
                                     f"{explain_start_error(error, self.specs[stage.name])}")
            source = f"{stage.name}#node-{rank}" if attempt == 1 else f"{stage.name}#{attempt}/node-{rank}"
            pumps.append(self._follow(container, source))
        ended: queue.Queue = queue.Queue()
        for rank, container in enumerate(containers):
            threading.Thread(target=self._wait_node, args=(container, rank, deadline, ended), daemon=True).start()
        failed: tuple[int, int] | None = None  # the first node that failed, and its exit code
        timed_out = False
        for _ in containers:
            rank, code = ended.get()
            if failed is None and not timed_out and (code is None or code != 0):
                timed_out = code is None
                if not timed_out:
                    failed = (rank, code)
                for other in containers:  # the group cannot go on without it
                    try:
                        other.kill()
                    except docker.errors.APIError:
                        pass  # it ended just now
        if not self._aborted:
            for pump in pumps:
                pump.drain()  # every line, before the containers go
        if self._aborted:
            return Attempt(cancelled=True)
        if timed_out:
            return Attempt(timed_out=True)
        if failed is not None:
            rank, code = failed
            containers[rank].reload()
            oom = containers[rank].attrs.get("State", {}).get("OOMKilled")
            why = "killed: out of memory, " if oom else ""
            return Attempt(exit_code=code, detail=f"{why}node {rank} of {len(containers)}; the others were stopped")
        return Attempt(exit_code=0)

    def _wait_node(self, container, rank: int, deadline: float | None, ended: queue.Queue) -> None:
        """Put ``(rank, exit code)`` on ``ended`` when the node exits (None: the deadline
        passed; a container gone or an engine error counts as a failure, 1)."""
        try:
            code = self._wait(container, deadline)
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            code = 1
        ended.put((rank, code))

    # -- Driver: serve stages --------------------------------------------------------------

    def start_service(self, stage: ir.Stage, devices: Devices = ()) -> Attempt:
        replicas: list[Replica] = []
        try:
            for number in range(1, stage.replicas + 1):
                container = self._create(stage, number, is_service=True,
                                         devices=devices[number - 1] if devices else ())
                if container is None:
                    return Attempt(cancelled=True)
                replica = Replica(stage.name, number, container)
                replicas.append(replica)
                try:
                    container.start()
                except docker.errors.APIError as error:
                    outcome = Attempt(error=f"Docker cannot start it: "
                                            f"{explain_start_error(error, self.specs[stage.name])}")
                    break
                source = stage.name if stage.replicas == 1 else f"{stage.name}#{number}"
                self._follow(container, source)
                replica.url = self._url(container, stage)
            else:
                outcome = self._await_ready(stage, replicas)
        except NameTaken as error:
            outcome = Attempt(error=str(error))
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            outcome = Attempt(cancelled=True) if self._aborted else Attempt(error=engine_message(error))
        if outcome.ok:
            with self._lock:
                self._replicas.extend(replicas)
        else:
            for replica in replicas:
                self._discard(replica.container, graceful=False)
        return outcome

    def _probe_host(self) -> str:
        base = urllib.parse.urlparse(self.client.api.base_url)
        if base.scheme in ("http", "https") and base.hostname not in (None, "localhost", "127.0.0.1"):
            return base.hostname  # a remote engine: its published ports are on that host
        return "127.0.0.1" if self.bind_address in ("0.0.0.0", "::", "") else self.bind_address

    def _url(self, container, stage: ir.Stage) -> str | None:
        """Where the host reaches a replica's `port` (its first published port)."""
        publish = self.specs[stage.name].publish
        if not publish:
            return None
        container.reload()
        bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{publish[0].port}/tcp")
        if not bindings:
            return None
        host = self._probe_host()
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{bindings[0]['HostPort']}"

    def _await_ready(self, stage: ir.Stage, replicas: list[Replica]) -> Attempt:
        """Wait until the engine finds every replica healthy (its health check is the
        one compose writes, so the wait honours `start`: failures count after it), or
        a replica exits or turns unhealthy. Without a health check a service is
        ready once it still runs after SETTLE."""
        check = self.specs[stage.name].healthcheck
        if check is None:
            limit = SETTLE
        elif self.health_timeout is not None:
            limit = self.health_timeout
        else:  # the longest the engine takes to say `unhealthy`, with a little slack
            limit = check.start_period + (check.retries + 1) * (check.interval + check.timeout) + 5
        deadline = time.monotonic() + limit
        waiting = list(replicas)
        answers: dict[int, str] = {}  # replica -> what its health endpoint last answered
        pause = 0.1
        while True:
            if self._aborted:
                return Attempt(cancelled=True)
            for replica in list(waiting):
                replica.container.reload()
                state = replica.container.attrs.get("State", {})
                if state.get("Status") in ("exited", "dead"):
                    code = state.get("ExitCode")
                    return Attempt(exit_code=code, error=f"replica {replica.number} exited with code {code} "
                                                          "before it was ready")
                health = state.get("Health") or {}
                if check is not None and health.get("Status") == "healthy":
                    waiting.remove(replica)
                elif check is not None and health.get("Status") == "unhealthy":
                    return Attempt(error=f"unhealthy: {self._health_words(stage)} failed {check.retries} times "
                                         f"in a row{_last_output(health)}")
            if not waiting:
                return Attempt(exit_code=0)
            if time.monotonic() >= deadline:
                if check is None:
                    return Attempt(exit_code=0)  # still running after SETTLE: started
                health = waiting[0].container.attrs.get("State", {}).get("Health") or {}
                return Attempt(error=f"not healthy after {limit:g}s ({self._health_words(stage)})"
                                     f"{_last_output(health)}")
            time.sleep(pause)
            pause = min(1.0, pause * 1.5)

    def _health_words(self, stage: ir.Stage) -> str:
        return describe_health(stage.health) if stage.health is not None else "its health check"

    def services(self) -> list[Replica]:
        with self._lock:
            return list(self._replicas)

    def wait_services(self, on_exit: Callable[[Replica], None]) -> list[Replica]:
        """Block until every service replica has exited (Ctrl-C interrupts this)."""
        running = self.services()
        while running:
            time.sleep(0.5)
            for replica in list(running):
                try:
                    replica.container.reload()
                    state = replica.container.attrs.get("State", {})
                    if state.get("Status") not in ("exited", "dead"):
                        continue
                    replica.exit_code = state.get("ExitCode")
                except (docker.errors.DockerException, requests.exceptions.RequestException):
                    pass  # removed meanwhile (`aipc down`), or the engine went away
                running.remove(replica)
                on_exit(replica)
        return self.services()

    # -- ending a run ----------------------------------------------------------------------

    def abort(self) -> None:
        """Remove every container of this run: batch ones at once, services with a short
        grace period. Safe to call several times and from any thread."""
        with self._lock:
            self._aborted = True
            victims = list(self._live.values())
        _in_parallel([lambda c=c, s=s: self._discard(c, graceful=s) for c, s in victims])
        self.sweep()

    def sweep(self) -> None:
        """Remove what a label search still finds of this run (containers being created
        while ``abort`` ran)."""
        try:
            leftovers = self.client.containers.list(all=True, filters=label_filter(LABEL_RUN, self.names.run_id))
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return
        _in_parallel([lambda c=c: self._discard(c, graceful=False) for c in leftovers])

    def close(self, keep_services: bool) -> None:
        """Finish the run: without ``keep_services`` remove the services and the network."""
        if keep_services:
            return
        self.abort()
        if self._network:
            try:
                self.client.networks.get(self._network).remove()
            except docker.errors.NotFound:
                pass
            except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
                self.note(f"could not remove network {self._network}: {engine_message(error)}")


def _last_output(health: dict) -> str:
    """``: OUTPUT`` of the last health check the engine ran, on one line, if it said anything."""
    log = health.get("Log") or []
    text = " ".join(str(log[-1].get("Output") or "").split()) if log else ""
    return f": {text[:200]}" if text else ""


def _in_parallel(tasks: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=task, daemon=True) for task in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=STOP_GRACE + 30)


# -- aipc down -----------------------------------------------------------------------------

@dataclass
class Removed:
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _remove_all(objects, kind: str, removed: list[str], problems: list[str]) -> None:
    """Remove networks or volumes, noting what went and why any could not."""
    for item in objects:
        try:
            item.remove()
            removed.append(item.name)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            problems.append(f"{kind} {item.name}: {engine_message(error)}")


def owned(listing: Callable[..., list], file: str, pipeline: PipelineId | None) -> list:
    """What ``listing`` (``client.containers.list``...) finds of a pipeline: objects with its
    label, and those that runs from ``file`` made under another pipeline name (the file was
    edited since), once each."""
    found: dict[str, object] = {}
    filters = [label_filter(LABEL_FILE, os.path.realpath(file))]
    if pipeline is not None:
        filters.append(label_filter(LABEL_PIPELINE, pipeline.label))
    for labels in filters:
        for item in listing(labels):
            found.setdefault(item.id, item)
    return list(found.values())


def down(client: docker.DockerClient, file: str, volumes: bool = False,
         pipeline: PipelineId | None = None) -> Removed:
    """Remove every container and network ``aipc run`` made for ``pipeline`` or from
    ``file`` (and with ``volumes`` its named volumes too)."""
    removed = Removed()

    def remove_container(container) -> None:
        try:
            container.stop(timeout=STOP_GRACE)
            container.remove(force=True)
            removed.containers.append(container.name)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            removed.problems.append(f"container {container.name}: {engine_message(error)}")

    containers = owned(lambda f: client.containers.list(all=True, filters=f), file, pipeline)
    _in_parallel([lambda c=c: remove_container(c) for c in containers])
    _remove_all(owned(lambda f: client.networks.list(filters=f), file, pipeline), "network", removed.networks,
                removed.problems)
    if volumes:
        _remove_all(owned(lambda f: client.volumes.list(filters=f), file, pipeline), "volume", removed.volumes,
                    removed.problems)
    removed.containers.sort()
    return removed
