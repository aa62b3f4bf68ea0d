"""The cache of `aipc run`: a batch stage that already succeeded with the same key,
and whose outputs still exist, is skipped and reported as cached.

The key (LANGUAGE.md, "Artifacts and caching") is
:mod:`aipc.backends.cachekey`'s, with the image's content digest from the engine
(its ID, not its tag) and the content digest of each output a stage reads.

After a stage succeeds, each of its outputs gets a content digest (paths, file
types, permission bits and contents; not times or owners), read through the
engine from the stage's own container before it is removed. What a stage left
is recorded with the Docker engine, not in files beside the pipeline: a small
record volume per stage whose labels hold the key, its parts and the digest of
each output with the generation of the output's volume (a token it is created
with: an output volume is created afresh for every attempt, so a deleted or
replaced one is a miss).
`aipc down -v` removes the records with the pipeline's other volumes.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping

from aipc.backends.cachekey import changed_parts, combined, digest, key_parts, not_cached_because
from aipc.backends.docker import ContainerSpec
from aipc.compiler import ir

LABEL_CACHE = "dev.aipc.cache"  # on a record volume: the stage it records
LABEL_KEY = "dev.aipc.cache.key"
LABEL_PARTS = "dev.aipc.cache.parts"  # JSON: each part's digest
LABEL_OUTPUTS = "dev.aipc.cache.outputs"  # JSON: each output's digest and its volume's generation
LABEL_GENERATION = "dev.aipc.generation"  # on an output volume: a token new with each volume


# ------------------------------------------------------------------ output digests


class _Chunks:
    """A file-like reader over an iterator of byte chunks (the engine's tar stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def tree_digest(chunks: Iterable[bytes]) -> str:
    """The content digest of a directory from a tar stream of it (as the engine's
    archive endpoint gives it, under one top directory): each entry's path below
    the top, type, permission bits and content (a link's target), in path order."""
    entries = []
    with tarfile.open(fileobj=_Chunks(chunks), mode="r|") as archive:  # type: ignore[arg-type]
        for member in archive:
            path = member.name.partition("/")[2]
            if member.isfile():
                content = hashlib.sha256()
                reader = archive.extractfile(member)
                for block in iter(lambda: reader.read(1 << 20), b""):  # type: ignore[union-attr]
                    content.update(block)
                what = ["file", content.hexdigest()]
            elif member.isdir():
                what = ["dir", ""]
            elif member.issym() or member.islnk():
                what = ["link" if member.issym() else "hardlink", member.linkname.partition("/")[2]
                        if member.islnk() else member.linkname]
            else:
                what = ["other", str(member.type)]
            entries.append([path, member.mode & 0o7777, *what])
    return digest(sorted(entries))


# ------------------------------------------------------------------ records


@dataclass(frozen=True)
class Record:
    """What a stage left when it last succeeded."""

    key: str
    parts: dict[str, str]
    outputs: dict[str, tuple[str, str]]  # output -> (digest, its volume's generation)


def record_labels(record: Record) -> dict[str, str]:
    return {LABEL_KEY: record.key, LABEL_PARTS: json.dumps(record.parts, sort_keys=True),
            LABEL_OUTPUTS: json.dumps({name: list(value) for name, value in record.outputs.items()},
                                      sort_keys=True)}


def read_record(labels: Mapping[str, str]) -> Record | None:
    try:
        outputs = {name: (value[0], value[1]) for name, value in json.loads(labels[LABEL_OUTPUTS]).items()}
        return Record(labels[LABEL_KEY], dict(json.loads(labels[LABEL_PARTS])), outputs)
    except (KeyError, ValueError, TypeError, IndexError):
        return None


@dataclass
class Decision:
    """Whether a stage is cached, and if not, why (for the run's notes and `aipc plan --cache`)."""

    cached: bool
    reason: str = ""
    parts: dict[str, str] = field(default_factory=dict)
    unless: tuple[str, ...] = ()  # a prediction: cached if these outputs, written again first, come out the same

    def describe(self) -> str:
        """``cached``, ``runs: changed: image``, ``cached if `make.raw` comes out as before``."""
        if self.cached and self.unless:
            return "cached if " + ", ".join(f"`{key}`" for key in self.unless) + " come" + \
                ("s" if len(self.unless) == 1 else "") + " out as before"
        if self.cached:
            return "cached"
        return f"runs: {self.reason}" if self.reason else "runs"


# ------------------------------------------------------------------ with the engine


class RunCache:
    """The cache of one run, kept with the Docker engine. ``decide`` is called by the
    scheduler's workers before a stage runs, ``record`` after it succeeded."""

    def __init__(self, client, pipeline: ir.Pipeline, specs: Mapping[str, ContainerSpec], names, *,
                 no_cache: bool = False, rerun: Iterable[str] = ()) -> None:
        import threading

        self.client = client
        self.pipeline = pipeline
        self.specs = specs
        self.names = names
        self.no_cache = no_cache
        self.rerun = frozenset(rerun)
        self.digests: dict[str, str] = {}  # artifact key (`model.weights`) -> digest, known in this run
        self.wrote: dict[str, str] = {}  # volume -> a stage that wrote it in this run
        self._images: dict[str, str] = {}
        self._lock = threading.Lock()

    # names and labels

    def record_volume(self, stage: str) -> str:
        """The record of a stage: `..` appears in no output's volume name."""
        return self.names.volume(ir.Volume(stage, ir.VolumeKind.SIZED)) + "..cache"

    def output_volume(self, artifact: ir.ArtifactMount) -> str:
        return self.names.volume(artifact.volume)

    # what the engine knows

    def image_id(self, image: str) -> str:
        with self._lock:
            known = self._images.get(image)
        if known is None:
            known = self.client.images.get(image).id
            with self._lock:
                self._images[image] = known
        return known

    def load(self, stage: str) -> Record | None:
        import docker

        try:
            volume = self.client.volumes.get(self.record_volume(stage))
        except docker.errors.NotFound:
            return None
        return read_record(volume.attrs.get("Labels") or {})

    def generation(self, volume_name: str) -> str | None:
        """The token an output volume was created with (None: gone, or not created for a stage)."""
        import docker

        try:
            return (self.client.volumes.get(volume_name).attrs.get("Labels") or {}).get(LABEL_GENERATION)
        except docker.errors.NotFound:
            return None

    def _kept(self, record: Record, stage: str, output: str) -> bool:
        """Whether the output a record names is still the volume the stage wrote."""
        digest_and_time = record.outputs.get(output)
        volume = self.output_volume(ir.ArtifactMount(stage, output, "", False))
        return digest_and_time is not None and self.generation(volume) == digest_and_time[1]

    def input_digest(self, producer: str, output: str) -> str | None:
        key = f"{producer}.{output}"
        with self._lock:
            known = self.digests.get(key)
        if known is not None:
            return known
        record = self.load(producer)  # a stage outside the run (`--only`), or never cached
        if record is None or not self._kept(record, producer, output):
            return None
        return record.outputs[output][0]

    # decisions

    def parts(self, stage: ir.Stage) -> tuple[dict[str, str] | None, str]:
        """The parts of a stage's key, or None and why they cannot be known."""
        inputs: dict[str, str] = {}
        for artifact in stage.artifact_mounts():
            if not artifact.read_only:
                continue
            digest = self.input_digest(artifact.producer, artifact.output)
            if digest is None:
                return None, f"the output `{artifact.key}` it reads has no known digest"
            inputs[artifact.key] = digest
        spec = self.specs[stage.name]
        import docker

        try:
            image_id = self.image_id(spec.image)
        except docker.errors.ImageNotFound:
            return None, f"its image `{spec.image}` is not on this Docker engine yet"
        return key_parts(stage, spec, image_id, inputs), ""

    def decide(self, stage: ir.Stage) -> Decision:
        reason = not_cached_because(stage, self.pipeline)
        if reason is not None:
            return Decision(False, f"not cached: {reason}")
        parts, why = self.parts(stage)
        if parts is None:
            return Decision(False, why)
        if self.no_cache:
            return Decision(False, "--no-cache", parts)
        for mount in stage.mounts:  # a volume's content is not in the key: what was written in this run is news
            writer = self.wrote.get(mount.volume.name)
            if mount.read_only and writer is not None:
                return Decision(False, f"it reads the volume `{mount.volume.name}`, which `{writer}` wrote in this "
                                "run", parts)
        if stage.name in self.rerun:
            return Decision(False, "--rerun", parts)
        record = self.load(stage.name)
        if record is None:
            return Decision(False, "no earlier run recorded", parts)
        if record.key != combined(parts):
            return Decision(False, "changed: " + ", ".join(changed_parts(record.parts, parts)), parts)
        for output in stage.outputs:
            if not self._kept(record, stage.name, output.name):
                return Decision(False, f"its output `{output.name}` is gone or was replaced", parts)
        with self._lock:
            for output in stage.outputs:
                self.digests[f"{stage.name}.{output.name}"] = record.outputs[output.name][0]
        return Decision(True, "", parts)

    def predict(self, stages: Iterable[ir.Stage]) -> dict[str, Decision]:
        """What `aipc run` would decide for each stage (in order), changing nothing: a
        stage that runs is taken to write what it wrote last time, so a stage after it
        is cached only if that comes out the same (``Decision.unless``)."""
        rewritten: set[str] = set()
        out: dict[str, Decision] = {}
        for stage in stages:
            decision = self.decide(stage)
            reads = [a.key for a in stage.artifact_mounts() if a.read_only]
            if decision.cached:
                decision.unless = tuple(key for key in reads if key in rewritten)
            elif stage.is_batch:
                record = self.load(stage.name)
                for output in stage.outputs:
                    key = f"{stage.name}.{output.name}"
                    rewritten.add(key)
                    if record is not None and output.name in record.outputs:
                        with self._lock:
                            self.digests[key] = record.outputs[output.name][0]
            out[stage.name] = decision
        return out

    def record(self, stage: ir.Stage, parts: Mapping[str, str], digests: Mapping[str, str]) -> None:
        """After a success: the output digests become known to this run, and, unless
        the stage is never cached, its record is replaced."""
        with self._lock:
            for name, digest in digests.items():
                self.digests[f"{stage.name}.{name}"] = digest
            for mount in stage.mounts:
                if not mount.read_only:
                    self.wrote.setdefault(mount.volume.name, stage.name)
        if not parts or not_cached_because(stage, self.pipeline) is not None:
            return
        import docker

        outputs = {}
        for output in stage.outputs:
            generation = self.generation(self.output_volume(ir.ArtifactMount(stage.name, output.name, "", False)))
            outputs[output.name] = (digests[output.name], generation or "")
        name = self.record_volume(stage.name)
        try:
            self.client.volumes.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass
        labels = {**self.names.base_labels(), LABEL_CACHE: stage.name,
                  **record_labels(Record(combined(parts), dict(parts), outputs))}
        self.client.volumes.create(name, driver="local", labels=labels)
