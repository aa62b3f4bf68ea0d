"""Stable diagnostic codes, each with the explanation ``aipc explain CODE`` prints.

E0xx input and syntax, E1xx names, E2xx types and units, E3xx the dependency
graph, E4xx/W4xx what a program would do that it should not (hand the host to
a container, leak a credential, name an image no registry serves, run nothing),
W1xx/W2xx/W3xx warnings (about names, values, the graph), Bxxx what a backend
cannot express. A code, once
published, keeps its meaning; retired codes are not reused.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Code:
    id: str
    title: str
    explanation: str
    example: str


CODES: dict[str, Code] = {}


def _code(id: str, title: str, explanation: str, example: str) -> Code:
    code = Code(id, title, " ".join(explanation.split()), example.strip("\n"))
    assert id not in CODES, id
    CODES[id] = code
    return code


# ----------------------------------------------------------------- input, syntax

UNREADABLE = _code(
    "E001", "the input cannot be read",
    """The file does not exist, is a directory, is larger than 16 MiB (the most
    aipc reads, from a file, a device or stdin), or is not text: .aip files are
    UTF-8 text without NUL bytes. Check the path, or re-save the file as UTF-8.""",
    """
$ aipc check pipelines/fraud.aip     # the file is really pipelines/fraud.aip.txt
error[E001]: cannot read `pipelines/fraud.aip`: no such file
""",
)

UNEXPECTED_TOKEN = _code(
    "E002", "syntax error",
    """The parser met something it did not expect at this point. The message says
    what would have been accepted instead. Attributes are written `name = value`
    and separated by spaces or newlines (no commas); lists `[a, b]` and maps
    `{ k = v, ... }` separate their items with commas.""",
    """
data ingest {
  image = "etl:1.0",          # error: attributes are not separated by commas
  after = [raw clean]         # error: expected `,` or `]`
}
# fixed:
data ingest {
  image = "etl:1.0"
  after = [raw, clean]
}
""",
)

UNEXPECTED_CHARACTER = _code(
    "E003", "a character that is not part of the language",
    """The lexer found a character that starts no token. Names are letters, digits
    and underscores; strings are quoted with `"`; comments start with `#` or `//`.""",
    """
data ingest { image = 'etl:1.0' }    # error: single quotes are not strings
data ingest { image = "etl:1.0" }    # fixed
""",
)

UNTERMINATED_STRING = _code(
    "E004", "unterminated string",
    """A string opened with `"` must be closed on the same line; text over several
    lines is written between triple quotes `\"\"\"...\"\"\"`.""",
    '''
data ingest { script = "python etl.py }      # error: no closing quote
data ingest { script = "python etl.py" }     # fixed
''',
)

INVALID_ESCAPE = _code(
    "E005", "invalid escape sequence",
    """Inside `"..."` a backslash starts an escape: `\\"`, `\\\\`, `\\n`, `\\t` and
    `\\$` are known. Write `\\\\` for a literal backslash. Triple-quoted strings have
    no escapes at all, which suits shell scripts.""",
    r'''
data ingest { command = ["grep", "\d+", "log.txt"] }     # error: `\d` is not an escape
data ingest { command = ["grep", "\\d+", "log.txt"] }    # fixed
''',
)

INVALID_INTERPOLATION = _code(
    "E006", "invalid interpolation",
    """`${name}` inside a string is replaced by the value of the parameter `name`;
    `${pipeline.name}` and `${stage.name}` are built in. The braces must hold one
    of those names and be closed. To write a literal `${` (a shell variable in a
    script, for example) write `$${`.""",
    '''
data ingest { script = "echo ${HOME" }        # error: `${` is not closed
data ingest { script = "echo $${HOME}" }      # fixed: a literal ${HOME} for the shell
''',
)

INVALID_NAME = _code(
    "E007", "invalid name",
    """Declared names (stages, volumes, secrets, parameters) start with a lowercase
    letter, continue with lowercase letters, digits and `_`, and have at most 40
    characters, so that every target can turn them into object names.""",
    """
data Ingest_Raw { image = "etl:1.0" }    # error: uppercase letters
data ingest_raw { image = "etl:1.0" }    # fixed
""",
)

UNEXPECTED_EOF = _code(
    "E008", "unexpected end of input",
    """The file (or the declaration) ended while a block, list or map was still
    open. The help line names the innermost bracket that is not closed.""",
    """
