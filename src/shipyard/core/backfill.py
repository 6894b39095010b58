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


class Releases:
    """The running gangs' members by end, for one cycle's reservation searches: built
    once (the searches of one cycle differ only in what is open and useful).

    Each step is what ends at one instant: its members in order, and the same summed
    per node in the order of each node's last member (freeing a node once with the sum
    leaves the same free amounts and the same order of nodes within every level bucket
    as freeing member by member, with far fewer index updates)."""

    def __init__(self, capacity: Capacity, running: Sequence[tuple[float, Running]]) -> None:
        self.steps: list[tuple[float, list[tuple[int, Resources]], dict[int, Resources]]] = []
        self.first: dict[int, int] = {}  # node -> position of its first member overall
        pos = 0
        for end, run in sorted(running, key=lambda e: e[0]):
            if not self.steps or self.steps[-1][0] != end:
                self.steps.append((end, [], {}))
            _, members, by_node = self.steps[-1]
            for member in run.gang.members:
                i = capacity.index_of.get(run.placement.get(member.name, ""))
                if i is None:
                    continue  # gone
                members.append((i, member.request))
                before = by_node.pop(i, None)  # re-inserted: the order of last members
                by_node[i] = member.request if before is None else before + member.request
                self.first.setdefault(i, pos)
                pos += 1


def earliest_start(
    capacity: Capacity,
    groups: Sequence[Group],
    topology: Topology | None,
    topology_keys: Sequence[str],
    running: Sequence[tuple[float, Running]] | Releases,
    now: float,
) -> tuple[float, list[int]] | None:
    """(start, nodes) for a gang that does not fit now; None if it never fits.

    `running` pairs each running gang with its end (inf: no time limit), or is those
    pairs as `Releases`. Capacity is left exactly as it was.
    """
    releases = running if isinstance(running, Releases) else Releases(capacity, running)
    classes = {c.id: c for g in groups for c in g.classes}
    # Node by node only where every useful class has one open pool: with several, the
    # order in which pools empty and refill (and so are tried) could differ.
    by_node = all(len(c.pools) <= 1 for c in classes.values())

    def counted(i: int) -> bool:
        # Held for a gang ahead (never counted on), or of no use to this gang.
        pool = capacity.pool_of[i]
        return pool is not None and pool.reservation is None and pool.cls.id in classes

    released: list[tuple[int, Resources]] = []
    result: tuple[float, list[int]] | None = None
    for end, members, per_node in releases.steps:
        freed = [(i, r) for i, r in (per_node.items() if by_node else members) if counted(i)]
        if not freed:
            continue
        for i, r in freed:
            capacity.release(i, r)
        released += freed
        taken = place(capacity, groups, topology, topology_keys)
        if taken is not None:
            result = (max(end, now), [i for _, i in taken])
            unplace(capacity, taken)
            break
    if by_node:
        # Taken back once per node, in the order member by member would touch each last
        # (its first member freed, going backwards).
        total: dict[int, Resources] = {}
        for i, r in released:
            total[i] = total[i] + r if i in total else r
        for i in sorted(total, key=releases.first.__getitem__, reverse=True):
            capacity.take(i, total[i])
    else:
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
