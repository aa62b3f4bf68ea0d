"""The scheduler's :class:`~aipc.runner.scheduler.Driver` on the Docker SDK.

What a stage's container is, is decided once for docker-compose and for this
driver: :mod:`aipc.backends.docker` lowers it to a ``ContainerSpec`` (program,
environment, mounts, hardening, resources, GPUs, published ports, aliases,
labels), and :func:`container_options` maps that to the SDK's arguments, as
`aipc apply` applies the Kubernetes backend's documents. This driver adds what
belongs to one run: names, the run's labels (:mod:`aipc.runner.selection`,
which is how ``aipc down`` and the Ctrl-C clean-up find everything), the run's
Docker volumes and network, the address ports are published on, and ``--init``
so that stopping a container is prompt.

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

import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import docker
import docker.errors
import docker.types
import requests.exceptions
from docker.utils import parse_repository_tag

from aipc.backends.docker import ContainerSpec, Mount
from aipc.compiler import ir
from aipc.runner.scheduler import Attempt, Devices
from aipc.runner.selection import LABEL_FILE, LABEL_RUN, RunNames, label_filter

WAIT_SLICE = 30.0  # seconds per `docker wait` call; a deadline is checked between them
LOG_DRAIN = 10.0  # seconds to wait for the last log lines of a container that ended
STOP_GRACE = 5  # seconds between SIGTERM and SIGKILL when a service is stopped
SETTLE = 1.0  # a service without `health` counts as started when still running after this


class EngineUnavailable(Exception):
    """No Docker engine answers."""


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
        where = os.environ.get("DOCKER_HOST") or "the local socket (unix:///var/run/docker.sock)"
        raise EngineUnavailable(
            f"no Docker engine answers at {where}: {engine_message(error)}; "
            "start Docker (or set DOCKER_HOST) and try again") from None
    return client


def engine_message(error: BaseException) -> str:
    """The engine's own words for an error, on one line."""
    text = getattr(error, "explanation", None) or str(error) or type(error).__name__
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())


# -- what a stage becomes ------------------------------------------------------------------

def host_path(volume: ir.Volume, base_dir: str) -> str:
    """A host volume's path: relative paths are relative to the .aip file's directory."""
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(volume.host_path or ".")))


