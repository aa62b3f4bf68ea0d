"""The backend-neutral intermediate representation.

Frozen and fully resolved: every quantity is an integer in its base unit
(bytes, millicores, seconds), every reference is the object it names, and
``Pipeline.stages`` is in topological order (ties broken by name). Backends
read this and nothing else; spans are kept so a backend can say, with a
location, what its target cannot express.

The strings a stage hands its container (image, command, script, workdir, env
values, health) are :class:`Text`: literal parts and references such as
``${param}`` or ``${db.host}``, each reference knowing its value in this
compilation. A backend writes one only through :meth:`Text.render`, saying what
each kind of reference becomes on its target (Kubernetes: a parameter's value and
a service's Service port; Argo: ``{{workflow.parameters.x}}``; docker-compose and
`aipc run`: a service's container port).
Names, labels, paths of mounts and volumes, and quantities are fixed when
compiling and are plain values.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator, Union

from aipc.diagnostics import Span
from aipc.dsl.vocabulary import STAGE_KINDS


class StageKind(str, enum.Enum):
    DATA, TRAIN, EVAL, SERVE = STAGE_KINDS  # as grammar.lark spells them; a new kind must be added here

    @property
    def is_batch(self) -> bool:
        return self is not StageKind.SERVE


class Access(str, enum.Enum):
    RWO = "rwo"
    RWX = "rwx"
    ROX = "rox"


class GpuVendor(str, enum.Enum):
    NVIDIA = "nvidia"
    AMD = "amd"
    INTEL = "intel"


class VolumeKind(str, enum.Enum):
    SIZED = "sized"  # created by the target (named volume, PVC)
    HOST = "host"  # a bind mount of a path on the Docker host
    CLAIM = "claim"  # an existing claim, referenced by name
    ARTIFACT = "artifact"  # a stage's output (`output NAME at "/path"`): a Docker volume aipc keeps


class ParamType(str, enum.Enum):
    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    DURATION = "duration"


@dataclass(frozen=True, slots=True)
class ParamRef:
    """``${name}`` in a string: a parameter, and its value in this compilation
    (the default, or what ``-p`` gave it), as written into strings."""

    name: str
    value: str


def param_value(reference: ParamRef) -> str:
    """A parameter reference rendered as its value (targets that fix parameters when compiling)."""
    return reference.value


ADDRESS_FIELDS = ("host", "port", "url")  # what `${STAGE.FIELD}` may ask of a serve stage


@dataclass(frozen=True, slots=True)
class ServiceRef:
    """``${STAGE.host}``, ``${STAGE.port}`` or ``${STAGE.url}``: a serve stage's address
    as other stages reach it. The host is the same name on every target (the
    Kubernetes Service, the compose and `aipc run` network alias); the port is not:
    other containers of a Docker network reach the container ``port`` itself, a
    cluster's pods the Service's port, ``expose``."""

    stage: str
    field: str  # one of ADDRESS_FIELDS
    host: str
    port: int  # the container port
    expose: int  # the Service port (`expose`, else `port`)

    def address(self, port: int) -> str:
        """The field, with ``port`` as the port other stages connect to."""
        if self.field == "host":
            return self.host
        if self.field == "port":
            return str(port)
        return f"http://{self.host}:{port}"


def container_address(reference: ServiceRef) -> str:
    """A service address inside a Docker network (compose, `aipc run`): the alias and the container port."""
    return reference.address(reference.port)


def service_address(reference: ServiceRef) -> str:
    """A service address inside a cluster (Kubernetes, Argo): the Service's name and port."""
    return reference.address(reference.expose)


# A part of a Text: literal text, or a reference each target renders its own way.
# A new kind of reference (a sweep's value) is a new class here and a new
# keyword of Text.render, which every backend must then pass.
Part = Union[str, ParamRef, ServiceRef]


