"""`nodes = N`: a batch stage run by N containers as one group (issue 16)."""

from __future__ import annotations

from aipc.compiler import ir
from tests.helpers import codes_of, compile_ok

# LANGUAGE.md v1, "Training across nodes", verbatim.
CONTRACT = '''train pretrain {
  image   = "ghcr.io/acme/trainer:2.1"
  nodes   = 4                           # 4 pods, each with the resources below
  command = ["torchrun", "train.py"]
  resources { gpu = 8  memory = 900Gi  shm = 128Gi }
  retries = 2                           # the whole group restarts
}
'''


def test_the_contract_program_is_a_group_of_four():
    (stage,) = compile_ok(CONTRACT).stages
    assert stage.nodes == 4 and stage.node_count == 4
    assert stage.retries == 2 and stage.resources.gpu == 8


def test_a_stage_without_nodes_is_no_group():
    (stage,) = compile_ok('train t { image = "t:1" }').stages
    assert stage.nodes is None and stage.node_count == 1


def test_nodes_may_be_a_parameter_overridden_when_compiling():
    text = 'param n: int = 2\ntrain t { image = "t:1"  nodes = "${n}" }'
    assert compile_ok(text).stages[0].nodes == 2
    assert compile_ok(text, {"n": "8"}).stages[0].nodes == 8
    assert codes_of(text, {"n": "0"}) == ["E209"]


def test_nodes_is_for_batch_stages_only():
    assert codes_of('serve s { image = "s:1"  port = 80  nodes = 2 }') == ["E107"]
    for kind in ("data", "train", "eval"):
        assert compile_ok(f'{kind} s {{ image = "s:1"  nodes = 2 }}').stages[0].nodes == 2


def test_every_variable_of_the_contract_is_aipcs_on_a_group():
    for name in ir.NODE_VARIABLES:
        assert codes_of(f'train t {{ image = "t:1"  nodes = 2  env = {{ {name} = "1" }} }}') == ["E270"]
    # without `nodes` they are the user's
    assert compile_ok('train t { image = "t:1"  env = { MASTER_PORT = "1" } }').stages[0].env


def test_a_group_writing_an_rwo_volume_is_warned_about_and_rwx_or_readonly_is_not():
    mounted = 'volume v {{ size = 1Gi {access} }}\ntrain t {{ image = "t:1"  nodes = {n}  mount v at "/v" {ro} }}'
    assert codes_of(mounted.format(access="", n=2, ro="")) == ["W270"]
    assert codes_of(mounted.format(access="access = rwx", n=2, ro="")) == []
    assert codes_of(mounted.format(access="", n=2, ro="readonly")) == []
    assert codes_of(mounted.format(access="", n=1, ro="")) == []  # one pod: one machine


def test_the_environment_of_a_node():
    (stage,) = compile_ok(CONTRACT).stages
    env = dict(ir.node_environment(stage, "p-pretrain-0.p-pretrain", "3"))
    assert list(env) == list(ir.NODE_VARIABLES)
    assert env == {
        "MASTER_ADDR": "p-pretrain-0.p-pretrain", "MASTER_PORT": "29500", "NNODES": "4", "NODE_RANK": "3",
        "NPROC_PER_NODE": "8", "WORLD_SIZE": "32",
        "PET_MASTER_ADDR": "p-pretrain-0.p-pretrain", "PET_MASTER_PORT": "29500", "PET_NNODES": "4",
        "PET_NODE_RANK": "3", "PET_NPROC_PER_NODE": "8",
    }
    cpu_only = compile_ok('train t { image = "t:1"  nodes = 3 }').stages[0]
    env = dict(ir.node_environment(cpu_only, "m", None))
    assert env["NPROC_PER_NODE"] == "1" and env["WORLD_SIZE"] == "3" and env["NODE_RANK"] is None
