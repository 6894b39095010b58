"""A team's queue: its share of the cluster (weight) and its quota (nominal, borrowing)."""

from __future__ import annotations

from pydantic import Field

from shipyard.spec.experiment import DNS_LABEL
from shipyard.spec.machines import CpuMilli, MemoryBytes, StrictModel


class Quota(StrictModel):
    """An amount per resource; a resource left out is not limited by this quota."""

    cpu: CpuMilli | None = Field(default=None, ge=0)
    memory: MemoryBytes | None = Field(default=None, ge=0)
    gpus: int | None = Field(default=None, ge=0, le=10_000_000)


class Queue(StrictModel):
    """Experiments name a queue; the scheduler shares the cluster between queues.

    `weight` sets the fair share under contention (a queue of weight 2 gets twice the
    dominant share of a queue of weight 1). `nominal` is what the queue is guaranteed:
    it may reclaim it from queues that borrowed it. Beyond nominal, a queue may borrow
    idle capacity up to `borrowing_limit` (left out: any idle capacity); borrowed
    capacity is the first to be taken back.
    """

    name: str = Field(pattern=DNS_LABEL, max_length=63)
    weight: float = Field(default=1.0, gt=0, le=1000)
    nominal: Quota = Field(default_factory=Quota)
    borrowing_limit: Quota | None = None
