"""Small helpers the tests share (imported as `from tests.helpers import ...`)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

from aipc.compiler import check_source
from aipc.compiler import ir


ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.aip"))


def strip_spans(value):
    """A model dump without positions, for comparing models from different texts."""
    if isinstance(value, dict):
        return {k: strip_spans(v) for k, v in value.items() if not k.endswith("span")}
    if isinstance(value, (list, tuple)):
        return [strip_spans(v) for v in value]
    return value


def compile_ok(text: str, params: dict | None = None, path: str = "test.aip") -> ir.Pipeline:
    """The IR of a program that must check without errors."""
    checked = check_source(text, path, params or {})
    errors = [d for d in checked.diagnostics if d.is_error]
    assert not errors, [f"{d.code} {d.message}" for d in errors]
    assert checked.ir is not None
    return checked.ir


def compile_example(path: Path, params: dict | None = None) -> ir.Pipeline:
    """The IR of an example, checked where it lives (examples import lib/ml.aip)."""
    return compile_ok(path.read_text(), params, path=str(path))


def codes_of(text: str, params: dict | None = None) -> list[str]:
    return [d.code for d in check_source(text, "test.aip", params or {}).diagnostics]


def strings_in(value):
    """Every key and string of a YAML document read back, depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, str):
        yield value


def plain(value):
    """IR strings (ir.Text) as the Kubernetes target writes them, each parameter's
    value in place, in whatever tuples hold them: `plain(stage.env)`."""
    if isinstance(value, ir.Text):
        return value.render(param=ir.param_value, service=ir.service_address)
    if isinstance(value, tuple):
        return tuple(plain(item) for item in value)
    return value


# Ports for the tests' services: below the kernel's ephemeral range (32768-60999 by
# default, /proc/sys/net/ipv4/ip_local_port_range), where any outgoing connection
# (the Docker client's, a browser's) may take a port between the probe and the use,
# and in a band of PORT_BAND ports per pytest-xdist worker, so that two workers never
# pick the same one.
FIRST_PORT = 10000
PORT_BAND = 2000


def free_port(count: int = 1) -> int:
    """The first of ``count`` consecutive ports that nothing on this machine holds
    (each checked on 0.0.0.0, which Docker's published ports bind), in this worker's band."""
    worker = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", "gw0"))
    band = FIRST_PORT + (int(worker.group(1)) if worker else 0) % 11 * PORT_BAND  # 11 bands end at 32000
    for _ in range(200):
        first = random.randrange(band, band + PORT_BAND - count)
        try:
            for port in range(first, first + count):
                with socket.socket() as probe:
                    probe.bind(("0.0.0.0", port))
        except OSError:
            continue
        return first
    raise AssertionError(f"no {count} free ports in {band}-{band + PORT_BAND - 1}")


@contextlib.contextmanager
def engine_events(label: str, image: str):
    """A list that holds, once the block ends, the Docker engine's events for the
    containers with ``label`` (``KEY=VALUE``) during the block: `start`, `die`,
    `health_status: healthy`..., with nanosecond times; they outlive the containers.

    Streamed while the block runs, not replayed after it: `docker events --since`
    replays only the engine's last 1000 events ("docker system events" in Docker's
    reference), fewer than a shared engine makes during a run when several test
    workers (or test runs) use it; a stage's `start` was then missing. At the end a
    container with the same label is created and removed: once its `destroy` comes,
    every event before it has."""
    since = time.time() - 1  # the stream starts with what happened while it was being set up
    process = subprocess.Popen(["docker", "events", "--since", f"{since:.3f}", "--filter", "type=container",
                                "--filter", f"label={label}", "--format", "{{json .}}"],
                               stdout=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    found: list[dict] = []
    try:
        yield found
        marker = subprocess.run(["docker", "create", "--label", label, image, "true"], capture_output=True,
                                text=True, check=True, timeout=60).stdout.strip()
        subprocess.run(["docker", "rm", marker], capture_output=True, check=True, timeout=60)
        deadline = time.monotonic() + 60
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            except queue.Empty:
                raise AssertionError(f"`docker events` did not report the marker container within 60s: {found}")
            assert line is not None, f"`docker events` ended early: {found}"
            event = json.loads(line)
            if event.get("id") != marker:
                found.append(event)
            elif event.get("Action") == "destroy":
                return
    finally:
        process.terminate()
        process.wait(timeout=30)
