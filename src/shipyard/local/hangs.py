"""Is a local run hung? No progress report and no log line from any rank for its
hang_timeout (core/progress.stalled, as on a cluster).

Log lines are noted as the pumps pass them on; a progress report, by its rank's file
changing (size or mtime). Times are on the supervisor's clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from shipyard.core.progress import stalled


class Silence:
    def __init__(self, ranks: Sequence[str], progress_file: Callable[[str], Path],
                 clock: Callable[[], float]) -> None:
        self.ranks, self.progress_file, self.clock = list(ranks), progress_file, clock
        self.heard: dict[str, float] = {}
        self.files: dict[str, tuple[int, int]] = {}
        for rank in self.ranks:  # a report of an earlier attempt is not one of this one
            self.files[rank] = self._stat(rank)

    def line(self, rank: str) -> None:
        """A log line from `rank` (called from its pump's thread)."""
        self.heard[rank] = self.clock()

    def _stat(self, rank: str) -> tuple[int, int]:
        try:
            st = self.progress_file(rank).stat()
        except OSError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_size)

    def hung(self, timeout: float, running_for: float) -> str | None:
        """The stall's message once no rank has been heard from for `timeout`, else None."""
        now = self.clock()
        for rank in self.ranks:
            if (seen := self._stat(rank)) != self.files[rank]:
                self.files[rank], self.heard[rank] = seen, now
        ages = {r: (now - self.heard[r]) if r in self.heard else None for r in self.ranks}
        if not stalled(ages, running_for, timeout):
            return None
        return (f"no progress report or log line from any rank for {timeout:g}s "
                f"(silent: {', '.join(self.ranks[:8])}{' ...' if len(self.ranks) > 8 else ''})")
