"""What a stage becomes as Docker container options (no engine needed), names and
labels, and the summary a run prints."""

from __future__ import annotations

import io
import os
import re

import pytest

from aipc.backends.docker import container_specs, node_service, node_spec
from aipc.diagnostics import Diagnostics
from aipc.runner.docker_driver import container_options, used_volumes
from aipc.runner.report import Ending, LiveReporter, PlainReporter, failure_lines, outcome_line, summary_text
from aipc.runner.scheduler import RunResult, StageResult, Status
from aipc.runner.selection import LABEL_FILE, LABEL_PIPELINE, LABEL_RUN, LABEL_STAGE, RunNames, missing_secrets
from aipc.compiler import ir, units
from tests.helpers import EXAMPLES, compile_example, compile_ok

SOURCE = """
pipeline "fraud" { image = "busybox:1.36" labels = { team = "risk" } }
volume raw { size = 10Gi }
volume models { size = 1Gi access = rox }
volume local { host = "./data" }
volume shared { claim = "existing-volume" }
secret s3 { keys = ["AWS_KEY", "AWS_SECRET"] }

data ingest {
  command = ["python", "-m", "etl", "--out", "/raw"]
  workdir = "/work"
  env = { LOG_LEVEL = "info" }
  secrets = [s3]
  mount raw at "/raw"
  mount local at "/local" readonly
  mount shared at "/shared"
  labels = { tier = "etl" }
  resources { cpu = 1..2  memory = 1Gi..2Gi  shm = 64Mi }
}
train model {
  after = [ingest]
  script = "echo training"
  mount raw at "/raw" readonly
  mount models at "/models"
  resources { gpu = 2 }
}
eval rocm { after = [model] command = ["eval"] resources { gpu = 1 gpu_vendor = amd } }
eval arc { after = [model] command = ["eval"] resources { gpu = 1 gpu_vendor = intel } }
serve api { after = [rocm] command = ["serve"] port = 8080 health = "/healthz" }
serve db { command = ["db"] port = 5432 expose = 15432 ports = { admin = 5050 } replicas = 2
           health { command = ["pg_isready", "-U", "$USER"]  start = 1m  interval = 2s  timeout = 1s  failures = 5 } }
serve many { after = [rocm] command = ["serve"] port = 9000 replicas = 3 }
"""


def options_of(pipeline: ir.Pipeline, stage: str, names: RunNames, number: int, rank: int | None = None,
               **kwargs) -> dict:
    specs = container_specs(pipeline, pipeline.stages, Diagnostics(pipeline.file), "`aipc run`")
    spec = specs[stage] if rank is None else node_spec(pipeline, pipeline.stage(stage), specs[stage], rank)
    return container_options(pipeline.stage(stage), spec, names, number, rank=rank, **kwargs)


def build(stage: str, network: str | None = "net", number: int = 1):
    pipeline = compile_ok(SOURCE, path="/srv/pipelines/fraud.aip")
    names = RunNames.new(pipeline, "/srv/pipelines/fraud.aip", run_id="abcd1234")
    options = options_of(pipeline, stage, names, number,
                         environ={"AWS_KEY": "k", "AWS_SECRET": "s", "UNRELATED": "x"},
                         base_dir="/srv/pipelines", network=network)
    return pipeline, names, options


def test_every_container_is_hardened():
    for stage in ("ingest", "model", "api"):
        _, _, options = build(stage)
        assert options["cap_drop"] == ["ALL"] and "cap_add" not in options and "privileged" not in options
        assert options["security_opt"] == ["no-new-privileges:true"]
        assert options["read_only"] is True
        assert options["user"] == "65532:65532" and options["group_add"] == ["65532"]
        assert options["pids_limit"] == 4096
        assert options["environment"]["HOME"] == "/tmp" and options["environment"]["USER"] == "nonroot"
        assert options["init"] is True
    assert build("ingest")[2]["tmpfs"] == {"/tmp": "size=2g,exec"}  # its memory limit
    assert build("api")[2]["tmpfs"] == {"/tmp": "size=2g,exec"}  # the default limit


def test_command_replaces_the_entrypoint_and_script_runs_with_sh():
    _, _, ingest = build("ingest")
    assert ingest["entrypoint"] == ["python"] and ingest["command"] == ["-m", "etl", "--out", "/raw"]
    assert ingest["working_dir"] == "/work"
    _, _, model = build("model")
    assert model["entrypoint"] == ["sh", "-c"] and model["command"] == ["echo training"]
    assert "working_dir" not in model


