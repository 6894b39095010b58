"""The starvation bound: every gang that has waited longer than `Policy.starvation_bound_s`
goes first among its priority, oldest first, whatever its queue's share and whatever the
estimates (so no estimate ever puts a younger gang ahead of it). The first
MAX_STARVING_HOLDS of them in that order that do not fit get nodes reserved however many
gangs hold reservations already, and whatever the time limits: the nodes they will use
are held as they free up, and nothing that could delay them starts there. One that does
not hold (a younger one past the bound) still goes before every gang not past it, so
whatever frees outside the holds is its before theirs.

Which nodes: those of its earliest start (backfill.earliest_start: running gangs freed
in the order of their time limits, those without all at once), best fit; the choice is
the same from cycle to cycle while nothing else changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from shipyard.core.model import Resources
from shipyard.core.node_index import Capacity, Group

INF = math.inf
# Starving gangs that hold nodes in one cycle: the first that do not fit, in order (by
# age). The bound rests on the oldest still waiting holding its nodes; each hold is a
# reservation search, and holds of younger ones idle capacity more than they protect.
# The rest may still get one of the `Policy.reservations`.
MAX_STARVING_HOLDS = 4


def starving_before(now: float, bound_s: float | None) -> float:
    """Gangs submitted before this instant have waited longer than the bound: they go
    first, by age (the order's rank and entry, queueing.py)."""
    return -INF if bound_s is None else now - bound_s


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
