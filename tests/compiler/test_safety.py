"""Programs that type-check but would hand the host to a container, leak a
credential or name an image no registry serves (issue 12): the rules in
compiler/safety.py, and the diagnostics the checker gives for them."""

from __future__ import annotations

import pytest

from aipc.compiler import check_source
from aipc.compiler.safety import (
    container_path_problem, credential_name, credential_value, host_path_risk, image_reference_problem,
    registry_problem,
)
from tests.helpers import codes_of, compile_ok


# ------------------------------------------------------------------ host paths


@pytest.mark.parametrize("path", [
    "/", "//", "/etc", "/etc/", "/proc", "/proc/1/root", "/sys", "/sys/fs/cgroup", "/dev", "/root",
    "/root/.ssh", "/home", "/home/alice", "/home/alice/", "/home/alice/.ssh/id_ed25519", "/home/bob/.aws",
    "~", "~/", "~alice", "~/.kube", "~/.config/gcloud/credentials.db", "$HOME", "${HOME}", "$HOME/.docker",
    "/var/run/docker.sock", "/run/docker.sock", "/srv/engines/docker.sock", "/run/containerd/containerd.sock",
    "/var/run", "/var", "/run", "/var/lib/kubelet/pods", "/etc/kubernetes/admin.conf", "/var/lib/docker",
    "/usr/../etc",
])
def test_host_paths_that_expose_the_host(path):
    assert host_path_risk(path) is not None


@pytest.mark.parametrize("path", [
    "./data", "data", "../shared", "/data", "/mnt/datasets", "/etc/ssl/certs", "/etc/localtime",
    "/home/alice/datasets", "~/datasets", "$HOME/projects/x", "/var/cache/pip", "/run/user", "/srv/run",
    "/tmp/scratch", "/dev/shm/x",
])
def test_ordinary_host_paths(path):
    assert host_path_risk(path) is None


def test_the_docker_socket_says_it_undoes_every_other_protection():
    assert "undoes every other protection" in host_path_risk("/var/run/docker.sock")
    assert "socket" in host_path_risk("/var/run")  # a directory holding it
    assert "whole filesystem" in host_path_risk("/")


@pytest.mark.parametrize(("path", "refused"), [
    ("/", True), ("/proc", True), ("/proc/sys", True), ("/sys", True), ("/sys/kernel", True), ("/dev", True),
    ("/dev/shm", False), ("/dev/data", False), ("/data", False), ("/processed", False), ("/system", False),
    ("/devices", False),
])
def test_container_paths_the_runtime_owns(path, refused):
    assert (container_path_problem(path) is not None) is refused


# --------------------------------------------------------------- credentials


@pytest.mark.parametrize("name", [
    "DB_PASSWORD", "PASSWORD", "password", "API_KEY", "APIKEY", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY",
    "GITHUB_TOKEN", "TOKEN", "HF_TOKEN", "CLIENT_SECRET", "SECRET", "MYSQL_PWD", "SMTP_PASS", "DB_PASSWD",
    "PASSWD_FILE_CONTENT", "SIGNING_KEY", "GOOGLE_CREDENTIALS", "PASSPHRASE",
])
def test_credential_names(name):
    assert credential_name(name)


@pytest.mark.parametrize("name", [
    "LOG_LEVEL", "HOME", "PWD", "TOKENIZERS_PARALLELISM", "AWS_ACCESS_KEY_ID", "KEY_FILE", "PASSWORD_FILE",
    "HF_TOKEN_PATH", "SSH_PUBLIC_KEY", "KEY", "SECRET_NAME", "MONKEY",
])
def test_other_names(name):
    assert not credential_name(name)


@pytest.mark.parametrize(("value", "credential"), [
    ("hunter2", True), ("sk-abc", True), ("", False), ("  ", False), ("/run/secrets/key", False),
    ("./key.pem", False), ("$VAULT_TOKEN", False),
])
def test_credential_values(value, credential):
    assert credential_value(value) is credential


# ---------------------------------------------------------- image references
# Cases follow distribution/reference's reference_test.go and regexp_test.go.


@pytest.mark.parametrize("image", [
    "python:3.11-slim", "pytorch/pytorch:2.3.1-cuda12.1-cudnn8-runtime", "registry.example.com/risk/fraud-api:1.4.2",
    "localhost:5000/tool:1.0", "localhost/tool", "127.0.0.1:5000/a/b:c", "[::1]:5000/a:1", "ghcr.io/acme/x_y__z:1",
    "a/b-c---d", "test.com/foo@sha256:" + "f" * 64, "test:5000/repo:tag@sha512:" + "a" * 128,
    "Registry.Example.COM/team/app:V1", "busybox:" + "t" * 128, "a" * 255,
])
def test_valid_references(image):
    assert image_reference_problem(image) is None


@pytest.mark.parametrize(("image", "says"), [
    ("Python:3.11", "lower case"),
    ("MyOrg/app:1", "registry host"),
    ("https://ghcr.io/acme/etl:1", "no scheme"),
    ("python:3.11 ", "a space"),
    ("python:3.11\n", "a line break"),
    ("py\tthon", "a tab"),
    ("pyth\u043en:3", "CYRILLIC SMALL LETTER O"),
    ("pyth\u03bfn:3", "GREEK SMALL LETTER OMICRON"),
    ("python:", "tag after `:` is empty"),
    ("python:-rc", "not a valid tag"),
    ("busybox:" + "t" * 129, "not a valid tag"),
    ("a@sha256:abc", "64 lower-case"),
    ("a@sha256:" + "F" * 64, "upper-case"),
    ("a@md5:" + "0" * 32, "not a digest algorithm"),
    ("a@sha256", "not a digest"),
    ("_python", "not a valid image name"),
    ("a//b", "not a valid image name"),
    ("a/b/", "not a valid image name"),
    ("a" * 256, "at most 255"),
    ("bad_host!/app:1", "not a valid image name"),
])
def test_invalid_references(image, says):
    problem = image_reference_problem(image)
    assert problem is not None and says in problem.message


