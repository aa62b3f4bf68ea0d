"""`aipc run` and `aipc down` refusals that come before any engine is asked."""

from __future__ import annotations

import pytest

from aipc.cli import main

PIPELINE = """
pipeline "cmd" { image = "busybox:1.36" }
secret hub { keys = ["AIPC_TEST_UNSET_TOKEN"] }
data ingest { command = ["true"] }
train model { after = [ingest] command = ["true"] secrets = [hub] }
"""


@pytest.fixture
def aip(tmp_path):
    path = tmp_path / "cmd.aip"
    path.write_text(PIPELINE)
    return path


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_errors_in_the_file_are_printed_as_by_check(tmp_path, capsys):
    path = tmp_path / "bad.aip"
    path.write_text('data a { image = "busybox:1.36" after = [ingets] }\n')
    code, out, err = run(capsys, "run", str(path))
    assert code == 1
    assert "error[E" in err and "ingets" in err
    assert out == ""


def test_a_missing_file_is_an_error_not_a_traceback(tmp_path, capsys):
    code, out, err = run(capsys, "run", str(tmp_path / "nope.aip"))
    assert code == 1 and "no such file" in err and "Traceback" not in err


def test_unknown_stages_in_only_and_from_are_usage_errors(aip, capsys):
    code, out, err = run(capsys, "run", str(aip), "--only", "ingets")
    assert code == 2
    assert "--only: `ingets` is not a stage of `cmd`; did you mean `ingest`?" in err
    code, out, err = run(capsys, "run", str(aip), "--only", "ingest,modle")
    assert code == 2 and "did you mean `model`?" in err
    code, out, err = run(capsys, "run", str(aip), "--from", "nothing")
    assert code == 2 and "the stages are: ingest, model" in err


def test_only_and_from_exclude_each_other(aip, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["run", str(aip), "--only", "ingest", "--from", "ingest"])
    assert exit.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("jobs", ["0", "-1", "two"])
def test_jobs_must_be_a_positive_number(aip, capsys, jobs):
    with pytest.raises(SystemExit) as exit:
        main(["run", str(aip), "--jobs", jobs])
    assert exit.value.code == 2


def test_stdin_is_refused(capsys):
    code, out, err = run(capsys, "run", "-")
    assert code == 2 and "needs a file" in err
    code, out, err = run(capsys, "down", "-")
    assert code == 2


def test_missing_secrets_only_count_for_selected_stages(aip, capsys, monkeypatch):
    monkeypatch.delenv("AIPC_TEST_UNSET_TOKEN", raising=False)
    code, out, err = run(capsys, "run", str(aip), "--from", "model")
    assert code == 1
    assert "aipc run: error: secrets need these environment variables, which are not set: " \
           "AIPC_TEST_UNSET_TOKEN" in err


def test_what_docker_cannot_express_is_reported_as_compose_reports_it(tmp_path, capsys, monkeypatch):
    path = tmp_path / "gpu.aip"
    path.write_text(PIPELINE + 'eval score { after = [model] command = ["true"] '
                               'resources { gpu_model = "H100-80GB"  disk = 1Gi } }\n')
    monkeypatch.delenv("AIPC_TEST_UNSET_TOKEN", raising=False)
    code, out, err = run(capsys, "run", str(path))
    assert code == 1 and "secrets need" in err  # stops before any engine is asked
    assert err.count("warning[B101]") == 2 and f"{path}:6:" in err
    assert "`aipc run` cannot select a GPU model" in err and "cannot limit a container's local storage" in err
    code, out, err = run(capsys, "run", str(path), "--only", "ingest,model")
    assert "warning[" not in err  # about the stages this run runs only


def test_the_first_line_names_the_bound_only_when_more_stages_could_run_together():
    from aipc.commands.run import intro
    from tests.helpers import compile_ok

    one = compile_ok('data a { image = "e:1" }')
    assert intro(one, ("a",), jobs=2) == "1 stage"
    wide = compile_ok('data a { image = "e:1" }\ndata b { image = "e:1" }\ndata c { image = "e:1" }')
    assert intro(wide, ("a", "b", "c"), jobs=2) == "3 stages, at most 2 at a time"
    assert intro(wide, ("a", "b", "c"), jobs=3) == "3 stages"
    chain = compile_ok('data a { image = "e:1" }\ndata b { image = "e:1" after = [a] }')
    assert intro(chain, ("a", "b"), jobs=1) == "2 stages"


def test_only_takes_one_stage_list_per_option_so_the_file_is_never_swallowed(aip, capsys, monkeypatch):
    monkeypatch.delenv("AIPC_TEST_UNSET_TOKEN", raising=False)
    for words in (["--only", "model", str(aip)], [str(aip), "--only", "ingest,model"]):
        code, out, err = run(capsys, "run", *words)
        assert code == 1 and "secrets need these environment variables" in err  # got as far as the secrets
    code, out, err = run(capsys, "run", "--only", ",", str(aip))
    assert code == 2 and "--only needs the name of a stage" in err


@pytest.mark.parametrize("address", ["local-host", "0.0.0.0:80", "example.com", "", "127.0.0.300"])
def test_the_publish_address_is_an_ip_address_or_localhost(aip, capsys, address):
    # Docker reads an address it cannot parse as every interface: refused before anything runs
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(aip), "--publish-address", address])
    assert exit_info.value.code == 2
    assert "is not an IP address" in capsys.readouterr().err


def test_localhost_publishes_on_127_0_0_1():
    from aipc.commands.run import publish_address

    assert [publish_address(a) for a in ("localhost", "LOCALHOST", "0.0.0.0", "::", "[::1]", "10.1.2.3")] == [
        "127.0.0.1", "127.0.0.1", "0.0.0.0", "::", "::1", "10.1.2.3"]


def test_scheduling_and_autoscaling_are_warned_about_where_written(tmp_path, capsys, monkeypatch):
    """One Docker host has no nodes, taints, priority classes, queues or autoscaler:
    `aipc run` says so once per place each is written, and starts a service's minimum."""
    path = tmp_path / "sched.aip"
    path.write_text(PIPELINE.replace('image = "busybox:1.36" }', 'image = "busybox:1.36"\n'
                                     '  schedule { priority = "batch-high"  queue = "team-a" } }')
                    + 'serve api { after = [model]  port = 8080  replicas = 2..4  autoscale { cpu = 70 } }\n')
    monkeypatch.delenv("AIPC_TEST_UNSET_TOKEN", raising=False)
    code, out, err = run(capsys, "run", str(path))
    assert code == 1 and "secrets need" in err  # stops before any engine is asked
    assert err.count("warning[B101]") == 3
    assert "`aipc run` runs on one machine and cannot give containers a priority class" in err
    assert "`aipc run` runs on one machine and cannot queue workloads in Kueue" in err
    assert "`aipc run` does not autoscale: `api` runs 2 replicas, the low end of 2..4" in err
