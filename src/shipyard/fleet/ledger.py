"""What the gangs placed since a capacity reading do to it. Pure.

A summary is seconds old, and an experiment just created is in it only once that
cluster's controller has seen it. Placing many experiments from one reading therefore
charges each to the reading as it is placed: one that fits now takes room on the
fullest nodes that hold it (choose_cluster's own assumption), one that waits for a
scale-up or for running work is added to the demand queued there, which is how its
controller will report it.

The summary only says a node at level k has at least k/8 of each resource free. A node
charged here keeps that lower bound and the exact amount charged to it since, so
many small replicas on one node cost what they ask, not a rounding step each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from shipyard.core.cluster_summary import LEVELS, ClusterCapacity, MachineCapacity
from shipyard.core.clusters import RoleDemand
from shipyard.core.model import Resources

FITS_NOW = 0
_MANY = 1 << 30


def _pairs(a: Resources, b: Resources) -> list[tuple[int, int]]:
    return [(a.cpu_milli, b.cpu_milli), (a.memory, b.memory), (a.gpus, b.gpus)]


@dataclass(slots=True)
class _Node:
    """A node charged since the reading: its level then, and what was charged to it."""

    base: int
    used: Resources = field(default_factory=Resources)

    def level(self, node: Resources) -> int:
        return max(min(((self.base * have - LEVELS * u) // have
                        for have, u in _pairs(node, self.used) if have > 0), default=0), 0)

    def room(self, node: Resources, r: Resources) -> int:
        """Replicas asking `r` that surely still fit."""
        left = [(self.base * have - LEVELS * u) // (LEVELS * want)
                for (have, u), (_, want) in zip(_pairs(node, self.used), _pairs(node, r), strict=True)
                if want > 0]
        return max(min(left, default=_MANY), 0)


@dataclass(slots=True)
class _TypeLedger:
    fresh: list[int]  # untouched nodes by level, as read
    touched: list[_Node] = field(default_factory=list)
    queued_gangs: int = 0
    queued: Resources = field(default_factory=Resources)

    def levels(self, node: Resources) -> tuple[int, ...]:
        out = list(self.fresh)
        for n in self.touched:
            out[n.level(node)] += 1
        return tuple(out)

    def place(self, node: Resources, r: Resources, replicas: int) -> None:
        """Replicas onto the fullest nodes with room (charged ones first at a level)."""
        left = replicas
        for k in range(1, LEVELS + 1):
            for n in [n for n in self.touched if n.level(node) == k]:
                left -= self._put(n, node, r, left)
            while left and self.fresh[k] and _Node(k).room(node, r):
                self.fresh[k] -= 1
                n = _Node(k)
                self.touched.append(n)
                left -= self._put(n, node, r, left)
            if not left:
                return

    @staticmethod
    def _put(n: _Node, node: Resources, r: Resources, left: int) -> int:
        take = min(left, n.room(node, r))
        n.used = n.used + r.scaled(take)
        return take


class Ledger:
    """One cluster's capacity reading plus every gang charged to it since."""

    def __init__(self, capacity: ClusterCapacity, local_name: dict[str, str] | None = None) -> None:
        self.read = capacity
        self.local_name = local_name or {}
        self.types = {m.machine_type: _TypeLedger(list(m.free_levels)) for m in capacity.machines}

    def charge(self, demand: Sequence[RoleDemand], tier: int) -> None:
        by_type: dict[str, list[RoleDemand]] = {}
        for d in demand:
            if d.replicas > 0:
                by_type.setdefault(self.local_name.get(d.machine_type, d.machine_type), []).append(d)
        for name, roles in by_type.items():
            mc, t = self.read.machine(name), self.types.get(name)
            if mc is None or t is None:
                continue
            if tier == FITS_NOW:
                for d in sorted(roles, key=lambda d: -_share(d.request, mc.node)):  # biggest first
                    t.place(mc.node, d.request, d.replicas)
            else:
                t.queued_gangs += 1
                t.queued = t.queued + sum((d.request.scaled(d.replicas) for d in roles), Resources())

    def capacity(self) -> ClusterCapacity:
        """The reading as it stands with everything charged."""
        return dataclasses.replace(self.read, machines=tuple(self._machine(m) for m in self.read.machines))

    def _machine(self, mc: MachineCapacity) -> MachineCapacity:
        t = self.types[mc.machine_type]
        if not t.touched and not t.queued_gangs:
            return mc
        return dataclasses.replace(mc, free_levels=t.levels(mc.node),
                                   queued_gangs=mc.queued_gangs + t.queued_gangs, queued=mc.queued + t.queued)


def _share(r: Resources, node: Resources) -> float:
    return max((want / have for have, want in _pairs(node, r) if have > 0), default=0.0)