@dataclass(frozen=True, slots=True)
class Text:
    """A string the user wrote, as its literal parts and references, with its span.

    There is deliberately no ``str()`` of a Text: a backend must say, through
    :meth:`render`, what each kind of reference becomes on its target, and the
    YAML writer refuses a Text, so a string a backend forgot to render fails
    every test that compiles it.
    """

    parts: tuple[Part, ...]  # literal text is never empty unless it is the only part
    span: Span

    @property
    def literal(self) -> str | None:
        """The text when it holds no reference, else None."""
        parts = self.parts
        if len(parts) == 1 and parts[0].__class__ is str:
            return parts[0]  # type: ignore[return-value]
        return None

    def render(self, *, param: Callable[[ParamRef], str], service: Callable[[ServiceRef], str]) -> str:
        """The text on a target: literal parts as they are, each parameter as ``param``
        renders it, each service address as ``service`` does."""
        parts = self.parts
        if len(parts) == 1:
            part = parts[0]
            if part.__class__ is str:
                return part  # type: ignore[return-value]
            return param(part) if part.__class__ is ParamRef else service(part)  # type: ignore[arg-type]
        return "".join([part if part.__class__ is str else param(part) if part.__class__ is ParamRef
                        else service(part) for part in parts])  # type: ignore[misc, arg-type]

    def __str__(self) -> str:
        raise TypeError("an ir.Text has no str(): render it for its target with Text.render()")


@dataclass(frozen=True, slots=True)
class ParamUse:
    """A place where a parameter's value was compiled in as a plain value: a
    number, quantity or duration (`gpu = "${gpus}"`), or a name, path or label.
    A target that takes parameters when the pipeline runs cannot change it there."""

    declaration: str  # "stage", "volume", "secret" or "pipeline" (the header)
    name: str  # the declaration's name
    attribute: str  # "gpu", "timeout", "mount", "labels"...
    span: Span  # of the `${...}`


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: ParamType
    value: Union[str, int, float, bool]  # a duration is in seconds
    text: str  # the value as substituted into strings: `3e-4`, `true`, `2h`
    overridden: bool
    span: Span
    # Where the value was fixed when compiling, in source order: every other use
    # of the parameter is a ParamRef inside a stage's Text.
    fixed_at: tuple[ParamUse, ...] = ()


@dataclass(frozen=True, slots=True)
class Range:
    """``request..limit``; a single value has ``request == limit``."""

    request: int
    limit: int


class GpuLabels(str, enum.Enum):
    """Which node labels select a GPU model (``aipc compile --gpu-labels``, the header's
    ``gpu_labels``): GPU feature discovery's, GKE's or Karpenter's (compiler/gpus.py)."""

    GFD = "gfd"
    GKE = "gke"
    KARPENTER = "karpenter"


@dataclass(frozen=True, slots=True)
class NodeRequirement:
    """A node label that must have one of ``values`` (a NodeSelectorRequirement with
    operator ``In``; core/v1 NodeSelectorRequirement). The requirements of one GPU
    model must all hold, so they go in one ``nodeSelectorTerms`` entry."""

    key: str
    values: tuple[str, ...]

    def match_expression(self) -> dict:
        return {"key": self.key, "operator": "In", "values": list(self.values)}


@dataclass(frozen=True, slots=True)
class GpuNodes:
    """The nodes that have the GPU model a stage asks for, under each label convention.

    ``portable``: ``gpu_model`` named a portable model (``H100-80GB``), which matches
    several label values, so targets select it with node affinity; otherwise it is a
    label value written as is, one ``nodeSelector`` entry. A convention without
    requirements has no node with that model (GKE has no L40S)."""

    portable: bool
    by_convention: tuple[tuple[GpuLabels, tuple[NodeRequirement, ...]], ...]

    def requirements(self, convention: GpuLabels) -> tuple[NodeRequirement, ...]:
        for name, requirements in self.by_convention:
            if name is convention:
                return requirements
        return ()


@dataclass(frozen=True, slots=True)
class Resources:
    cpu: Range | None = None  # millicores
    memory: Range | None = None  # bytes
    gpu: int = 0
    gpu_vendor: GpuVendor = GpuVendor.NVIDIA
    gpu_model: str | None = None  # as written
    shm: int | None = None  # bytes
    disk: int | None = None  # bytes
    gpu_nodes: GpuNodes | None = None  # what `gpu_model` selects, when it is set


TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")  # core/v1 Taint.effect


