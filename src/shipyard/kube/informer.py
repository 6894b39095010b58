"""List-then-watch caches that keep only what the policy needs.

An Informer lists a kind once, then follows its watch from the list's
resourceVersion; when the version is too old (410 Gone) it lists again, and on a
lost connection it retries with backoff. Each object is passed through `project`
and only the projection is kept, so 60,000 pods cost a few small tuples each, not
a full JSON tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from shipyard.kube.client import KubeClient
from shipyard.kube.errors import ApiError, Gone, Transient
from shipyard.kube.resources import Kind

log = logging.getLogger(__name__)
T = TypeVar("T")


def object_key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else meta["name"]


class Informer(Generic[T]):
    def __init__(
        self,
        client: KubeClient,
        kind: Kind,
        project: Callable[[dict[str, Any]], T | None],
        on_change: Callable[[str, T | None, T | None], None] | None = None,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> None:
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

    def _apply(self, key: str, new: T | None) -> None:
        old = self.items.get(key)
        if new is None:
            self.items.pop(key, None)
        else:
            self.items[key] = new
        if old is not None or new is not None:
            self.on_change(key, old, new)

    async def _relist(self) -> None:
        objects, self.resource_version = await self.client.list(
            self.kind, self.namespace, label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        fresh: dict[str, T] = {}
        for obj in objects:
            projected = self.project(obj)
            if projected is not None:
                fresh[object_key(obj)] = projected
        for key in [k for k in self.items if k not in fresh]:
            self._apply(key, None)
        for key, value in fresh.items():
            if self.items.get(key) != value:
                self._apply(key, value)
        self.synced.set()

    async def run(self) -> None:
        backoff = 0.2
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                async for kind, obj in self.client.watch(
                    self.kind, self.resource_version, self.namespace,
                    label_selector=self.label_selector, field_selector=self.field_selector,
                ):
                    self.resource_version = obj["metadata"].get("resourceVersion", self.resource_version)
                    if kind == "BOOKMARK":
                        continue
                    key = object_key(obj)
                    self._apply(key, None if kind == "DELETED" else self.project(obj))
                backoff = 0.2
            except Gone:
                need_list = True
            except (Transient, ApiError) as exc:
                log.warning("watch %s: %s; retrying in %.1fs", self.kind.plural, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                need_list = isinstance(exc, ApiError) and not isinstance(exc, Transient)


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
