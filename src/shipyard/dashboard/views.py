"""What the pages show, as plain data: experiment rows, filters, queue and node summaries.

Pure: the sources (sources.py) hand in the summaries the CLI prints (cli/cluster.py's
`summary`, the local backend's `_summary`) and raw objects; nothing here reads a
cluster or the disk, so every rule is unit-tested on made-up data.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shipyard.api.vocab import TERMINAL, Phase
from shipyard.cli.cluster import start_cells
from shipyard.cli.output import age, progress_cells, progress_line
from shipyard.core.model import Resources

LOCAL = "local"  # the source name of this machine's runs


@dataclass(frozen=True, slots=True)
class Row:
    """One experiment in the table."""

    source: str  # "local" or a cluster's name
    namespace: str
    id: str
    name: str
    queue: str
    priority: int
    phase: str
    position: int | None
    reason: str  # why it waits, or what it is doing, in words
    restarts: int
    submitted_at: float | None
    progress: Mapping[str, Any] | None = None  # status.progress (the progress SDK)
    estimate: Mapping[str, Any] | None = None  # status.startEstimate of a waiting experiment
    demand: Resources | None = None  # what the whole gang asks for (cluster experiments)

    @property
    def key(self) -> str:
        return f"{self.source}/{self.namespace}/{self.id}"

    @property
    def dom_id(self) -> str:
        return "exp-" + "".join(c if c.isalnum() or c == "-" else "_" for c in self.key)


def row_from_summary(source: str, s: Mapping[str, Any], status: Mapping[str, Any] | None = None,
                     demand: Resources | None = None) -> Row:
    """A Row from a CLI summary (same keys locally and on a cluster); `status`: the
    Experiment's raw status, for the fields other features add (progress, estimates)."""
    status = status or {}
    progress = status.get("progress") or s.get("progress")
    estimate = status.get("startEstimate") or s.get("start_estimate")
    return Row(
        source=source, namespace=str(s.get("namespace") or ("-" if source == LOCAL else "default")),
        id=str(s["id"]), name=str(s.get("name") or s["id"]), queue=str(s.get("queue") or "default"),
        priority=int(s.get("priority") or 0), phase=str(s.get("phase") or Phase.QUEUED),
        position=s.get("position"), reason=str(s.get("message") or ""),
        restarts=int(s.get("restarts") or 0), submitted_at=s.get("submitted_at"),
        progress=progress if isinstance(progress, Mapping) else None,
        estimate=estimate if isinstance(estimate, Mapping) else None, demand=demand,
    )


@dataclass(frozen=True, slots=True)
class Filters:
    """The table's filters; empty means any. `search` matches id, queue or reason."""

    source: str = ""
    namespace: str = ""
    queue: str = ""
    phase: str = ""
    search: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        return cls(**{k: str(query.get(k, "")).strip()[:200] for k in
                      ("source", "namespace", "queue", "phase", "search")})

    def keeps(self, row: Row) -> bool:
        if self.source and row.source != self.source:
            return False
        if self.namespace and row.namespace != self.namespace:
            return False
        if self.queue and row.queue != self.queue:
            return False
        if self.phase and row.phase != self.phase:
            return False
        if self.search:
            needle = self.search.lower()
            return any(needle in text.lower() for text in (row.id, row.queue, row.reason, row.namespace))
        return True

    def query(self) -> str:
        from urllib.parse import urlencode

        return urlencode({k: v for k, v in (("source", self.source), ("namespace", self.namespace),
                                            ("queue", self.queue), ("phase", self.phase),
                                            ("search", self.search)) if v})


def choices(rows: Iterable[Row]) -> dict[str, list[str]]:
    """The values each filter can take, from the rows there are."""
    out: dict[str, set[str]] = {"source": set(), "namespace": set(), "queue": set(), "phase": set()}
    for r in rows:
        out["source"].add(r.source)
        out["namespace"].add(r.namespace)
        out["queue"].add(r.queue)
        out["phase"].add(r.phase)
    return {k: sorted(v) for k, v in out.items()}


def ordered(rows: Iterable[Row]) -> list[Row]:
    """Active first (by queue position, then newest), then finished, newest first."""
    def key(r: Row) -> tuple[int, int, float]:
        done = r.phase in TERMINAL
        return (int(done), r.position if r.position is not None and not done else 1 << 30,
                -(r.submitted_at or 0.0))
    return sorted(rows, key=key)