data ingest {
  image = "etl:1.0"
# error: the file ends before the `}` that closes `data ingest {`
""",
)

NOT_IMPLEMENTED = _code(
    "E009", "part of the v1 language, not implemented in this build",
    """Kept so that codes stay stable: an earlier build reported with it a
    construct of the v1 language (LANGUAGE.md) that it read but could not compile
    yet. This build compiles every v1 construct it reads (the secret keys of
    `env`, `output` and `input` included), and nothing reports E009. If a build
    reports it, the construct is written correctly: leave it out (the
    help line says how) or use a build that implements it.""",
    """
secret hf { keys = ["token"] }
eval score { image = "eval:1.0"  env = { HF_TOKEN = hf.token } }   # compiles in this build
""",
)

# ------------------------------------------------------------------------- names

DUPLICATE_NAME = _code(
    "E101", "duplicate declaration",
    """Names are unique per kind (two volumes cannot share a name) and across
    stages (a `data` and a `train` stage cannot share one either), because they
    become object names on every target.""",
    """
volume models { size = 20Gi }
volume models { size = 50Gi }    # error: `models` is already declared
""",
)

UNKNOWN_STAGE = _code(
    "E102", "unknown stage",
    """`after` lists the stages this stage waits for; each must be declared in the
    same file (in any order). A close match is suggested.""",
    """
data ingest { image = "etl:1.0" }
train model { image = "trainer:1.0"  after = [ingets] }    # error: did you mean `ingest`?
""",
)

UNKNOWN_VOLUME = _code(
    "E103", "unknown volume",
    """`mount V at "/path"` mounts a declared volume into a stage, so `V` must be
    declared with `volume V { ... }` somewhere in the same file (in any order): a
    sized volume the target creates, a `host` path, or an existing `claim`. A close
    match among the declared volumes is suggested.""",
    """
volume models { size = 20Gi }
train model { image = "trainer:1.0"  mount model at "/models" }    # error: did you mean `models`?
""",
)

UNKNOWN_SECRET = _code(
    "E104", "unknown secret",
    """`secrets = [...]` names `secret NAME { keys = [...] }` declarations of the
    same file. A secret only declares which environment variables a stage receives;
    the values come from the caller's environment or the cluster, never from the
    file. A close match among the declared secrets is suggested.""",
    """
secret s3 { keys = ["AWS_ACCESS_KEY_ID"] }
data ingest { image = "etl:1.0"  secrets = [s4] }    # error: did you mean `s3`?
""",
)

UNKNOWN_SECRET_KEY = _code(
    "E112", "unknown key of a secret",
    """An `env` value written `SECRET.KEY` gives the variable one key of a declared
    secret under a new name: `SECRET` must be declared with `secret SECRET { keys
    = [...] }` and `KEY` must be one of its keys. On Kubernetes and Argo the
    variable reads key KEY of the Secret named after SECRET (`secretKeyRef`); on
    docker-compose and under `aipc run` it takes the value of the caller's
    environment variable KEY. A close match among the keys is suggested.""",
    """
secret hf { keys = ["token"] }
serve llm { image = "vllm/vllm-openai:v0.6.3"  port = 8000  env = { HF_TOKEN = hf.tokn } }
# error: `hf` has no key `tokn`; did you mean `token`?
""",
)

UNKNOWN_PARAM = _code(
    "E105", "unknown parameter",
    """`${name}` in a string, and `-p name=value` on the command line, refer to a
    `param name: TYPE = DEFAULT` declaration. In a script, write `$${VAR}` for a
    shell variable.""",
    """
param epochs: int = 10
train model { image = "trainer:1.0"  command = ["train", "--epochs", "${epoch}"] }
# error: unknown parameter `epoch`; did you mean `epochs`?
""",
)

UNKNOWN_ATTRIBUTE = _code(
    "E106", "unknown attribute",
    """Every declaration accepts a fixed set of attributes (see LANGUAGE.md). A
    close match is suggested; `cpu`, `memory`, `gpu`... belong inside
    `resources { }`.""",
    """
data ingest { image = "etl:1.0"  comand = ["etl"] }    # error: did you mean `command`?
""",
)

ATTRIBUTE_NOT_FOR_KIND = _code(
    "E107", "attribute not allowed on this kind of stage",
    """`retries` and `timeout` belong to batch stages (`data`, `train`, `eval`),
    which run to completion; `port`, `expose`, `ports`, `replicas` and `health`
    (the attribute and the block) belong to `serve` stages, which run until
    stopped.""",
    """
train model { image = "trainer:1.0"  port = 8080 }    # error: `port` is only for serve stages
""",
)

DUPLICATE_ATTRIBUTE = _code(
    "E108", "attribute set twice",
    """Each attribute may be set once per block (and each key once per map): with
    two values one would silently win, and which one is rarely what the author of
    the second line meant. Remove one, or merge two `resources` blocks into one.""",
    """
data ingest { image = "etl:1.0"  image = "etl:2.0" }    # error
""",
)

DUPLICATE_HEADER = _code(
    "E109", "more than one pipeline header",
    """A file describes one pipeline, so it has at most one `pipeline "name" { }`
    header. The header is optional: without it the pipeline is named after the file.
    Merge the attributes of both headers into one.""",
    """
pipeline "fraud" { }
pipeline "fraud-v2" { }    # error
""",
)

NAME_TOO_LONG = _code(
    "E110", "generated object name too long",
    """Kubernetes names and label values have at most 63 characters. Objects are
    named `<pipeline>-<stage>` or `<pipeline>-<volume>` (underscores become
    dashes), so the pipeline name plus the longest stage or volume name must fit.
    A matrix stage's objects are its instances, `<pipeline>-<instance>`: an
    instance whose name is too long is named by its stage and a hash of 8
    characters instead, and that must fit.""",
    """
pipeline "nightly-fraud-detection-retraining-for-the-risk-team" { }
data ingest_transactions_from_the_warehouse { image = "etl:1.0" }    # error: 71 characters
""",
)

INVALID_OBJECT_NAME = _code(
    "E111", "invalid pipeline name or namespace",
    """The pipeline name and the namespace become Kubernetes names: lowercase
    letters, digits and `-` (the pipeline name may also use `_`), starting with a
    letter and ending with a letter or digit. The pipeline name defaults to the
    file's name, cleaned the same way.""",
    """
pipeline "Fraud Detection" { }    # error: write "fraud-detection"
""",
)

NOT_A_SERVICE = _code(
    "E120", "an address of something that is not a serve stage",
    """`${STAGE.host}`, `${STAGE.port}` and `${STAGE.url}` name a serve stage's
    address as other stages reach it. A batch stage (`data`, `train`, `eval`)
    serves nothing and has no address; a secret, volume or parameter has none
    either. (`${pipeline.name}`, `${stage.name}` and `${matrix.X}` are built in and
    win over a stage of that name.)""",
    """
data prepare { image = "etl:1.0" }
train model { image = "trainer:1.0"  command = ["train", "--from", "${prepare.url}"] }   # error
""",
)

UNKNOWN_ADDRESS_FIELD = _code(
    "E121", "unknown part of a service address",
    """A serve stage's address has three parts: `${STAGE.host}` (the name other
    stages reach it by), `${STAGE.port}` (the port they connect to) and
    `${STAGE.url}` (`http://HOST:PORT`).""",
    """
serve db { image = "postgres:16"  port = 5432 }
data load { image = "etl:1.0"  command = ["load", "--db", "${db.hostname}"] }   # error: did you mean `host`?
""",
)

UNKNOWN_PORT_NAME = _code(
    "E122", "unknown port name",
    """`health { port = NAME }` checks one of the stage's named ports: `NAME` must be
    a key of its `ports` map (or write the port's number).""",
    """
serve api {
  image  = "api:1.0"
  port   = 8000
  ports  = { metrics = 9090 }
  health { http = "/metrics"  port = metric }    # error: did you mean `metrics`?
}
""",
)

UNKNOWN_AXIS = _code(
    "E130", "unknown matrix axis",
    """`${matrix.AXIS}` is the value of one axis of a matrix stage in each of its
    instances, so AXIS must be an axis of the stage's `matrix { }` (or of the stage
    its `matrix = STAGE` copies), and the string must be in a matrix stage.""",
    """
train model {
  image   = "trainer:1.0"
  matrix  { lr = [1e-4, 3e-4] }
  command = ["train", "--lr", "${matrix.rate}"]    # error: did you mean `lr`?
}
""",
)

UNKNOWN_OUTPUT = _code(
    "E131", "unknown output",
    """`input STAGE.OUTPUT at "/path"` reads a directory STAGE declares with
    `output OUTPUT at "/path"`: STAGE must have an output of that name.""",
    """
train model { image = "trainer:1.0"  output weights at "/out/weights" }
eval score  { image = "trainer:1.0"  input model.weigths at "/in/weights" }    # error: did you mean `weights`?
""",
)

