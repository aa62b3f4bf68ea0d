"""The docker-compose backend: snapshots of the examples, the output read back as
YAML, both validators (docker-compose 1.29 and the compose-spec schema), and the
`aipc compile` command around it."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from aipc.backends import compose, docker, get_backend
from aipc.backends.writer import to_yaml
from aipc.cli import main
from aipc.compiler import check_source
from aipc.diagnostics import Source
from tests.helpers import EXAMPLES, ROOT, plain

# --------------------------------------------------------------------- helpers


def emit(text: str, params: dict | None = None, options: compose.Options | None = None):
    """The compose document of a program that checks, and the backend's diagnostics."""
    checked = check_source(text, "t.aip", params or {})
    assert checked.ir is not None, [f"{d.code} {d.message}" for d in checked.diagnostics]
    emitted = compose.emit(checked.ir, options)
    return yaml.safe_load(to_yaml(emitted.documents)), list(emitted.diagnostics)


def services(text: str, **kwargs) -> dict:
    return emit(text, **kwargs)[0]["services"]


def warnings_at(text: str) -> list[tuple[str, int, int, str]]:
    """Backend warnings as (code, line, column, source text at the span)."""
    _, diagnostics = emit(text)
    source = Source("t.aip", text)
    out = []
    for d in diagnostics:
        line, column = source.position(d.span.start)
        out.append((d.code, line, column, text[d.span.start:d.span.end]))
    return out


def compile_example(path: Path) -> str:
    checked = check_source(path.read_text(), str(path.relative_to(ROOT)))
    assert checked.ir is not None
    return to_yaml(compose.emit(checked.ir).documents)


def compose_config(docker_compose: str, directory: Path, text: str) -> subprocess.CompletedProcess:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "compose.yaml").write_text(text)
    # An empty environment: nothing the compose file needs may come from this one.
    return subprocess.run([docker_compose, "-f", str(directory / "compose.yaml"), "config", "-q"],
                          capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"]})


def compose_spec_errors(paths: list[Path]) -> str:
    """check-jsonschema's built-in compose-spec schema; '' when every file is valid."""
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         *map(str, paths)], capture_output=True, text=True, timeout=120)
    return "" if result.returncode == 0 else result.stdout + result.stderr


# A program that uses every construct, for the validators.
EVERYTHING = r'''
pipeline "everything" { labels = { team = "ml", "example.com/tier" = "gold" } }
param lr: float = 3e-4
volume data    { size = 1Gi }
volume shared  { claim = "team-datasets" }
volume local   { host = "scratch" }
volume colon   { host = "/mnt/a:b" }
volume tmp     { size = 1Gi  access = rwx  class = "fast" }
secret token   { keys = ["API_TOKEN", "API_USER"] }
data prep {
  image = "busybox:1.36"
  script = """
    echo "$${HOME} costs $5" > /data/out
  """
  env = { PRICE = "$5", EMPTY = "", OCT = "0o17" }
  secrets = [token]
  mount data at "/data"
  mount local at "/scratch" readonly
  mount colon at "/colon"
  resources { cpu = 500m..1.5  memory = 100M..1Gi  disk = 10Gi }
  retries = 3
  timeout = 1h30m
}
train fit {
  image = "trainer:1.0"
  after = [prep]
  command = ["python", "-m", "fit", "--lr", "${lr}", "--true", "true"]
  workdir = "/work"
  mount data at "/data" readonly
  mount shared at "/datasets" readonly
  mount tmp at "/tmp"
  resources { gpu = 2  gpu_model = "H100-80GB"  shm = 1500M }
}
eval amd { image = "rocm:6.1"  after = [fit]  resources { gpu = 1  gpu_vendor = amd } }
eval intel { image = "oneapi:2024"  after = [fit]  resources { gpu = 1  gpu_vendor = intel } }
serve api {
  image = "api:1.0"
  after = [amd, intel]
  port = 8080
  replicas = 3
  health = "/health?probe=$x"
  labels = { team = "serving" }
}
serve ui { image = "ui:1.0"  after = [api]  port = 9000 }
serve edge { image = "edge:1.0"  after = [ui]  port = 9100  replicas = 2 }
'''


# ----------------------------------------------------------- examples: snapshots


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_snapshot(path: Path, yaml_snapshot):
    assert compile_example(path) == yaml_snapshot


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_passes_docker_compose_129(path: Path, docker_compose, tmp_path):
    result = compose_config(docker_compose, tmp_path, compile_example(path))
    assert result.returncode == 0, result.stderr


