"""The dependency graph: cycles, waits on services, and volume races."""

from __future__ import annotations

from aipc.compiler import check_source
from tests.helpers import codes_of, compile_ok


def messages(text: str) -> list[str]:
    return [f"{d.code} {d.message}" for d in check_source(text, "t.aip").diagnostics]


def test_cycle_is_printed_in_after_order():
    assert messages('''
data a { image = "e:1"  after = [b] }
data b { image = "e:1"  after = [a] }
''') == ["E301 dependency cycle: a -> b -> a"]


def test_each_independent_cycle_is_reported():
    assert codes_of('''
data a { image = "e:1"  after = [b] }
data b { image = "e:1"  after = [a] }
data c { image = "e:1"  after = [d] }
data d { image = "e:1"  after = [c] }
data e { image = "e:1"  after = [a] }
''') == ["E301", "E301"]


def test_cycle_through_a_long_chain():
    text = "\n".join(f'data s{i} {{ image = "e:1"  after = [s{(i + 1) % 6}] }}' for i in range(6))
    (message,) = messages(text)
    assert message == "E301 dependency cycle: s0 -> s1 -> s2 -> s3 -> s4 -> s5 -> s0"


def test_a_batch_stage_may_wait_for_a_service_since_v1():
    # v0 rejected it (E302); now it means: start once the service is healthy
    assert codes_of('''
serve api { image = "e:1"  port = 80 }
data x { image = "e:1"  after = [api] }
''') == []
    pipeline = compile_ok('''
serve api { image = "e:1"  port = 80 }
data x { image = "e:1"  after = [api] }
serve front { image = "e:1"  port = 81  after = [x] }
''')
    assert [stage.name for stage in pipeline.stages] == ["api", "x", "front"]
    assert pipeline.stage("x").after == ("api",) and pipeline.stage("x").level == 1


RACE = '''
volume raw { size = 1Gi }
data ingest { image = "e:1"  mount raw at "/raw" }
train model { image = "e:1"  %s  mount raw at "/raw" readonly }
'''


def test_reader_after_its_writer_is_fine():
    assert codes_of(RACE % "after = [ingest]") == []


def test_reader_transitively_after_its_writer_is_fine():
    assert codes_of('''
volume raw { size = 1Gi }
data ingest { image = "e:1"  mount raw at "/raw" }
data clean { image = "e:1"  after = [ingest] }
train model { image = "e:1"  after = [clean]  mount raw at "/raw" readonly }
''') == []


def test_reader_not_after_its_writer_is_warned():
    (message,) = messages(RACE % "")
    assert message == "W301 `model` reads `raw`, which `ingest` writes, but may run before it"


def test_reader_before_a_downstream_writer_is_warned():
    assert codes_of('''
volume raw { size = 1Gi }
train model { image = "e:1"  mount raw at "/raw" readonly }
data ingest { image = "e:1"  after = [model]  mount raw at "/raw" }
''') == ["W301"]


def test_parallel_writers_of_an_rwo_volume_are_warned_once_per_volume():
    text = 'volume scratch { size = 1Gi }\n' + "\n".join(
        f'data w{i} {{ image = "e:1"  mount scratch at "/s" }}' for i in range(4))
    (message,) = messages(text)
    assert message.startswith("W302 `scratch` is a single-writer (rwo) volume, but `w0`, `w1`, `w2` and `w3`")


def test_ordered_writers_and_rwx_volumes_are_fine():
    assert codes_of('''
volume scratch { size = 1Gi }
data a { image = "e:1"  mount scratch at "/s" }
data b { image = "e:1"  after = [a]  mount scratch at "/s" }
data c { image = "e:1"  after = [b]  mount scratch at "/s" }
''') == []
    assert codes_of('''
volume shared { size = 1Gi  access = rwx }
data a { image = "e:1"  mount shared at "/s" }
data b { image = "e:1"  mount shared at "/s" }
''') == []


def test_a_service_writer_overlaps_whatever_follows_it():
    assert codes_of('''
volume state { size = 1Gi }
serve a { image = "e:1"  port = 80  mount state at "/s" }
serve b { image = "e:1"  port = 81  after = [a]  mount state at "/s" }
''') == ["W302"]


def test_host_volumes_have_no_single_writer_rule():
    assert codes_of('''
volume local { host = "./x" }
data a { image = "e:1"  mount local at "/s" }
data b { image = "e:1"  mount local at "/s" }
''') == []


def test_graph_checks_scale_to_thousands_of_stages():
    stages = ['volume v { size = 1Gi  access = rwx }', 'data s0 { image = "e:1"  mount v at "/v" }']
    stages += [f'data s{i} {{ image = "e:1"  after = [s{i - 1}]  mount v at "/v" readonly }}' for i in range(1, 3000)]
    assert codes_of("\n".join(stages)) == []
