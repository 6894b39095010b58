"""Preemption: which running gangs to stop so that a blocked gang can start.

Whole gangs only, never part of one. Candidates are chosen by the caller's rule
(lower priority, or work in a queue over its nominal quota); among them the cheapest
go first: borrowed capacity before guaranteed, lower priority before higher, the most
recently started (least work lost since its checkpoint) before older, smaller before
bigger. Once enough is freed, victims that turn out not to be needed are spared again,
last chosen first, so the list is close to the fewest that make room.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from shipyard.core.model import Running, Topology
from shipyard.core.node_index import Capacity, Group
from shipyard.core.placement import could_fit, place, unplace


def find_victims(
    capacity: Capacity,
    groups: Sequence[Group],
    topology: Topology | None,
    topology_keys: Sequence[str],
    candidates: Sequence[Running],
    cost: Callable[[Running], tuple[object, ...]],
    still_allowed: Callable[[Running, list[Running]], bool],
) -> tuple[list[Running], list[int]] | None:
    """(victims, nodes the gang would use) or None; capacity is left as it was.

    `still_allowed(victim, chosen)` re-checks a candidate given those chosen before
    it (a queue stops being over quota once enough of its work is stopped).
    """
    useful = {c.id for g in groups for c in g.classes}

    def frees(run: Running, sign: int) -> bool:
        hit = False
        for member in run.gang.members:
            i = capacity.index_of.get(run.placement.get(member.name, ""))
            if i is None or not capacity.is_open(i):
                continue
            pool = capacity.pool_of[i]
            if pool is not None and pool.cls.id in useful:
                capacity.add(i, member.request, sign)
                hit = True
        return hit

    def helps(run: Running) -> bool:
        for member in run.gang.members:
            i = capacity.index_of.get(run.placement.get(member.name, ""))
            if i is not None and capacity.is_open(i):
                pool = capacity.pool_of[i]
                if pool is not None and pool.cls.id in useful:
                    return True
        return False

    chosen: list[Running] = []
    taken = None
    for run in sorted((r for r in candidates if helps(r)), key=cost):
        if not still_allowed(run, chosen):
            continue
        frees(run, +1)
        chosen.append(run)
        taken = place(capacity, groups, topology, topology_keys)
        if taken is not None:
            unplace(capacity, taken)
            break
    if taken is None:
        for run in reversed(chosen):
            frees(run, -1)
        return None
    # Spare the ones not needed after all, the last chosen first.
    for run in reversed(chosen[:-1]):
        frees(run, -1)
        trial = None
        if could_fit(capacity, groups, math.inf):
            trial = place(capacity, groups, topology, topology_keys)
        if trial is None:
            frees(run, +1)
        else:
            unplace(capacity, trial)
            chosen.remove(run)
    taken = place(capacity, groups, topology, topology_keys)
    nodes = [] if taken is None else [i for _, i in taken]
    if taken is not None:
        unplace(capacity, taken)
    for run in reversed(chosen):
        frees(run, -1)
    return chosen, nodes