@dataclass(frozen=True, slots=True)
class Toleration:
    """``KEY``, ``KEY=VALUE``, ``KEY:EFFECT`` or ``KEY=VALUE:EFFECT`` (kubectl's taint
    syntax): a value means operator ``Equal``, none ``Exists``; no effect matches every
    effect (core/v1 Toleration)."""

    key: str
    value: str | None = None
    effect: str | None = None

    @property
    def operator(self) -> str:
        return "Exists" if self.value is None else "Equal"


@dataclass(frozen=True, slots=True)
class Schedule:
    """Where a stage's pods may run and how they wait: the stage's ``schedule`` block
    merged over the header's, key by key (a map value such as ``node`` replaced whole).

    ``spans``: where each key that is set was written (the stage's block, or the
    header's for a key the stage inherits), for the targets that ignore it."""

    node: tuple[tuple[str, str], ...] = ()  # node labels that must match, as written
    tolerate: tuple[Toleration, ...] = ()
    priority: str | None = None  # a PriorityClass
    queue: str | None = None  # a Kueue LocalQueue (batch stages)
    spans: tuple[tuple[str, Span], ...] = ()

    def span_of(self, key: str) -> Span | None:
        for name, span in self.spans:
            if name == key:
                return span
        return None


DEFAULT_CPU_UTILIZATION = 80  # percent: what a replica range without `autoscale` keeps (as the HPA's own default)


@dataclass(frozen=True, slots=True)
class Autoscale:
    """``replicas = MIN..MAX`` on a serve stage, by average CPU use (percent of the
    request) or by a per-pod custom metric's average ``target``."""

    minimum: int
    maximum: int
    cpu: int | None = DEFAULT_CPU_UTILIZATION  # percent; None when a metric is used
    metric: str | None = None
    target: int | None = None
    span: Span = Span(0, 0)  # the replica range


# What a container gets when the program does not say: the same on every target
# (Kubernetes requests and limits, compose's deploy.resources, `aipc run`).
GIB = 2**30
MIB = 2**20
DEFAULT_CPU = Range(500, 2000)  # millicores: request..limit
DEFAULT_MEMORY = Range(512 * MIB, 2 * GIB)  # bytes: request..limit
DEFAULT_PIDS = 4096  # processes and threads of one container (compose and `aipc run`; a kubelet setting on clusters)


@dataclass(frozen=True, slots=True)
class Volume:
    name: str
    kind: VolumeKind
    access: Access = Access.RWO
    size: int | None = None  # bytes, SIZED only
    storage_class: str | None = None
    host_path: str | None = None
    claim: str | None = None
    span: Span = Span(0, 0)


@dataclass(frozen=True, slots=True)
class Secret:
    name: str
    keys: tuple[str, ...]
    span: Span = Span(0, 0)


@dataclass(frozen=True, slots=True)
class SecretKey:
    """``hf.token`` as an ``env`` value: one key of a declared secret, under another name."""

    secret: str  # the secret's name as declared
    key: str
    span: Span = Span(0, 0)


# ------------------------------------------------------------------ security
# The hardened default, the same on every target: a non-root user and group,
# volumes writable through a shared group (Kubernetes' fsGroup), every
# capability dropped, no privilege escalation, a read-only root filesystem with a
# writable /tmp, and HOME and USER set so that tools which look the user up work.

NON_ROOT_ID = 65532  # the conventional `nonroot` user and group: above 10000, outside host ranges
VOLUME_GROUP = NON_ROOT_ID  # owns writable volumes (fsGroup; `group_add` on Docker)
NON_ROOT_NAME = "nonroot"  # $USER of a non-root uid (Python's getpass.getuser() reads $USER first)
WRITABLE_HOME = "/tmp"  # HOME when the root filesystem is read-only: /tmp is always writable
ROOT_HOME = "/root"

@dataclass(frozen=True, slots=True)
class Security:
    """How a stage's container runs: the hardened default, or what its `security`
    block (over the header's) relaxes. Spans say where each relaxation was written."""

    uid: int = NON_ROOT_ID
    gid: int = NON_ROOT_ID
    read_only: bool = True  # the root filesystem
    capabilities: tuple[str, ...] = ()  # added back after dropping all
    privileged: bool = False
    spans: tuple[tuple[str, Span], ...] = ()  # ("user", span) for each key written

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    @property
    def home(self) -> str:
        """A HOME the process can write: /root for root on a writable root filesystem, else /tmp."""
        return ROOT_HOME if self.is_root and not self.read_only else WRITABLE_HOME

    @property
    def user_name(self) -> str:
        """$USER: what getpass.getuser() answers, whether or not the image's passwd knows the uid."""
        return "root" if self.is_root else NON_ROOT_NAME

    def span_of(self, key: str) -> Span | None:
        for name, span in self.spans:
            if name == key:
                return span
        return None