INPUT_FROM_SERVICE = _code(
    "E132", "an input from a serve stage",
    """Only batch stages (data, train, eval) have outputs: a serve stage runs until
    stopped, so what it writes is never complete. Read a batch stage's output, or
    reach the service through its address (`${STAGE.url}`).""",
    """
serve api  { image = "api:1.0"  port = 8000 }
eval  load { image = "k6:1.0"  input api.logs at "/in/logs" }    # error: `api` is a serve stage
""",
)

ADDRESS_NOT_ALLOWED = _code(
    "E123", "a service address where the value is fixed when compiling",
    """A service address differs per target (the container port on docker-compose,
    the Service port on Kubernetes), so it may only appear in what a stage hands
    its running container: `command`, `args`, `script`, `env` values, `workdir`
    and `health`. Images, labels, mount paths, numbers and the header's values
    are the same on every target and cannot hold one.""",
    """
serve db { image = "postgres:16"  port = 5432 }
data load { image = "etl:1.0"  labels = { upstream = "${db.host}" } }    # error
""",
)

# ---------------------------------------------------------- templates and imports

UNKNOWN_TEMPLATE = _code(
    "E150", "unknown template",
    """`KIND NAME from TEMPLATE` and `template NAME: KIND from TEMPLATE` start from
    a template declared in the same file (`from trainer`) or in an imported file,
    named by its import (`from gpu.h100_trainer` after `import "lib/gpu.aip" as
    gpu`). A close match is suggested.""",
    """
template trainer: train { image = "trainer:1.0" }
train small from trainr { command = ["train"] }     # error: did you mean `trainer`?
""",
)

TEMPLATE_KIND_MISMATCH = _code(
    "E151", "a template of another kind",
    """A template is written for one kind of stage (`template trainer: train`), and
    only stages of that kind start from it, because the attributes a stage
    accepts depend on its kind (`port` for `serve`, `retries` for batch stages). A
    template built on another has the other's kind too.""",
    """
template service: serve { image = "api:1.0"  port = 8080 }
train model from service { }        # error: `service` is a template for serve stages
""",
)

TEMPLATE_CYCLE = _code(
    "E152", "template cycle",
    """Templates that start from each other in a circle have no first one to take
    attributes from. The cycle is printed in order; make one of them start from
    nothing (remove its `from`).""",
    """
template a: train from b { }
template b: train from a { }        # error: template cycle: a -> b -> a
""",
)

IMPORT_UNREADABLE = _code(
    "E153", "an imported file cannot be read",
    """`import "PATH"` reads PATH relative to the importing file's folder. The file
    must exist, be a regular .aip file of UTF-8 text and at most 16 MiB. The error
    is at the `import` line; the message names the path that was looked for.""",
    """
# pipelines/train.aip
import "lib/gpu.aip"                 # error: cannot read `pipelines/lib/gpu.aip`: no such file
import "../lib/gpu.aip"              # fixed: the library is next to pipelines/
""",
)

IMPORT_CYCLE = _code(
    "E154", "import cycle",
    """Files that import each other in a circle: templates cannot be taken from a
    file that is still being read. The cycle is printed from the first file to
    the import that closes it; move the shared templates into a file that
    imports neither.""",
    """
# a.aip: import "b.aip"     b.aip: import "c.aip"     c.aip: import "a.aip"
error[E154]: import cycle: a.aip -> b.aip -> c.aip -> a.aip
""",
)

IMPORT_NOT_A_LIBRARY = _code(
    "E155", "an imported file that is not a library",
    """An imported file holds templates and further imports only: a stage, a
    volume, a secret, a parameter or a pipeline header in it would make the
    importing pipeline run or declare things its own text does not show. The
    error is at the `import` line, with a label at each declaration that does
    not belong. Move them into the pipelines that use them.""",
    """
# lib/ml.aip
template trainer: train { image = "trainer:1.0" }
train smoke { image = "trainer:1.0" }          # not allowed in an imported file
# pipeline.aip
import "lib/ml.aip"                            # error: `lib/ml.aip` declares the stage `smoke`
""",
)

INVALID_IMPORT = _code(
    "E156", "invalid import",
    """`import "PATH" [as NAME]` names a .aip file by a plain string (no `${...}`:
    imports are read before parameters exist), relative to the importing file.
    Without `as`, the templates are used by the file's stem, which must then be a
    valid name (lowercase letters, digits and `_`, starting with a letter);
    otherwise write `as NAME`.""",
    """
import "lib/gpu-v2.aip"              # error: `gpu-v2` is not a valid name
import "lib/gpu-v2.aip" as gpu       # fixed
""",
)

# --------------------------------------------------------------- types and units

WRONG_UNIT = _code(
    "E201", "wrong or unknown unit",
    """The attribute decides what a unit means. Bytes (`memory`, `shm`, `disk`,
    volume `size`) take `Ki Mi Gi Ti Pi` (powers of 1024) or `k M G T P` (powers of
    1000); `cpu` takes a number of cores or millicores (`500m`); durations
    (`timeout`, `duration` parameters) take `s m h d`, combinable as `1h30m`.""",
    """
train model { image = "trainer:1.0"  resources { memory = 16GB } }    # error: write 16G or 16Gi
train model { image = "trainer:1.0"  timeout = 2Gi }                 # error: a duration needs s, m, h or d
""",
)

WRONG_TYPE = _code(
    "E202", "value of the wrong type",
    """Each attribute has one type: a string, a number, a list of strings, a map, a
    list of names... A number, quantity, duration or bool attribute also accepts a
    string that is exactly one `${param}`; its value is checked after `-p`
    overrides are applied.""",
    """
data ingest { image = etl }                 # error: expected a string, write "etl:1.0"
serve api { image = "api:1.0"  port = "http" }    # error: expected an integer
""",
)

MISSING_ATTRIBUTE = _code(
    "E203", "missing required attribute",
    """Some attributes have no default: every stage needs an `image` (unless the
    pipeline header sets one), a serve stage needs a `port`, a volume needs a
    `size` unless it is a `host` path or an existing `claim`, a secret needs
    `keys`, a `health` block needs one check (`http`, `tcp` or `command`).""",
    """
serve api { image = "api:1.0" }             # error: a serve stage needs a `port`
serve api { image = "api:1.0"  port = 8080 }
""",
)

