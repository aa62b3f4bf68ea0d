"""The cache of `aipc run` without an engine: the key's parts (changing each part
changes the key; retries, timeout and resources do not), the content digest of an
output (paths, modes and contents; not times or owners), which stages are never
cached, and the scheduler reporting a stage `cached` and going on after it."""

from __future__ import annotations

import dataclasses
import io
import tarfile

from aipc.backends.docker import container_specs
from aipc.diagnostics import Diagnostics
from aipc.backends.cachekey import changed_parts, combined, key_parts, not_cached_because
from aipc.runner.cache import Decision, tree_digest
from aipc.runner.scheduler import Scheduler, Status
from aipc.runner.selection import select_stages
from tests.helpers import compile_ok
from tests.runner.test_scheduler import Events, FakeDriver

BASE = '''\
pipeline "k" { }
volume data { size = 1Gi }
secret s3 { keys = ["AWS_KEY"] }
data make { image = "i:1"  output raw at "/out/raw" }
train fit {
  image   = "i:1"
  command = ["train", "--lr", "${lr}"]
  workdir = "/app"
  env     = { LEVEL = "info" }
  secrets = [s3]
  mount data at "/data" readonly
  input make.raw at "/in/raw"
  output model at "/out/model"
  retries = 1
  timeout = 1h
  resources { cpu = 1  memory = 1Gi }
}
param lr: float = 0.1
'''


def parts_of(text: str, inputs=None, image_id: str = "sha256:aaa", **spec_changes) -> dict[str, str]:
    pipeline = compile_ok(text)
    stage = pipeline.stage("fit")
    spec = container_specs(pipeline, [stage], Diagnostics("t.aip"), "`aipc run`")["fit"]
    spec = dataclasses.replace(spec, **spec_changes)
    return key_parts(stage, spec, image_id, inputs if inputs is not None else {"make.raw": "d1"})


def test_each_part_of_the_key_changes_it_and_says_so():
    base = parts_of(BASE)
    changes = {
        "image": parts_of(BASE, image_id="sha256:bbb"),  # the same tag rebuilt
        "command": parts_of(BASE.replace("float = 0.1", "float = 0.2")),  # after interpolation
        "workdir": parts_of(BASE.replace('"/app"', '"/srv"')),
        "env": parts_of(BASE.replace('"info"', '"debug"')),
        "mounts": parts_of(BASE.replace('"/data" readonly', '"/data2" readonly')),
        "inputs": parts_of(BASE, inputs={"make.raw": "d2"}),  # the upstream wrote other bytes
        "security": parts_of(BASE, read_only=False),
    }
    for part, changed in changes.items():
        assert combined(changed) != combined(base), part
        assert changed_parts(base, changed) == [part]
    env = parts_of(BASE.replace('secrets = [s3]', 'secrets = []'))  # a secret key's name, never its value
    assert changed_parts(base, env) == ["env"]
    output = parts_of(BASE.replace('"/out/model"', '"/out/m"'))
    assert changed_parts(base, output) == ["mounts"]


def test_retries_timeout_and_resources_are_not_part_of_the_key():
    base = combined(parts_of(BASE))
    assert combined(parts_of(BASE.replace("retries = 1", "retries = 5"))) == base
    assert combined(parts_of(BASE.replace("timeout = 1h", "timeout = 2h"))) == base
    assert combined(parts_of(BASE.replace("cpu = 1  memory = 1Gi", "cpu = 4  memory = 8Gi  gpu = 1"))) == base
    assert combined(parts_of("# a comment moves every line\n" + BASE)) == base


