"""When each stretch of a rank's log was written, so `shipyard logs --since` works here.

An index beside the log (`logs/<rank>.times`, lines `OFFSET UNIXTIME`) rather than a
timestamp in it: the log stays what the program printed, byte for byte, for people who
read or `tail -f` the file. One entry per second at most: the byte offset of the first
line written in that second. `--since` is so at one second's resolution: a line up to
a second older than asked may be shown, none newer is left out. A log with no index (a
run from before it) has no times: all of it is shown.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

RESOLUTION_S = 1.0


def times_path(log: Path) -> Path:
    return log.with_suffix(".times")


class TimeIndex:
    """The writer: call `line(offset)` before each line is written at that byte offset."""

    def __init__(self, log: Path, clock: Callable[[], float] = time.time) -> None:
        self.handle = open(times_path(log), "a")  # noqa: SIM115 - closed by close()
        self.clock = clock
        self.last = -float("inf")

    def line(self, offset: int, force: bool = False) -> None:
        now = self.clock()
        if force or now - self.last >= RESOLUTION_S:
            self.handle.write(f"{offset} {now:.3f}\n")
            self.handle.flush()
            self.last = now

    def close(self) -> None:
        self.handle.close()


def mark(log: Path, offset: int, clock: Callable[[], float] = time.time) -> None:
    """One entry, for a line shipyard itself writes (the attempt's marker)."""
    index = TimeIndex(log, clock)
    try:
        index.line(offset, force=True)
    finally:
        index.close()


def offset_since(log: Path, cutoff: float) -> int:
    """The byte offset from which every line was written at `cutoff` or later (to the
    index's resolution); the log's size when none was, 0 when the log has no index."""
    path = times_path(log)
    if not path.exists():
        return 0
    entries: list[tuple[int, float]] = []
    with contextlib.suppress(OSError):
        for text in path.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a line cut short by a crash
                where, when = text.split()
                entries.append((int(where), float(when)))
    if not entries:
        return 0
    # The lines from entry i to the next were written from its time, before both the
    # next entry's and its own + RESOLUTION_S (else they would have made an entry).
    for i, (offset, at) in enumerate(entries):
        nxt = entries[i + 1][1] if i + 1 < len(entries) else float("inf")
        if min(nxt, at + RESOLUTION_S) > cutoff:
            return offset
    try:
        return log.stat().st_size
    except FileNotFoundError:
        return 0