CONFLICTING_ATTRIBUTES = _code(
    "E204", "attributes that cannot be used together",
    """`command` (an argv list that replaces the image's entrypoint), `args`
    (arguments appended to the image's entrypoint) and `script` (run with `sh -c`)
    are three ways to say what runs, so a stage has at most one. A volume is either
    created (`size`, `access`, `class`), a bind mount of a `host` path, or an
    existing `claim`. A `health` block has one check: `http`, `tcp` or `command`
    (and `port` only with `http` or `tcp`).""",
    """
data ingest { image = "etl:1.0"  command = ["etl"]  script = "etl --all" }    # error
""",
)

RELATIVE_PATH = _code(
    "E205", "path must be absolute",
    """Mount paths, the working directory and the health-check path are absolute:
    they start with `/`. A relative path would depend on the image's working
    directory, which differs between images and targets.""",
    """
train model { image = "trainer:1.0"  mount models at "models" }    # error: write "/models"
""",
)

DUPLICATE_MOUNT_PATH = _code(
    "E206", "two mounts at one path",
    """A stage cannot mount two volumes at the same path (nor at `/dev/shm`, which
    `shm` owns, or `/tmp`, which the hardened container keeps writable).""",
    """
train model {
  image = "trainer:1.0"
  mount models at "/data"
  mount features at "/data"    # error
}
""",
)

RANGE_REVERSED = _code(
    "E207", "range whose low is above its high",
    """`cpu = LOW..HIGH` and `memory = LOW..HIGH` mean request..limit, so the low
    end cannot exceed the high end.""",
    """
train model { image = "trainer:1.0"  resources { memory = 16Gi..8Gi } }    # error: write 8Gi..16Gi
""",
)

INVALID_GPU_COUNT = _code(
    "E208", "invalid GPU count",
    """`gpu` is a whole, non-negative number of devices: schedulers hand out GPUs
    whole, so `0.5` cannot be honoured, and a negative count means nothing. Leave
    `gpu` out (or write `gpu = 0`) for a stage without GPUs.""",
    """
train model { image = "trainer:1.0"  resources { gpu = 0.5 } }    # error
""",
)

OUT_OF_RANGE = _code(
    "E209", "value out of range",
    """Some numbers have bounds: `port` is 1..65535, `replicas` at least 1,
    `retries` at least 0, `timeout`, `cpu` and sizes above zero. Every number
    also has a largest value, what the targets can store: `retries` and
    `replicas` at most 2147483647 (32-bit fields on Kubernetes and Argo),
    `timeout` at most 2147483647 seconds (Argo's), sizes and `gpu` at most 2^63-1 (a
    Kubernetes quantity), `cpu` at most 9223372036854m (Docker's int64 of
    billionths of a CPU). Beyond that no target could run the stage as written.""",
    """
serve api { image = "api:1.0"  port = 80800 }    # error
""",
)

INVALID_CHOICE = _code(
    "E210", "value not among the choices",
    """Enumerated attributes accept a fixed set of words: `access` is `rwo`, `rwx` or
    `rox`; `gpu_vendor` is `nvidia`, `amd` or `intel`; `param` types are `string`,
    `int`, `float`, `bool` and `duration`. They may be written bare or quoted.""",
    """
volume raw { size = 200Gi  access = shared }    # error: did you mean `rwx`?
""",
)

INVALID_PARAM_VALUE = _code(
    "E211", "parameter value does not fit its type",
    """A parameter's default, and a `-p NAME=VALUE` override, must be a value of the
    parameter's type: `int` takes `42`, `float` `3e-4`, `bool` `true` or `false`,
    `duration` `1h30m`, `string` anything.""",
    """
param epochs: int = 10
$ aipc check train.aip -p epochs=ten     # error: `ten` is not an int
""",
)

RANGE_NOT_ALLOWED = _code(
    "E212", "range not allowed here",
    """Only `cpu` and `memory` take a `LOW..HIGH` range, meaning request..limit:
    the scheduler reserves the low end and the container may burst to the high end;
    and a serve stage's `replicas`, meaning autoscaling between MIN and MAX. GPUs,
    shared memory, disk, ports and other counts are single values.""",
    """
train model { image = "trainer:1.0"  resources { gpu = 1..2 } }    # error
""",
)

INVALID_LABEL = _code(
    "E213", "invalid label",
    """Labels become Kubernetes labels: keys are an optional DNS prefix and `/`
    then at most 63 letters, digits, `-`, `_` or `.`; values are at most 63 of
    those characters, starting and ending with a letter or digit, or empty.""",
    """
pipeline "fraud" { labels = { team = "risk team" } }    # error: spaces are not allowed
""",
)

INVALID_ENV_NAME = _code(
    "E214", "invalid environment variable name",
    """Environment variable names (the keys of `env` and the `keys` of a secret) are
    letters, digits and `_`, not starting with a digit, so that every shell and every
    target accepts them. Secret keys become variables of the same name.""",
    """
secret s3 { keys = ["aws-key"] }    # error: write "AWS_KEY"
""",
)

NESTED_OUTPUT = _code(
    "E215", "an output inside another mount, or around one",
    """An output is a directory of its own that aipc keeps apart (a Docker volume, a
    subPath of the artifacts claim): another mount, output or input inside it, or
    around it, would hide files or send them to the wrong place. Give each output a
    path apart from every other mount of the stage.""",
    """
train model {
  image = "trainer:1.0"
  mount  scratch at "/out"
  output weights at "/out/weights"    # error: inside the mount at /out
}
""",
)

INVALID_PORT_NAME = _code(
    "E230", "invalid port name",
    """The keys of `ports` become Kubernetes port names (IANA service names): at most
    15 lower-case letters, digits and `-`, with at least one letter, not starting or
    ending with `-` and without `--`. `_` becomes `-`, as in object names. The name
    of `port` itself (`http`, or `main` when its health check is `tcp` or
    `command`) is taken.""",
    """
serve api { image = "api:1.0"  port = 8000  ports = { prometheus_metrics = 9090 } }   # error: 18 characters
serve api { image = "api:1.0"  port = 8000  ports = { metrics = 9090 } }              # fixed
""",
)

PORT_CONFLICT = _code(
    "E231", "a port used twice",
    """A serve stage's ports are distinct: `port` and the numbers in `ports` are the
    container's ports, and `expose` with the numbers in `ports` are its Service's
    ports on Kubernetes. Listing one twice would give Kubernetes a duplicate port.""",
    """
serve api { image = "api:1.0"  port = 8000  expose = 9090  ports = { metrics = 9090 } }   # error
""",
)