def test_examples_and_every_construct_match_the_compose_spec(tmp_path):
    paths = []
    for path in EXAMPLES:
        paths.append(tmp_path / f"{path.stem}.yaml")
        paths[-1].write_text(compile_example(path))
    document, _ = emit(EVERYTHING, options=compose.Options(publish_address="::1"))
    paths.append(tmp_path / "everything.yaml")
    paths[-1].write_text(to_yaml([document]))
    assert compose_spec_errors(paths) == ""


def test_the_schema_check_does_reject_a_bad_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  a:\n    image: x:1\n    command: [python, 0.0003]\n")
    assert "command" in compose_spec_errors([bad])


def test_every_construct_passes_docker_compose_129(docker_compose, tmp_path):
    document, _ = emit(EVERYTHING, options=compose.Options(publish_address="127.0.0.1"))
    result = compose_config(docker_compose, tmp_path, to_yaml([document]))
    assert result.returncode == 0, result.stderr


def test_docker_compose_129_rejects_a_top_level_name_so_none_is_emitted(docker_compose, tmp_path):
    document, _ = emit(EVERYTHING)
    assert list(document) == ["services", "volumes"]
    result = compose_config(docker_compose, tmp_path, to_yaml([{"name": "everything", **document}]))
    assert result.returncode != 0 and "name" in result.stderr


