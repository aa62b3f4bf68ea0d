"""A stage's cache key, from its container (:class:`aipc.backends.docker.ContainerSpec`):
one digest per named part, so that a miss can say which part changed.

- ``image``: what the caller says the image is: its content digest from the engine
  under `aipc run` (a rebuilt or re-pulled tag is a miss), the image as written in
  the compile-time key of Kubernetes and Argo;
- ``command``: the entrypoint and arguments after interpolation;
- ``workdir``; ``env``: the values of ``env`` and the names (never the values) of
  the secret keys passed through or renamed (``NAME = SECRET.KEY``);
- ``security``: every other setting of the container (read-only root,
  capabilities, options): a setting added to the spec is keyed unless listed in
  :data:`NOT_KEYED`;
- ``mounts``: the volumes it mounts, where and how, and where its outputs go;
- ``inputs``: each input's path and what identifies its content: the output's
  content digest under `aipc run` (an upstream stage that ran again and wrote the
  same bytes leaves its dependants cached), the producer's key on a cluster.

Retries, timeouts, resources (the size of the /tmp tmpfs, which follows the
memory limit, with them) and when the image is pulled are not part of it: they
change how a stage runs, not what it computes.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from typing import Mapping

from aipc import codes
from aipc.backends.docker import ContainerSpec, container_spec, rendered
from aipc.compiler import ir

KEY_PARTS = ("image", "command", "workdir", "env", "security", "mounts", "inputs")


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# What the container spec says about how a stage runs, not what it computes: not keyed.
NOT_KEYED = frozenset({"pull", "cpu", "memory", "gpu", "devices", "shm_size", "publish", "healthcheck", "aliases",
                       "labels", "hostname"})  # hostname: a node's name; the group's size is keyed below
# The spec's fields of the other parts; every field not named here nor above is `security`,
# so a setting added to the spec is part of the key unless it is said not to be.
OF_PART = {"image": "image", "entrypoint": "command", "command": "command", "working_dir": "workdir",
           "environment": "env", "secret_env": "env", "secret_keys": "env", "mounts": "mounts"}


def _plain(value):
    """A spec's value as JSON data: dataclasses as their fields (spans left out: moving a
    line changes no key), enums as their values."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "span"}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value


def key_parts(stage: ir.Stage, spec: ContainerSpec, image_id: str, inputs: Mapping[str, str]) -> dict[str, str]:
    """The digest of each part of a stage's key; ``inputs`` are the digests of the
    outputs it reads, by artifact key (``model.weights``)."""
    parts: dict[str, dict] = {name: {} for name in KEY_PARTS}
    for field_ in dataclasses.fields(spec):
        if field_.name in NOT_KEYED:
            continue
        value = getattr(spec, field_.name)
        if field_.name == "image":
            value = image_id  # the content, not the tag
        elif field_.name == "mounts":  # the volumes; outputs are keyed by their paths, inputs by their content
            value = [m for m in value if m.volume.kind is not ir.VolumeKind.ARTIFACT]
        elif field_.name == "tmpfs":  # where; its size is the memory limit's
            value = [path for path, _ in value]
        parts[OF_PART.get(field_.name, "security")][field_.name] = _plain(value)
    if stage.nodes is not None:  # a group: what its nodes are told (NNODES, WORLD_SIZE) follows its size
        parts["env"]["nodes"] = stage.nodes
    parts["mounts"]["outputs"] = [[o.name, o.path] for o in stage.outputs]
    parts["inputs"]["read"] = [[a.key, a.path, inputs.get(a.key)] for a in stage.artifact_mounts() if a.read_only]
    return {name: digest(parts[name]) for name in KEY_PARTS}


def combined(parts: Mapping[str, str]) -> str:
    return digest([parts[name] for name in KEY_PARTS])


def changed_parts(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """The parts of the key that differ, in the key's order."""
    return [name for name in KEY_PARTS if old.get(name) != new.get(name)]


def not_cached_because(stage: ir.Stage, pipeline: ir.Pipeline) -> str | None:
    """Why a stage is never cached, or None: a serve stage, ``cache = false``, and unless
    ``cache = true`` a stage that writes a mounted volume (not an output) or waits for
    a serve stage (it talks to a service whose state is in no key)."""
    if not stage.is_batch:
        return "a serve stage"
    if stage.cache is not None:
        return None if stage.cache else "`cache = false`"
    writes = [m.volume.name for m in stage.mounts if not m.read_only]
    if writes:
        return f"it writes the volume `{writes[0]}` (`cache = true` caches it anyway)"
    services = [name for name in stage.after if not pipeline.stage(name).is_batch]
    if services:
        return f"it runs after the service `{services[0]}` (`cache = true` caches it anyway)"
    return None


CACHE_KEY_ANNOTATION = "aipc.dev/cache-key"  # on a cluster: the compile-time part of a stage's key


def compile_keys(pipeline: ir.Pipeline) -> dict[str, str]:
    """The compile-time part of the key of each batch stage that may be cached (and
    reads no volume another stage writes, unless ``cache = true``), for Kubernetes
    and Argo: the image as written (a tag, unless pinned by digest), and for each
    input the key of the stage that writes it. A hex digest, which Argo's memoize
    accepts (``^[a-zA-Z0-9][-a-zA-Z0-9]*$``, docs/research/v1-facts.md)."""
    keys: dict[str, str] = {}
    # A volume's content is not in the key: a stage that reads one that a stage of the
    # pipeline writes (each run, since a writer is not cached) carries no key either.
    written = {m.volume.name for stage in pipeline.stages for m in stage.mounts if not m.read_only}
    for stage in pipeline.stages:  # in topological order: the stages an input reads come first
        if not_cached_because(stage, pipeline) is not None or (
                stage.cache is not True and any(m.volume.name in written for m in stage.mounts)):
            continue
        spec = container_spec(pipeline, stage, ())
        inputs = {a.key: keys.get(a.producer, "") for a in stage.artifact_mounts() if a.read_only}
        keys[stage.name] = combined(key_parts(stage, spec, spec.image, inputs))
    return keys


def report_tag_keys(pipeline: ir.Pipeline, keys: Mapping[str, str], sink, target: str) -> None:
    """B105 once, at the first stage with outputs whose image is a tag: on a cluster the
    key holds the image as written, so a tag pushed again gives stale hits."""
    tagged = [pipeline.stage(name) for name in keys]
    tagged = [stage for stage in tagged if stage.outputs and "@" not in rendered(stage.image)]
    if not tagged:
        return
    first = tagged[0]
    others = f" (and {len(tagged) - 1} more stages with outputs)" if len(tagged) > 1 else ""
    sink.warning(codes.TAG_KEYED_CACHE, first.image.span,
                 f"on {target} the cache key of `{first.name}`{others} holds its image's tag, not its content: "
                 "a tag pushed again with other contents still matches",
                 label="a tag, not a digest",
                 help="pin the image by digest (`image = \"repo@sha256:...\"`) so the cache follows its "
                 "content; `aipc run` keys by content either way")

