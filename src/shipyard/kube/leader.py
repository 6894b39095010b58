"""Leader election on a coordination.k8s.io Lease, so two controller replicas can run
and only one acts. Optimistic concurrency (resourceVersion) decides every race.

The timing follows client-go's leaderelection: a lease of `lease_s`, renewed every
`retry_s`, and a *renew deadline* shorter than the lease. The holder may write only
while its last successful renewal began less than `renew_deadline_s` ago (the fence,
`check()`); a candidate takes over only after it has seen the same lease record
unchanged for a whole `lease_s` on its own monotonic clock. The gap between the two
(5 s by default) is what keeps a paused or partitioned old leader from writing once a
new one may have started: on resuming it finds its fence closed before it can act.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shipyard.kube.api import ApiClient
from shipyard.kube.errors import AlreadyExists, Conflict, NotFound, Transient
from shipyard.kube.resources import LEASES

log = logging.getLogger(__name__)


def _micro_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LostLeadership(RuntimeError):
    """This replica no longer holds the lease (or cannot prove it does): stop acting."""


class LeaderElector:
    def __init__(self, client: ApiClient, namespace: str, name: str, identity: str, *,
                 lease_s: float = 15.0, renew_deadline_s: float = 10.0, retry_s: float = 2.0,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if not 0 < retry_s < renew_deadline_s < lease_s:
            raise ValueError("leader election needs 0 < retry_s < renew_deadline_s < lease_s, got "
                             f"{retry_s}, {renew_deadline_s}, {lease_s}")
        self.client, self.namespace, self.name, self.identity = client, namespace, name, identity
        self.lease_s, self.renew_deadline_s, self.retry_s = lease_s, renew_deadline_s, retry_s
        self.clock, self.monotonic = clock, monotonic
        self.renewed_at: float | None = None  # monotonic start of our last successful renewal
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self._observed: tuple[Any, ...] | None = None  # another holder's record, as last seen
        self._observed_at = 0.0

    # -- the fence --------------------------------------------------------------------

    def is_leader(self) -> bool:
        return (self.renewed_at is not None and not self.lost.is_set()
                and self.monotonic() - self.renewed_at < self.renew_deadline_s)

    def check(self) -> None:
        """Raise LostLeadership unless this replica may write now. Called before every
        write the controller makes (KubeClient.fenced)."""
        if self.is_leader():
            return
        if self.renewed_at is not None and not self.lost.is_set():
            age = self.monotonic() - self.renewed_at
            self._lose(f"last renewal began {age:.1f}s ago, past the {self.renew_deadline_s:g}s "
                       "renew deadline")
        raise LostLeadership(f"{self.identity} is not the leader: {self.lost_reason}")

    def _lose(self, reason: str) -> None:
        if not self.lost.is_set():
            self.lost_reason = reason
            self.lost.set()
            log.error("%s lost leadership of %s/%s: %s", self.identity, self.namespace, self.name,
                      reason)

    # -- the lease ----------------------------------------------------------------------

    def _spec(self, now: float, lease: dict[str, Any] | None) -> dict[str, Any]:
        old = (lease or {}).get("spec") or {}
        taking_over = old.get("holderIdentity") != self.identity
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, math.ceil(self.lease_s)),
            "acquireTime": _micro_time(now) if taking_over else old.get("acquireTime"),
            "renewTime": _micro_time(now),
            "leaseTransitions": int(old.get("leaseTransitions", 0)) + (1 if taking_over and old else 0),
        }

    def _others_lease_live(self, spec: dict[str, Any], started: float) -> bool:
        """Whether another holder's lease may still be live: true until we have seen its
        record unchanged for its whole duration (our clock, never the holder's)."""
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, started
        duration = float(spec.get("leaseDurationSeconds") or self.lease_s)
        return started - self._observed_at < duration

    async def try_acquire(self) -> bool:
        """Take or renew the lease if it is free, expired or ours; True if we hold it."""
        started = self.monotonic()
        now = self.clock()
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except NotFound:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(now, None)}
            try:
                await self.client.create(LEASES, body)
            except AlreadyExists:
                return False
            self.renewed_at = started
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        if holder and holder != self.identity and self._others_lease_live(spec, started):
            return False
        lease["spec"] = self._spec(now, lease)
        try:
            await self.client.replace(LEASES, lease)
        except Conflict:
            return False
        self.renewed_at = started
        return True

    async def acquire(self) -> None:
        failing = False
        while True:
            try:
                if await self.try_acquire():
                    log.info("%s is the leader (%s/%s)", self.identity, self.namespace, self.name)
                    return
                failing = False
            except Transient as exc:
                if not failing:  # once per outage, not once per attempt
                    log.warning("leader election: %s; retrying every %gs", exc, self.retry_s)
                failing = True
            await asyncio.sleep(self.retry_s)

    async def hold(self) -> None:
        """Renew every `retry_s`; raise LostLeadership when another replica holds the
        lease or no renewal succeeded within the renew deadline."""
        failing = False
        while not self.lost.is_set():
            await asyncio.sleep(self.retry_s)
            if not self.is_leader():
                break
            try:
                # One attempt may take half of what is left of the renew deadline (at
                # least a retry period): a slow server still gets through, and a request
                # stuck on a dying or starting one leaves time for another attempt.
                left = self.renew_deadline_s - (self.monotonic() - (self.renewed_at or 0.0))
                async with asyncio.timeout(max(self.retry_s, left / 2)):
                    renewed = await self.try_acquire()
                if not renewed:
                    self._lose("another replica holds the lease")
                    break
                if failing:
                    log.info("lease renewed again")
                failing = False
            except (Transient, TimeoutError) as exc:
                if not failing:
                    log.warning("lease renewal: %s; retrying every %gs until the %gs deadline",
                                str(exc) or f"{type(exc).__name__}: no answer in time", self.retry_s,
                                self.renew_deadline_s)
                failing = True
        self.check()  # sets `lost` with the reason, if not yet, and raises

    async def release(self) -> None:
        """Step down at once so another replica need not wait for the lease to expire."""
        if not self.is_leader():
            return
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                await self.client.replace(LEASES, lease)
        except (NotFound, Conflict, Transient):
            pass
        self._lose("released")
