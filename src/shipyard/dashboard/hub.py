"""Every source's rows in one place, refreshed in the background, with a signal for the
live streams: a stream waits for `changed`, then sends only what differs for its page.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from shipyard.dashboard.sources import ClusterSource, Detail, Source
from shipyard.dashboard.views import ProgressHistory, Row

MIN_GAP_S = 0.05


class Hub:
    def __init__(self, sources: Sequence[Source], interval_s: float = 1.0) -> None:
        self.sources = list(sources)
        self.interval_s = interval_s
        self.rows: list[Row] = []
        self.version = 0  # bumped whenever `rows` changes
        self.updated_at = 0.0
        self.history = ProgressHistory()
        self._changed = asyncio.Condition()
        self._poked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def source(self, name: str) -> Source | None:
        return next((s for s in self.sources if s.name == name), None)

    def clusters(self) -> list[ClusterSource]:
        return [s for s in self.sources if isinstance(s, ClusterSource)]

    async def start(self) -> None:
        for s in self.sources:
            s.on_change = self.poke
            await s.start()
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="dashboard-hub")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for s in self.sources:
            await s.close()

    async def refresh(self) -> None:
        for s in self.sources:
            with contextlib.suppress(Exception):  # one unreadable source must not stop the others
                await s.refresh()
        rows = [r for s in self.sources for r in s.rows()]
        for r in rows:
            if r.progress:
                self.history.add(r.key, r.progress)
        self.updated_at = time.time()
        if rows != self.rows:
            self.rows = rows
            self.version += 1
            async with self._changed:
                self._changed.notify_all()

    def poke(self) -> None:
        """A source saw a change (an Informer event): refresh now, not at the next tick."""
        self._poked.set()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), self.interval_s)
            self._poked.clear()
            await self.refresh()
            await asyncio.sleep(MIN_GAP_S)  # a burst of changes costs one refresh per gap

    async def wait_change(self, seen: int, timeout_s: float) -> int:
        """The version after it moved past `seen`, or the same one after `timeout_s`."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: self.version != seen), timeout_s)
        return self.version

    async def detail(self, source: str, namespace: str, ident: str) -> Detail | None:
        s = self.source(source)
        return await s.detail(namespace, ident) if s is not None else None
