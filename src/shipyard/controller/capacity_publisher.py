"""Publish this cluster's capacity summary (core.clusters.summarize) as the status of
the one ClusterCapacity object, so multi-cluster placement reads one small object per
cluster. Written at most every `every_s`, and only when something but the time moved."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from shipyard.core.autoscale import PoolState
from shipyard.core.clusters import summarize
from shipyard.core.model import Snapshot, Waiting
from shipyard.kube.api import ApiClient
from shipyard.kube.errors import AlreadyExists, NotFound
from shipyard.kube.resources import CLUSTER_CAPACITIES, CLUSTER_CAPACITY_NAME

log = logging.getLogger(__name__)


class CapacityPublisher:
    def __init__(self, client: ApiClient, every_s: float = 2.0) -> None:
        self.client = client
        self.every_s = every_s
        self.last_at = float("-inf")
        self.written: dict[str, Any] | None = None
        self.busy = False

    def due(self, now: float) -> bool:
        return not self.busy and now - self.last_at >= self.every_s

    def status_for(self, snapshot: Snapshot, pools: Sequence[PoolState], waiting: Sequence[Waiting],
                   now: float, etas: Mapping[str, float] | None = None) -> dict[str, Any] | None:
        """The status to write now, or None when nothing changed since the last write."""
        self.last_at = now
        status = summarize(snapshot, pools, waiting, now, etas=etas).to_status()
        if self.written is not None and _without_time(status) == _without_time(self.written):
            return None
        return status

    async def write(self, status: dict[str, Any]) -> None:
        self.busy = True
        try:
            body = {"status": status}
            try:
                await self.client.patch(CLUSTER_CAPACITIES, CLUSTER_CAPACITY_NAME, body,
                                        subresource="status")
            except NotFound:
                obj = {"apiVersion": CLUSTER_CAPACITIES.api_version, "kind": CLUSTER_CAPACITIES.kind,
                       "metadata": {"name": CLUSTER_CAPACITY_NAME}, "spec": {}}
                with contextlib.suppress(AlreadyExists):  # another replica was first
                    await self.client.create(CLUSTER_CAPACITIES, obj)
                await self.client.patch(CLUSTER_CAPACITIES, CLUSTER_CAPACITY_NAME, body,
                                        subresource="status")
            self.written = status
        finally:
            self.busy = False


def _without_time(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k != "updatedAt"}