def test_env_and_secrets_from_the_callers_environment():
    _, _, options = build("ingest")
    assert options["environment"] == {"LOG_LEVEL": "info", "HOME": "/tmp", "USER": "nonroot", "AWS_KEY": "k",
                                      "AWS_SECRET": "s"}
    pipeline = compile_ok('''
    secret s3 { keys = ["AWS_KEY", "AWS_SECRET"] }
    data a { image = "busybox:1.36" command = ["a"] secrets = [s3] env = { LOG = "debug" } }
    ''')
    options = options_of(pipeline, "a", RunNames.new(pipeline, "p.aip"), 1,
                         environ={"AWS_KEY": "k", "AWS_SECRET": "s"}, base_dir=".", network=None)
    # (an `env` key that a listed secret also has is an error, E402: nothing to choose between)
    assert options["environment"] == {"LOG": "debug", "HOME": "/tmp", "USER": "nonroot", "AWS_KEY": "k", "AWS_SECRET": "s"}
    assert missing_secrets(pipeline, ["a"], {"AWS_KEY": "k"}) == ("AWS_SECRET",)


def test_resources_become_limits_and_reservations():
    _, _, options = build("ingest")
    assert options["nano_cpus"] == 2_000_000_000
    assert options["cpu_shares"] == 1024
    assert options["mem_limit"] == 2 * 1024**3
    assert options["mem_reservation"] == 1024**3
    assert options["shm_size"] == 64 * 1024**2


def test_gpus_are_device_requests_or_device_nodes():
    _, _, model = build("model")
    [request] = model["device_requests"]
    assert request["Driver"] == "nvidia" and request["Count"] == 2 and request["Capabilities"] == [["gpu"]]
    _, _, rocm = build("rocm")
    [request] = rocm["device_requests"]
    assert request["Driver"] == "amd" and request["Count"] == 1
    _, _, arc = build("arc")
    assert arc["devices"] == ["/dev/dri:/dev/dri:rwm"] and "device_requests" not in arc


def test_mounts_named_volumes_binds_and_claims():
    pipeline, names, ingest = build("ingest")
    mounts = {mount["Target"]: mount for mount in ingest["mounts"]}
    assert mounts["/raw"]["Type"] == "volume" and mounts["/raw"]["Source"] == names.volume(pipeline.volumes[2])
    assert mounts["/raw"]["Source"].startswith("aipc-fraud-") and mounts["/raw"]["Source"].endswith("-raw")
    assert mounts["/raw"]["ReadOnly"] is False
    assert mounts["/local"] == {**mounts["/local"], "Type": "bind", "Source": "/srv/pipelines/data", "ReadOnly": True}
    assert mounts["/shared"]["Source"] == "existing-volume"
    _, _, model = build("model")
    mounts = {mount["Target"]: mount for mount in model["mounts"]}
    assert mounts["/raw"]["ReadOnly"] is True
    assert mounts["/models"]["ReadOnly"] is True  # an rox volume is mounted read-only
    assert [volume.name for volume in used_volumes([pipeline.stage("ingest"), pipeline.stage("model")])] == [
        "local", "models", "raw", "shared"]


def test_labels_let_down_and_ctrl_c_find_the_containers():
    _, names, options = build("ingest")
    labels = options["labels"]
    assert labels[LABEL_FILE] == os.path.realpath("/srv/pipelines/fraud.aip")
    assert labels[LABEL_RUN] == "abcd1234" and labels[LABEL_STAGE] == "ingest"
    assert labels[LABEL_PIPELINE] == names.key == "fraud"  # the pipeline, not the file it was run from
    assert labels["app.kubernetes.io/part-of"] == "fraud"
    assert labels["app.kubernetes.io/component"] == "data"
    assert labels["app.kubernetes.io/managed-by"] == "aipc"
    assert labels["team"] == "risk" and labels["tier"] == "etl"
    assert options["name"] == "aipc-fraud-ingest-abcd1234-1"