INVALID_MATRIX = _code(
    "E240", "invalid matrix",
    """`matrix { AXIS = [VALUES] ... }` runs a stage once per combination of the
    values: each axis lists at least one value, no value twice, and values are
    numbers, strings, bools or quantities written as they are (no `${...}`: a
    matrix is fixed when compiling). `exclude` and `max_parallel` belong to a
    matrix stage; a stage with `matrix = STAGE` takes that stage's `exclude` and
    has none of its own. At least one combination must be left.""",
    """
train model {
  image  = "trainer:1.0"
  matrix { lr = [1e-4, 1e-4]  seed = [] }    # errors: `1e-4` twice, `seed` has no values
}
""",
)

TOO_MANY_INSTANCES = _code(
    "E241", "too many matrix instances",
    """A matrix stage has at most 1000 instances (the product of its axes less the
    excluded combinations): each instance is a workload of its own on every target.
    Split the sweep into several stages or files, or sweep fewer values.""",
    """
train model {
  image  = "trainer:1.0"
  matrix { lr = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]  seed = [...101 values...] }    # error: 1010 instances
}
""",
)

UNKNOWN_CAPABILITY = _code(
    "E260", "unknown Linux capability",
    """`security { capabilities = [...] }` adds Linux capabilities back after every
    one was dropped. Each is a name from capabilities(7) written without the
    `CAP_` prefix and in capitals (`CHOWN`, `NET_BIND_SERVICE`), as Kubernetes and
    Docker write them; `ALL` is not accepted (list what the image needs, or use
    `privileged = true`). A close match is suggested.""",
    """
serve db { image = "postgres:16"  port = 5432  security { capabilities = ["CAP_CHOWN"] } }   # error: write "CHOWN"
serve db { image = "postgres:16"  port = 5432  security { capabilities = ["CHOWN"] } }
""",
)

INVALID_USER = _code(
    "E261", "invalid user",
    """`security { user = ... }` is the user a stage's container runs as: a uid
    (`1000`; its group is the same number), `"uid:gid"` (`"1000:100"`) or `root`.
    Kubernetes runs containers by number (`runAsUser`, `runAsGroup`), so a user
    name from the image cannot be used: find its uid with `id -u NAME` in the
    image. Ids are at most 2147483647.""",
    """
serve db { image = "postgres:16"  port = 5432  security { user = "postgres" } }   # error
serve db { image = "postgres:16"  port = 5432  security { user = 999 } }          # the uid of postgres
""",
)

# Scheduling on real clusters (issue 15): E25x, W25x and B150, numbered apart from
# the codes other v1 constructs add at the same time.

UNKNOWN_GPU_MODEL = _code(
    "E250", "unknown portable GPU model",
    """`gpu_model` is a portable model name (`A100-40GB`, `A100-80GB`, `H100-80GB`,
    `H200`, `B200`, `L4`, `L40S`, `T4`, `A10G`, `V100`, `MI300X`; any letter case),
    which every target turns into the node labels of the cluster's convention, or a
    node label value written as the nodes carry it (`NVIDIA-A100-SXM4-80GB`). Text
    shaped like a model name that is neither (`H100`, `A100-40G`) would select no node
    and leave the pods pending, so it is an error naming the models it may mean. A
    portable model names the vendor too: `MI300X` is an AMD GPU.""",
    """
train big { image = "trainer:2.1"  resources { gpu = 8  gpu_model = "H100" } }
# error: `H100` is not a portable GPU model; did you mean `H100-80GB`?
""",
)

INVALID_TOLERATION = _code(
    "E251", "invalid toleration",
    """`schedule { tolerate = [...] }` lists node taints in kubectl's taint syntax:
    `KEY` (any value, any effect), `KEY=VALUE`, `KEY:EFFECT` or `KEY=VALUE:EFFECT`.
    The key is a label key, the value a label value, and the effect one of
    `NoSchedule`, `PreferNoSchedule` and `NoExecute`, spelt so.""",
    """
train big { image = "trainer:2.1"  schedule { tolerate = ["spot=true:noschedule"] } }
# error: `noschedule` is not a taint effect; did you mean `NoSchedule`?
""",
)

AUTOSCALING = _code(
    "E252", "autoscaling that cannot work",
    """`replicas = MIN..MAX` on a serve stage autoscales it, on CPU use (`autoscale {
    cpu = PERCENT }`, 80 by default) or on a per-pod custom metric (`autoscale {
    metric = "NAME"  target = N }`). An `autoscale` block needs such a range; and a
    range from 0 needs a custom metric: with no pod running there is no CPU use to
    measure, so nothing would ever start one again.""",
    """
serve api { image = "api:2.1"  port = 8080  autoscale { cpu = 70 } }     # error: no replica range
serve api { image = "api:2.1"  port = 8080  replicas = 0..4 }            # error: 0 needs a metric
serve api { image = "api:2.1"  port = 8080  replicas = 2..10  autoscale { cpu = 70 } }   # fixed
""",
)

# ------------------------------------------------------------------------- graph

NODE_VARIABLE_SET = _code(
    "E270", "an environment variable that `nodes` sets",
    """A stage with `nodes = N` runs as N containers, and aipc gives each the
    variables that make them one group: `MASTER_ADDR` (node 0's name),
    `MASTER_PORT` (29500), `NNODES`, `NODE_RANK` (0..N-1, different on each node),
    `NPROC_PER_NODE` (its GPUs, or 1), `WORLD_SIZE`, and the same values as
    `PET_MASTER_ADDR`, `PET_MASTER_PORT`, `PET_NNODES`, `PET_NODE_RANK` and
    `PET_NPROC_PER_NODE`, which torchrun reads. Setting one of them in `env` would
    give every node the same value and break the group, so it is an error. To
    change what torchrun does, pass its flags in `command`: a flag wins over its
    `PET_` variable.""",
    """
train pretrain {
  image   = "trainer:2.1"
  nodes   = 4
  env     = { MASTER_PORT = "23456" }                                # error
  command = ["torchrun", "--master-port", "23456", "train.py"]       # fixed: a flag, no env
}
""",
)

DEPENDENCY_CYCLE = _code(
    "E301", "dependency cycle",
    """`after` edges must form a DAG: a stage cannot (even indirectly) wait for
    itself, or nothing in the cycle would ever start. The message prints the cycle in
    `after` order (each stage waits for the next) and points at every edge of it;
    remove the one that is wrong.""",
    """
data a { image = "etl:1.0"  after = [b] }
data b { image = "etl:1.0"  after = [a] }    # error: a -> b -> a
""",
)

