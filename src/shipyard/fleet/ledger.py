"""What the gangs placed since a capacity reading do to it. Pure.

A summary is seconds old, and an experiment just created is in it only once that
cluster's controller has seen it. Placing many experiments from one reading therefore
charges each to the reading as it is placed: one that fits now takes room on the
fullest nodes that hold it (choose_cluster's own assumption), one that waits for a
scale-up or for running work is added to the demand queued there, which is how its
controller will report it.

The summary only says a node at level k has at least k/8 of each resource free. A node
charged here keeps that lower bound and the exact amount charged to it since, so
many small replicas on one node cost what they ask, not a rounding step each (the
arithmetic is choose_cluster's own: core/summary_solver.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from shipyard.core.cluster_summary import ClusterCapacity, MachineCapacity
from shipyard.core.clusters import RoleDemand, Tier
from shipyard.core.model import Resources
from shipyard.core.summary_solver import ChargedLevels, share


@dataclass(slots=True)
class _TypeLedger:
    free: ChargedLevels  # the free levels with what fits now charged to them
    queued_gangs: int = 0  # gangs that wait there, charged since the reading
    queued: Resources = field(default_factory=Resources)


class Ledger:
    """One cluster's capacity reading plus every gang charged to it since."""

    def __init__(self, capacity: ClusterCapacity, local_name: dict[str, str] | None = None) -> None:
        self.read = capacity
        self.local_name = local_name or {}
        self.types = {m.machine_type: _TypeLedger(ChargedLevels(list(m.free_levels)))
                      for m in capacity.machines}

    def charge(self, demand: Sequence[RoleDemand], tier: Tier) -> None:
        by_type: dict[str, list[RoleDemand]] = {}
        for d in demand:
            if d.replicas > 0:
                by_type.setdefault(self.local_name.get(d.machine_type, d.machine_type), []).append(d)
        for name, roles in by_type.items():
            mc, t = self.read.machine(name), self.types.get(name)
            if mc is None or t is None:
                continue
            if tier == Tier.FITS_NOW:
                for d in sorted(roles, key=lambda d: -share(d.request, mc.node)):  # biggest first
                    t.free.place(mc.node, d.request, d.replicas)
            else:
                t.queued_gangs += 1
                t.queued = t.queued + sum((d.request.scaled(d.replicas) for d in roles), Resources())

    def capacity(self) -> ClusterCapacity:
        """The reading as it stands with everything charged."""
        return dataclasses.replace(self.read, machines=tuple(self._machine(m) for m in self.read.machines))

    def _machine(self, mc: MachineCapacity) -> MachineCapacity:
        t = self.types[mc.machine_type]
        if not t.free.touched and not t.queued_gangs:
            return mc
        return dataclasses.replace(mc, free_levels=t.free.levels(mc.node),
                                   queued_gangs=mc.queued_gangs + t.queued_gangs, queued=mc.queued + t.queued)