def test_a_run_and_its_volumes_belong_to_the_pipeline_not_to_the_file():
    pipeline = compile_ok(SOURCE)
    here = RunNames.new(pipeline, "/a/fraud.aip")
    renamed = RunNames.new(pipeline, "/b/renamed.aip")
    raw = pipeline.volumes[2]
    assert raw.name == "raw"
    assert here.volume(raw) == renamed.volume(raw) == "aipc-fraud-raw"
    assert here.key == renamed.key == "fraud"
    assert here.run_id != RunNames.new(pipeline, "/a/fraud.aip").run_id
    # The namespace of the project is part of the pipeline: another namespace, other volumes and labels.
    elsewhere = compile_ok(SOURCE.replace('pipeline "fraud" {', 'pipeline "fraud" { namespace = "team-b"'))
    there = RunNames.new(elsewhere, "/a/fraud.aip")
    assert there.key == "team-b/fraud" and there.volume(raw) == "aipc-team-b-fraud-raw"
    assert there.container("ingest", 1).startswith("aipc-team-b-fraud-ingest-")


def test_services_publish_their_port_and_join_the_run_network():
    _, _, api = build("api")
    assert api["ports"] == {"8080/tcp": ("127.0.0.1", 8080)}
    assert api["network"] == "net"
    # its own name, and its Service's name on Kubernetes: <pipeline>-<stage>
    assert api["networking_config"]["net"]["Aliases"] == ["api", "fraud-api"]
    _, _, many = build("many", number=2)
    assert many["ports"] == {"9000/tcp": ("127.0.0.1", 9001)}  # replica n: host port PORT+n-1
    assert many["name"].endswith("-2")
    _, _, batch = build("ingest", network=None)
    assert "ports" not in batch and "network" not in batch
    # `port` published from `expose` up, each of `ports` from its own number up
    _, _, db = build("db", number=2)
    assert db["ports"] == {"5432/tcp": ("127.0.0.1", 15433), "5050/tcp": ("127.0.0.1", 5051)}


def test_services_get_the_health_check_compose_writes():
    _, _, db = build("db")
    assert db["healthcheck"] == {"Test": ["CMD", "pg_isready", "-U", "$USER"], "Interval": 2 * 10**9,
                                 "Timeout": 10**9, "Retries": 5, "StartPeriod": 60 * 10**9}
    _, _, api = build("api")
    assert api["healthcheck"]["Test"][0] == "CMD-SHELL" and "http://127.0.0.1:8080/healthz" in api["healthcheck"]["Test"][1]
    _, _, many = build("many")
    assert "healthcheck" not in many  # none: started once it still runs a moment later


def result(name, status, duration=None, exit_code=None, attempts=1, max_attempts=1, message=None):
    stage = StageResult(name, ir.StageKind.DATA, status, attempts, max_attempts, exit_code, message=message)
    if duration is not None:
        stage.started, stage.ended = 100.0, 100.0 + duration
    return stage


def test_summary_table_and_outcome():
    run = RunResult([
        result("ingest", Status.SUCCEEDED, 2.04, 0),
        result("train", Status.FAILED, 75, 3, 2, 2, message="exited with code 3"),
        result("evaluate", Status.SKIPPED, attempts=0),
    ])
    assert summary_text(run) == (
        "stage     status     duration  exit code  attempts\n"
        "--------  ---------  --------  ---------  --------\n"
        "ingest    succeeded  2.0s      0          1/1\n"
        "train     failed     1m15s     3          2/2\n"
        "evaluate  skipped    -         -          -\n"
    )
    stream = io.StringIO()
    ending = Ending(77.0, {"train": ["epoch 2", "Traceback (most recent call last):", "ValueError: nan loss"]},
                    lambda stage: f"aipc run p.aip --from {stage}")
    PlainReporter(["ingest", "train", "evaluate"], stream).summary(run, ending)
    assert stream.getvalue().endswith(
        "evaluate  skipped    -         -          -\n"
        "\n"
        "the last lines of `train`:\n"
        "  epoch 2\n"
        "  Traceback (most recent call last):\n"
        "  ValueError: nan loss\n"
        "re-run from it: aipc run p.aip --from train\n"
        "run failed: stage `train` failed (exited with code 3); 1 of 3 stages done in 1m17s\n")


def test_the_outcome_counts_what_is_done_and_a_service_has_no_exit_code():
    serving = result("api", Status.SERVING, 3.0)
    serving.kind = ir.StageKind.SERVE
    run = RunResult([result("prep", Status.SUCCEEDED, 1.0, 0), serving])
    assert outcome_line(run, 4.25) == "run succeeded: 2 of 2 stages done in 4.2s"
    assert summary_text(run).splitlines()[3].split()[:4] == ["api", "serving", "3.0s", "-"]
    assert outcome_line(RunResult([result("one", Status.SUCCEEDED, 1.0, 0)]), 1.0) == (
        "run succeeded: 1 of 1 stage done in 1.0s")
    stopped = RunResult([result("one", Status.CANCELLED)], interrupted=True)
    assert outcome_line(stopped, 2.0) == ("run interrupted: its containers were stopped and removed; "
                                          "0 of 1 stage done in 2.0s")
    failed = RunResult([result("one", Status.FAILED, 1.0, 1)])
    assert failure_lines(failed, Ending(1.0)) == ["`one` printed nothing"]


