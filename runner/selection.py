"""What one run includes and what it is called: stage selection, secrets from the
environment, and the names and labels of the containers, volumes and network.

Pure functions over the IR; nothing here talks to Docker.
"""

from __future__ import annotations

import difflib
import os
import secrets as _random
from dataclasses import dataclass
from typing import Iterable, Mapping

from aipc.backends.docker import secret_keys
from aipc.compiler import ir

LABEL_PREFIX = "dev.aipc"
LABEL_FILE = f"{LABEL_PREFIX}.file"  # realpath of the .aip file a run was started from
LABEL_PIPELINE = f"{LABEL_PREFIX}.pipeline"  # the pipeline: `namespace/name` or `name` (PipelineId.label)
LABEL_RUN = f"{LABEL_PREFIX}.run"  # one `aipc run`
LABEL_STAGE = f"{LABEL_PREFIX}.stage"
LABEL_VOLUME = f"{LABEL_PREFIX}.volume"
LABEL_ROLE = f"{LABEL_PREFIX}.role"  # "batch" or "serve"


class SelectionError(ValueError):
    """``--only`` or ``--from`` names a stage the pipeline does not have."""


def _unknown(name: str, pipeline: ir.Pipeline, option: str) -> SelectionError:
    names = list(dict.fromkeys(stage.group for stage in pipeline.stages))
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean `{close[0]}`?" if close else f"; the stages are: {', '.join(names)}"
    return SelectionError(f"{option}: `{name}` is not a stage of `{pipeline.name}`{hint}")


def stages_named(pipeline: ir.Pipeline, name: str) -> set[str]:
    """The stages a name on the command line means: a stage, one instance of a matrix
    stage, or every instance of a matrix stage; empty when it is none of them."""
    for matrix in pipeline.matrices:
        if matrix.stage == name:
            return set(matrix.instances)
    return {name} if any(stage.name == name for stage in pipeline.stages) else set()


def downstream(pipeline: ir.Pipeline, name: str) -> set[str]:
    """``name`` (every instance, for a matrix stage) and every stage that depends on
    it, directly or transitively."""
    reached = stages_named(pipeline, name)
    for stage in pipeline.stages:  # topological: a stage comes after all it depends on
        if any(dependency in reached for dependency in stage.after):
            reached.add(stage.name)
    return reached


def select_stages(pipeline: ir.Pipeline, only: Iterable[str] = (), start: str | None = None) -> tuple[str, ...]:
    """The stages a run includes, in the pipeline's topological order.

    ``only``: exactly these stages (their dependencies outside the selection are
    assumed to have produced their data already). ``start``: that stage and
    everything downstream of it. Neither: every stage. A matrix stage's name
    means all of its instances; an instance's name, that instance.
    """
    chosen = {stage.name for stage in pipeline.stages}
    only = list(only)
    if only:
        chosen = set()
        for name in only:
            named = stages_named(pipeline, name)
            if not named:
                raise _unknown(name, pipeline, "--only")
            chosen |= named
    if start is not None:
        if not stages_named(pipeline, start):
            raise _unknown(start, pipeline, "--from")
        chosen &= downstream(pipeline, start)
    return tuple(stage.name for stage in pipeline.stages if stage.name in chosen)


def required_secrets(pipeline: ir.Pipeline, selected: Iterable[str]) -> tuple[str, ...]:
    """Every environment variable the selected stages' secrets need, sorted: the keys
    of the secrets they list (one the stage's own ``env`` sets is not needed: that
    entry wins) and the keys their ``env`` takes under another name (``hf.token``)."""
    wanted = set(selected)
    stages = [stage for stage in pipeline.stages if stage.name in wanted]
    return tuple(sorted({key for stage in stages for key in secret_keys(stage)}
                        | {key.key for stage in stages for _, key in stage.secret_env}))


def missing_secrets(pipeline: ir.Pipeline, selected: Iterable[str], environ: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(key for key in required_secrets(pipeline, selected) if key not in environ)


@dataclass(frozen=True)
class PipelineId:
    """Who a run belongs to: the pipeline's name and the namespace of its project
    (the header's ``namespace``), not the file that declares it. Renaming or moving
    the file keeps its runs, volumes and logs; two files that declare one pipeline
    share them (``aipc run`` says so when both are in use)."""

    name: str
    namespace: str | None = None

    @classmethod
    def of(cls, pipeline: ir.Pipeline) -> "PipelineId":
        return cls(pipeline.name, pipeline.namespace)

    @property
    def label(self) -> str:
        """The value of the pipeline label: ``namespace/name``, or ``name``."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @property
    def slug(self) -> str:
        """The part of Docker object names that stands for the pipeline."""
        name = ir.dns_label(self.name)
        return f"{self.namespace}-{name}" if self.namespace else name

    def __str__(self) -> str:
        return f"`{self.name}`" + (f" (namespace `{self.namespace}`)" if self.namespace else "")


@dataclass(frozen=True)
class RunNames:
    """Names and labels of one run's Docker objects.

    Named volumes belong to the pipeline (:class:`PipelineId`) and persist between
    runs; containers and the network belong to one run. Every object carries the
    pipeline label (what ``aipc down``, ``ps`` and ``logs`` look for) and the real
    path of the file it was run from (what a message names).
    """

    pipeline: PipelineId
    file: str  # real path of the .aip file
    run_id: str

    @classmethod
    def new(cls, pipeline: ir.Pipeline, path: str, run_id: str | None = None) -> "RunNames":
        return cls(PipelineId.of(pipeline), os.path.realpath(path), run_id or _random.token_hex(4))

    @property
    def key(self) -> str:
        """The pipeline label's value."""
        return self.pipeline.label

    def volume(self, volume: ir.Volume) -> str:
        """The Docker volume behind an .aip volume (a claim names an existing volume)."""
        if volume.kind is ir.VolumeKind.CLAIM and volume.claim:
            return volume.claim
        return f"aipc-{self.pipeline.slug}-{ir.dns_label(volume.name)}"

    @property
    def network(self) -> str:
        return f"aipc-{self.pipeline.slug}-{self.run_id}"

    def container(self, stage: str, number: int) -> str:
        """``number`` is the attempt of a batch stage or the replica of a serve stage."""
        return f"aipc-{self.pipeline.slug}-{ir.dns_label(stage)}-{self.run_id}-{number}"

    def base_labels(self) -> dict[str, str]:
        return {LABEL_FILE: self.file, LABEL_PIPELINE: self.key, **ir.standard_labels(self.pipeline.name)}

    def run_labels(self) -> dict[str, str]:
        return {**self.base_labels(), LABEL_RUN: self.run_id}

    def volume_labels(self, volume: ir.Volume) -> dict[str, str]:
        return {**self.base_labels(), LABEL_VOLUME: volume.name}

    def stage_labels(self, stage: ir.Stage) -> dict[str, str]:
        """This run's labels of a stage's containers, added to the labels of its
        container spec (DESIGN.md's and the user's)."""
        return {**self.run_labels(), LABEL_STAGE: stage.name, LABEL_ROLE: "batch" if stage.is_batch else "serve"}


def label_filter(name: str, value: str) -> dict[str, list[str]]:
    """A Docker list filter for one label."""
    return {"label": [f"{name}={value}"]}