def test_docker_compose_129_reads_values_back_unescaped(docker_compose, tmp_path):
    document, _ = emit(EVERYTHING)
    (tmp_path / "compose.yaml").write_text(to_yaml([document]))
    result = subprocess.run([docker_compose, "-f", str(tmp_path / "compose.yaml"), "config", "--no-interpolate"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    interpolated = subprocess.run([docker_compose, "-f", str(tmp_path / "compose.yaml"), "config"],
                                  capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"]})
    assert interpolated.returncode == 0, interpolated.stderr
    # No variable of the caller's leaked in: what was data is still there.
    assert "costs" in interpolated.stdout and "WARNING" not in interpolated.stderr


# ----------------------------------------------------------------- determinism


def test_output_is_byte_identical_across_runs_and_hash_seeds(tmp_path):
    example = ROOT / "examples" / "llm-finetune.aip"
    outputs = set()
    for seed in ("0", "1", "4242", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-m", "aipc", "compile", str(example), "--target", "compose",
                                 "-p", "epochs=5"], capture_output=True, env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        outputs.add(result.stdout)
    assert len(outputs) == 1


def test_keys_come_in_a_readable_fixed_order():
    service = services(EVERYTHING)["fit"]
    assert list(service)[:4] == ["image", "entrypoint", "command", "working_dir"]
    assert list(service) == ["image", "entrypoint", "command", "working_dir", "depends_on", "volumes", "deploy",
                             "shm_size", "restart", "read_only", "cap_drop", "security_opt", "labels"]
    assert list(services(EVERYTHING)["api"])[-10:] == ["ports", "networks", "healthcheck", "deploy", "restart",
                                                        "read_only", "tmpfs", "cap_drop", "security_opt", "labels"]
    assert list(services(EVERYTHING)) == ["prep", "fit", "amd", "intel", "api", "ui", "edge"]


# ------------------------------------------------------------- what runs, how


def test_command_replaces_the_entrypoint_and_script_runs_with_sh():
    svc = services(EVERYTHING)
    assert svc["fit"]["entrypoint"] == ["python"]
    assert svc["fit"]["command"] == ["-m", "fit", "--lr", "3e-4", "--true", "true"]
    assert svc["fit"]["working_dir"] == "/work"
    assert svc["prep"]["entrypoint"] == ["sh", "-c"]
    assert svc["prep"]["command"] == ['echo "$${HOME} costs $$5" > /data/out\n']


def test_a_serve_stage_answers_to_its_kubernetes_service_name():
    svc = services('pipeline "shop" { }\nserve web_api { image = "api:1.0"  port = 80 }\n'
                   'serve front { image = "ui:1.0"  port = 81  after = [web_api] }')
    assert svc["web_api"]["networks"] == {"default": {"aliases": ["shop-web-api"]}}
    assert svc["front"]["networks"] == {"default": {"aliases": ["shop-front"]}}


def test_a_stage_without_command_runs_the_image_as_built():
    svc = services('data a { image = "etl:1.0" }\ndata b { image = "etl:1.0"  command = ["run"] }')
    assert "entrypoint" not in svc["a"] and "command" not in svc["a"]
    assert svc["b"]["entrypoint"] == ["run"] and "command" not in svc["b"]


def test_parameter_overrides_reach_the_output():
    text = '''
param lr: float = 3e-4
param gpus: int = 1
param deadline: duration = 1h
train fit {
  image = "t:1"  command = ["fit", "--lr", "${lr}"]  timeout = "${deadline}"
  resources { gpu = "${gpus}" }
}
'''
    svc = services(text, params={"lr": "0.1", "gpus": "4"})["fit"]
    assert svc["command"] == ["--lr", "0.1"]
    assert svc["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 4
    _, diagnostics = emit(text, params={"deadline": "2h"})
    assert ["`timeout = 2h`" in d.message for d in diagnostics] == [True]


def test_dollars_are_escaped_so_user_text_stays_data():
    svc = services(EVERYTHING)
    assert "PRICE=$$5" in svc["prep"]["environment"]
    assert svc["api"]["healthcheck"]["test"][1].count("/health?probe=$$x") == 4


def test_values_yaml_12_would_retype_stay_strings():
    svc = services(EVERYTHING)
    assert "OCT=0o17" in svc["prep"]["environment"]
    text = to_yaml([{"a": ["3e-4", "0o17", "true", "null", "1e3"]}])
    assert text == "a:\n- '3e-4'\n- '0o17'\n- 'true'\n- 'null'\n- '1e3'\n"


# ------------------------------------------------------------------- ordering


def test_depends_on_conditions_follow_the_kind_of_dependency():
    svc = services(EVERYTHING)
    assert svc["fit"]["depends_on"] == {"prep": {"condition": "service_completed_successfully"}}
    assert svc["api"]["depends_on"] == {"amd": {"condition": "service_completed_successfully"},
                                        "intel": {"condition": "service_completed_successfully"}}
    assert svc["ui"]["depends_on"] == {"api": {"condition": "service_healthy"}}  # api has health
    assert svc["edge"]["depends_on"] == {"ui": {"condition": "service_started"}}  # ui has none
    assert "depends_on" not in svc["prep"]


def test_restart_follows_retries_and_services_stay_up():
    svc = services(EVERYTHING)
    assert svc["prep"]["restart"] == "on-failure:3"
    assert svc["fit"]["restart"] == "no"
    assert svc["api"]["restart"] == "unless-stopped"


# -------------------------------------------------------------------- storage


def test_volumes_named_bound_and_external():
    document, _ = emit(EVERYTHING)
    svc = document["services"]
    assert svc["prep"]["volumes"] == ["data:/data", "./scratch:/scratch:ro",
                                      {"type": "bind", "source": "/mnt/a:b", "target": "/colon"}]
    assert svc["fit"]["volumes"] == ["data:/data:ro", "shared:/datasets:ro", "tmp:/tmp"]
    assert document["volumes"]["shared"] == {"external": True, "name": "team-datasets"}
    assert document["volumes"]["data"]["labels"] == {
        "app.kubernetes.io/name": "data", "app.kubernetes.io/part-of": "everything",
        "app.kubernetes.io/managed-by": "aipc", "team": "ml", "example.com/tier": "gold"}
    assert sorted(document["volumes"]) == ["data", "shared", "tmp"]  # host volumes are bind mounts


def test_a_rox_volume_is_mounted_read_only_as_under_aipc_run():
    svc = services('''
volume models { size = 1Gi  access = rox }
volume shared { claim = "team-models"  access = rox }
data a { image = "e:1"  mount models at "/models"  mount shared at "/c:d" }
''')
    assert svc["a"]["volumes"] == ["models:/models:ro",
                                   {"type": "volume", "source": "shared", "target": "/c:d", "read_only": True}]


def test_absolute_and_relative_host_paths():
    assert compose.host_source("/srv/data") == "/srv/data"
    assert compose.host_source("./data") == "./data"
    assert compose.host_source("../data") == "../data"
    assert compose.host_source("~/data") == "~/data"
    assert compose.host_source("data/raw") == "./data/raw"
    # written from where compose resolves them: the compose file's directory, seen from the .aip file
    assert compose.host_source("./data", "..") == "../data"
    assert compose.host_source("data", "../proj") == "../proj/data"
    assert compose.host_source("../shared", "proj") == "./shared"
    assert compose.host_source(".", "..") == ".."
    assert compose.host_source("/srv/data", "..") == "/srv/data"


def test_compose_finds_host_folders_where_aipc_run_does(docker_compose, tmp_path, monkeypatch):
    """`-o out/` and a file elsewhere: docker-compose resolves a host path against
    the compose file (or, read from stdin, the current directory); aipc writes it so
    that it names the folder next to the .aip file, as `aipc run` mounts it."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "p.aip").write_text('volume raw { host = "./data" }\n'
                                   'data a { image = "busybox:1.36"  mount raw at "/raw" readonly }\n')
    monkeypatch.chdir(tmp_path)
    assert main(["compile", "proj/p.aip", "-t", "compose", "-o", "proj/out/"]) == 0
    assert main(["compile", "proj/p.aip", "-t", "compose", "-o", "elsewhere.yml"]) == 0

    def bind_source(compose_file: Path, cwd: Path) -> str:
        config = subprocess.run([docker_compose, "-f", str(compose_file), "config"], cwd=cwd,
                                capture_output=True, text=True, check=True).stdout
        return yaml.safe_load(config)["services"]["a"]["volumes"][0].split(":")[0]

    assert yaml.safe_load((project / "out" / "compose.yaml").read_text())["services"]["a"]["volumes"] == [
        "../data:/raw:ro"]
    assert bind_source(project / "out" / "compose.yaml", tmp_path) == str(project / "data")
    assert bind_source(tmp_path / "elsewhere.yml", tmp_path) == str(project / "data")


def test_no_volumes_key_without_volumes():
    document, _ = emit('data a { image = "etl:1.0" }')
    assert list(document) == ["services"]


# ------------------------------------------------------------------ resources


def test_ranges_are_reservations_to_limits():
    resources = services(EVERYTHING)["prep"]["deploy"]["resources"]
    assert resources == {"limits": {"cpus": "1.5", "memory": "1g"},
                         "reservations": {"cpus": "0.5", "memory": "100000000b"}}


def test_a_single_value_is_both_reservation_and_limit():
    svc = services('data a { image = "e:1"  resources { cpu = 2  memory = 512Mi } }')["a"]
    assert svc["deploy"]["resources"] == {"limits": {"cpus": "2", "memory": "512m"},
                                          "reservations": {"cpus": "2", "memory": "512m"}}


def test_quantities_in_compose_units():
    assert [compose.compose_cpus(m) for m in (1, 250, 1000, 1500, 64000)] == ["0.001", "0.25", "1", "1.5", "64"]
    assert [compose.compose_bytes(b) for b in (2**30 * 640, 2**40, 2**20 * 1536, 2**10 * 3, 1000)] == [
        "640g", "1024g", "1536m", "3k", "1000b"]


def test_nvidia_and_amd_gpus_are_device_reservations():
    svc = services(EVERYTHING)
    assert svc["fit"]["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 2, "capabilities": ["gpu"]}]
    assert svc["amd"]["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "amd", "count": 1, "capabilities": ["gpu"]}]
    assert "devices" not in svc["fit"] and "devices" not in svc["amd"]


def test_intel_gpus_are_passed_through_with_a_warning():
    svc = services(EVERYTHING)["intel"]
    assert svc["devices"] == ["/dev/dri:/dev/dri"]
    assert "deploy" not in svc
    assert ("B101", 35, 64, "gpu = 1") in warnings_at(EVERYTHING)


def test_no_gpu_no_devices():
    svc = services('data a { image = "e:1"  resources { gpu = 0 } }')["a"]
    assert "deploy" not in svc and "devices" not in svc


def test_shm_size():
    assert services(EVERYTHING)["fit"]["shm_size"] == "1500000000b"
    assert services('data a { image = "e:1"  resources { shm = 16Gi } }')["a"]["shm_size"] == "16g"
    assert "shm_size" not in services(EVERYTHING)["prep"]


# ------------------------------------------------------------------- services


def test_ports_replicas_and_host_port_ranges():
    svc = services(EVERYTHING)
    assert svc["api"]["ports"] == ["127.0.0.1:8080-8082:8080"]
    assert svc["api"]["deploy"]["replicas"] == 3
    assert svc["ui"]["ports"] == ["127.0.0.1:9000:9000"]
    assert svc["ui"]["deploy"] == {"replicas": 1}
    assert "ports" not in svc["prep"] and "replicas" not in svc["prep"].get("deploy", {})


def test_publish_address():
    v4 = services(EVERYTHING, options=compose.Options(publish_address="0.0.0.0"))
    assert v4["api"]["ports"] == ["0.0.0.0:8080-8082:8080"]
    v6 = services(EVERYTHING, options=compose.Options(publish_address="::1"))
    assert v6["ui"]["ports"] == ["[::1]:9000:9000"]


def test_overlapping_host_ports_are_reported_with_both_places():
    text = '''serve a { image = "a:1"  port = 8081  replicas = 2 }
serve b { image = "b:1"  port = 8080  replicas = 3 }
serve c { image = "c:1"  port = 9000 }
serve d { image = "d:1"  port = 9000 }
'''
    _, diagnostics = emit(text)
    assert [(d.code, d.message) for d in diagnostics] == [
        ("B102", "the host ports of `b` (8080-8082) overlap those of `a` (8081-8082)"),
        ("B102", "the host ports of `d` (9000) overlap those of `c` (9000)"),
    ]
    source = Source("t.aip", text)
    assert source.position(diagnostics[0].span.start) == (2, 26)
    assert source.position(diagnostics[0].related[0].span.start) == (1, 26)
    assert text[diagnostics[0].span.start:diagnostics[0].span.end] == "port = 8080"


def test_replicas_beyond_the_last_port_are_reported():
    text = 'serve a { image = "a:1"  port = 65535  replicas = 2 }'
    document, diagnostics = emit(text)
    assert document["services"]["a"]["ports"] == ["127.0.0.1:65535:65535"]
    assert [d.code for d in diagnostics] == ["B102"]


def test_healthcheck_probes_the_health_path():
    health = services(EVERYTHING)["api"]["healthcheck"]
    assert health["test"][0] == "CMD-SHELL"
    assert "wget -q -O /dev/null 'http://127.0.0.1:8080/health?probe=$$x'" in health["test"][1]
    assert health["interval"] == "5s" and health["timeout"] == "4s"
    assert health["retries"] == 3 and health["start_period"] == "5m"
    assert "healthcheck" not in services(EVERYTHING)["ui"]


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the standard library's name
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def probe(port: int, path: str, tools: dict[str, str], tmp_path: Path) -> int:
    """Run the healthcheck of a service on `port` with only `tools` on PATH, as the
    container's shell would after compose turned `$$` back into `$`."""
    stage = check_source(f'serve s {{ image = "s:1"  port = {port}  health = "{path}" }}', "t.aip").ir.stages[0]
    script = compose.build_healthcheck(docker.health_check(stage.health))["test"][1].replace("$$", "$")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, target in tools.items():
        if not (bin_dir / name).exists():
            (bin_dir / name).symlink_to(target)
    return subprocess.run(["/bin/sh", "-c", script], env={"PATH": str(bin_dir), "http_proxy": "http://192.0.2.1:9"},
                          capture_output=True, timeout=30).returncode


def test_the_probe_works_with_python_only(http_server, tmp_path):
    """python:*-slim images have neither wget nor curl."""
    python = {"python3": sys.executable}
    assert probe(http_server, "/healthz", python, tmp_path) == 0
    assert probe(http_server, "/missing", python, tmp_path) != 0


def test_the_probe_works_with_busybox_wget(http_server, tmp_path):
    if not Path("/bin/busybox").exists():
        pytest.fail("/bin/busybox is missing: install busybox-static (scripts/test.sh does)")
    wget = {"wget": "/bin/busybox"}
    assert probe(http_server, "/healthz", wget, tmp_path) == 0
    assert probe(http_server, "/missing", wget, tmp_path) != 0


def test_the_probe_fails_when_nothing_answers(tmp_path):
    assert probe(9, "/healthz", {"python3": sys.executable}, tmp_path) != 0


# ---------------------------------------------------------- secrets, hardening


def test_secrets_are_passed_through_by_name_only():
    text = '''secret s3 { keys = ["AWS_KEY", "AWS_SECRET"] }
secret db { keys = ["DB_PASS", "AWS_KEY"] }
data a { image = "e:1"  env = { LOG = "info" }  secrets = [s3, db] }
'''
    svc = services(text)["a"]
    assert svc["environment"] == ["LOG=info", "AWS_KEY", "AWS_SECRET", "DB_PASS"]
    document, _ = emit(text)
    assert "secrets" not in document and "secrets" not in svc


def test_every_service_is_hardened():
    for name, svc in services(EVERYTHING).items():
        assert svc["cap_drop"] == ["ALL"], name
        assert svc["security_opt"] == ["no-new-privileges:true"], name
        assert svc["read_only"] is True, name
    svc = services(EVERYTHING)
    assert svc["prep"]["tmpfs"] == ["/tmp"]
    assert "tmpfs" not in svc["fit"]  # a volume is mounted at /tmp


def test_standard_and_user_labels():
    svc = services(EVERYTHING)
    assert svc["api"]["labels"] == {
        "app.kubernetes.io/name": "api",
        "app.kubernetes.io/part-of": "everything",
        "app.kubernetes.io/component": "serve",
        "app.kubernetes.io/managed-by": "aipc",
        "team": "serving",  # the stage's label wins over the pipeline's
        "example.com/tier": "gold",
    }
    assert svc["fit"]["labels"]["app.kubernetes.io/component"] == "train"


# ------------------------------------------------------------------- warnings


def test_what_compose_cannot_express_is_a_warning_at_the_attribute():
    assert warnings_at(EVERYTHING) == [
        ("B101", 20, 52, "disk = 10Gi"),
        ("B101", 22, 3, "timeout = 1h30m"),
        ("B101", 32, 24, 'gpu_model = "H100-80GB"'),
        ("B101", 35, 64, "gpu = 1"),
    ]


def test_the_example_warnings():
    text = (ROOT / "examples" / "fraud-detection.aip").read_text()
    assert [(code, line, column) for code, line, column, _ in warnings_at(text)] == [
        ("B101", 27, 3), ("B101", 52, 5), ("B101", 55, 3)]


def test_warnings_are_not_errors():
    _, diagnostics = emit(EVERYTHING)
    assert diagnostics and not any(d.is_error for d in diagnostics)


# ------------------------------------------------------------- aipc compile


GOOD = 'param n: int = 1\ndata a { image = "e:1"  command = ["run", "${n}"]  timeout = 1h }\n'
BAD = 'data a { image = "e:1"  after = [nope] }\n'


def run_cli(*argv: str) -> int:
    return main(list(argv))


def test_compile_writes_yaml_to_stdout_and_diagnostics_to_stderr(tmp_path, capsys):
    (tmp_path / "p.aip").write_text(GOOD)
    assert run_cli("compile", str(tmp_path / "p.aip"), "--target", "compose", "-p", "n=7") == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)["services"]["a"]["command"] == ["7"]
    assert "warning[B101]" in err and "p.aip:2:" in err


def test_compile_alias_and_json_diagnostics(tmp_path, capsys):
    (tmp_path / "p.aip").write_text(GOOD)
    assert run_cli("compile", str(tmp_path / "p.aip"), "-t", "docker-compose", "--format", "json") == 0
    out, err = capsys.readouterr()
    assert "services:" in out
    assert '"code": "B101"' in err and '"line": 2' in err


def test_compile_to_a_file_and_into_a_directory(tmp_path, capsys):
    (tmp_path / "p.aip").write_text(GOOD)
    assert run_cli("compile", str(tmp_path / "p.aip"), "--target", "compose", "-o", str(tmp_path / "x.yaml")) == 0
    assert "services:" in (tmp_path / "x.yaml").read_text()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert run_cli("compile", str(tmp_path / "p.aip"), "--target", "compose", "-o", str(out_dir)) == 0
    assert sorted(os.listdir(out_dir)) == ["compose.yaml"]
    assert capsys.readouterr().out == ""


def test_a_failed_compile_leaves_no_file(tmp_path, capsys):
    (tmp_path / "p.aip").write_text(BAD)
    assert run_cli("compile", str(tmp_path / "p.aip"), "--target", "compose", "-o", str(tmp_path / "x.yaml")) == 1
    assert sorted(os.listdir(tmp_path)) == ["p.aip"]
    assert "error[E102]" in capsys.readouterr().err


def test_a_failed_compile_does_not_replace_an_existing_file(tmp_path, capsys):
    (tmp_path / "p.aip").write_text(GOOD)
    (tmp_path / "x.yaml").write_text("previous\n")
    assert run_cli("compile", str(tmp_path / "p.aip"), "--target", "compose", "-o", str(tmp_path / "x.yaml"),
                   "-p", "n=not-a-number") == 1
    assert (tmp_path / "x.yaml").read_text() == "previous\n"
    (tmp_path / "p.aip").write_text(BAD)
    assert run_cli("compile", str(tmp_path / "p.aip"), "--target", "compose", "-o", str(tmp_path / "x.yaml")) == 1
    assert (tmp_path / "x.yaml").read_text() == "previous\n"
    assert sorted(os.listdir(tmp_path)) == ["p.aip", "x.yaml"]
    (tmp_path / "p.aip").write_text(GOOD)
    assert run_cli("compile", str(tmp_path / "p.aip"), "--target", "compose", "-o", str(tmp_path / "x.yaml")) == 0
    assert "services:" in (tmp_path / "x.yaml").read_text()
    assert sorted(os.listdir(tmp_path)) == ["p.aip", "x.yaml"]


def test_an_unwritable_output_is_an_error_not_a_traceback(tmp_path, capsys):
    (tmp_path / "p.aip").write_text(GOOD)
    missing = tmp_path / "no" / "such" / "dir" / "x.yaml"
    assert run_cli("compile", str(tmp_path / "p.aip"), "--target", "compose", "-o", str(missing)) == 1
    assert "cannot write" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["p.aip"]


def test_usage_errors(tmp_path, capsys):
    (tmp_path / "p.aip").write_text(GOOD)
    assert run_cli("compile", str(tmp_path / "p.aip"), "--target", "nomad") == 2
    assert "unknown target `nomad`" in capsys.readouterr().err
    for option in ("--publish-address", "--compose-publish-address"):
        for address in ("local-host", "127.0.0.300", "0.0.0.0:80", ""):
            with pytest.raises(SystemExit) as exit_info:
                run_cli("compile", str(tmp_path / "p.aip"), "--target", "compose", option, address)
            assert exit_info.value.code == 2
            assert "is not an IP address" in capsys.readouterr().err


@pytest.mark.parametrize(("arguments", "published"), [
    ((), "127.0.0.1:80:80"),  # the default, as `aipc run`'s (it was every interface)
    (("--publish-address", "0.0.0.0"), "0.0.0.0:80:80"),
    (("--publish-address", "localhost"), "127.0.0.1:80:80"),
    (("--publish-address", "[::1]"), "[::1]:80:80"),
    (("--compose-publish-address", "192.0.2.7"), "192.0.2.7:80:80"),  # the option's old name still works
])
def test_publish_address_from_the_command_line(tmp_path, capsys, arguments, published):
    (tmp_path / "p.aip").write_text('serve s { image = "s:1"  port = 80 }\n')
    assert run_cli("compile", str(tmp_path / "p.aip"), "--target", "compose", *arguments) == 0
    assert yaml.safe_load(capsys.readouterr().out)["services"]["s"]["ports"] == [published]


def test_the_backend_is_registered():
    assert get_backend("compose") is compose and get_backend("docker-compose") is compose
    assert compose.default_filename(check_source(GOOD, "t.aip").ir) == "compose.yaml"


# ------------------------------------------------------------ max_parallel (issue 18)


@pytest.mark.parametrize("count", [1, 2, 5, 7])
@pytest.mark.parametrize("limit", [1, 2, 3, 8])
def test_max_parallel_makes_chains_that_never_run_more_than_it_at_once(count, limit):
    """Each instance waits for the one `limit` places before it: the instances fall
    into min(limit, count) chains, each run one at a time, so no more than `limit`
    ever run together (a set of instances that may run together takes at most one
    of each chain)."""
    values = ", ".join(str(i) for i in range(count))
    found = services(f'train t {{ image = "x:1"  matrix {{ n = [{values}] }}  max_parallel = {limit} }}')
    assert list(found) == [f"t-{i}" for i in range(count)]
    chain_of: dict[str, int] = {}
    for index, name in enumerate(found):
        waits = list(found[name].get("depends_on", {}))
        if index < limit:
            assert waits == []
            chain_of[name] = index
        else:
            assert waits == [f"t-{index - limit}"]
            assert found[name]["depends_on"][waits[0]] == {"condition": "service_completed_successfully"}
            chain_of[name] = chain_of[waits[0]]
    assert len(set(chain_of.values())) == min(limit, count)
