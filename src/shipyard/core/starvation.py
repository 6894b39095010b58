"""The starvation bound: a gang that has waited longer than `Policy.starvation_bound_s`,
one of the MAX_STARVING_HOLDS oldest such of its priority, goes first among its priority
(oldest first) and gets nodes reserved however many gangs hold reservations already,
and whatever the time limits: the nodes it will use are held as they free up, and
nothing that could delay it starts there.

Which nodes: those of its earliest start (backfill.earliest_start: running gangs freed
in the order of their time limits, those without all at once), best fit; the choice is
the same from cycle to cycle while nothing else changes.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence

from shipyard.core.model import Gang, Resources
from shipyard.core.node_index import Capacity, Group

INF = math.inf
# Starving gangs that hold nodes in one cycle, the oldest first (the bound rests on the
# oldest still waiting holding its nodes; each hold is a reservation search, and holds
# of younger ones idle capacity more than they protect). The rest may still get one of
# the `Policy.reservations`.
MAX_STARVING_HOLDS = 4


def starving_before(now: float, bound_s: float | None) -> float:
    """Gangs submitted before this instant have waited longer than the bound."""
    return -INF if bound_s is None else now - bound_s


def oldest_starving(pending: Iterable[Gang], before: float) -> set[str]:
    """The MAX_STARVING_HOLDS oldest gangs of each priority submitted before `before`:
    those the bound puts first. The younger ones past it keep their usual order (by
    estimate) until they are among the oldest: on a cluster loaded past the bound,
    most of the queue is past it, and putting all of it first is FIFO."""
    by_priority: dict[int, list[Gang]] = {}
    for g in pending:
        if g.submitted_at < before:
            by_priority.setdefault(g.priority, []).append(g)
    return {g.key for gangs in by_priority.values()
            for g in heapq.nsmallest(MAX_STARVING_HOLDS, gangs, key=lambda g: (g.submitted_at, g.key))}


def hold_free_part(capacity: Capacity, groups: Sequence[Group], nodes: Sequence[int]) -> None:
    """Take what is free on each of `nodes` (the gang's future placement, member by
    member in group order) up to what its members there need."""
    need: dict[int, Resources] = {}
    members = [g.request for g in groups for _ in g.members]
    for r, i in zip(members, nodes, strict=False):
        need[i] = need[i] + r if i in need else r
    for i, r in need.items():
        if not capacity.is_open(i):
            continue
        part = Resources(min(r.cpu_milli, capacity.fcpu[i]), min(r.memory, capacity.fmem[i]),
                         min(r.gpus, capacity.fgpu[i]))
        if part != Resources():
            capacity.take(i, part)