HARDENED = Security()


class PullPolicy(str, enum.Enum):
    ALWAYS = "always"
    IF_MISSING = "if_missing"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class Mount:
    volume: Volume
    path: str
    readonly: bool  # as written: `mount v at "/p" readonly`
    span: Span

    @property
    def read_only(self) -> bool:
        """Whether the container may not write it: a `readonly` mount, or any mount of a
        `rox` (read-only many) volume. Every target mounts it so."""
        return self.readonly or self.volume.access is Access.ROX


# ------------------------------------------------------------------ artifacts
# `output NAME at "/path"`: a directory a batch stage writes and aipc keeps;
# `input STAGE.OUTPUT at "/path"`: that directory, read-only, in another stage.
# Each output of each stage (or instance) is stored apart: a Docker volume on
# compose and `aipc run`, a subPath `<stage>/<output>` of the pipeline's one
# claim (`artifacts { }` in the header) on Kubernetes and Argo.


@dataclass(frozen=True, slots=True)
class Output:
    name: str
    path: str
    span: Span


@dataclass(frozen=True, slots=True)
class Input:
    """``input STAGE.OUTPUT at PATH``. ``sources`` are the stages whose output it
    reads: the stage, the paired instance of a matrix stage, or (``fan_in``) every
    instance of a matrix stage, each at ``PATH/<instance>``."""

    stage: str  # as written: a matrix stage's name for its instances
    output: str
    path: str
    sources: tuple[str, ...]
    fan_in: bool
    span: Span


@dataclass(frozen=True, slots=True)
class ArtifactMount:
    """One stored output mounted in a stage: its own (written) or an input (read-only)."""

    producer: str  # the stage or instance that writes it
    output: str
    path: str
    read_only: bool

    @property
    def key(self) -> str:
        """Its name, unique in the pipeline and apart from every volume's (no name has a `.`):
        ``model.metrics``."""
        return f"{self.producer}.{self.output}"

    @property
    def volume(self) -> "Volume":
        """The Docker volume that holds it (compose, `aipc run`)."""
        return Volume(self.key, VolumeKind.ARTIFACT)

    @property
    def sub_path(self) -> str:
        """Where it lies in the pipeline's artifact claim: ``model/metrics``."""
        return f"{self.producer}/{self.output}"


@dataclass(frozen=True, slots=True)
class ArtifactStore:
    """``artifacts { size, class, access }`` in the header: the claim that holds every output
    on Kubernetes and Argo."""

    size: int  # bytes
    access: Access = Access.RWO
    storage_class: str | None = None
    span: Span = Span(0, 0)


class HealthKind(str, enum.Enum):
    HTTP = "http"  # GET a path: a 2xx or 3xx answer is healthy
    TCP = "tcp"  # a TCP connection is accepted
    COMMAND = "command"  # an argv run inside the container exits 0


# A serve stage's health check when the program does not say otherwise: on every
# target the same timings (Kubernetes probes, a compose healthcheck, `aipc run`).
HEALTH_START = 300  # seconds startup may take (a model loading) before failures count
HEALTH_INTERVAL = 5  # seconds between checks
HEALTH_TIMEOUT = 4  # seconds one check may take
HEALTH_FAILURES = 3  # failed checks in a row that make the service unhealthy