BATCH_AFTER_SERVE = _code(  # retired in v1: kept so that `aipc explain E302` says what became of it
    "E302", "(retired) a batch stage waits for a serve stage",
    """v0 rejected a batch stage `after` a serve stage, since a service never
    finishes. Since v1 this is allowed and means: the batch stage starts once the
    service is healthy (has passed its health check, or has started if it has
    none) — docker-compose `service_healthy`, `aipc run` and `aipc apply` wait for
    it, Argo waits for the applied Deployment's available replicas. The code is no
    longer reported.""",
    """
serve db { image = "postgres:16"  port = 5432  health { command = ["pg_isready"] } }
data load { image = "etl:1.0"  after = [db]  command = ["load", "--db", "${db.url}"] }   # starts once db is healthy
""",
)

MATRIX_PAIRING = _code(
    "E340", "a matrix stage paired with a stage of other axes",
    """Between matrix stages, `after` pairs instances by coordinates: each instance
    waits for the instance of equal coordinates, which only means something when
    both stages sweep the same axes. Write `matrix = STAGE` to sweep another
    stage's axes (and its `exclude`); it must name a matrix stage. A stage without
    a matrix may wait for any matrix stage: it waits for all of its instances.""",
    """
train model { image = "trainer:1.0"  matrix { lr = [1e-4, 3e-4] } }
eval score  { image = "trainer:1.0"  matrix { seed = [1, 2] }  after = [model] }    # error
eval score  { image = "trainer:1.0"  matrix = model  after = [model] }             # fixed: paired
""",
)

# ------------------------------------------------------------------------ safety

RESERVED_MOUNT_PATH = _code(
    "E401", "a mount over what the container runtime owns",
    """A volume cannot be mounted at `/` (the image itself) or at `/proc`, `/sys`
    or `/dev`, where the runtime mounts the kernel's and the container's own
    filesystems (the OCI runtime specification's default filesystems): the
    container would not start, or would see the host's instead. Mount the volume
    at a path of its own, such as `/data`. (`/dev/shm` is sized by `shm`.)""",
    """
data prepare { image = "etl:1.0"  mount raw at "/proc" }     # error
data prepare { image = "etl:1.0"  mount raw at "/data" }     # fixed
""",
)

ENV_REPLACES_SECRET = _code(
    "E402", "an environment variable replaces a secret's key",
    """A stage gets every key of each secret it lists as an environment variable of
    the same name. An `env` entry with that name replaces the secret's value on
    every target (the plain value wins in Kubernetes, Argo and compose alike), so
    the stage silently runs without the secret. Rename the variable, or drop the
    key from the secret.""",
    """
secret db { keys = ["DB_PASSWORD"] }
data load { image = "etl:1.0"  secrets = [db]  env = { DB_PASSWORD = "x" } }   # error
""",
)

INVALID_IMAGE = _code(
    "E403", "an image reference no registry accepts",
    """Image references follow the grammar every registry and container engine
    parses (distribution/reference): `[HOST[:PORT]/]PATH[:TAG][@DIGEST]`, with
    the repository path in lower case, no spaces or line breaks, no scheme such
    as `https://` (neither in `image` nor in the header's `registry`), a tag of
    at most 128 letters, digits, `_`, `.` and `-`, and a digest of a registered
    algorithm (`sha256:` and 64 lower-case hexadecimal digits). Characters that
    only look like ASCII letters (a Cyrillic `о`, a Greek `ο`) are refused too.""",
    """
data prepare { image = "Python:3.11" }                        # error: write "python:3.11"
data prepare { image = "https://ghcr.io/acme/etl:1.0" }       # error: write "ghcr.io/acme/etl:1.0"
""",
)

# ---------------------------------------------------------------------- warnings

UNUSED_DECLARATION = _code(
    "W101", "a declaration nothing uses",
    """A volume no stage mounts, a secret no stage lists in `secrets`, or a parameter
    no value refers to (`${name}`) does nothing: it is left out of every output, so
    it is most likely a leftover or a misspelt use. Use it or remove it.""",
    """
volume scratch { size = 10Gi }                  # warning: no stage mounts it
data ingest { image = "etl:1.0"  mount scratch at "/scratch" }    # fixed: mounted
""",
)

UNPINNED_IMAGE = _code(
    "W201", "image without a tag or with `latest`",
    """An image without a tag means `latest`, which changes under you: two runs of
    the same pipeline may use different code. Pin a version tag or a digest.""",
    """
data ingest { image = "python" }             # warning
data ingest { image = "python:3.11-slim" }   # fixed
""",
)

EXCLUDE_MATCHES_NOTHING = _code(
    "W240", "an `exclude` entry that matches no instance",
    """An instance is left out when it matches every key of one map of `exclude`. A
    map that names an axis the matrix does not have, or a value its axis does not
    list, matches no instance and leaves nothing out: most likely a typo.""",
    """
train model {
  image   = "trainer:1.0"
  matrix  { lr = [1e-4, 3e-4]  seed = [1, 2, 3] }
  exclude = [{ lr = 1e-5, seed = 3 }]    # warning: `lr` has no value `1e-5`
}
""",
)

MULTINODE_RWO_VOLUME = _code(
    "W270", "a multi-node stage writes a single-node volume",
    """The nodes of a stage with `nodes = N` are pods that Kubernetes may place on
    different machines, and an `rwo` (ReadWriteOnce) volume is attached to one
    machine at a time: pods elsewhere wait for it forever, or see a volume another
    machine writes. Declare the volume `access = rwx`, mount it `readonly`, or
    give the writing a volume the nodes do not share.""",
    """
volume checkpoints { size = 500Gi }                     # rwo by default
train pretrain {
  image = "trainer:2.1"
  nodes = 4
  mount checkpoints at "/ckpt"                            # warning
}
volume checkpoints { size = 500Gi  access = rwx }       # fixed
""",
)

GPU_SERVICE_SCALED_ON_CPU = _code(
    "W250", "a GPU service autoscaled on CPU use",
    """A serve stage with GPUs that autoscales on CPU (`autoscale { cpu = ... }`, or a
    replica range without `autoscale`, which means 80% CPU) scales on the wrong
    signal: a model server is busy on its GPU while its CPU idles, so it would not
    scale out under load. Scale on a custom metric of the server instead (queue
    length, requests in flight, GPU use from DCGM), served by a custom metrics adapter.""",
    """
serve llm { image = "vllm/vllm-openai:v0.6.3"  port = 8000  replicas = 1..4  resources { gpu = 1 } }
# warning: scale on `autoscale { metric = "vllm_num_requests_waiting"  target = 5 }`
""",
)

