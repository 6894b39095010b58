"""List-then-watch caches that keep only what the policy needs.

An Informer lists a kind once, then follows its watch from the list's
resourceVersion; when the version is too old (410 Gone) it lists again, and on a
lost connection it retries with backoff. Each object is passed through `project`
and only the projection is kept, so 60,000 pods cost a few small tuples each, not
a full JSON tree.

An object that `project` cannot read (a hand-written pod with a bad label, say) is
logged once by name and skipped, keeping what was known of it before: one bad
object must never stop the cache, since every later event would be lost with it.
Relists after 410 are logged and counted (`relists`), and so are unreadable
objects (`malformed`), for the controller's metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from shipyard.kube.api import ApiClient
from shipyard.kube.errors import ApiError, Gone, Transient
from shipyard.kube.outage import Outage
from shipyard.kube.resources import Kind

log = logging.getLogger(__name__)
T = TypeVar("T")
_UNREADABLE = object()  # what _read returns for an object `project` raised on


def object_key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else meta["name"]


class Informer(Generic[T]):
    def __init__(
        self,
        client: ApiClient,
        kind: Kind,
        project: Callable[[dict[str, Any]], T | None],
        on_change: Callable[[str, T | None, T | None], None] | None = None,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        outage: Outage | None = None,
    ) -> None:
        """`outage`: shared with the other informers and writers of one controller, so an
        API-server outage backs all of them off together and is logged once."""
        self.client = client
        self.kind = kind
        self.project = project
        self.on_change = on_change or (lambda key, old, new: None)
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.items: dict[str, T] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.relists = 0  # lists after the first, each forced by a 410 or an error
        self.malformed = 0  # objects `project` could not read
        self._bad: set[str] = set()  # keys logged as unreadable, to log each once
        self.outage = outage or Outage(f"watch {kind.plural}", logger=log)

    def _read(self, key: str, obj: dict[str, Any]) -> Any:
        """`project(obj)`, or _UNREADABLE (logged once per object) when it raises."""
        try:
            value = self.project(obj)
        except Exception as exc:  # any bug or bad field in one object
            self.malformed += 1
            if key not in self._bad:
                self._bad.add(key)
                log.warning("%s %s: cannot read it (%s: %s); skipping it, keeping what was known",
                            self.kind.plural, key, type(exc).__name__, exc)
            return _UNREADABLE
        self._bad.discard(key)
        return value

    def _apply(self, key: str, new: T | None) -> None:
        old = self.items.get(key)
        if new is None:
            self.items.pop(key, None)
        else:
            self.items[key] = new
        if old is not None or new is not None:
            self.on_change(key, old, new)

    async def _relist(self) -> None:
        began = time.monotonic()
        objects, self.resource_version = await self.client.list(
            self.kind, self.namespace, label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        listed = time.monotonic()
        fresh: dict[str, T] = {}
        for obj in objects:
            key = object_key(obj)
            projected = self._read(key, obj)
            if projected is _UNREADABLE:
                projected = self.items.get(key)
            if projected is not None:
                fresh[key] = projected
        for key in [k for k in self.items if k not in fresh]:
            self._apply(key, None)
        for key, value in fresh.items():
            if self.items.get(key) != value:
                self._apply(key, value)
        # Restart time is mostly these lists: say where it went.
        log.info("listed %d %s in %.2fs, read in %.2fs", len(objects), self.kind.plural,
                 listed - began, time.monotonic() - listed)
        self.synced.set()

    async def run(self) -> None:
        need_list = True
        listed = False
        while True:
            try:
                if need_list:
                    if listed:
                        self.relists += 1
                    await self._relist()
                    need_list, listed = False, True
                    self.outage.succeeded()
                async for kind, obj in self.client.watch(
                    self.kind, self.resource_version, self.namespace,
                    label_selector=self.label_selector, field_selector=self.field_selector,
                ):
                    self.outage.succeeded()
                    self.resource_version = obj["metadata"].get("resourceVersion", self.resource_version)
                    if kind == "BOOKMARK":
                        continue
                    key = object_key(obj)
                    if kind == "DELETED":
                        self._bad.discard(key)
                        self._apply(key, None)
                        continue
                    projected = self._read(key, obj)
                    if projected is not _UNREADABLE:
                        self._apply(key, projected)
            except Gone:
                log.info("watch %s: resourceVersion %s is too old (410); listing again (relist %d)",
                         self.kind.plural, self.resource_version, self.relists + 1)
                need_list = True
            except (Transient, ApiError) as exc:
                await asyncio.sleep(self.outage.failed(exc))
                need_list = need_list or not isinstance(exc, Transient)


async def run_all(informers: list[Informer[Any]]) -> None:
    """Run informers until cancelled."""
    tasks = [asyncio.create_task(i.run(), name=f"informer-{i.kind.plural}") for i in informers]
    try:
        await asyncio.gather(*tasks)
    finally:
        await cancel_all(tasks)


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel tasks and wait for each to finish, swallowing what they raise on the way out."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