@dataclass(frozen=True, slots=True)
class Health:
    """How a serve stage is checked: ``health = "/path"`` or a ``health { }`` block."""

    kind: HealthKind
    path: Text | None = None  # HTTP
    command: tuple[Text, ...] | None = None  # COMMAND: the argv
    port: int | None = None  # HTTP and TCP: the container port checked
    start: int = HEALTH_START  # seconds
    interval: int = HEALTH_INTERVAL  # seconds
    timeout: int = HEALTH_TIMEOUT  # seconds
    failures: int = HEALTH_FAILURES
    span: Span = Span(0, 0)

    @property
    def start_checks(self) -> int:
        """How many checks fit in ``start``, one per ``interval``: Kubernetes' startup
        probe allows that many failures (at least one)."""
        return max(1, -(-self.start // self.interval))


# The name of a serve stage's `port` among its named ports (Kubernetes container
# and Service ports): `http`, unless its health check says it speaks something
# else (`tcp` or `command`), since service meshes (Istio, Linkerd) read a port
# named `http` as HTTP traffic.
MAIN_PORT_NAME = "http"
OTHER_MAIN_PORT_NAME = "main"


@dataclass(frozen=True, slots=True)
class NamedPort:
    name: str
    port: int  # the container port


# ------------------------------------------------------------------ sweeps
# A matrix stage is lowered once per instance: each instance is an ordinary
# Stage (every backend handles it as such) that also knows its group, so that
# plan, graph, the runner and the backends can show and limit the group.

MATRIX_LABEL = "aipc.dev/matrix"  # on every object of an instance: the matrix stage it belongs to (reserved)
COORDINATES_ANNOTATION = "aipc.dev/matrix-coordinates"  # its exact coordinates (compose: a label)


@dataclass(frozen=True, slots=True)
class AxisValue:
    """One value of a matrix axis: as written (what ``${matrix.AXIS}`` puts into a
    string: ``3e-4``, ``16Gi``, ``true``) and typed (an int, a float or a bool; a
    string or a quantity is its text)."""

    text: str
    value: Union[str, int, float, bool]


@dataclass(frozen=True, slots=True)
class Matrix:
    """A matrix stage: the group its instances belong to.

    ``stage`` is its name as written; ``instances`` the names of its instances,
    in the order of the cartesian product of ``axes`` (as written) less the
    exclusions; ``pairs`` the matrix stages of its ``after`` whose instances its
    own follow one to one, by coordinates; ``max_parallel`` how many of its
    instances may run at once (None: all).
    """

    stage: str
    axes: tuple[str, ...]
    instances: tuple[str, ...]
    max_parallel: int | None = None
    pairs: tuple[str, ...] = ()
    span: Span = Span(0, 0)


@dataclass(frozen=True, slots=True)
class Instance:
    """What makes a stage an instance: its group, its position in the group, and its
    coordinates, one value per axis in the group's order."""

    matrix: Matrix
    index: int
    coordinates: tuple[tuple[str, AxisValue], ...]

    @property
    def window_predecessor(self) -> str | None:
        """Under ``max_parallel = N``, the instance N places before this one: chained
        to it (each waits for the one N before), the instances form N chains that
        each run one at a time, so that at most N run at once."""
        limit = self.matrix.max_parallel
        if limit is None or self.index < limit:
            return None
        return self.matrix.instances[self.index - limit]

    def coordinates_json(self) -> str:
        """The exact coordinates as a JSON object (numbers and bools typed), for
        annotations: ``{"lr": 0.0003, "seed": 2}``."""
        return json.dumps({axis: value.value for axis, value in self.coordinates}, ensure_ascii=False)


# ------------------------------------------------------------------ nodes
# `nodes = N`: N containers run a batch stage together and find each other by the
# same variables on every target. torchrun reads its flags from `PET_<FLAG>`
# (pytorch/pytorch torch/distributed/argparse_util.py), so with the PET_ names a
# bare `torchrun train.py` joins the group; the plain names are for programs that
# start without torchrun (docs/research/v1-facts.md, "torchrun").

MASTER_PORT = 29500  # torchrun's default `--master-port`
NODE_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NNODES", "NODE_RANK", "NPROC_PER_NODE", "WORLD_SIZE",
                  "PET_MASTER_ADDR", "PET_MASTER_PORT", "PET_NNODES", "PET_NODE_RANK", "PET_NPROC_PER_NODE")
RANK_VARIABLES = ("NODE_RANK", "PET_NODE_RANK")  # the only ones whose value differs between nodes


def processes_per_node(stage: "Stage") -> int:
    """A node's workers: one per GPU, or one."""
    return stage.resources.gpu if stage.resources.gpu > 0 else 1


def node_environment(stage: "Stage", master: str, rank: str | None) -> tuple[tuple[str, str | None], ...]:
    """The variables of a node of a multi-node stage, in the order of
    :data:`NODE_VARIABLES`. ``master`` is node 0's name on the target; ``rank``
    the node's rank, or None where the target gives each node its own (a
    Kubernetes completion index): the rank variables then have no value here."""
    nodes = stage.node_count
    per_node = processes_per_node(stage)
    values = {"MASTER_ADDR": master, "MASTER_PORT": str(MASTER_PORT), "NNODES": str(nodes),
              "NODE_RANK": rank, "NPROC_PER_NODE": str(per_node), "WORLD_SIZE": str(nodes * per_node)}
    return tuple((name, values[name.removeprefix("PET_")]) for name in NODE_VARIABLES)


def node_host(pipeline_name: str, stage: str, rank: int) -> str:
    """The name node ``rank`` of a multi-node stage answers to, on Kubernetes, Argo,
    docker-compose and `aipc run` alike: ``<job>-<rank>.<job>``, the hostname an
    Indexed Job gives its pod and the headless Service of its pod ``subdomain``
    (K8s OpenAPI, PodSpec.subdomain), a network alias on Docker."""
    job = object_name(pipeline_name, stage)
    return f"{job}-{rank}.{job}"


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    kind: StageKind
    image: Text
    command: tuple[Text, ...] | None = None
    args: tuple[Text, ...] | None = None  # appended to the image's own entrypoint
    script: Text | None = None
    workdir: Text | None = None
    env: tuple[tuple[str, Text], ...] = ()
    secret_env: tuple[tuple[str, SecretKey], ...] = ()  # `NAME = secret.KEY` entries of `env`
    secrets: tuple[Secret, ...] = ()
    after: tuple[str, ...] = ()  # direct dependencies, sorted
    mounts: tuple[Mount, ...] = ()
    resources: Resources = field(default_factory=Resources)
    retries: int = 0
    timeout: int | None = None  # seconds
    port: int | None = None
    expose: int | None = None  # the port clients use for `port` (None: `port` itself)
    ports: tuple[NamedPort, ...] = ()  # extra named ports, in the order written
    replicas: int = 1  # how many start; with autoscaling, its minimum (at least 1)
    nodes: int | None = None  # `nodes = N`: a group of N containers (see node_environment); None: one
    health: Health | None = None
    labels: tuple[tuple[str, str], ...] = ()
    security: Security = HARDENED
    pull: PullPolicy | None = None  # None: the target's default
    schedule: Schedule = field(default_factory=Schedule)
    autoscale: Autoscale | None = None  # serve stages with `replicas = MIN..MAX`
    level: int = 0  # length of the longest chain of dependencies before it
    span: Span = Span(0, 0)
    # Where each attribute was written, for target-specific diagnostics: ("timeout", span)
    spans: tuple[tuple[str, Span], ...] = ()
    instance: Instance | None = None  # set on each instance of a matrix stage
    cache: bool | None = None  # `cache = ...`; None: cached unless it writes a mounted volume (`aipc run`)
    outputs: tuple[Output, ...] = ()  # in the order written
    inputs: tuple[Input, ...] = ()  # in the order written

    @property
    def group(self) -> str:
        """The name of the stage as written: a matrix stage's for each of its instances."""
        return self.instance.matrix.stage if self.instance is not None else self.name

    @property
    def is_batch(self) -> bool:
        return self.kind.is_batch

    def base_env(self) -> tuple[tuple[str, str], ...]:
        """HOME and USER as the hardened container needs them, unless ``env`` (or a
        secret's key under that name) sets them: a writable HOME, and a USER that
        tools looking the user up find (the image's passwd may not know the uid)."""
        taken = {name for name, _ in self.env} | {name for name, _ in self.secret_env}
        security = self.security
        return tuple((name, value) for name, value in (("HOME", security.home), ("USER", security.user_name))
                     if name not in taken)
    @property
    def node_count(self) -> int:
        """How many containers run the stage together: ``nodes``, else one."""
        return self.nodes if self.nodes is not None else 1

    @property
    def service_port(self) -> int | None:
        """The port clients use for ``port``: the Service's port, the published host port."""
        return self.expose if self.expose is not None else self.port

    @property
    def port_name(self) -> str:
        """The name of ``port`` among the stage's named ports."""
        if self.health is not None and self.health.kind is not HealthKind.HTTP:
            return OTHER_MAIN_PORT_NAME
        return MAIN_PORT_NAME

    def named_ports(self) -> tuple[NamedPort, ...]:
        """``port`` under its name, then the extra ``ports``."""
        if self.port is None:
            return self.ports
        return (NamedPort(self.port_name, self.port), *self.ports)

    def artifact_mounts(self) -> tuple[ArtifactMount, ...]:
        """Its outputs (written), then its inputs (read-only), one mount per source: a
        fan-in mounts each instance's output at ``PATH/<instance>``."""
        mounts = [ArtifactMount(self.name, output.name, output.path, False) for output in self.outputs]
        for put in self.inputs:
            for source in put.sources:
                path = f"{put.path.rstrip('/')}/{source}" if put.fan_in else put.path
                mounts.append(ArtifactMount(source, put.output, path, True))
        return tuple(mounts)

    def mounts_at(self, path: str) -> bool:
        """Whether a volume, an output or an input is mounted at ``path``."""
        return any(m.path == path for m in self.mounts) or any(m.path == path for m in self.artifact_mounts())

    def span_of(self, attribute: str) -> Span:
        for name, span in self.spans:
            if name == attribute:
                return span
        return self.span

    def attribute_at(self, span: Span) -> tuple[str, Span] | None:
        """The attribute written around ``span`` (a Text's), as ``(name, span)``;
        None for text the stage did not write itself (the header's default image)."""
        for name, attribute in self.spans:
            if attribute.start <= span.start and span.end <= attribute.end:
                return name, attribute
        return None


def texts_of(value) -> Iterator[Text]:
    """Every Text in ``value``: a Stage (its image, command, env values...), or any
    tuple or IR dataclass holding them, in field order. Which fields may hold one
    is read from the IR's own annotations, so a Text field added here (or a
    dataclass holding Texts) is found without naming it."""
    if value.__class__ is Text:
        yield value
    elif value.__class__ is tuple:
        for item in value:
            if item.__class__ is Text:
                yield item
            elif item.__class__ is tuple or hasattr(item, "__dataclass_fields__"):
                yield from texts_of(item)
    elif hasattr(value, "__dataclass_fields__"):
        for name in _text_fields(value.__class__):
            item = getattr(value, name)
            if item is not None:
                yield from texts_of(item)


@functools.cache
def _text_fields(cls: type, seen: frozenset = frozenset()) -> tuple[str, ...]:
    """The fields of an IR dataclass whose annotation mentions Text, or an IR
    dataclass that (at any depth) has such a field."""
    fields = []
    for item in dataclasses.fields(cls):
        words = set(re.findall(r"[A-Za-z_]+", str(item.type)))
        nested = [globals()[word] for word in words
                  if dataclasses.is_dataclass(globals().get(word)) and globals()[word] not in seen | {cls}]
        if "Text" in words or any(_text_fields(kind, seen | {cls}) for kind in nested):
            fields.append(item.name)
    return tuple(fields)


def param_refs(stage: "Stage") -> set[str]:
    """The parameters the strings of ``stage`` refer to."""
    return {part.name for text in texts_of(stage) for part in text.parts if part.__class__ is ParamRef}


@dataclass(frozen=True)  # not slotted: `stage()` keeps its index of stages in the instance's __dict__
class Pipeline:
    name: str
    file: str
    description: str | None = None
    namespace: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    params: tuple[Param, ...] = ()
    volumes: tuple[Volume, ...] = ()  # by name
    secrets: tuple[Secret, ...] = ()  # by name
    stages: tuple[Stage, ...] = ()  # topological, ties by name
    pull_secrets: tuple[str, ...] = ()  # Secrets holding registry credentials (Kubernetes, Argo)
    pull_secrets_span: Span = Span(0, 0)
    gpu_labels: GpuLabels | None = None  # the header's choice; targets default to GFD
    matrices: tuple[Matrix, ...] = ()  # each matrix stage, in the order of its first instance
    artifacts: ArtifactStore | None = None  # the header's `artifacts { }`
    span: Span = Span(0, 0)

    def stage(self, name: str) -> Stage:
        # Backends look up every dependency of every stage: an index built on
        # first use keeps that linear (it is not a field; equality ignores it).
        index = self.__dict__.get("_stage_index")
        if index is None:
            index = {}
            for stage in self.stages:
                index.setdefault(stage.name, stage)
            object.__setattr__(self, "_stage_index", index)
        return index[name]

    def outputs(self) -> tuple[ArtifactMount, ...]:
        """Every stage's outputs, in the order of the stages (computed once, as ``stage()``'s index)."""
        outputs = self.__dict__.get("_outputs")
        if outputs is None:
            outputs = tuple(ArtifactMount(stage.name, output.name, output.path, False)
                            for stage in self.stages for output in stage.outputs)
            object.__setattr__(self, "_outputs", outputs)
        return outputs

    def object_name(self, name: str) -> str:
        """The DNS-1123 name of one of this pipeline's objects: ``<pipeline>-<name>``."""
        return object_name(self.name, name)

    @property
    def dns_name(self) -> str:
        return dns_label(self.name)

    def labels_for(self, name: str | None, component: str | None,
                   own: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
        """The labels of one object made from this pipeline: the standard ones,
        then the pipeline's labels and the object's ``own`` (a stage's), a later
        key replacing an earlier one (the checker keeps users off the standard keys)."""
        labels = standard_labels(self.name, name, component)
        for key, value in (*self.labels, *own):
            labels[key] = value
        return labels


# ------------------------------------------------------------------ quantities
# Canonical text of the IR's integer quantities, as every target accepts it.

BINARY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
DECIMAL_UNITS = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}


def format_bytes(value: int) -> str:
    """Canonical Kubernetes form: the largest unit that divides exactly (``16Gi``)."""
    if value == 0:
        return "0"
    for unit, size in reversed(BINARY_UNITS.items()):
        if value % size == 0:
            return f"{value // size}{unit}"
    for unit, size in reversed(DECIMAL_UNITS.items()):
        if value % size == 0:
            return f"{value // size}{unit}"
    return str(value)


def format_cpu(millicores: int) -> str:
    """``2`` for whole cores, ``500m`` otherwise."""
    if millicores % 1000 == 0:
        return str(millicores // 1000)
    return f"{millicores}m"


def format_duration(seconds: int) -> str:
    """``1h30m``, ``45s``, ``2d``."""
    if seconds == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(out)


# ------------------------------------------------------------------ labels
# Every object aipc makes, on every target, carries these (DESIGN.md); the
# checker rejects them, and `app.kubernetes.io/instance`, as user labels.

LABEL_NAME = "app.kubernetes.io/name"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "aipc"
RESERVED_LABELS = frozenset({LABEL_NAME, LABEL_PART_OF, LABEL_COMPONENT, LABEL_MANAGED_BY,
                             "app.kubernetes.io/instance", MATRIX_LABEL})


def standard_labels(pipeline_name: str, name: str | None = None, component: str | None = None) -> dict[str, str]:
    """The standard labels, in this order: the object's own name (when it has one
    apart from the pipeline's), the pipeline it is part of, its component (the
    stage kind, `volume`...), managed by aipc."""
    labels = {LABEL_NAME: label_value(name)} if name is not None else {}
    labels[LABEL_PART_OF] = label_value(pipeline_name)
    if component is not None:
        labels[LABEL_COMPONENT] = component
    labels[LABEL_MANAGED_BY] = MANAGED_BY
    return labels


def label_value(text: str) -> str:
    """A label value: at most 63 characters, starting and ending alphanumeric."""
    return text[:63].strip("-_.")


# ------------------------------------------------------------------ names

MAX_OBJECT_NAME = 63  # a Kubernetes object name that is also a DNS label, or a label value


def object_name(pipeline_name: str, name: str) -> str:
    """The DNS-1123 name of an object of a pipeline: ``<pipeline>-<name>``. A serve
    stage's is its host name on every target (Service, network alias)."""
    return f"{dns_label(pipeline_name)}-{dns_label(name)}"


def dns_label(name: str) -> str:
    """A name the checker accepted, as a DNS-1123 label (``_`` becomes ``-``)."""
    return name.replace("_", "-")


def clean_name(text: str) -> str:
    """Turn arbitrary text (a file name) into a pipeline name the checker accepts."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    name = re.sub(r"-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = "p-" + name if name else "pipeline"
    return name[:50].rstrip("-_")