def test_plain_log_lines_carry_an_aligned_stage_prefix():
    stream = io.StringIO()
    reporter = PlainReporter(["ingest", "train"], stream)
    reporter.log("train", "epoch 1")
    reporter.log("ingest#2", "retrying")
    reporter.stage_changed(result("train", Status.RUNNING, attempts=2, max_attempts=3))
    assert stream.getvalue() == ("train  | epoch 1\n"
                                 "ingest#2 | retrying\n"
                                 "aipc: train: running (attempt 2 of 3)\n")


def test_live_view_renders_a_status_table_and_the_summary_on_a_terminal():
    from rich.console import Console

    stream = io.StringIO()
    reporter = LiveReporter(["ingest", "train"], Console(file=stream, force_terminal=True, width=100))
    stages = [result("ingest", Status.SUCCEEDED, 1.0, 0), result("train", Status.RUNNING)]
    stages[1].started = 0.0
    reporter.start(stages)
    reporter.log("train", "epoch [1/3]")  # output that looks like markup is printed as is
    stages[1].status, stages[1].exit_code, stages[1].message = Status.FAILED, 1, "device [[gpu]] missing"
    reporter.stage_changed(stages[1])
    reporter.summary(RunResult(stages), Ending(2.0, {"train": ["[red]not markup[/]"]}, lambda s: f"rerun {s}"))
    text = stream.getvalue()
    assert "train  | epoch [1/3]" in text
    assert "train: failed: device [[gpu]] missing" in text
    assert "run failed: stage `train` failed (device [[gpu]] missing); 1 of 2 stages done in 2.0s" in text
    assert "  [red]not markup[/]" in text and "re-run from it: rerun train" in text
    assert "succeeded" in text and "exit code" in text


# ----------------------------------------------- one container for compose and `aipc run`


def unescaped(value):
    """Compose data as the container gets it (`$$` is a `$`)."""
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, list):
        return [unescaped(item) for item in value]
    if isinstance(value, dict):
        return {key: unescaped(item) for key, item in value.items()}
    return value


def compose_mounts(service: dict) -> dict[str, bool]:
    """Mount path -> read-only, from a service's short or long volume syntax."""
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            out[volume["target"]] = volume.get("read_only", False)
        else:
            parts = volume.split(":")
            out[parts[1]] = len(parts) > 2 and "ro" in parts[2].split(",")
    return out