READ_BEFORE_WRITE = _code(
    "W301", "a reader may run before the writer",
    """A stage mounts a volume `readonly` that another stage writes, but the writer is
    not upstream of the reader (directly or transitively), so the reader may run
    first and see no data. Add the writer to the reader's `after`.""",
    """
data ingest { image = "etl:1.0"  mount raw at "/raw" }
train model { image = "trainer:1.0"  mount raw at "/raw" readonly }    # warning: add after = [ingest]
""",
)

CONCURRENT_WRITERS = _code(
    "W302", "concurrent writers on a single-writer volume",
    """Two stages that may run at the same time both mount an `rwo` volume
    writable. Kubernetes attaches an `rwo` volume to one node at a time, and two
    writers may corrupt each other's files. Order them with `after`, or use
    `access = rwx`.""",
    """
volume scratch { size = 10Gi }
data a { image = "etl:1.0"  mount scratch at "/s" }
data b { image = "etl:1.0"  mount scratch at "/s" }    # warning: a and b may run together
""",
)

SPELLED_SERVICE_NAME = _code(
    "W120", "a service name spelled by hand",
    """A string names a serve stage by its generated name (`<pipeline>-<stage>`,
    written out or as `${pipeline.name}-<stage>`). That name is derived: `_`
    becomes `-`, a file name with capitals or `.` is cleaned, so a hand-written one
    often does not resolve (`my_demo-api` while the service is `my-demo-api`), and
    the port other stages use differs per target. Write `${STAGE.host}`,
    `${STAGE.port}` or `${STAGE.url}`: aipc writes the right name and port on
    every target.""",
    """
serve api { image = "api:1.0"  port = 8080 }
eval smoke { image = "tests:1.0"  after = [api]  env = { API = "http://${pipeline.name}-api:8080" } }   # warning
eval smoke { image = "tests:1.0"  after = [api]  env = { API = "${api.url}" } }                         # fixed
""",
)

PRIVILEGED = _code(
    "W260", "a privileged container",
    """`security { privileged = true }` gives the container every capability and
    the host's devices, and lets it escalate privileges: it can take over the
    machine (or the Kubernetes node) it runs on. It is allowed, since some drivers
    and tools need it, and always warned about. Usually a few `capabilities` are
    what the image really needs.""",
    """
train probe { image = "tools:1.0"  security { privileged = true } }     # warning
train probe { image = "tools:1.0"  security { capabilities = ["SYS_PTRACE"] } }
""",
)

GPU_WITHOUT_MEMORY = _code(
    "W261", "a GPU stage with the default memory limit",
    """A stage that asks for GPUs but sets no `memory` gets the default memory
    limit, 2Gi, on every target: too little for almost any GPU workload (loading a
    model, pinned host buffers, data loader workers and /dev/shm all count
    against it), so the process is killed for running out of memory. Set
    `memory` in `resources`, for example to the size of the model plus what the
    data loading needs.""",
    """
train model { image = "trainer:1.0"  resources { gpu = 1 } }                 # warning
train model { image = "trainer:1.0"  resources { gpu = 1  memory = 32Gi } }
""",
)

# ---------------------------------------------------------------------- backends

NOT_PORTABLE = _code(
    "B001", "construct not available on this target",
    """Some constructs only exist on some targets. A `host` volume is a bind mount
    of a path on the Docker host: a cluster has no such path, so the Kubernetes and
    Argo targets reject stages that mount one. Use a sized volume or a `claim`. A
    portable `gpu_model` that the cluster's node label convention (`--gpu-labels`,
    the header's `gpu_labels`) has no nodes of (GKE offers no L40S, A10G or MI300X;
    EC2 no MI300X) is rejected the same way: no node would ever take the pods.""",
    """
volume scratch { host = "./scratch" }
data ingest { image = "etl:1.0"  mount scratch at "/scratch" }
$ aipc compile p.aip --target k8s     # error: a host volume cannot be mounted on Kubernetes
""",
)

NO_ARTIFACT_STORE = _code(
    "B002", "outputs without `artifacts { }` on a cluster",
    """On Kubernetes and Argo every stage's outputs live in one PersistentVolumeClaim
    of the pipeline, each output a subPath of it; the `pipeline` header says how big
    it is and where: `artifacts { size = 100Gi  class = "..."  access = rwx }`.
    docker-compose and `aipc run` keep outputs in Docker volumes and need no such block.""",
    """
pipeline "churn" { }
train model { image = "trainer:1.0"  output weights at "/out/weights" }
$ aipc compile p.aip --target k8s     # error: add `artifacts { size = 100Gi }` to the header
""",
)

SHM_ABOVE_MEMORY = _code(
    "B003", "shared memory larger than the memory limit",
    """On Kubernetes and Argo, `shm` is a memory-backed emptyDir at /dev/shm, and
    what it holds counts against the container's memory limit: the kubelet caps
    its size at the memory limit, and a full /dev/shm gets the container killed
    for running out of memory. An `shm` larger than the stage's memory limit (the
    high end of `memory`, or the default 2Gi when the stage sets none) can never
    be used. Set `memory` to at least `shm` plus what the process itself needs.
    docker-compose and `aipc run` give /dev/shm a size of its own.""",
    """
train model { image = "trainer:1.0"  resources { gpu = 4  shm = 16Gi } }
$ aipc check p.aip --target k8s     # error: shm 16Gi is above the memory limit, 2Gi (the default)
train model { image = "trainer:1.0"  resources { gpu = 4  shm = 16Gi  memory = 64Gi } }
""",
)

IGNORED_ON_TARGET = _code(
    "B101", "attribute ignored or changed on this target",
    """The target has no way to express this attribute as written, so the compiled
    output runs without it: docker-compose cannot select a GPU model (`gpu_model`),
    stop a container after a deadline (`timeout`), limit its local storage (`disk`)
    or reserve a number of Intel GPUs (it passes every GPU under /dev/dri), and
    neither it nor `aipc run` knows node selectors, tolerations, priority classes or
    Kueue queues (`schedule`) or autoscaling (a serve stage starts its minimum
    number of replicas), and both pull private images with the caller's `docker
    login`, not with the header's `pull_secrets`; Argo Workflows evaluates `{{...}}` in a template's text as
    its own expression, with no way to write the braces literally. On Argo a
    parameter is offered at submission (`argo submit -p NAME=VALUE`) only when batch
    stages' strings are its only uses: one that sets a number, size, duration, path
    or label, or that a serve stage uses (Argo would paste it unquoted into the
    applied manifest), is fixed at its compiled value in every stage, so that it
    means one value everywhere.""",
    """
train model { image = "trainer:1.0"  timeout = 12h }
$ aipc compile p.aip --target compose     # warning: compose has no timeout; it is ignored
""",
)

