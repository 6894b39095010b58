"""Is a Running gang hung? No progress report and no log line from any of its ranks
for its hang_timeout.

Progress reports are in the receiver's memory. Log lines are asked of the API server
only for a gang that everything already known would call hung: the last line of each
member's container (`tailLines=1&timestamps=true&sinceSeconds=<timeout>`, the kubelet
reads it from the end of the file), a few pods at a time, stopping at the first that
wrote within the timeout. A gang that keeps logging is so read about once per
hang_timeout; a gang without a hang_timeout, or one that reports progress, never.
The verdict waits for a read that began after the gang had been silent for the whole
timeout, and a hung gang is read again every RECHECK_S (a line then ends the stall).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shipyard.controller.views import ExperimentView, PodView, parse_time
from shipyard.core.progress import stalled
from shipyard.kube.api import ApiClient
from shipyard.kube.errors import ApiError
from shipyard.kube.resources import PODS

log = logging.getLogger(__name__)
READ_CONCURRENCY = 8  # a gang's pods' logs read this many at a time
RECHECK_S = 30.0  # a hung gang's logs are read again this often
MAX_SHOWN = 8  # silent pods named in the message


@dataclass(slots=True)
class LogRead:
    began: float  # when the read began (the controller's clock)
    last_line: dict[str, float] = field(default_factory=dict)  # pod -> time of its last line


class LogActivity:
    """The last log line of each pod of the gangs asked about, read in the background."""

    def __init__(self, client: ApiClient, spawn: Callable[[Coroutine[Any, Any, None]], object],
                 counted: Callable[[], None] = lambda: None) -> None:
        """`counted`: called for each log request (shipyard_hang_log_reads_total)."""
        self.client = client
        self.spawn = spawn
        self.counted = counted
        self.reads: dict[str, LogRead] = {}  # experiment key -> its last finished read
        self.reading: set[str] = set()

    def last_lines(self, key: str) -> Mapping[str, float]:
        read = self.reads.get(key)
        return read.last_line if read is not None else {}

    def read(self, key: str, pods: Iterable[PodView], window_s: float, now: float) -> None:
        """Start reading the pods' last lines of the last `window_s` (once at a time)."""
        if key in self.reading:
            return
        self.reading.add(key)
        self.spawn(self._read(key, list(pods), window_s, now))

    async def _read(self, key: str, pods: list[PodView], window_s: float, began: float) -> None:
        found: dict[str, float] = {}
        try:
            for i in range(0, len(pods), READ_CONCURRENCY):
                batch = pods[i:i + READ_CONCURRENCY]
                times = await asyncio.gather(*(self._last_line(p, window_s) for p in batch))
                found.update({p.name: t for p, t in zip(batch, times, strict=True) if t is not None})
                if found:  # one rank that wrote is enough: not hung
                    break
            self.reads[key] = LogRead(began, found)
        except ApiError as exc:  # no answer at all: nothing learnt, asked again next cycle
            log.debug("%s: last log lines: %s", key, exc)
        finally:
            self.reading.discard(key)

    async def _last_line(self, pod: PodView, window_s: float) -> float | None:
        """When the pod's role container last wrote a line (None: not in the window, or
        no log to read: a pod gone, a node that serves none). Raises only for no answer."""
        self.counted()
        params: dict[str, Any] = {"tailLines": 1, "timestamps": True,
                                  "sinceSeconds": max(1, math.ceil(window_s))}
        if pod.member:  # the role's container is named after the role
            params["container"] = pod.member.rpartition("-")[0]
        try:
            text = await self.client.text(PODS.path(pod.namespace, pod.name, "log"), params)
        except ApiError as exc:
            if exc.status == 0:
                raise
            return None
        return line_time(text)

    def forget(self, key: str) -> None:
        self.reads.pop(key, None)


def line_time(text: str) -> float | None:
    """The time of the last `timestamps=true` log line in `text` (RFC 3339, nanoseconds)."""
    for line in reversed(text.splitlines()):
        stamp = line.partition(" ")[0]
        try:
            return datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            continue
    return None


def hung(exp: ExperimentView, pods: Iterable[PodView], status: Mapping[str, Any], now: float,
         reports: Mapping[str, float], logs: LogActivity) -> str | None:
    """Why a Running gang with a hang_timeout counts as hung, naming its silent pods and
    their nodes; None if it does not (or not yet: its logs are being read).
    `reports`: pod -> when it last sent a progress report (the controller's clock)."""
    spec = exp.spec
    started = parse_time(status.get("startedAt"))
    if spec is None or spec.hang_timeout is None or started is None:
        return None
    timeout = spec.hang_timeout
    members = {p.name: p for p in pods if p.phase == "Running" and not p.terminating}
    lines = logs.last_lines(exp.key)
    last = {name: max((t for t in (reports.get(name), lines.get(name)) if t is not None),
                      default=None) for name in members}
    ages = {name: None if t is None else now - t for name, t in last.items()}
    if not members or not stalled(ages, now - started, timeout):
        return None
    silent_since = max((t for t in last.values() if t is not None), default=started)
    read = logs.reads.get(exp.key)
    if read is None or read.began < max(silent_since, started) + timeout:
        logs.read(exp.key, members.values(), timeout, now)  # confirm: no line since
        return None
    if now - read.began >= RECHECK_S:
        logs.read(exp.key, members.values(), timeout, now)  # hung still? (kept until known)
    names = [f"{name} on {pod.node or '?'}" for name, pod in sorted(members.items())]
    shown = ", ".join(names[:MAX_SHOWN])
    if len(names) > MAX_SHOWN:
        shown += f" and {len(names) - MAX_SHOWN} more"
    return f"no progress report or log line for {timeout:g}s from any rank: {shown}"
