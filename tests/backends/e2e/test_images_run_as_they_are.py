"""Real images under the hardened default, on the real engine: through
`docker-compose up` on the compiled file and through `aipc run`. Each test image
(built offline from busybox, tests/conftest.py) needs something the default
withholds; a stage that runs it as it is fails, and a stage whose `security`
(or `args`) gives exactly what it needs runs. Every stage prints `ran-ok` when
its image got what it needed."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from aipc.cli import main
from tests.backends.e2e.test_compose_e2e import Project
from tests.conftest import PASSWD, GROUP, busybox_variant

pytestmark = pytest.mark.docker

# An entrypoint that keeps a cache under /root (as vLLM and Hugging Face tools do
# under $HOME when that is /root).
WRITES_ROOT = "#!/bin/sh\nset -e\nmkdir -p /root/.cache/model\necho weights > /root/.cache/model/w\necho ran-ok\n"
# postgres-style: start as root, give the data folder to the service's user, drop to it.
CHOWNS = ("#!/bin/sh\nset -e\nchown app:app /work\n"
          "exec su -s /bin/sh app -c 'echo data > /work/out && test \"$(id -u)\" = 1000 && echo ran-ok'\n")
# A server that must be told what to serve: its arguments come after the entrypoint.
NEEDS_ARGS = ('#!/bin/sh\ntest "$1" = --model || { echo "usage: serve --model NAME" >&2; exit 2; }\n'
              'echo "serving $2"\necho ran-ok\n')
# Python's getpass.getuser(): LOGNAME, USER, LNAME, USERNAME, then the passwd entry of the uid.
GETUSER = ('#!/bin/sh\nfor name in LOGNAME USER LNAME USERNAME; do\n'
           '  eval "value=\\${$name}"\n  if [ -n "$value" ]; then echo "user $value"; echo ran-ok; exit 0; fi\n'
           'done\ngrep -q "^[^:]*:[^:]*:$(id -u):" /etc/passwd || { echo "KeyError: uid not found" >&2; exit 1; }\n'
           'echo ran-ok\n')


@pytest.fixture(scope="session")
def images(docker_engine, tmp_path_factory) -> dict[str, str]:
    """The four test images; busybox_variant builds each once per content (the tag)."""
    def variant(name: str, script: str, **extra) -> str:
        return busybox_variant(tmp_path_factory, f"aipc-test/{name}:1.0", f'ENTRYPOINT ["/bin/aipc-{name}"]',
                               files={f"/bin/aipc-{name}": script}, **extra)
    return {
        "writes_root": variant("writes-root", WRITES_ROOT),
        "chowns": variant("chowns", CHOWNS, passwd=PASSWD + "app:x:1000:1000:app:/tmp:/bin/sh\n",
                          group=GROUP + "app:x:1000:\n"),
        "needs_args": variant("needs-args", NEEDS_ARGS),
        "getuser": variant("getuser", GETUSER),
    }


def program(images: dict[str, str]) -> str:
    """Each image as it is (`*_default`, expected to fail) and with what it needs."""
    return f'''
volume work {{ size = 1Gi }}
volume work2 {{ size = 1Gi }}
volume work3 {{ size = 1Gi }}

data root_default {{ image = "{images['writes_root']}" }}
data root_rootfs_read_only {{ image = "{images['writes_root']}"  security {{ user = root }} }}
data root_relaxed {{ image = "{images['writes_root']}"  security {{ user = root  read_only = false }} }}

data chown_default {{ image = "{images['chowns']}"  mount work at "/work" }}
data chown_root_no_caps {{ image = "{images['chowns']}"  mount work3 at "/work"  security {{ user = root }} }}
data chown_relaxed {{
  image = "{images['chowns']}"
  mount work2 at "/work"
  security {{ user = root  capabilities = ["CHOWN", "SETUID", "SETGID"] }}
}}

data args_default {{ image = "{images['needs_args']}" }}
data args_given {{ image = "{images['needs_args']}"  args = ["--model", "tiny"] }}

data getuser_without_user {{ image = "{images['getuser']}"  env = {{ USER = "" }} }}
data getuser_default {{ image = "{images['getuser']}" }}
data getuser_other_uid {{ image = "{images['getuser']}"  security {{ user = 4242 }} }}
'''


EXPECTED_TO_RUN = {"root_relaxed", "chown_relaxed", "args_given", "getuser_default", "getuser_other_uid"}
EXPECTED_TO_FAIL = {"root_default", "root_rootfs_read_only", "chown_default", "chown_root_no_caps", "args_default",
                    "getuser_without_user"}


def test_through_docker_compose(tmp_path, images, busybox_image, docker_compose):
    project = Project(f"aipc-e2e-{uuid.uuid4().hex[:10]}", tmp_path, docker_compose)
    project.compile(program(images))
    try:
        up = project.compose("up", "--no-color", timeout=300)
        outcome = {}
        for name in EXPECTED_TO_RUN | EXPECTED_TO_FAIL:
            (container,) = project.containers(name) or [pytest.fail(f"{name} did not run: {up.stderr}")]
            logs = subprocess.run(["docker", "logs", container["Id"]], capture_output=True, text=True,
                                  timeout=30)
            outcome[name] = (container["State"]["ExitCode"] == 0 and "ran-ok" in logs.stdout,
                             logs.stdout + logs.stderr)
        assert {name for name, (ran, _) in outcome.items() if ran} == EXPECTED_TO_RUN, (up.stdout, outcome)
        # each failure is the one the default causes, not another
        assert "Permission denied" in outcome["root_default"][1]
        assert "Read-only file system" in outcome["root_rootfs_read_only"][1]
        assert "Operation not permitted" in outcome["chown_default"][1]
        assert "Operation not permitted" in outcome["chown_root_no_caps"][1]
        assert "usage: serve --model NAME" in outcome["args_default"][1]
        assert "KeyError" in outcome["getuser_without_user"][1]
        assert "user nonroot" in outcome["getuser_default"][1]
    finally:
        down = project.compose("down", "--volumes", "--remove-orphans", "--timeout", "1", timeout=120)
        assert down.returncode == 0, down.stderr
    assert project.containers() == []


def test_through_aipc_run(tmp_path, images, busybox_image, capsys):
    path = tmp_path / "images.aip"
    name = f"t-{uuid.uuid4().hex[:8]}"
    path.write_text(f'pipeline "{name}" {{ }}\n' + program(images))
    try:
        status = main(["run", str(path), "--keep-going", "--jobs", "4"])
        out = capsys.readouterr()
        text = out.out + out.err
        assert status == 1, text
        ran = {stage for stage in EXPECTED_TO_RUN | EXPECTED_TO_FAIL
               if any(line.startswith(stage + " ") or line.startswith(stage + " |") or line.startswith(stage + "|")
                      for line in text.splitlines() if "ran-ok" in line)}
        assert ran == EXPECTED_TO_RUN, text
        assert "Permission denied" in text and "Read-only file system" in text
        assert "Operation not permitted" in text and "usage: serve --model NAME" in text and "KeyError" in text
    finally:
        assert main(["down", str(path), "-v"]) == 0


def test_aipc_run_honours_pull_never_and_says_pull_secrets_are_the_callers_login(tmp_path, docker_engine, capsys):
    path = tmp_path / "pull.aip"
    path.write_text(f'pipeline "t-{uuid.uuid4().hex[:8]}" {{ pull_secrets = ["regcred"] }}\n'
                    'data a { image = "aipc-test/never-built:0.0"  pull = never }\n')
    status = main(["run", str(path)])
    out = capsys.readouterr()
    assert status == 1
    assert "`pull = never` forbids pulling it" in out.err + out.out
    assert "B101" in out.err and "docker login" in out.err
