"""The usage ledger kept in the API server: one ConfigMap, `shipyard-system/shipyard-usage`.

Why a ConfigMap and not Queue status: usage is per (queue, namespace) and queues may be
implicit (no Queue object), so no existing object holds every key; one small object
is one write per flush, whatever the number of queues. Written at most every
`flush_s` (30 s) and on a clean stop, so a crash loses at most that much; the
ConfigMap is bounded by the ledger's bucket limits and, across any number of keys, by
usage.MAX_LEDGER_BYTES (512 KiB, half a ConfigMap's limit; Ledger.stored_text folds or
drops the oldest history when over).
A new leader loads it before its first cycle and continues the counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from shipyard.kube.api import ApiClient
from shipyard.kube.errors import AlreadyExists, NotFound
from shipyard.kube.resources import CONFIG_MAPS
from shipyard.monitor.usage import Accountant, Amount, Key, Ledger

log = logging.getLogger(__name__)
NAME = "shipyard-usage"
DATA_KEY = "ledger.json"


def ledger_from_configmap(obj: dict[str, Any]) -> Ledger:
    text = (obj.get("data") or {}).get(DATA_KEY)
    return Ledger.from_data(json.loads(text)) if text else Ledger()


async def read_ledger(client: ApiClient, namespace: str) -> Ledger:
    """The stored ledger; an empty one if none was written yet."""
    try:
        obj = await client.get(CONFIG_MAPS, NAME, namespace)
    except NotFound:
        return Ledger()
    return ledger_from_configmap(obj)


async def write_ledger(client: ApiClient, namespace: str, ledger: Ledger) -> None:
    data = {DATA_KEY: ledger.stored_text()}
    try:
        await client.patch(CONFIG_MAPS, NAME, {"data": data}, namespace)
    except NotFound:
        obj = {"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": NAME, "namespace": namespace,
                            "labels": {"app.kubernetes.io/part-of": "shipyard"}},
               "data": data}
        try:
            await client.create(CONFIG_MAPS, obj)
        except AlreadyExists:
            await client.patch(CONFIG_MAPS, NAME, {"data": data}, namespace)


class UsageRecorder:
    """The controller's accountant and its persistence: `load` once leading, `step`
    every cycle, `flush` when `due`."""

    def __init__(self, client: ApiClient, namespace: str, flush_s: float = 30.0) -> None:
        self.client, self.namespace, self.flush_s = client, namespace, flush_s
        self.accountant = Accountant()
        self.loaded = False
        self.load_tried_at = float("-inf")
        self.flushed_at = float("-inf")
        self.busy = False

    @property
    def ledger(self) -> Ledger:
        return self.accountant.ledger

    def load_due(self, now: float, retry_s: float = 10.0) -> bool:
        return not self.loaded and not self.busy and now - self.load_tried_at >= retry_s

    async def load(self, now: float) -> None:
        """Continue from the stored counts (tried again later if the API server fails).
        A ledger that cannot be read is never overwritten: nothing is counted until it
        is fixed or deleted, and the log says so."""
        self.busy, self.load_tried_at = True, now
        try:
            self.accountant.ledger = await read_ledger(self.client, self.namespace)
            self.loaded = True
        except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
            log.error("usage ledger %s/%s unreadable (%s): usage is not recorded until it is "
                      "fixed or deleted", self.namespace, NAME, exc)
        finally:
            self.busy = False

    def step(self, now: float, rates: Callable[[], dict[Key, Amount]],
             min_step_s: float = 5.0) -> None:
        """Charge the time since the last step; `rates` is only computed (a walk over
        the Running pods, ~10 ms per 1,000: bench/metrics_scrape.py) once per
        `min_step_s`, however often cycles run. A pod is charged from the first step
        that sees it Running to the first that does not: within `min_step_s` of its
        real start and end."""
        last = self.accountant.last_at
        if self.loaded and (last is None or now - last >= min_step_s):
            self.accountant.step(now, rates())

    def due(self, now: float) -> bool:
        return self.loaded and not self.busy and now - self.flushed_at >= self.flush_s

    async def flush(self, now: float) -> None:
        self.busy = True
        self.flushed_at = now
        try:
            self.ledger.compact(now)
            await write_ledger(self.client, self.namespace, self.ledger)
        finally:
            self.busy = False

    async def final_flush(self, now: float, timeout_s: float = 5.0) -> None:
        """On a clean stop: write what was counted since the last flush, best effort."""
        if not self.loaded:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout_s):
                await self.flush(now)
