"""Printing results as a table, JSON or YAML: one place for every verb.

rich is imported on first print, not with this module: `shipyard --help` (which every
CLI start imports this for) would otherwise pay about a third of its start-up for it.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, cast

import typer

from shipyard.api.vocab import Phase

if TYPE_CHECKING:
    from rich.console import Console


class _LazyConsole:
    """Stands for a rich Console made on first use, with these keyword arguments."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._kwargs)
        return getattr(self._console, name)


console = cast("Console", _LazyConsole())
errors = cast("Console", _LazyConsole(stderr=True))


def fail(text: str, code: int = 1, prefix: str = "error: ") -> NoReturn:
    """One error on stderr, then exit `code`. The text is printed as it is: never read as
    markup (a spec may contain `[/x]`) and never wrapped (a message is one line to grep)."""
    from rich.markup import escape

    errors.print(f"[red]{escape(prefix)}[/red]{escape(text)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class Format(enum.StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def dump(data: Any, fmt: Format) -> None:
    if fmt is Format.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        import yaml  # only here: the CLI starts without it

        print(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), end="")


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    from rich.table import Table

    t = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*(str(c) if c is not None else "" for c in row))
    console.print(t)


def age(since: float | None, now: float | None = None) -> str:
    if since is None:
        return ""
    return duration((now or time.time()) - since)


def duration(seconds: float) -> str:
    """12s, 5m, 3h, 2d: the largest whole unit."""
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# Keyed by the phases' strings (Phase is a StrEnum): a status's plain phase looks up too.
PHASE_STYLE: dict[str, str] = {
    Phase.QUEUED: "yellow", Phase.STARTING: "cyan", Phase.RUNNING: "cyan", Phase.RESTARTING: "magenta",
    Phase.SUCCEEDED: "green", Phase.FAILED: "red", Phase.CANCELLED: "dim",
}


def phase(text: str) -> str:
    style = PHASE_STYLE.get(text)
    return f"[{style}]{text}[/{style}]" if style else text


def start_cells(at: float | None, reason: str, now: float | None = None) -> tuple[str, str]:
    """(START for `list`, the line for `status`) of a waiting experiment's start estimate."""
    from shipyard.core.start_estimate import start_text

    now = time.time() if now is None else now
    line = start_text(at, reason, now)
    if at is None:
        return "unknown", line
    return (f"~{age(now, at)}" if at > now else "now"), line


def progress_cells(progress: dict[str, Any] | None, active: bool = True,
                   now: float | None = None) -> tuple[str, str]:
    """PROGRESS and ETA as `list` and `status` show them, from a status.progress."""
    if not progress:
        return "", ""
    pct = progress.get("percent")
    done = f"{pct:g}%" if pct is not None else f"step {progress.get('step')}"
    eta = progress.get("eta")
    if not active or not eta:
        return done, ""
    import calendar

    when = calendar.timegm(time.strptime(eta.rstrip("Z").split(".")[0], "%Y-%m-%dT%H:%M:%S"))
    left = when - (now or time.time())
    return done, f"in {duration(left)}" if left > 0 else "due"


def progress_line(progress: dict[str, Any], active: bool = True) -> str:
    """One line for `status`: where the run is, how fast, when it should end."""
    done, eta = progress_cells(progress, active)
    total = progress.get("totalSteps")
    step = f"step {progress.get('step')}" + (f"/{total}" if total else "")
    parts = [f"progress {done}" if progress.get("percent") is not None else "progress",
             step, f"{progress.get('stepsPerSecond', 0):g} steps/s"]
    if eta:
        parts.append(f"ETA {eta}")
    metrics = progress.get("metrics") or {}
    line = ", ".join(parts)
    if metrics:
        line += "; " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
    return line