def mount_option(mount: Mount, names: RunNames, base_dir: str) -> docker.types.Mount:
    volume = mount.volume
    if volume.kind is ir.VolumeKind.HOST:
        return docker.types.Mount(mount.target, host_path(volume, base_dir), type="bind", read_only=mount.read_only)
    return docker.types.Mount(mount.target, names.volume(volume), type="volume", read_only=mount.read_only)


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
    if spec.cpu is not None:
        options["nano_cpus"] = spec.cpu.limit * 1_000_000
        options["cpu_shares"] = max(2, spec.cpu.request * 1024 // 1000)
    if spec.memory is not None:
        options["mem_limit"] = spec.memory.limit
        if spec.memory.request < spec.memory.limit:
            options["mem_reservation"] = spec.memory.request
    return options


def container_options(stage: ir.Stage, spec: ContainerSpec, names: RunNames, number: int, *,
                      environ: Mapping[str, str], base_dir: str, network: str | None,
                      bind_address: str = "127.0.0.1", devices: tuple[str, ...] = (),
                      gpu_request: str = "device") -> dict:
    """Keyword arguments of ``client.containers.create`` for one attempt (batch) or
    replica (serve) of ``stage``, whose container is ``spec``; ``devices``: its GPUs."""
    environment = {**dict(spec.environment), **{key: environ.get(key, "") for key in spec.secret_keys}}
    if gpu_request == "env":  # the assignment wins over an `env` of the stage: GPUs are shared
        visible = ",".join(devices) if spec.gpu is not None and spec.gpu.driver == "nvidia" and devices else "void"
        environment[VISIBLE_DEVICES] = visible
    options: dict = {
        **spec.engine_options(),  # image, working_dir, hardening...: what the engine takes as it is
        "name": names.container(stage.name, number),
        "labels": {**dict(spec.labels), **names.stage_labels(stage)},  # ours last: `aipc down` finds it
        "environment": environment,
        "mounts": [mount_option(mount, names, base_dir) for mount in spec.mounts],
        "init": True,
    }
    if spec.entrypoint is not None:
        options["entrypoint"] = list(spec.entrypoint)
        options["command"] = list(spec.command or ())
    if spec.tmpfs:
        options["tmpfs"] = {path: "" for path in spec.tmpfs}
    options.update(resource_options(spec, devices, gpu_request))
    if network:
        options["network"] = network
        aliases = sorted({stage.name, ir.dns_label(stage.name), *spec.aliases})
        options["networking_config"] = {network: docker.types.EndpointConfig("1.41", aliases=aliases)}
    if spec.publish is not None:
        # Replica n answers on the n-th host port of the spec's range.
        options["ports"] = {f"{spec.publish.port}/tcp": (bind_address, spec.publish.first + number - 1)}
    return options


def used_volumes(stages: Iterable[ir.Stage]) -> list[ir.Volume]:
    seen: dict[str, ir.Volume] = {}
    for stage in stages:
        for mount in stage.mounts:
            seen.setdefault(mount.volume.name, mount.volume)
    return [seen[name] for name in sorted(seen)]


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
    health_timeout: float = 300.0
    gpu_request: str = "device"  # how containers get their GPUs: a device request, or NVIDIA_VISIBLE_DEVICES
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _live: dict = field(default_factory=dict, init=False)  # container id -> (container, is_service)
    _replicas: list[Replica] = field(default_factory=list, init=False)
    _aborted: bool = field(default=False, init=False)
    _network: str | None = field(default=None, init=False)

    # -- before anything starts ----------------------------------------------------------

    def prepare(self, stages: list[ir.Stage]) -> None:
        """Images, volumes and the network; raises PreflightError listing every problem."""
        try:
            problems = self._check_images(sorted({self.specs[stage.name].image for stage in stages}))
            volumes = used_volumes(stages)
            problems += self._check_claims(volumes)
            if problems:
                raise PreflightError(problems)
            problems = self._create_volumes(volumes)
            if problems:
                raise PreflightError(problems)
            self._create_network()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            raise PreflightError([f"the Docker engine failed: {engine_message(error)}"]) from None

    def _check_images(self, images: list[str]) -> list[str]:
        problems = []
        for image in images:
            try:
                self.client.images.get(image)
                continue
            except docker.errors.ImageNotFound:
                pass
            except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
                problems.append(f"image `{image}`: {engine_message(error)}")
                continue
            self.note(f"pulling image {image} (not on this machine)")
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

    def _create_volumes(self, volumes: list[ir.Volume]) -> list[str]:
        problems = []
        for volume in volumes:
            if volume.kind is ir.VolumeKind.HOST:
                path = host_path(volume, self.base_dir)
                if os.path.exists(path):
                    continue  # a directory, or a file to bind
                try:
                    os.makedirs(path)
                except OSError as error:
                    problems.append(f"volume `{volume.name}`: cannot create `{path}`: {error.strerror or error}")
            elif volume.kind is ir.VolumeKind.SIZED:
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

    def _create_network(self) -> None:
        try:
            self.client.networks.create(self.names.network, driver="bridge", labels=self.names.run_labels())
        except docker.errors.APIError as error:
            raise PreflightError([f"cannot create the network `{self.names.network}`: "
                                  f"{engine_message(error)}"]) from None
        self._network = self.names.network

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

    def _create(self, stage: ir.Stage, number: int, is_service: bool, devices: tuple[str, ...] = ()):
        """A created (not started) container, or None when the run was aborted meanwhile."""
        options = container_options(stage, self.specs[stage.name], self.names, number, environ=self.environ,
                                    base_dir=self.base_dir, network=self._network,
                                    bind_address=self.bind_address, devices=devices, gpu_request=self.gpu_request)
        container = self.client.containers.create(**options)
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

    def _follow(self, container, source: str) -> threading.Thread:
        thread = threading.Thread(target=self._pump_logs, args=(container, source),
                                  name=f"logs-{source}", daemon=True)
        thread.start()
        return thread

    def _pump_logs(self, container, source: str) -> None:
        pending = b""
        try:
            for chunk in container.logs(stream=True, follow=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self.log(source, line.rstrip(b"\r").decode("utf-8", "replace"))
        except Exception:  # noqa: BLE001 - the container went away mid-stream (Ctrl-C, timeout)
            pass
        if pending:
            self.log(source, pending.rstrip(b"\r").decode("utf-8", "replace"))

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
        try:
            container = self._create(stage, attempt, is_service=False, devices=devices[0] if devices else ())
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
            return Attempt(error=f"Docker cannot start it: {engine_message(error)}")
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
        logs.join(timeout=LOG_DRAIN)
        detail = None
        container.reload()
        if container.attrs.get("State", {}).get("OOMKilled"):
            detail = "killed: out of memory"
        if self._aborted:
            return Attempt(cancelled=True, exit_code=exit_code)
        return Attempt(exit_code=exit_code, timed_out=timed_out, detail=detail)

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
                    outcome = Attempt(error=f"Docker cannot start it: {engine_message(error)}")
                    break
                source = stage.name if stage.replicas == 1 else f"{stage.name}#{number}"
                self._follow(container, source)
                replica.url = self._url(container, stage)
            else:
                outcome = self._await_ready(stage, replicas)
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
        publish = self.specs[stage.name].publish
        if publish is None:
            return None
        container.reload()
        bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{publish.port}/tcp")
        if not bindings:
            return None
        host = self._probe_host()
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{bindings[0]['HostPort']}"

    def _await_ready(self, stage: ir.Stage, replicas: list[Replica]) -> Attempt:
        health = self.specs[stage.name].health
        deadline = time.monotonic() + (self.health_timeout if health else SETTLE)
        waiting = list(replicas)
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
                if health and replica.url and _healthy(replica.url + health):
                    waiting.remove(replica)
            if not waiting:
                return Attempt(exit_code=0)
            if time.monotonic() >= deadline:
                if not health:
                    return Attempt(exit_code=0)  # still running after SETTLE: started
                where = waiting[0].url + health if waiting[0].url else health
                return Attempt(error=f"not healthy after {self.health_timeout:g}s (GET {where})")
            time.sleep(pause)
            pause = min(1.0, pause * 1.5)

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


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own service
            return 200 <= response.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


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


def down(client: docker.DockerClient, file: str, volumes: bool = False) -> Removed:
    """Remove every container and network ``aipc run`` made from ``file`` (and with
    ``volumes`` its named volumes too)."""
    removed = Removed()
    labels = label_filter(LABEL_FILE, os.path.realpath(file))

    def remove_container(container) -> None:
        try:
            container.stop(timeout=STOP_GRACE)
            container.remove(force=True)
            removed.containers.append(container.name)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            removed.problems.append(f"container {container.name}: {engine_message(error)}")

    _in_parallel([lambda c=c: remove_container(c) for c in client.containers.list(all=True, filters=labels)])
    _remove_all(client.networks.list(filters=labels), "network", removed.networks, removed.problems)
    if volumes:
        _remove_all(client.volumes.list(filters=labels), "volume", removed.volumes, removed.problems)
    removed.containers.sort()
    return removed