def percent(progress: Mapping[str, Any] | None) -> float | None:
    """0..100 for the bar: status.progress's percent, else step of totalSteps."""
    if not progress:
        return None
    pct = progress.get("percent")
    step, total = progress.get("step"), progress.get("totalSteps")
    if pct is None and isinstance(step, int | float) and isinstance(total, int | float) and total > 0:
        pct = 100.0 * step / total
    return max(0.0, min(100.0, float(pct))) if isinstance(pct, int | float) else None


def cells(r: Row, now: float | None = None) -> dict[str, Any]:
    """The table cells of a row, in the words `shipyard list` and `status` use."""
    now = now or time.time()
    progress, eta, estimate = "", "", ""
    active = r.phase not in TERMINAL
    if r.progress:
        with contextlib.suppress(ValueError, TypeError, AttributeError):  # a report cut short
            progress = progress_line(dict(r.progress), active)
            eta = progress_cells(dict(r.progress), active, now)[1]
    if r.estimate and r.phase == Phase.QUEUED:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            estimate = start_cells(dict(r.estimate), now)[1]
    return {"age": age(r.submitted_at, now), "percent": percent(r.progress), "progress": progress,
            "eta": eta, "estimate": estimate, "position": "" if r.position is None else r.position}


# --- one experiment ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rank:
    name: str  # role-index (or the pod's name)
    state: str
    node: str | None = None
    exit_code: int | None = None
    failed_first: bool = False
    lines: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Event:
    at: float | None
    reason: str
    message: str
    warning: bool = False


def event_from_object(obj: Mapping[str, Any], parse_time: Any) -> Event:
    """A Kubernetes Event (what the controller writes: Admitted, Preempted, ...) as data."""
    at = parse_time(obj.get("lastTimestamp") or obj.get("eventTime") or obj.get("firstTimestamp")
                    or (obj.get("metadata") or {}).get("creationTimestamp"))
    return Event(at, str(obj.get("reason") or ""), str(obj.get("message") or ""),
                 obj.get("type") == "Warning")


def local_events(s: Mapping[str, Any]) -> list[Event]:
    """What a local run's status says happened, as a timeline."""
    out = [Event(s.get("submitted_at"), "Submitted", f"queue {s.get('queue')}")]
    if s.get("started_at"):
        out.append(Event(s["started_at"], "Started", "every rank started"))
    if s.get("restarts"):
        out.append(Event(None, "Restarted", f"{s['restarts']} restart(s)", True))
    if s.get("finished_at"):
        out.append(Event(s["finished_at"], str(s.get("phase")), str(s.get("message") or ""),
                         s.get("phase") == Phase.FAILED))
    return out


@dataclass
class ProgressHistory:
    """Progress points seen while the dashboard runs (status keeps only the latest one)."""

    limit: int = 2000
    points: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, key: str, progress: Mapping[str, Any] | None) -> None:
        if not progress or progress.get("step") is None:
            return
        seen = self.points.setdefault(key, [])
        point = {"t": _when(progress.get("updatedAt")), "step": progress.get("step"),
                 "metrics": dict(progress.get("metrics") or {})}
        if seen and seen[-1]["step"] == point["step"] and (
                progress.get("updatedAt") is None or seen[-1]["t"] == point["t"]):
            return
        seen.append(point)
        del seen[:-self.limit]

    def series(self, key: str, current: Mapping[str, Any] | None) -> dict[str, list[Any]]:
        """Columns for the chart: time, step, then each metric (None where a point lacks it)."""
        self.add(key, current)
        pts = self.points.get(key, [])
        names = sorted({m for p in pts for m in p["metrics"]} - {"t", "step"})
        out: dict[str, list[Any]] = {"t": [p["t"] for p in pts], "step": [p["step"] for p in pts]}
        for m in names:
            out[m] = [_number(p["metrics"].get(m)) for p in pts]
        return out


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _when(value: Any) -> float:
    """An updatedAt (epoch seconds or an RFC 3339 time) as epoch seconds; now if neither."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        from datetime import datetime

        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time()


def clock(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts)) if ts else ""
