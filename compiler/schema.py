"""What each declaration accepts: one table, read by the checker, the language
server (hover, completion) and ``aipc explain``."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

from aipc.compiler import units
from aipc.compiler import gpus
from aipc.compiler.units import Kind
from aipc.dsl.vocabulary import BATCH_KINDS, SERVICE_KINDS, STAGE_KINDS

ALL_KINDS = frozenset(STAGE_KINDS)
BATCH = BATCH_KINDS
SERVE = SERVICE_KINDS


class Type(enum.Enum):
    STRING = "a string"
    PATH = "an absolute path"
    STRING_LIST = "a list of strings"
    STRING_MAP = "a map of strings"
    STAGE_LIST = "a list of stage names"
    STAGE_NAME = "a stage name"
    MAP_LIST = "a list of maps"
    SECRET_LIST = "a list of secret names"
    INT = "a whole number"
    BYTES = "a byte quantity"
    CPU = "a cpu quantity"
    DURATION = "a duration"
    CHOICE = "one of the choices"
    BOOL = "a boolean"
    USER = 'a uid (`1000`), "uid:gid" or `root`'
    PORT = "a port number or the name of one of `ports`"
    PORT_MAP = "a map of port names to port numbers"

    @property
    def quantity(self) -> Kind | None:
        return _QUANTITIES.get(self)


_QUANTITIES = {Type.INT: Kind.COUNT, Type.BYTES: Kind.BYTES, Type.CPU: Kind.CPU, Type.DURATION: Kind.DURATION,
               Type.PORT: Kind.COUNT, Type.PORT_MAP: Kind.COUNT}  # a port map's values, a port's number


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    name: str
    type: Type
    doc: str
    kinds: frozenset[str] = ALL_KINDS
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    ranges: bool = False  # accepts LOW..HIGH (request..limit)
    example: str = ""
    suggestions: tuple[str, ...] = ()  # string values completion offers; others are allowed too
    explain: Callable[[str], str | None] | None = None  # what a string value means (hover), if known


def _table(*specs: AttributeSpec) -> dict[str, AttributeSpec]:
    return {spec.name: spec for spec in specs}


HEADER = _table(
    AttributeSpec("description", Type.STRING, "What the pipeline is for; kept as an annotation.",
                  example='description = "Nightly retrain of the fraud model"'),
    AttributeSpec("namespace", Type.STRING, "The Kubernetes namespace every object goes to.",
                  example='namespace = "ml-prod"'),
    AttributeSpec("labels", Type.STRING_MAP, "Labels added to every object the pipeline becomes.",
                  example='labels = { team = "risk" }'),
    AttributeSpec("registry", Type.STRING,
                  "A registry (and path) that prefixes every image that names no registry host.",
                  example='registry = "registry.example.com/risk"'),
    AttributeSpec("image", Type.STRING, "The image of stages that do not set their own.",
                  example='image = "python:3.11-slim"'),
    AttributeSpec("pull_secrets", Type.STRING_LIST,
                  "Kubernetes Secrets holding registry credentials for private images (`imagePullSecrets` "
                  "on Kubernetes and Argo; docker-compose and `aipc run` use the caller's `docker login`).",
                  example='pull_secrets = ["regcred"]'),
    AttributeSpec("gpu_labels", Type.CHOICE,
                  "Which node labels select a `gpu_model` on Kubernetes: `gfd` (NVIDIA GPU feature "
                  "discovery, the default), `gke` (GKE's accelerator label) or `karpenter` (Karpenter's "
                  "GPU name); `aipc compile --gpu-labels` overrides it.",
                  choices=("gfd", "gke", "karpenter"), example="gpu_labels = gke"),
)

VOLUME = _table(
    AttributeSpec("size", Type.BYTES, "The size of the volume to create.", minimum=1, maximum=units.MAX_BYTES,
                  example="size = 200Gi"),
    AttributeSpec("access", Type.CHOICE,
                  "Who may mount it: `rwo` one node read-write (default), `rwx` many nodes read-write, "
                  "`rox` many nodes read-only.", choices=("rwo", "rwx", "rox"), example="access = rwx"),
    AttributeSpec("class", Type.STRING, "The storage class to create it in.", example='class = "fast-ssd"'),
    AttributeSpec("host", Type.STRING, "A path on the Docker host to bind-mount (docker-compose only).",
                  example='host = "./scratch"'),
    AttributeSpec("claim", Type.STRING, "The name of an existing PersistentVolumeClaim to use.",
                  example='claim = "shared-datasets"'),
)

# `artifacts { ... }` in the header: where stages' outputs live on Kubernetes and Argo.
ARTIFACTS = _table(
    AttributeSpec("size", Type.BYTES, "The size of the claim that holds every stage's outputs on Kubernetes and "
                  "Argo (required there when a stage has an `output`).", minimum=1, maximum=units.MAX_BYTES,
                  example="size = 100Gi"),
    AttributeSpec("access", Type.CHOICE,
                  "Who may mount it: `rwo` one node read-write (default), `rwx` many nodes read-write. Stages "
                  "that hand outputs on may run on different nodes: `rwx` lets them.",
                  choices=("rwo", "rwx"), example="access = rwx"),
    AttributeSpec("class", Type.STRING, "The storage class to create it in.", example='class = "standard-rwx"'),
)
SECRET = _table(
    AttributeSpec("keys", Type.STRING_LIST,
                  "The secret's keys; each becomes an environment variable of the stages that list it. "
                  "Values never appear in any output.",
                  example='keys = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]'),
)

# An Indexed Job's completions (= parallelism) may be at most 10^5 (K8s OpenAPI,
# JobSpec.completionMode; docs/research/v1-facts.md).
MAX_NODES = 100_000

STAGE = _table(
    AttributeSpec("image", Type.STRING, "The container image.", example='image = "python:3.11-slim"'),
    AttributeSpec("pull", Type.CHOICE,
                  "When the image is pulled: `always`, `if_missing` or `never` (default: the target's own "
                  "rule; Kubernetes pulls `:latest` always, a pinned tag if missing).",
                  choices=("always", "if_missing", "never"), example="pull = always"),
    AttributeSpec("command", Type.STRING_LIST,
                  "The argv to run, instead of the image's entrypoint. Exclusive with `args` and `script`.",
                  example='command = ["python", "train.py", "--epochs", "${epochs}"]'),
    AttributeSpec("args", Type.STRING_LIST,
                  "Arguments appended to the image's own entrypoint (replacing its default command). "
                  "Exclusive with `command` and `script`.",
                  example='args = ["--model", "meta-llama/Meta-Llama-3-8B", "--port", "8000"]'),
    AttributeSpec("script", Type.STRING, "A shell script run with `sh -c`. Exclusive with `command` and `args`.",
                  example='script = """\n  set -eu\n  python etl.py\n"""'),
    AttributeSpec("workdir", Type.PATH, "The working directory.", example='workdir = "/app"'),
    AttributeSpec("env", Type.STRING_MAP,
                  "Environment variables: strings, or `SECRET.KEY`, one key of a declared secret under this name.",
                  example='env = { LOG_LEVEL = "info", HUGGING_FACE_HUB_TOKEN = hf.token }'),
    AttributeSpec("secrets", Type.SECRET_LIST, "Secrets whose keys become environment variables.",
                  example="secrets = [s3]"),
    AttributeSpec("after", Type.STAGE_LIST,
                  "Stages that must complete successfully first (a serve stage: be healthy).",
                  example="after = [ingest, featurize]"),
    AttributeSpec("labels", Type.STRING_MAP, "Labels added to what the stage becomes.",
                  example='labels = { tier = "gpu" }'),
    AttributeSpec("retries", Type.INT, "Extra attempts after a failure.", kinds=BATCH, minimum=0,
                  maximum=units.INT32_MAX, example="retries = 2"),
    AttributeSpec("timeout", Type.DURATION, "The deadline for the whole stage, retries included.",
                  kinds=BATCH, minimum=1, maximum=units.MAX_SECONDS, example="timeout = 12h"),
    AttributeSpec("port", Type.INT, "The port the service listens on.", kinds=SERVE, minimum=1,
                  maximum=65535, example="port = 8080"),
    AttributeSpec("expose", Type.INT,
                  "The port clients use for `port`: the Service's port on Kubernetes and Argo, the "
                  "published host port on docker-compose and `aipc run` (default: `port`).",
                  kinds=SERVE, minimum=1, maximum=65535, example="expose = 80"),
    AttributeSpec("ports", Type.PORT_MAP,
                  "More ports the service listens on, by name (at most 15 lower-case letters, digits "
                  "and `-`, with a letter); published and admitted like `port`.",
                  kinds=SERVE, minimum=1, maximum=65535, example="ports = { metrics = 9090 }"),
    AttributeSpec("replicas", Type.INT,
                  "How many copies of the service run; `MIN..MAX` autoscales between them (see `autoscale`).",
                  kinds=SERVE, minimum=1, maximum=units.INT32_MAX, example="replicas = 3"),
    AttributeSpec("health", Type.PATH,
                  "The HTTP path probed for startup, readiness and liveness; or a block "
                  "`health { http, tcp, command, port, start, interval, timeout, failures }`.",
                  kinds=SERVE, example='health = "/healthz"'),
    AttributeSpec("cache", Type.BOOL,
                  "Whether `aipc run` may skip the stage when it already succeeded with the same image, command, "
                  "env, mounts and inputs, and its outputs still exist: `false` never; `true` also for a stage "
                  "that writes a mounted volume or runs after a serve stage (by default such a stage always runs).",
                  kinds=BATCH, example="cache = false"),
    AttributeSpec("matrix", Type.STAGE_NAME,
                  "Sweep the axes (and `exclude`) of another matrix stage: one instance per instance of it; "
                  "`after` that stage then pairs each instance with the one of equal coordinates. "
                  "Or a block of axes: `matrix { AXIS = [VALUES] }`.", example="matrix = model"),
    AttributeSpec("exclude", Type.MAP_LIST,
                  "Combinations of the `matrix` left out: an instance matching every key of one map.",
                  example="exclude = [{ lr = 1e-4, seed = 3 }]"),
    AttributeSpec("nodes", Type.INT,
                  "Run the stage on N machines together (distributed training): N containers, each told "
                  "the group by `MASTER_ADDR`, `MASTER_PORT`, `NNODES`, `NODE_RANK`, `NPROC_PER_NODE`, "
                  "`WORLD_SIZE` and the `PET_*` variables torchrun reads; the stage succeeds when every "
                  "node does.", kinds=BATCH, minimum=1, maximum=MAX_NODES, example="nodes = 4"),
    AttributeSpec("max_parallel", Type.INT, "At most this many instances of the matrix run at once.",
                  kinds=BATCH, minimum=1, maximum=units.INT32_MAX, example="max_parallel = 2"),
)

HEALTH = _table(
    AttributeSpec("http", Type.PATH, "Check with an HTTP GET of this path (healthy: a 2xx or 3xx answer).",
                  example='http = "/health"'),
    AttributeSpec("tcp", Type.BOOL, "Check that the port accepts a TCP connection.", example="tcp = true"),
    AttributeSpec("command", Type.STRING_LIST, "Check by running this argv in the container (healthy: exit 0).",
                  example='command = ["pg_isready", "-U", "postgres"]'),
    AttributeSpec("port", Type.PORT, "The port `http` and `tcp` check: a number, or a name from `ports` "
                  "(default: `port`).", minimum=1, maximum=65535, example="port = metrics"),
    AttributeSpec("start", Type.DURATION, "How long startup may take before failed checks count "
                  "(default 5m).", minimum=1, maximum=units.MAX_SECONDS, example="start = 20m"),
    AttributeSpec("interval", Type.DURATION, "The time between two checks (default 5s).", minimum=1,
                  maximum=units.MAX_SECONDS, example="interval = 10s"),
    AttributeSpec("timeout", Type.DURATION, "How long one check may take (default 4s).", minimum=1,
                  maximum=units.MAX_SECONDS, example="timeout = 5s"),
    AttributeSpec("failures", Type.INT, "Failed checks in a row that make the service unhealthy (default 3).",
                  minimum=1, maximum=units.INT32_MAX, example="failures = 3"),
)
HEALTH_CHECKS = ("http", "tcp", "command")  # a `health` block has exactly one of them

RESOURCES = _table(
    AttributeSpec("cpu", Type.CPU, "CPU cores: `2`, `0.5` or `500m`; `LOW..HIGH` is request..limit.",
                  minimum=1, maximum=units.MAX_MILLICORES, ranges=True, example="cpu = 2..4"),
    AttributeSpec("memory", Type.BYTES, "Memory: `16Gi`; `LOW..HIGH` is request..limit.", minimum=1,
                  maximum=units.MAX_BYTES, ranges=True, example="memory = 8Gi..16Gi"),
    AttributeSpec("gpu", Type.INT, "The number of GPUs.", minimum=0, maximum=units.MAX_COUNT, example="gpu = 4"),
    AttributeSpec("gpu_vendor", Type.CHOICE, "The GPU vendor: `nvidia` (default), `amd` or `intel`.",
                  choices=("nvidia", "amd", "intel"), example="gpu_vendor = amd"),
    AttributeSpec("gpu_model", Type.STRING,
                  "A GPU model: a portable name (" + ", ".join(f"`{name}`" for name in gpus.PORTABLE_NAMES)
                  + "), which selects the nodes of that model under the cluster's label convention, or a node "
                  "label value written as is.",
                  example='gpu_model = "H100-80GB"', suggestions=gpus.PORTABLE_NAMES, explain=gpus.describe),
    AttributeSpec("shm", Type.BYTES, "The size of /dev/shm (shared memory for data loaders, NCCL).",
                  minimum=1, maximum=units.MAX_BYTES, example="shm = 16Gi"),
    AttributeSpec("disk", Type.BYTES, "Ephemeral local storage.", minimum=1, maximum=units.MAX_BYTES,
                  example="disk = 100Gi"),
)

SECURITY = _table(
    AttributeSpec("user", Type.USER,
                  "The user the container runs as: a uid (`1000`, group the same), \"uid:gid\" or `root`. "
                  "Default: 65532, a non-root user, with HOME and USER set.", example="user = root"),
    AttributeSpec("read_only", Type.BOOL, "Whether the root filesystem is read-only (default `true`; /tmp "
                  "and mounted volumes stay writable).", example="read_only = false"),
    AttributeSpec("capabilities", Type.STRING_LIST,
                  "Linux capabilities added back after dropping them all, written without `CAP_`.",
                  example='capabilities = ["CHOWN", "SETUID", "SETGID"]'),
    AttributeSpec("privileged", Type.BOOL,
                  "Run with every privilege of the host (devices, capabilities): always warned about.",
                  example="privileged = true"),
)

SCHEDULE = _table(
    AttributeSpec("node", Type.STRING_MAP, "Node labels the stage's nodes must have (a node selector).",
                  example='node = { "cloud.google.com/gke-spot" = "true" }'),
    AttributeSpec("tolerate", Type.STRING_LIST,
                  "Node taints the stage tolerates: `KEY`, `KEY=VALUE`, `KEY:EFFECT` or `KEY=VALUE:EFFECT` "
                  "(effects: NoSchedule, PreferNoSchedule, NoExecute).",
                  example='tolerate = ["spot=true:NoSchedule"]'),
    AttributeSpec("priority", Type.STRING, "The PriorityClass of the stage's pods.",
                  example='priority = "batch-high"'),
    AttributeSpec("queue", Type.STRING,
                  "The Kueue LocalQueue a batch stage waits in (its `kueue.x-k8s.io/queue-name` label).",
                  kinds=BATCH, example='queue = "team-a"'),
)

AUTOSCALE = _table(
    AttributeSpec("cpu", Type.INT, "The average CPU use to keep, percent of the CPU request (default 80).",
                  minimum=1, maximum=units.INT32_MAX, example="cpu = 70"),
    AttributeSpec("metric", Type.STRING, "A per-pod custom metric to scale on, with `target`.",
                  example='metric = "requests_per_second"'),
    AttributeSpec("target", Type.INT, "The average value of `metric` per pod to keep.", minimum=1,
                  maximum=units.MAX_COUNT, example="target = 100"),
)

# `matrix { AXIS = [VALUES] ... }`: its attributes are axes the user names, one
# instance of the stage per combination of their values (compiler/matrix.py).
MATRIX: dict[str, AttributeSpec] = {}
MATRIX_DOC = ("`matrix { AXIS = [VALUES] ... }`: the stage runs once per combination of the values "
              "(numbers, strings, bools or quantities), each instance seeing its own as `${matrix.AXIS}`")
MAX_INSTANCES = 1000


# Blocks of a stage. A block named like a stage attribute (`health`) is another
# way to write that attribute, for the same kinds of stage.
STAGE_BLOCKS = {"resources": RESOURCES, "health": HEALTH, "matrix": MATRIX, "schedule": SCHEDULE,
                "autoscale": AUTOSCALE, "security": SECURITY}
HEADER_BLOCKS = {"schedule": SCHEDULE, "security": SECURITY,  # defaults for every stage, merged key by key
                 "artifacts": ARTIFACTS}  # where outputs live on Kubernetes and Argo
BLOCK_KINDS = {"autoscale": SERVE}  # blocks only some kinds of stage take, besides those named like attributes
BLOCKS = {"stage": STAGE_BLOCKS, "pipeline": HEADER_BLOCKS}  # the blocks of each declaration that has some


def block_kinds(name: str) -> frozenset[str]:
    """The kinds of stage that take the block ``name``."""
    return BLOCK_KINDS.get(name) or (STAGE[name].kinds if name in STAGE else ALL_KINDS)


def blocks_for(declaration: str, kind: str | None = None) -> dict[str, dict[str, AttributeSpec]]:
    """The blocks a declaration (``stage``, ``pipeline``) takes, for a stage of ``kind`` when known."""
    return {name: table for name, table in BLOCKS.get(declaration, {}).items()
            if kind is None or kind in block_kinds(name)}

PARAM_TYPES = ("string", "int", "float", "bool", "duration")


@dataclass(frozen=True, slots=True)
class StatementSpec:
    """A statement of a stage body, `KEYWORD SUBJECT at "/path"`: its form and what it does."""

    keyword: str
    form: str
    doc: str
    kinds: frozenset[str] = ALL_KINDS

    @property
    def documentation(self) -> str:
        return f"`{self.form}` {self.doc}"


STATEMENTS = {spec.keyword: spec for spec in (
    StatementSpec("mount", 'mount VOLUME at "/path" [readonly]',
                  "mounts a declared volume into the stage; paths are absolute and distinct."),
    StatementSpec("output", 'output NAME at "/path"',
                  "is a directory the stage writes and aipc keeps for the stages that read it.", kinds=BATCH),
    StatementSpec("input", 'input STAGE.OUTPUT at "/path"',
                  "mounts another stage's output read-only; the stage runs after that stage."),
)}
