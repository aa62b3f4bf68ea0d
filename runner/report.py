"""What a run prints: each stage's output with a stage-name prefix, status changes,
and a summary table at the end.

Two reporters with one interface: :class:`PlainReporter` writes lines (pipes,
files, CI logs); :class:`LiveReporter` keeps a rich status table at the bottom of
a terminal and prints output above it. Both may be called from any thread.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence, TextIO

from aipc.runner.scheduler import RunResult, StageResult, Status

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_cyan", "bright_magenta", "bright_green")
STATUS_STYLES = {
    Status.PENDING: "dim", Status.RUNNING: "bold blue", Status.STARTING: "bold blue",
    Status.SUCCEEDED: "green", Status.SERVING: "bold green", Status.FAILED: "bold red",
    Status.TIMED_OUT: "bold red", Status.SKIPPED: "yellow", Status.CANCELLED: "yellow", Status.STOPPED: "dim",
    Status.CACHED: "green",
}


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s"


def describe_change(result: StageResult) -> str:
    """One line for a stage's new state: `ingest: running (attempt 2 of 3)`."""
    status = result.status
    if status is Status.RUNNING:
        if result.message:  # an attempt failed and another follows
            return f"{result.name}: attempt {result.attempts} of {result.max_attempts} {result.message}"
        text = f"{result.name}: running"
        return text + (f" (attempt {result.attempts} of {result.max_attempts})" if result.max_attempts > 1 else "")
    if status is Status.STARTING:
        return f"{result.name}: starting"
    if status is Status.SUCCEEDED:
        return f"{result.name}: succeeded in {format_duration(result.duration())}"
    if status is Status.SERVING:
        return f"{result.name}: serving"
    if status is Status.PENDING and result.waiting is not None:
        return f"{result.name}: {result.waiting.text}"
    detail = f": {result.message}" if result.message else ""
    return f"{result.name}: {status.value}{detail}"


def summary_rows(result: RunResult) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for stage in result.stages:
        exit_code = "-" if stage.exit_code is None else str(stage.exit_code)
        attempts = "-" if not stage.attempts else f"{stage.attempts}/{stage.max_attempts}"
        rows.append((stage.name, stage.status.value, format_duration(stage.duration()), exit_code, attempts))
    return rows


SUMMARY_HEADER = ("stage", "status", "duration", "exit code", "attempts")


def summary_text(result: RunResult) -> str:
    """The summary as aligned plain text."""
    rows = [SUMMARY_HEADER, *summary_rows(result)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(SUMMARY_HEADER))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Ending:
    """What the end of a run says besides the table: how long it took, the last
    lines of each failed stage, and the command that re-runs from a stage."""

    elapsed: float
    tails: Mapping[str, Sequence[str]] = field(default_factory=dict)
    rerun: Callable[[str], str] | None = None


def progress_text(results: Sequence[StageResult]) -> str:
    """`2 of 5 done`, and what is running or failed, for the live view and the end."""
    text = f"{RunResult(list(results)).done} of {len(results)} done"
    running = sum(1 for result in results if result.status.is_active)
    failed = sum(1 for result in results if result.status.is_failure)
    if running:
        text += f", {running} running"
    if failed:
        text += f", {failed} failed"
    return text


def outcome_line(result: RunResult, elapsed: float | None = None) -> str:
    took = "" if elapsed is None else f" in {format_duration(elapsed)}"
    counted = f"{result.done} of {len(result.stages)} stage{'s' if len(result.stages) != 1 else ''} done{took}"
    failed = result.failed
    if result.interrupted:
        return f"run interrupted: its containers were stopped and removed; {counted}"
    if failed:
        reasons = "; ".join(f"stage `{stage.name}` {stage.status.value}" + (f" ({stage.message})" if stage.message else "")
                            for stage in failed)
        return f"run failed: {reasons}; {counted}"
    return f"run succeeded: {counted}"


def failure_lines(result: RunResult, ending: Ending) -> list[str]:
    """For each failed stage: its last lines, then how to re-run from it."""
    lines: list[str] = []
    for stage in result.failed:
        tail = list(ending.tails.get(stage.name, ()))
        if tail:
            lines.append(f"the last lines of `{stage.name}`:")
            lines += [f"  {line}" for line in tail]
        else:
            lines.append(f"`{stage.name}` printed nothing")
        if ending.rerun is not None:
            lines.append(f"re-run from it: {ending.rerun(stage.name)}")
    return lines