def test_fixes_are_suggested():
    assert image_reference_problem("Python:3.11").help == 'write "python:3.11"'
    assert image_reference_problem("https://ghcr.io/a/b:1").help == 'write "ghcr.io/a/b:1"'
    assert image_reference_problem(" python:3.11\n").help == 'write "python:3.11"'


@pytest.mark.parametrize(("registry", "valid"), [
    ("registry.example.com", True), ("registry.example.com:5000/team/sub", True), ("localhost:5000", True),
    ("https://registry.example.com", False), ("registry.example.com/Team", False), ("reg istry", False),
    ("r\u0435gistry.io", False),
])
def test_registries(registry, valid):
    assert (registry_problem(registry) is None) is valid


# ---------------------------------------------------------- the checker's side


def test_image_references_are_checked_after_parameters_and_the_registry():
    assert codes_of('param tag: string = "1.0"\ndata a { image = "etl:${tag}" }') == []
    assert codes_of('param tag: string = "1.0"\ndata a { image = "etl:${tag}" }', {"tag": "1 0"}) == ["E403"]
    pipeline = compile_ok('pipeline "p" { registry = "registry.example.com:5000/team" }\ndata a { image = "etl:1" }')
    assert pipeline.stages[0].image.literal == "registry.example.com:5000/team/etl:1"


def test_a_bad_registry_is_one_error_and_prefixes_nothing():
    text = 'pipeline "p" { registry = "https://r.example.com" }\ndata a { image = "etl:1" }\ndata b { image = "etl:2" }'
    assert codes_of(text) == ["E403"]


def test_env_keys_of_listed_secrets_only():
    secret = 'secret db { keys = ["DB_USER"] }\n'
    assert codes_of(secret + 'data a { image = "e:1"  secrets = [db]  env = { DB_USER = "x" } }') == ["E402"]
    other = 'data b { image = "e:1"  secrets = [db] }\n'  # (a secret nothing lists is W101)
    assert codes_of(secret + other + 'data a { image = "e:1"  env = { DB_USER = "x" } }') == []  # not listed by a
    checked = check_source(secret + 'data a { image = "e:1"  secrets = [db]  env = { DB_USER = "x" } }', "t.aip")
    (error,) = checked.diagnostics
    (where,) = error.related
    assert (secret + "x")[where.span.start:where.span.end] == '"DB_USER"'


def test_credentials_from_parameters_or_empty_are_not_warned_about():
    assert codes_of('data a { image = "e:1"  env = { API_KEY = "abc123" } }') == ["W402"]
    assert codes_of('data a { image = "e:1"  env = { API_KEY = 12345 } }') == ["W402"]
    assert codes_of('param k: string = "x"\ndata a { image = "e:1"  env = { API_KEY = "${k}" } }') == []
    assert codes_of('data a { image = "e:1"  env = { API_KEY = "" } }') == []


def test_dangerous_host_volumes_are_warned_about_at_each_mount_only():
    text = 'volume h { host = "/" }\ndata a { image = "e:1"  mount h at "/host" }\ndata b { image = "e:1"  mount h at "/h" }\n'
    assert codes_of(text) == ["W401", "W401"]
    assert codes_of('volume h { host = "/" }\ndata a { image = "e:1" }') == ["W101"]  # never mounted: unused


def test_a_pipeline_without_stages_is_warned_about_unless_it_has_errors():
    assert codes_of('pipeline "p" { }') == ["W403"]
    assert codes_of("") == ["W403"]
    assert codes_of('pipeline "p" { bogus = 1 }') == ["E106"]


def test_a_matrix_stage_is_told_once_not_once_per_instance():
    matrix = 'matrix { seed = [1, 2, 3] }  command = ["run", "${matrix.seed}"]'
    socket = 'volume s { host = "/var/run/docker.sock" }\n'
    assert codes_of(socket + f'data a {{ image = "e:1"  {matrix}  mount s at "/s" }}') == ["W401"]
    secret = 'secret db { keys = ["DB_USER"] }\n'
    assert codes_of(secret + f'data a {{ image = "e:1"  {matrix}  secrets = [db]  env = {{ DB_USER = "x" }} }}') \
        == ["E402"]
    assert codes_of(f'data a {{ image = "e:1"  {matrix}  env = {{ API_KEY = "abc123" }} }}') == ["W402"]
    assert codes_of(f'data a {{ image = "E:1"  {matrix} }}') == ["E403"]
    assert codes_of('volume v { size = 1Gi }\n' + f'data a {{ image = "e:1"  {matrix}  mount v at "/proc" }}') \
        == ["E401"]


def test_a_library_of_templates_is_not_an_empty_pipeline():
    assert codes_of('template base: train { image = "trainer:1.0" }') == []
    assert codes_of('volume v { size = 1Gi }\n') == ["W403", "W101"]
