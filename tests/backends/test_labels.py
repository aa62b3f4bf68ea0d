"""Every object aipc makes carries the same labels on every target and under
`aipc run`: the standard app.kubernetes.io ones, then the pipeline's and the stage's
(an instance's, its matrix stage's). An instance's exact coordinates are an
annotation on Kubernetes, a label where there are no annotations (compose, `aipc run`)."""

from __future__ import annotations

import pytest

from aipc.backends import compose, kubernetes
from aipc.backends.docker import container_specs
from aipc.compiler import ir
from aipc.diagnostics import Diagnostics
from aipc.runner.selection import LABEL_PREFIX, RunNames
from tests.helpers import EXAMPLES, compile_example


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_a_stage_has_the_same_labels_on_every_target_and_under_aipc_run(path):
    pipeline = compile_example(path)
    services = compose.emit(pipeline).documents[0]["services"]
    workloads = {doc["metadata"]["annotations"][kubernetes.STAGE_ANNOTATION]: doc  # none: host volumes (B001)
                 for doc in kubernetes.emit(pipeline).documents if doc["kind"] in ("Job", "Deployment")}
    specs = container_specs(pipeline, pipeline.stages, Diagnostics(path.name), "`aipc run`")
    names = RunNames.new(pipeline, str(path), run_id="r")
    for stage in pipeline.stages:
        expected = {ir.LABEL_NAME: stage.name, ir.LABEL_PART_OF: pipeline.name,
                    ir.LABEL_COMPONENT: stage.kind.value, ir.LABEL_MANAGED_BY: "aipc",
                    **dict(pipeline.labels), **dict(stage.labels)}
        coordinates = {ir.COORDINATES_ANNOTATION: stage.instance.coordinates_json()} if stage.instance else {}
        for service in compose.services_of(stage):  # each node of a multi-node stage
            assert services[service]["labels"] == {**expected, **coordinates}
        if workloads:
            queue = {kubernetes.QUEUE_LABEL: stage.schedule.queue} if stage.schedule.queue else {}
            assert workloads[stage.name]["metadata"]["labels"] == {**expected, **queue}  # Kueue reads a Job's
            assert workloads[stage.name]["spec"]["template"]["metadata"]["labels"] == expected
            assert coordinates.items() <= workloads[stage.name]["metadata"]["annotations"].items()
        run = {**dict(specs[stage.name].labels), **names.stage_labels(stage)}
        assert {k: v for k, v in run.items() if not k.startswith(LABEL_PREFIX)} == {**expected, **coordinates}