class PlainReporter:
    """Line-oriented output: `name | line` for logs, `aipc: ...` for status."""

    def __init__(self, stages: Sequence[str], stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.width = max((len(name) for name in stages), default=8)
        self.lock = threading.Lock()
        self.started = time.monotonic()

    def _write(self, text: str) -> None:
        with self.lock:
            try:
                self.stream.write(text)
                self.stream.flush()
            except (BrokenPipeError, ValueError):
                pass  # the reader went away; the run goes on

    def log(self, source: str, line: str) -> None:
        self._write(f"{source.ljust(self.width)} | {line}\n")

    def note(self, text: str) -> None:
        self._write(f"aipc: {text}\n")

    def stage_changed(self, result: StageResult) -> None:
        self.note(describe_change(result))

    def start(self, results: Sequence[StageResult]) -> None:
        pass

    def stop(self) -> None:
        pass

    def summary(self, result: RunResult, ending: Ending) -> None:
        details = "".join(line + "\n" for line in failure_lines(result, ending))
        self._write("\n" + summary_text(result) + ("\n" + details if details else "")
                    + outcome_line(result, ending.elapsed) + "\n")


class LiveReporter:
    """A rich live table of the stages under the streamed output (for terminals)."""

    def __init__(self, stages: Sequence[str], console=None) -> None:
        from rich.console import Console

        self.console = console or Console()
        self.width = max((len(name) for name in stages), default=8)
        self.colours = {name: COLOURS[index % len(COLOURS)] for index, name in enumerate(stages)}
        self.results: list[StageResult] = []
        self.live = None
        self.started = time.monotonic()

    def _table(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 0))
        now = time.monotonic()
        for result in self.results:
            status = result.status.value
            if result.status is Status.RUNNING and result.max_attempts > 1:
                status += f" ({result.attempts}/{result.max_attempts})"
            spinner = "●" if result.status.is_active else " "
            why = result.waiting.text if result.status is Status.PENDING and result.waiting else ""
            table.add_row(f"[{self.colours.get(result.name, 'white')}]{spinner} {result.name}[/]",
                          f"[{STATUS_STYLES[result.status]}]{status}[/]",
                          format_duration(result.duration(now)), Text(why, style="dim"))
        heading = Text(f"{progress_text(self.results)} · {format_duration(now - self.started)}", style="bold")
        return Group(heading, table)

    def start(self, results: Sequence[StageResult]) -> None:
        from rich.live import Live

        self.results = list(results)
        self.live = Live(get_renderable=self._table, console=self.console, refresh_per_second=4,
                         transient=True, redirect_stdout=False, redirect_stderr=False)
        self.live.start()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def log(self, source: str, line: str) -> None:
        from rich.text import Text

        stage = source.split("#", 1)[0]
        text = Text(source.ljust(self.width) + " | ", style=self.colours.get(stage, "white"))
        text.append(line)
        self.console.print(text, soft_wrap=True, highlight=False)

    def note(self, text: str) -> None:
        from rich.text import Text

        self.console.print(Text("aipc: " + text, style="dim"), soft_wrap=True, highlight=False)

    def stage_changed(self, result: StageResult) -> None:
        from rich.text import Text

        if result.status is Status.PENDING:
            return  # the table says why it waits
        if result.status in (Status.FAILED, Status.TIMED_OUT) or (result.status is Status.RUNNING and result.message):
            self.console.print(Text("aipc: " + describe_change(result), style="bold red"), highlight=False)
        elif result.status in (Status.SKIPPED, Status.CANCELLED):
            self.console.print(Text("aipc: " + describe_change(result), style="yellow"), highlight=False)

    def summary(self, result: RunResult, ending: Ending) -> None:
        from rich.table import Table
        from rich.text import Text

        self.stop()
        table = Table(*SUMMARY_HEADER, title=None)
        for row in summary_rows(result):
            stage_status = Status(row[1])
            table.add_row(row[0], f"[{STATUS_STYLES[stage_status]}]{row[1]}[/]", *row[2:])
        self.console.print(table)
        for line in failure_lines(result, ending):
            style = "bold" if line.startswith("re-run") else ("red" if line.startswith(" ") else "")
            self.console.print(Text(line, style=style), soft_wrap=True, highlight=False)
        style = "bold green" if not (result.failed or result.interrupted) else "bold red"
        self.console.print(Text(outcome_line(result, ending.elapsed), style=style), highlight=False)


def make_reporter(mode: str, stages: Sequence[str], stream: TextIO | None = None):
    """``auto`` picks the live view on a terminal and plain lines otherwise."""
    stream = stream or sys.stdout
    if mode == "auto":
        mode = "live" if getattr(stream, "isatty", lambda: False)() else "plain"
    if mode == "live":
        from rich.console import Console

        return LiveReporter(stages, Console(file=stream, force_terminal=True))
    return PlainReporter(stages, stream)
