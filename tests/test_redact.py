"""Credentials never reach a message: aipc.redact, and the commands that print
server addresses and client errors (issue 12)."""

from __future__ import annotations

import pytest

from aipc.redact import redact


@pytest.mark.parametrize(("text", "shown"), [
    ("https://alice:s3cret@k8s.example.com:6443", "https://alice:***@k8s.example.com:6443"),
    ("at https://alice:s3cret@k8s.example.com:6443 (context prod)", "at https://alice:***@k8s.example.com:6443 (context prod)"),
    ("https://ghp_TOKEN123@github.com/org/repo", "https://***@github.com/org/repo"),
    ("tcp://user:p@ss@10.0.0.1:2376", "tcp://user:***@10.0.0.1:2376"),
    ("ssh://deploy@build-host", "ssh://deploy@build-host"),
    ("ssh://deploy:pw@build-host", "ssh://deploy:***@build-host"),
    ("GET https://s3.amazonaws.com/b/k?X-Amz-Signature=abc123&X-Amz-Date=1",
     "GET https://s3.amazonaws.com/b/k?X-Amz-Signature=***&X-Amz-Date=1"),
    ("https://api.example.com/v1?api_key=AKIA1&page=2", "https://api.example.com/v1?api_key=***&page=2"),
    ("https://h/p?access_token=t0k3n", "https://h/p?access_token=***"),
    ("two: http://a:b@x and http://c:d@y", "two: http://a:***@x and http://c:***@y"),
])
def test_credentials_in_urls_are_masked(text, shown):
    assert redact(text) == shown


@pytest.mark.parametrize("text", [
    "https://k8s.example.com:6443", "unix:///var/run/docker.sock", "user@example.com wrote",
    "cannot apply Job/x: the namespace `ml` does not exist", "a=b c=d", "https://h/p?page=2&sort=name",
    "image registry.example.com/team/app@sha256:" + "0" * 64,
])
def test_everything_else_is_left_as_it_is(text):
    assert redact(text) == text


def test_an_internal_error_hides_credentials(monkeypatch, capsys):
    from aipc import cli

    def explode(args):
        raise RuntimeError("while reading https://bob:hunter2@registry.example.com/v2/")

    monkeypatch.setattr("aipc.commands.check.run", explode)
    assert cli.main(["check", "x.aip"]) == 3
    err = capsys.readouterr().err
    assert "hunter2" not in err and "https://bob:***@registry.example.com/v2/" in err


def test_the_docker_engine_address_is_shown_without_credentials(monkeypatch):
    from aipc.runner import docker_driver  # no engine needed: nothing answers there

    monkeypatch.setenv("DOCKER_HOST", "tcp://admin:hunter2@127.0.0.1:1")
    with pytest.raises(docker_driver.EngineUnavailable) as raised:
        docker_driver.connect()
    assert "hunter2" not in str(raised.value) and "tcp://admin:***@127.0.0.1:1" in str(raised.value)