@pytest.mark.parametrize("path", [*EXAMPLES, None], ids=lambda p: p.stem if p else "this-file")
def test_compose_and_aipc_run_make_the_same_container(path):
    from aipc.backends import compose

    pipeline = compile_example(path) if path else compile_ok(SOURCE, path="/srv/pipelines/p.aip")
    services = compose.emit(pipeline).documents[0]["services"]
    names = RunNames.new(pipeline, "/srv/pipelines/p.aip", run_id="abcd1234")
    environ = {key: "from-caller" for stage in pipeline.stages for secret in stage.secrets for key in secret.keys}
    environ.update({key.key: "from-caller" for stage in pipeline.stages for _, key in stage.secret_env})
    containers = [(stage, rank) for stage in pipeline.stages
                  for rank in (range(stage.nodes) if stage.nodes is not None else [None])]  # each node of a group
    for stage, rank in containers:
        service = unescaped(services[stage.name if rank is None else node_service(stage, rank)])
        options = options_of(pipeline, stage.name, names, 1, rank=rank, environ=environ, base_dir="/srv/pipelines",
                             network="net")
        assert options.get("hostname") == service.get("hostname")
        if rank is not None:
            assert set(service["networks"]["default"]["aliases"]) <= set(
                options["networking_config"]["net"]["Aliases"])
        assert options["image"] == service["image"]
        assert options.get("entrypoint") == service.get("entrypoint")
        assert options.get("command", []) == service.get("command", [])
        assert options.get("working_dir") == service.get("working_dir")
        environment = dict(item.partition("=")[::2] if "=" in item else (item, "from-caller")
                           for item in service.get("environment", []))
        # `NAME=${KEY}`: compose fills in the caller's KEY, as `aipc run` does
        environment = {name: environ[value[2:-1]] if re.fullmatch(r"\$\{\w+\}", value) else value
                       for name, value in environment.items()}
        assert options["environment"] == environment
        assert {m["Target"]: m["ReadOnly"] for m in options["mounts"]} == compose_mounts(service)
        assert (options["read_only"], [f"{path}:{o}" for path, o in options.get("tmpfs", {}).items()],
                options["cap_drop"], options.get("cap_add", []), options.get("privileged", False),
                options.get("security_opt", []), options["user"], options["group_add"], options["pids_limit"]) == (
            service["read_only"], service.get("tmpfs", []), service["cap_drop"], service.get("cap_add", []),
            service.get("privileged", False), service.get("security_opt", []), service["user"], service["group_add"],
            service["pids_limit"])
        assert service["labels"].items() <= options["labels"].items()
        assert ("shm_size" in options) == ("shm_size" in service)
        reserved = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        assert [(r["Driver"], r["Count"]) for r in options.get("device_requests", [])] == [
            (d["driver"], d["count"]) for d in reserved]
        assert [d.rsplit(":", 1)[0] for d in options.get("devices", [])] == service.get("devices", [])
        published = {}
        for item in service.get("ports", []):
            address, host, port = item.rsplit(":", 2)
            published[f"{port}/tcp"] = (address, int(host.split("-")[0]))
        assert options.get("ports", {}) == published
        if "ports" in service:
            assert set(service["networks"]["default"]["aliases"]) <= set(
                options["networking_config"]["net"]["Aliases"])
        check = service.get("healthcheck")
        assert ("healthcheck" in options) == (check is not None)
        if check is not None:
            second = 1_000_000_000
            assert options["healthcheck"] == {
                "Test": check["test"], "Interval": units.parse(units.Kind.DURATION, check["interval"]) * second,
                "Timeout": units.parse(units.Kind.DURATION, check["timeout"]) * second,
                "Retries": check["retries"],
                "StartPeriod": units.parse(units.Kind.DURATION, check["start_period"]) * second}


def test_what_docker_cannot_express_is_the_same_warning_under_aipc_run_and_compose():
    from aipc.backends import compose

    pipeline = compile_ok('''
data a { image = "e:1"  timeout = 1h  resources { gpu = 1  gpu_model = "H100-80GB"  disk = 10Gi } }
data b { image = "e:1"  resources { gpu = 2  gpu_vendor = intel } }
''')
    sink = Diagnostics(pipeline.file)
    container_specs(pipeline, pipeline.stages, sink, "`aipc run`")
    run = [(d.code, d.span) for d in sink.sorted()]
    composed = [(d.code, d.span) for d in compose.emit(pipeline).diagnostics
                if d.span != pipeline.stage("a").span_of("timeout")]  # compose has no deadline; `aipc run` has
    assert run == composed and len(run) == 3
    assert all("`aipc run` cannot" in d.message for d in sink.sorted())


def test_the_engines_refusals_say_what_to_do():
    import docker.errors

    from aipc.runner.docker_driver import explain_start_error

    def refusal(text: str) -> Exception:
        return docker.errors.APIError("500 Server Error", explanation=text)

    pipeline = compile_ok(SOURCE)
    specs = container_specs(pipeline, pipeline.stages, Diagnostics(pipeline.file), "`aipc run`")
    nvidia = explain_start_error(refusal('could not select device driver "nvidia" with capabilities: [[gpu]]'),
                                 specs["model"])
    assert nvidia.startswith('could not select device driver "nvidia" with capabilities: [[gpu]]; ')
    assert "install the NVIDIA Container Toolkit" in nvidia and "nvidia-ctk runtime configure" in nvidia
    amd = explain_start_error(refusal('could not select device driver "amd" with capabilities: [[gpu]]'),
                              specs["rocm"])
    assert "AMD Container Toolkit (Docker Engine 28.3 or later)" in amd
    taken = explain_start_error(refusal("driver failed programming external connectivity: Bind for "
                                        "127.0.0.1:9001 failed: port is already allocated"), specs["many"])
    assert taken.startswith("a host port of 9000-9002 is in use by another program on this machine (")
    assert explain_start_error(refusal("no such image"), specs["api"]) == "no such image"