HOST_PORTS_OVERLAP = _code(
    "B102", "host ports overlap on docker-compose",
    """On docker-compose (and under `aipc run`) a serve stage publishes its ports on
    the host, one host port per replica: `port = 8080  replicas = 3` takes
    8080-8082 (the engine gives each replica one of them, so 8080 always answers);
    `expose` moves `port`'s host ports (`port = 8000  expose = 80` takes 80), and
    each of `ports` takes its own number up. Published ports that overlap cannot
    all start: the later one fails with `port is already allocated`. Keep them at
    least as far apart as their replicas, or give services that listen on the same
    port different `expose` ports.""",
    """
serve candidates { image = "retrieval:2.0"  port = 8081  replicas = 2 }   # host ports 8081-8082
serve ranker     { image = "ranking:2.0"    port = 8080  replicas = 3 }   # warning: 8080-8082 overlap
# fixed: port = 8090 for ranker (8090-8092)
""",
)

SINGLE_NODE_ARTIFACTS = _code(
    "B104", "outputs on a claim one node at a time may mount",
    """An `access = rwo` claim (the default) is mounted read-write by one node at a
    time: a stage that reads an output, scheduled on another node than the one whose
    pod holds the claim, waits until that pod ends, and two stages that run at once
    on different nodes cannot both mount it. Use `access = rwx` with a storage class
    that offers it, or accept that the stages run one node at a time.""",
    """
pipeline "churn" { artifacts { size = 100Gi } }    # warning on k8s: rwo
""",
)

TAG_KEYED_CACHE = _code(
    "B105", "the cluster cache is keyed by an image tag",
    """On Kubernetes and Argo each batch stage carries the compile-time part of its
    cache key (`aipc.dev/cache-key`; Argo memoizes with it, `aipc apply` skips a Job
    whose key completed): the image as written, its command, env, mounts and the
    keys of the stages it reads. An image named by a tag is keyed by the tag, so a
    tag pushed again with other contents still matches an earlier run. Pin the
    image by digest (`repo@sha256:...`) where that matters. `aipc run` always keys
    by the image's content.""",
    """
train model { image = "trainer:2.1"  output weights at "/out/w" }
$ aipc compile p.aip --target k8s     # warning: the cache key holds the tag `trainer:2.1`
""",
)

OUTPUT_TOO_LARGE = _code(
    "B103", "the compiled object is larger than the target stores",
    """Argo Workflows keeps a Workflow in one Kubernetes object, and the API server
    (etcd) refuses objects over about 1 MiB; Argo itself rejects larger workflows.
    Long inline scripts and many stages add up. Move long scripts into the image
    (run them with `command`), or split the pipeline into several files.""",
    '''
data prepare { image = "etl:1.0"  script = """ ... 2 MB of shell ... """ }
$ aipc compile p.aip --target argo     # warning: the Workflow is 2.1 MB; Argo stores at most 1 MiB
''',
)


NODES_ON_ONE_HOST = _code(
    "B120", "a multi-node stage runs on one machine",
    """docker-compose and `aipc run` run the N nodes of a stage with `nodes = N` as N
    containers on the one Docker host, which find each other by the same names and
    variables as on a cluster. That is enough to test the rendezvous and the
    program's distributed code, not to train faster: the nodes share the host's
    CPUs, memory and GPUs (each GPU node gets devices of its own when the
    machine's GPUs are counted). Use the kubernetes or argo target to run on
    several machines.""",
    """
train pretrain { image = "trainer:2.1"  nodes = 4  command = ["torchrun", "train.py"] }
$ aipc compile p.aip --target compose     # warning: 4 containers on one host
""",
)

TOO_MANY_GPUS = _code(
    "B150", "more GPUs at once than the machine has",
    """On one machine (`aipc compile --target compose --gpus N`, `aipc plan --gpus N`)
    each GPU stage gets GPUs of its own, so that stages that may run at the same time
    never share one. Stages may run at the same time unless one waits, directly or
    through others, for the other to finish; a serve stage never finishes. When such
    stages need more GPUs together than the machine has, compose would start them on
    shared GPUs: the message names them. Order them with `after`, ask for fewer GPUs,
    or use `aipc run`, which waits until a stage's GPUs are free.""",
    """
train a { image = "trainer:2.1"  resources { gpu = 4 } }
train b { image = "trainer:2.1"  resources { gpu = 4 } }
$ aipc compile p.aip --target compose --gpus 6     # error: a and b may run together and need 8
""",
)

DANGEROUS_HOST_PATH = _code(
    "W401", "a host path that hands the host to the container",
    """A `host` volume bind-mounts a path of the Docker host into the stage. Some
    paths give the container the host itself: the container engine's socket
    (`/var/run/docker.sock`, or a directory holding it) lets it start privileged
    containers, which undoes every other protection; `/`, `/etc`, `/proc`, `/sys`,
    `/root`, home directories and the credential directories in them (`~/.ssh`,
    `~/.aws`, `~/.kube`...) expose the host's configuration and its secrets.
    Mount only the directory the stage needs.""",
    """
volume engine { host = "/var/run/docker.sock" }
data build { image = "docker:27"  mount engine at "/var/run/docker.sock" }    # warning
""",
)

CREDENTIAL_IN_ENV = _code(
    "W402", "a credential written in plain text",
    """An `env` variable named like a credential (`*_PASSWORD`, `*_TOKEN`,
    `*_SECRET`, `*_KEY`, `API_KEY`...) holds a literal value: it is written into
    every compiled output (compose files, manifests, the Workflow) and into the
    file's history. Declare a `secret` with that key instead and list it in the
    stage's `secrets`: its value then comes from the environment or the cluster
    and never appears in any output.""",
    """
data load { image = "etl:1.0"  env = { DB_PASSWORD = "hunter2" } }        # warning
secret db { keys = ["DB_PASSWORD"] }
data load { image = "etl:1.0"  secrets = [db] }                          # fixed
""",
)

NO_STAGES = _code(
    "W403", "a pipeline without stages",
    """The file declares no stage, so every target gets nothing that runs: an empty
    compose file, no workloads, an Argo Workflow with no tasks. Declare a stage
    (`data`, `train`, `eval` or `serve`). A file that declares templates and no
    stage is a library for `import`, and is not warned about.""",
    """
pipeline "nightly" { namespace = "ml" }      # warning: no stages
data prepare { image = "python:3.11-slim" }  # fixed
""",
)
