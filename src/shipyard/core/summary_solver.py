"""Replicas against a capacity summary's free-capacity levels: the one solver behind
cluster choice (core/clusters.py) and the fleet's ledger of what was placed since a
reading (fleet/ledger.py).

A node at level k has at least k/8 of every resource free (cluster_summary.LEVELS), so
a replica asking r surely fits floor(k/8 * node / r) times on it; with `used` charged to
it since, floor((k/8 * node - used) / r) times, and it surely keeps the level
floor((k/8 * node - used) / node * 8). Every answer is a lower bound: "fits" is never
optimistic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from shipyard.core.cluster_summary import LEVELS
from shipyard.core.model import Resources

NOTHING = Resources()
MANY = 1 << 30  # replicas of a request that asks for nothing the node has


def _pairs(a: Resources, b: Resources) -> tuple[tuple[int, int], ...]:
    return (a.cpu_milli, b.cpu_milli), (a.memory, b.memory), (a.gpus, b.gpus)


def share(r: Resources, node: Resources) -> float:
    """The dominant share of a node that `r` asks for."""
    return max((want / have for have, want in _pairs(node, r) if have > 0), default=0.0)


def room(level: int, used: Resources, node: Resources, r: Resources) -> int:
    """Replicas asking `r` that surely fit on a node of `level` with `used` charged to it."""
    left = [(level * have - LEVELS * u) // (LEVELS * want)
            for (have, u), (_, want) in zip(_pairs(node, used), _pairs(node, r), strict=True) if want > 0]
    return max(min(left, default=MANY), 0)


def level_left(level: int, used: Resources, node: Resources) -> int:
    """The level a node of `level` surely keeps with `used` charged to it."""
    left = [(level * have - LEVELS * u) // have for have, u in _pairs(node, used) if have > 0]
    return max(min(left, default=0), 0)


def node_equivalents(r: Resources, node: Resources) -> int:
    """Whole nodes `r` would take, by its scarcest resource."""
    return math.ceil(round(share(r, node), 9))


def fill_levels(roles: Sequence[tuple[Resources, int]], node: Resources, levels: Sequence[int]
          ) -> tuple[int, list[tuple[Resources, int]]]:
    """Put (request, replicas) on nodes counted by level; returns (nodes used, what is left).
    Fullest nodes that fit first, keeping the empty ones whole; a node a role used is
    counted again at the level it surely keeps, where a later role may still fit."""
    fresh = list(levels)  # untouched nodes by level
    touched = [0] * (LEVELS + 1)  # nodes this gang already uses, by what is surely left
    used = 0
    rest: list[tuple[Resources, int]] = []
    for r, replicas in roles:
        left = replicas
        for k in range(1, LEVELS + 1):
            per = room(k, NOTHING, node, r)
            for pool in (touched, fresh):
                if per == 0 or left == 0 or pool[k] == 0:
                    continue
                take = min(pool[k], math.ceil(left / per))
                pool[k] -= take
                used += take if pool is fresh else 0
                placed = min(left, take * per)
                full, part = divmod(placed, per)
                touched[level_left(k, r.scaled(per), node)] += full
                if part:
                    touched[level_left(k, r.scaled(part), node)] += 1
                left -= placed
        if left:
            rest.append((r, left))
    return used, rest


def new_nodes(roles: Sequence[tuple[Resources, int]], node: Resources) -> int:
    """Empty nodes the roles would take (each role's replicas fit on one, as checked before)."""
    many = sum(n for _, n in roles)  # never more nodes than replicas
    return fill_levels(roles, node, [0] * LEVELS + [many])[0]


@dataclass(slots=True)
class ChargedNode:
    """A node charged since the reading: its level then, and exactly what was charged to
    it (many small replicas cost what they ask, not a rounding step each)."""

    base: int
    used: Resources = field(default_factory=Resources)

    def level(self, node: Resources) -> int:
        return level_left(self.base, self.used, node)

    def room(self, node: Resources, r: Resources) -> int:
        return room(self.base, self.used, node, r)

    def put(self, node: Resources, r: Resources, left: int) -> int:
        """Up to `left` replicas asking `r` charged here; returns how many."""
        take = min(left, self.room(node, r))
        self.used = self.used + r.scaled(take)
        return take


@dataclass(slots=True)
class ChargedLevels:
    """One machine type's free levels as read, with replicas charged to them since."""

    fresh: list[int]  # untouched nodes by level, as read
    touched: list[ChargedNode] = field(default_factory=list)

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
                left -= n.put(node, r, left)
            while left and self.fresh[k] and room(k, NOTHING, node, r):
                self.fresh[k] -= 1
                n = ChargedNode(k)
                self.touched.append(n)
                left -= n.put(node, r, left)
            if not left:
                return
