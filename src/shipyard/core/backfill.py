"""Reservations for blocked gangs, so that backfill never delays them (as Slurm does).

A gang that does not fit now gets its earliest start computed from the running gangs'
time limits: release them in order of their end until the gang fits. The nodes it
would then use are held for it (`Capacity.reserve`); a gang behind it in the queue may
use held nodes only if its own time limit ends it before the reserved start. A gang
that needs capacity held by work without a time limit has no known start: its nodes
are held outright.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from shipyard.core.capacity import Capacity, Group
from shipyard.core.model import Resources, Running, Topology
from shipyard.core.placement import place, unplace

INF = math.inf


def earliest_start(
    capacity: Capacity,
    groups: Sequence[Group],
    topology: Topology | None,
    topology_keys: Sequence[str],
    running: Sequence[tuple[float, Running]],
    now: float,
) -> tuple[float, list[int]] | None:
    """(start, nodes) for a gang that does not fit now; None if it never fits.

    `running` pairs each running gang with its end (inf: no time limit). Capacity is
    left exactly as it was.
    """
    useful = {c.id for g in groups for c in g.classes}
    released: list[tuple[int, Resources]] = []
    result: tuple[float, list[int]] | None = None
    ordered = sorted(running, key=lambda e: e[0])
    k = 0
    while k < len(ordered) and result is None:
        end = ordered[k][0]
        touched = False
        # Everything that ends at the same instant frees together.
        while k < len(ordered) and ordered[k][0] == end:
            run = ordered[k][1]
            k += 1
            for member in run.gang.members:
                i = capacity.index_of.get(run.placement.get(member.name, ""))
                if i is None or not capacity.is_open(i):
                    continue  # gone, or held for a gang ahead: never counted on
                pool = capacity.pool_of[i]
                if pool is None or pool.cls.id not in useful:
                    continue
                capacity.release(i, member.request)
                released.append((i, member.request))
                touched = True
        if not touched:
            continue
        taken = place(capacity, groups, topology, topology_keys)
        if taken is not None:
            result = (max(end, now), [i for _, i in taken])
            unplace(capacity, taken)
    for i, r in reversed(released):
        capacity.take(i, r)
    return result


def never_fits(capacity: Capacity, groups: Sequence[Group]) -> bool:
    """True if the gang could not fit even on the empty cluster."""
    for g in groups:
        r = g.request
        room = 0
        for c in g.classes:
            room += c.per_node(r) * len(c.nodes)
        if room < len(g.members):
            return True
    return False
