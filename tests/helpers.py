"""Small helpers the tests share (imported as `from tests.helpers import ...`)."""

from __future__ import annotations

import os
import random
import re
import socket
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
