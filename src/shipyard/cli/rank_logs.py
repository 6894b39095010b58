"""`shipyard logs` over many ranks: which rank failed first, then everyone's lines.

Pure: the local backend and the cluster side both hand in each rank's lines and what
they know of the ranks' exits; this module picks the first failure, filters
(`--grep`, `--tail`) and lays the output out: the first failed rank's exit and last
lines, then every rank's lines (the failed one's first) with the `[rank]` prefix.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipyard.api.vocab import LABEL_INDEX, LABEL_ROLE
from shipyard.controller.views import parse_time

LAST_LINES = 10  # of the first failed rank, shown before the rest


@dataclass(frozen=True, slots=True)
class Failure:
    rank: str
    exit_code: int | None
    at: float | None = None  # when it ended, where known
    reason: str = ""  # the container's reason (Error, OOMKilled, ...)
    init_container: str = ""  # set when an init container (e.g. shipyard-unpack) failed

    def describe(self) -> str:
        code = f"exited with code {self.exit_code}" if self.exit_code is not None else "failed"
        reason = f" ({self.reason})" if self.reason and self.reason != "Error" else ""
        when = f" at {time.strftime('%H:%M:%SZ', time.gmtime(self.at))}" if self.at else ""
        where = f" in init container {self.init_container}" if self.init_container else ""
        return f"rank {self.rank} failed first{where}: {code}{reason}{when}"


@dataclass(frozen=True, slots=True)
class LineFilter:
    grep: re.Pattern[str] | None = None
    tail: int | None = None  # last N lines of each rank (after --grep)

    @classmethod
    def parse(cls, grep: str | None, tail: int | None) -> LineFilter:
        """Raises ValueError for a bad pattern or a negative tail."""
        if tail is not None and tail < 0:
            raise ValueError(f"--tail must be >= 0, got {tail}")
        try:
            pattern = re.compile(grep) if grep is not None else None
        except re.error as exc:
            raise ValueError(f"--grep: not a regular expression: {exc}") from None
        return cls(pattern, tail)

    def keeps(self, line: str) -> bool:
        return self.grep is None or self.grep.search(line) is not None

    def apply(self, lines: Sequence[str]) -> list[str]:
        kept = [line for line in lines if self.keeps(line)]
        return kept[-self.tail:] if self.tail else ([] if self.tail == 0 else kept)


def rank_of(pod: Mapping[str, Any]) -> str:
    labels = pod["metadata"].get("labels") or {}
    if LABEL_ROLE in labels and LABEL_INDEX in labels:
        return f"{labels[LABEL_ROLE]}-{labels[LABEL_INDEX]}"
    return str(pod["metadata"]["name"])


def pod_failure(pod: Mapping[str, Any]) -> Failure | None:
    """The pod's first container that ended non-zero, as a Failure: an init container
    first (then the main one never ran), else a main one."""
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or []:
            term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if term and term.get("exitCode"):
                return Failure(rank_of(pod), int(term["exitCode"]), parse_time(term.get("finishedAt")),
                               term.get("reason") or "",
                               cs.get("name", "") if key == "initContainerStatuses" else "")
    return None


def first_failure(failures: Iterable[Failure], named: str | None = None) -> Failure | None:
    """The earliest; `named` (the rank the controller or supervisor blamed) breaks ties
    and wins where times are unknown."""
    found = list(failures)
    if not found:
        return None
    return min(found, key=lambda f: (f.at if f.at is not None else float("inf"), f.rank != named,
                                     f.rank))


def local_failure(ranks: Mapping[str, Any]) -> Failure | None:
    """The local supervisor marks the rank that ended the gang `failed` and the ranks it
    stopped afterwards `stopped`: the failed one is the first."""
    failed = [Failure(name, r.exit_code) for name, r in ranks.items() if r.state == "failed"]
    return first_failure(failed)


def layout(lines: Mapping[str, Sequence[str]], failure: Failure | None,
           filt: LineFilter = LineFilter()) -> list[str]:
    """What to print: the failure and its rank's last lines, then every rank's
    (filtered) lines, the failed rank first, each line prefixed with `[rank]`."""
    out: list[str] = []
    order = sorted(lines, key=lambda r: (failure is None or r != failure.rank, r))
    if failure is not None:
        out.append(f"== {failure.describe()}")
        last = [line for line in lines.get(failure.rank, ()) if filt.keeps(line)][-LAST_LINES:]
        out.extend(f"[{failure.rank}] {line}" for line in last)
        if not last:
            out.append(f"[{failure.rank}] (no log lines{' matching --grep' if filt.grep else ''})")
        out.append("== every rank")
    for rank in order:
        out.extend(f"[{rank}] {line}" for line in filt.apply(lines[rank]))
    return out
