"""What the Kubernetes and Argo tests share: compiling programs, reading the YAML
back, and the external checkers (checkov in its own virtual environment)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Callable

import pytest
import yaml

from aipc.backends import get_backend
from aipc.backends.writer import to_yaml
from aipc.compiler import check_source, ir

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.aip"))
# examples/laptop.aip mounts a `host` volume: Kubernetes and Argo reject it (B001).
CLUSTER_EXAMPLES = [path for path in EXAMPLES if path.stem != "laptop"]

# A program written from LANGUAGE.md that exercises what the examples do not: no
# namespace, an existing claim, an Intel GPU, a serve stage without `health`, a
# user volume called `tmp`, a mount at /tmp, text Kubernetes would expand.
EDGE_PROGRAM = r'''
param greeting: string = "hello"
param shards: int = 8

volume tmp     { size = 1Gi }
volume lake    { claim = "shared-lake" }
volume scratch { host = "./scratch" }

secret api_keys { keys = ["TOKEN"] }

data prepare {
  image   = "busybox:1.36"
  script  = """
    echo "$(date) ${greeting} from $$ with $HOME"
    ls /lake > /tmp/listing
  """
  mount lake at "/lake" readonly
  mount tmp  at "/tmp"
  env     = { HOME = "/work", SHARDS = "${shards}" }
  resources { gpu = 2  gpu_vendor = intel  disk = 20Gi }
}

serve web_ui {
  image   = "nginx:1.27"
  after   = [prepare]
  command = ["nginx", "-g", "daemon off; pid $(PIDFILE);"]
  secrets = [api_keys]
  port    = 8443
  labels  = { tier = "edge" }
}
'''


def compile_ir(text: str, params: dict | None = None, path: str = "edge.aip") -> ir.Pipeline:
    checked = check_source(text, path, params or {})
    errors = [f"{d.code} {d.message}" for d in checked.diagnostics if d.is_error]
    assert not errors, errors
    assert checked.ir is not None
    return checked.ir


def example_ir(path: Path, params: dict | None = None) -> ir.Pipeline:
    return compile_ir(path.read_text(encoding="utf-8"), params, str(path.relative_to(ROOT)))


def emit(target: str, pipeline: ir.Pipeline, **options):
    backend = get_backend(target)
    emitted = backend.emit(pipeline, backend.Options(**options))
    errors = [f"{d.code} {d.message}" for d in emitted.diagnostics if d.is_error]
    assert not errors, errors
    return emitted


def emit_yaml(target: str, pipeline: ir.Pipeline, **options) -> str:
    return to_yaml(emit(target, pipeline, **options).documents)


def read_back(text: str) -> list[dict]:
    """The documents of a YAML stream, as a Kubernetes client would read them."""
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def by_kind(documents: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == kind}


def pod_spec(document: dict) -> dict:
    return document["spec"]["template"]["spec"]


# ------------------------------------------------------------------- checkov


def required() -> bool:
    """The test command (and CI) requires every external tool: missing ones fail."""
    return os.environ.get("AIPC_REQUIRE_DOCKER") == "1" or bool(os.environ.get("CI"))


def checkov_path() -> str:
    """checkov lives in its own virtual environment (it pins old networkx and other
    libraries): $AIPC_CHECKOV, set by scripts/test.sh, else .tools/checkov."""
    candidates = [os.environ.get("AIPC_CHECKOV", ""), str(ROOT / ".tools" / "checkov" / "bin" / "checkov")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = "checkov is not installed: scripts/test.sh creates .tools/checkov (or set AIPC_CHECKOV)"
    if required():
        pytest.fail(message)
    pytest.skip(message)


# The checkov checks each explicit relaxation of `security` fails on Kubernetes
# (Argo's checks are about the Workflow only): (as the README writes it, which
# stages have it, the checks). Nothing else may fail; the README lists these.
CHECKOV_RELAXATIONS: tuple[tuple[str, Callable[[ir.Security], bool], tuple[str, ...]], ...] = (
    ("user = root", lambda s: s.uid == 0, ("CKV_K8S_23", "CKV_K8S_40")),
    ("a user below 10000", lambda s: 0 < s.uid < 10000, ("CKV_K8S_40",)),
    ("read_only = false", lambda s: not s.read_only, ("CKV_K8S_22",)),
    ("capabilities", lambda s: bool(s.capabilities), ("CKV_K8S_25",)),
    ("privileged = true", lambda s: s.privileged, ("CKV_K8S_16", "CKV_K8S_20")),
)


def relaxed_checks(pipeline: ir.Pipeline) -> set[str]:
    """The checkov checks the explicit relaxations of ``pipeline``'s stages fail."""
    return {check for _, has, checks in CHECKOV_RELAXATIONS for stage in pipeline.stages
            if has(stage.security) for check in checks}


def run_checkov(directory: Path, framework: str) -> dict[str, dict]:
    """Run checkov once over every YAML file in ``directory``: file name -> results."""
    command = [checkov_path(), "--framework", framework, "--directory", str(directory),
               "--output", "json", "--compact", "--skip-download"]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=directory)
    if result.returncode not in (0, 1):
        pytest.fail(f"checkov failed ({result.returncode}): {result.stderr[-2000:]}")
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    per_file: dict[str, dict] = {}
    for report in reports:
        if report.get("check_type") != framework:
            continue
        for outcome in ("passed_checks", "failed_checks", "skipped_checks"):
            for check in report["results"].get(outcome, []):
                name = Path(check["file_path"]).name
                entry = per_file.setdefault(name, {"passed_checks": [], "failed_checks": [], "skipped_checks": []})
                entry[outcome].append((check["check_id"], check["resource"]))
    return per_file


def write_outputs(directory: Path, outputs: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in outputs.items():
        (directory / f"{name}.yaml").write_text(text, encoding="utf-8")
    return directory
