"""Keystroke to diagnostic: how long after an edit the language server reports it.

    python benchmarks/lsp_latency.py [--stages 300] [--rounds 20]

Starts the real server (`python -m aipc lsp`, the same Python as this script)
and speaks LSP to it over stdio, as an editor does. It opens a generated
pipeline (benchmarks/generate.py), then edits it again and again, each edit
followed by its undo, and times each edit from the moment its `didChange`
is written until a `publishDiagnostics` for that version arrives showing the
expected result:

- a semantic error: a stage's `after` names a stage that does not exist (E102);
- a syntax error: an attribute loses its `=` (E002);
- each undo: the error is gone again.

Edits are spaced out (--pause) like a person's; each is measured alone. The
goal is a diagnostic within 100 ms on 300 stages; the exit status is 1 if the
median of any kind misses it. Timings include the server's debounce.
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import pipeline  # noqa: E402

GOAL = 0.100  # seconds from an edit to its diagnostic


class Server:
    """A language server subprocess and a minimal JSON-RPC client for it."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.messages: queue.Queue = queue.Queue()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = self.process.stdout
        while True:
            length = None
            while True:
                line = stream.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("ascii").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            body = json.loads(stream.read(length))
            self.messages.put((time.perf_counter(), body))

    def send(self, method: str, params, request: bool = False) -> int | None:
        message = {"jsonrpc": "2.0", "method": method, "params": params}
        if request:
            self.next_id += 1
            message["id"] = self.next_id
        data = json.dumps(message).encode("utf-8")
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
        self.process.stdin.flush()
        return message.get("id")

    def wait(self, accept, timeout: float = 30.0):
        """The arrival time and body of the first message ``accept`` takes."""
        deadline = time.perf_counter() + timeout
        while True:
            arrived, body = self.messages.get(timeout=max(0.0, deadline - time.perf_counter()))
            if accept(body):
                return arrived, body

    def close(self) -> None:
        request = self.send("shutdown", None, request=True)
        self.wait(lambda body: body.get("id") == request)
        self.send("exit", None)
        self.process.wait(timeout=10)


def diagnostics_for(version: int, predicate):
    def accept(body) -> bool:
        if body.get("method") != "textDocument/publishDiagnostics":
            return False
        params = body["params"]
        return params.get("version") == version and predicate(params["diagnostics"])
    return accept


def has(code: str):
    return lambda diagnostics: any(d.get("code") == code for d in diagnostics)


def lacks(code: str):
    return lambda diagnostics: not any(d.get("code") == code for d in diagnostics)


def replace(text: str, old: str, new: str, nth: int) -> tuple[str, dict]:
    """Replace the ``nth`` occurrence of ``old``; return the text and the LSP change."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(old, at + 1)
    line = text.count("\n", 0, at)
    column = at - (text.rfind("\n", 0, at) + 1)  # the text is ASCII: columns are UTF-16 units
    change = {"range": {"start": {"line": line, "character": column},
                        "end": {"line": line, "character": column + len(old)}}, "text": new}
    return text[:at] + new + text[at + len(old):], change


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=20, help="edits of each kind (each followed by its undo)")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between edits")
    parser.add_argument("--log", metavar="PATH", help="have the server log each check's timings to PATH")
    args = parser.parse_args()

    text = pipeline(args.stages)
    uri = "file:///bench/pipeline.aip"
    command = [sys.executable, "-m", "aipc", "lsp"]
    if args.log:
        command += ["--verbose", "--log-file", args.log]
    server = Server(command)
    request = server.send("initialize", {
        "processId": None, "rootUri": None,
        "capabilities": {"general": {"positionEncodings": ["utf-16"]},
                         "textDocument": {"publishDiagnostics": {"versionSupport": True}}},
    }, request=True)
    server.wait(lambda body: body.get("id") == request)
    server.send("initialized", {})

    started = time.perf_counter()
    server.send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "aip", "version": 1,
                                                          "text": text}})
    arrived, _ = server.wait(diagnostics_for(1, lambda d: True))
    print(f"{args.stages} stages, {len(text.splitlines())} lines: first diagnostics {1000 * (arrived - started):.0f} ms"
          " after opening (every declaration parsed)")

    edits = {
        "semantic error (E102)": ("after   = [prep_", "after   = [nope_", has("E102"), lacks("E102")),
        "syntax error (E002)": ("command = [", "command   [", has("E002"), lacks("E002")),
    }
    timings: dict[str, list[float]] = {name: [] for name in edits}
    timings["undo"] = []
    version = 1
    occurrences = text.count("after   = [prep_")
    for round_ in range(args.rounds):
        for name, (old, new, broken, fixed) in edits.items():
            nth = (round_ * 7) % min(occurrences, text.count(old))
            # the edit, then its undo (the edited text occurs once)
            for before, after, at, expect, bucket in ((old, new, nth, broken, name), (new, old, 0, fixed, "undo")):
                time.sleep(args.pause)
                text, change = replace(text, before, after, at)
                version += 1
                sent = time.perf_counter()
                server.send("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                                       "contentChanges": [change]})
                arrived, _ = server.wait(diagnostics_for(version, expect))
                timings[bucket].append(arrived - sent)
    server.close()

    print(f"\n{'edit':<24}{'n':>4}{'median':>10}{'p90':>10}{'max':>10}   goal {1000 * GOAL:.0f} ms")
    missed = False
    for name, values in timings.items():
        values.sort()
        median = statistics.median(values)
        p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
        verdict = "ok" if median <= GOAL else "MISSED"
        missed = missed or median > GOAL
        print(f"{name:<24}{len(values):>4}{1000 * median:>8.0f}ms{1000 * p90:>8.0f}ms{1000 * max(values):>8.0f}ms"
              f"   {verdict}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