def tar(entries, mtime=0, uid=0) -> list[bytes]:
    """A tar stream as the engine's archive endpoint gives it: one top directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        top = tarfile.TarInfo("out")
        top.type, top.mode, top.mtime = tarfile.DIRTYPE, 0o755, mtime
        archive.addfile(top)
        for name, mode, content in entries:
            info = tarfile.TarInfo(f"out/{name}")
            info.mode, info.mtime, info.uid = mode, mtime, uid
            if content is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    data = buffer.getvalue()
    return [data[i:i + 1000] for i in range(0, len(data), 1000)]  # in chunks, as streamed


def test_an_output_s_digest_is_its_paths_modes_and_contents():
    files = [("a", 0o644, b"1"), ("sub", 0o755, None), ("sub/b", 0o600, b"2" * 5000)]
    digest = tree_digest(tar(files))
    assert tree_digest(tar(files, mtime=12345, uid=1000)) == digest  # times and owners do not count
    assert tree_digest(tar(list(reversed(files[2:])) + files[:2])) == digest  # nor the archive's order
    assert tree_digest(tar([("a", 0o644, b"1!"), *files[1:]])) != digest
    assert tree_digest(tar([("a", 0o755, b"1"), *files[1:]])) != digest
    assert tree_digest(tar([("c", 0o644, b"1"), *files[1:]])) != digest


def test_what_is_never_cached():
    pipeline = compile_ok('''\
volume v { size = 1Gi }
data reads { image = "i:1"  mount v at "/v" readonly }
data writes { image = "i:1"  mount v at "/v" }
data forced { image = "i:1"  mount v at "/v"  cache = true }
data off { image = "i:1"  cache = false }
serve api { image = "i:1"  port = 80 }
eval smoke { image = "i:1"  after = [api] }
eval forced_smoke { image = "i:1"  after = [api]  cache = true }
''')
    reason = {stage.name: not_cached_because(stage, pipeline) for stage in pipeline.stages}
    assert reason["reads"] is None and reason["forced"] is None and reason["forced_smoke"] is None
    assert "writes the volume `v`" in reason["writes"]
    assert reason["off"] == "`cache = false`"
    assert reason["api"] == "a serve stage"
    assert reason["smoke"].startswith("it runs after the service `api`")


class FakeCache:
    def __init__(self, cached):
        self.cached = set(cached)
        self.recorded: list[tuple[str, dict]] = []

    def decide(self, stage):
        return Decision(stage.name in self.cached, "" if stage.name in self.cached else "changed: image", {"p": "1"})

    def record(self, stage, parts, digests):
        self.recorded.append((stage.name, digests))


def test_a_cached_stage_is_not_run_and_its_dependants_go_on():
    pipeline = compile_ok('''\
data a { image = "i:1"  output x at "/x" }
train b { image = "i:1"  input a.x at "/in" }
''')
    driver, events, cache = FakeDriver(), Events(), FakeCache({"a"})
    result = Scheduler(pipeline, select_stages(pipeline), driver, events, 2, cache=cache).run()
    assert {s.name: s.status for s in result.stages} == {"a": Status.CACHED, "b": Status.SUCCEEDED}
    assert "a" not in driver.spans and "b" in driver.spans
    assert cache.recorded == [("b", {})]
    assert ("a", Status.CACHED, 0) in events.changes
    assert "b: runs, changed: image" in events.notes
    assert result.done == 2


# ------------------------------------------------------------------ RunCache with a stand-in engine


class Engine:
    """The few calls RunCache makes of the Docker SDK: images by tag, volumes with labels."""

    def __init__(self) -> None:
        import docker.errors

        self.errors = docker.errors
        self.image_ids = {"i:1": "sha256:one"}
        self.labels: dict[str, dict] = {}
        engine = self

        class Volume:
            def __init__(self, name):
                self.name, self.attrs = name, {"Labels": engine.labels[name]}

            def remove(self, force=False):
                del engine.labels[self.name]

        class Volumes:
            def get(self, name):
                if name not in engine.labels:
                    raise engine.errors.NotFound(name)
                return Volume(name)

            def create(self, name, driver, labels):
                engine.labels[name] = dict(labels)

        class Images:
            def get(self, tag):
                if tag not in engine.image_ids:
                    raise engine.errors.ImageNotFound(tag)
                return type("Image", (), {"id": engine.image_ids[tag]})()

        self.volumes, self.images = Volumes(), Images()


def run_cache(engine: Engine, text: str, **options):
    from aipc.runner.cache import LABEL_GENERATION, RunCache
    from aipc.runner.selection import RunNames

    pipeline = compile_ok(text)
    names = RunNames.new(pipeline, "/tmp/p.aip", "run1")
    specs = container_specs(pipeline, pipeline.stages, Diagnostics("t.aip"), "`aipc run`")
    cache = RunCache(engine, pipeline, specs, names, **options)

    def succeed(name: str, digest: str = "d") -> None:
        """What a run does: fresh output volumes, then the record."""
        stage = pipeline.stage(name)
        for output in stage.outputs:
            engine.labels[f"aipc-p-{name}.{output.name}"] = {LABEL_GENERATION: f"g-{len(engine.labels)}"}
        cache.record(stage, cache.parts(stage)[0], {o.name: digest for o in stage.outputs})

    return pipeline, cache, succeed


PIPELINE = '''\
pipeline "p" { }
volume v { size = 1Gi }
data make { image = "i:1"  output raw at "/out" }
train fit { image = "i:1"  input make.raw at "/in"  output model at "/m" }
data writes { image = "i:1"  mount v at "/v" }
eval reads { image = "i:1"  after = [writes]  mount v at "/v" readonly }
'''


def test_the_cache_decides_from_what_the_engine_keeps():
    engine = Engine()
    pipeline, cache, succeed = run_cache(engine, PIPELINE)
    decide = lambda name: cache.decide(pipeline.stage(name)).describe()  # noqa: E731
    assert decide("make") == "runs: no earlier run recorded"
    succeed("make")
    assert decide("make") == "cached"
    assert decide("fit") == "runs: no earlier run recorded"
    succeed("fit")
    assert decide("fit") == "cached"
    assert decide("writes").startswith("runs: not cached: it writes the volume `v`")
    succeed("writes")
    assert decide("reads") == "runs: it reads the volume `v`, which `writes` wrote in this run"

    later, cache, _ = run_cache(engine, PIPELINE)  # the next run
    assert cache.decide(later.stage("fit")).describe() == "cached"  # its input's digest, from make's record
    engine.image_ids["i:1"] = "sha256:two"  # the tag, rebuilt
    later, cache, _ = run_cache(engine, PIPELINE)
    assert cache.decide(later.stage("make")).describe() == "runs: changed: image"
    engine.image_ids["i:1"] = "sha256:one"
    del engine.labels["aipc-p-make.raw"]  # an output deleted
    later, cache, _ = run_cache(engine, PIPELINE)
    assert cache.decide(later.stage("make")).describe() == "runs: its output `raw` is gone or was replaced"
    assert cache.decide(later.stage("fit")).describe() == \
        "runs: the output `make.raw` it reads has no known digest"
    later, cache, _ = run_cache(engine, PIPELINE, no_cache=True)
    assert cache.decide(later.stage("reads")).describe() == "runs: --no-cache"


def test_a_plan_says_what_a_stage_after_one_that_runs_depends_on():
    engine = Engine()
    pipeline, cache, succeed = run_cache(engine, PIPELINE)
    succeed("make")
    succeed("fit")
    changed, cache, _ = run_cache(engine, PIPELINE.replace('output raw at "/out"', 'output raw at "/out2"'))
    predicted = cache.predict(changed.stages)
    assert predicted["make"].describe() == "runs: changed: mounts"
    assert predicted["fit"].describe() == "cached if `make.raw` comes out as before"
    assert engine.labels.keys() == {"aipc-p-make.raw", "aipc-p-make..cache", "aipc-p-fit.model",
                                    "aipc-p-fit..cache"}  # a prediction changes nothing


def test_plan_cache_without_an_engine_says_so(tmp_path, monkeypatch, capsys):
    from aipc.cli import main

    path = tmp_path / "p.aip"
    path.write_text('data a { image = "i:1" }\n')
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    assert main(["plan", str(path), "--cache"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aipc plan: error: ") and "Traceback" not in err
    assert main(["plan", str(path), "--rerun", "a"]) == 2  # --rerun and --no-cache go with --cache
