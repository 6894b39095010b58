"""Leader election on a coordination.k8s.io Lease, so two controller replicas can run
and only one acts. Optimistic concurrency (resourceVersion) decides every race."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shipyard.kube.client import KubeClient
from shipyard.kube.errors import AlreadyExists, Conflict, NotFound, Transient
from shipyard.kube.resources import LEASES

log = logging.getLogger(__name__)


def _micro_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


class LostLeadership(RuntimeError):
    pass


class LeaderElector:
    def __init__(self, client: KubeClient, namespace: str, name: str, identity: str, *,
                 lease_s: int = 15, renew_every_s: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.client, self.namespace, self.name, self.identity = client, namespace, name, identity
        self.lease_s, self.renew_every_s, self.clock = lease_s, renew_every_s, clock

    def _spec(self, now: float, lease: dict[str, Any] | None) -> dict[str, Any]:
        old = (lease or {}).get("spec") or {}
        taking_over = old.get("holderIdentity") != self.identity
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_s,
            "acquireTime": _micro_time(now) if taking_over else old.get("acquireTime"),
            "renewTime": _micro_time(now),
            "leaseTransitions": int(old.get("leaseTransitions", 0)) + (1 if taking_over and old else 0),
        }

    async def try_acquire(self) -> bool:
        """Take or renew the lease if it is free, expired or ours; True if we hold it."""
        now = self.clock()
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except NotFound:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(now, None)}
            try:
                await self.client.create(LEASES, body)
                return True
            except AlreadyExists:
                return False
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        expires = _parse(spec.get("renewTime")) + float(spec.get("leaseDurationSeconds", self.lease_s))
        if holder and holder != self.identity and expires > now:
            return False
        lease["spec"] = self._spec(now, lease)
        try:
            await self.client.replace(LEASES, lease)
            return True
        except Conflict:
            return False

    async def acquire(self) -> None:
        while True:
            try:
                if await self.try_acquire():
                    log.info("%s is the leader (%s/%s)", self.identity, self.namespace, self.name)
                    return
            except Transient as exc:
                log.warning("leader election: %s", exc)
            await asyncio.sleep(self.renew_every_s / 2)

    async def hold(self) -> None:
        """Renew until renewal fails for longer than the lease; then raise LostLeadership."""
        last_ok = self.clock()
        while True:
            await asyncio.sleep(self.renew_every_s)
            try:
                if await self.try_acquire():
                    last_ok = self.clock()
                    continue
                raise LostLeadership(f"{self.identity}: another replica holds the lease")
            except Transient as exc:
                log.warning("lease renewal: %s", exc)
            if self.clock() - last_ok > self.lease_s:
                raise LostLeadership(f"{self.identity}: could not renew the lease for {self.lease_s}s")

    async def release(self) -> None:
        """Step down at once so another replica need not wait for the lease to expire."""
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                await self.client.replace(LEASES, lease)
        except (NotFound, Conflict, Transient):
            pass
