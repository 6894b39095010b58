"""Gang placement: every member of a gang on a node, or none at all.

Placement takes resources from the Capacity index as it goes and gives them all back
if one member does not fit, so a failed gang leaves nothing behind. The same function
answers "what if" questions (would it fit if these gangs stopped?) for preemption and
backfill: take, look, give back.

Rules, in the order they apply:
- a member only goes to a node of a class it is eligible for (selector, taints, size);
- the biggest members go first (whole-node GPU pods take empty nodes; the small ones
  then fill the gaps), and each takes the fullest node it fits on (best fit);
- a gang of several pods goes into one topology domain if one can hold it (the
  narrowest level first: rack, then block), choosing the fullest such domain;
  otherwise it spreads over as few domains as it can, largest first, unless its
  topology is required, in which case it does not start.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from shipyard.core.model import Member, Node, Resources, Topology
from shipyard.core.node_index import Capacity, Group, Pool, cap, free_bound

INF = math.inf
# Single-domain candidates tried for real before spreading (the estimate is an upper
# bound, so a candidate can still fail; three tries keep the worst case bounded).
DOMAIN_TRIES = 3

Taken = list[tuple[Member, int]]


def eligible(member: Member, node: Node) -> bool:
    """Could `member` ever run on `node` (ignoring what is free right now)?"""
    if not (node.ready and node.schedulable):
        return False
    labels = node.labels
    for key, value in member.node_selector.items():
        if labels.get(key) != value:
            return False
    for taint in node.taints:
        if taint.effect in ("NoSchedule", "NoExecute") and not any(
            t.tolerates(taint) for t in member.tolerations
        ):
            return False
    return True


def usable_pools(capacity: Capacity, group: Group, ends_at: float) -> dict[Pool, float]:
    """Pools with room for a member of the group -> how many might fit there.

    Open pools come from the per-level index (a full cluster has few with room), then
    held pools the gang would leave in time.
    """
    r = group.request
    out: dict[Pool, float] = {}
    for c in group.classes:
        m = c.min_level(r)
        per = c.per_node(r)
        # Whole-node pods: the room is exactly the number of empty nodes.
        whole = m == c.levels and per == 1
        for lv in range(m, c.levels + 1):
            for p in c.pools_at[lv].values():
                if p not in out:
                    if whole:
                        out[p] = len(p.buckets[m])
                    else:  # cap(p, r, m), inlined: this loop is the hottest of a cycle
                        n = sum(map(len, p.buckets[m:]))
                        out[p] = free_bound(n * per, r, p.fgpu, p.fcpu, p.fmem) if n else 0
    classes = set(map(id, group.classes))
    for res in capacity.reservations:
        if res.admits(ends_at):
            for p in res.pools:
                if p.n and id(p.cls) in classes:
                    out[p] = cap(p, r, p.cls.min_level(r))
    if group.topo_filter:
        return {p: n for p, n in out.items() if n and group.pool_ok(p)}
    return {p: n for p, n in out.items() if n}


def could_fit(capacity: Capacity, groups: Sequence[Group], ends_at: float) -> bool:
    """Necessary condition, from counters only: False means it certainly does not fit."""
    gpus = sum(g.request.gpus * len(g.members) for g in groups)
    free_gpus = 0
    seen: set[int] = set()
    for g in groups:
        r = g.request
        room: float = 0
        for c in g.classes:
            room += cap(c, r, c.min_level(r))
            if c.id not in seen:
                seen.add(c.id)
                free_gpus += c.fgpu
        for res in capacity.reservations:
            if res.admits(ends_at):
                for p in res.pools:
                    if p.cls in g.classes:
                        room += cap(p, r, p.cls.min_level(r))
                        free_gpus += p.fgpu
        if room < len(g.members):
            return False
    return gpus <= free_gpus


def place(
    capacity: Capacity,
    groups: Sequence[Group],
    topology: Topology | None,
    topology_keys: Sequence[str],
    ends_at: float = INF,
) -> Taken | None:
    """Place the whole gang and keep it taken; None (and nothing taken) if it cannot."""
    if not could_fit(capacity, groups, ends_at):
        return None
    if len(groups) == 1 and len(groups[0].members) == 1:
        return _place_one(capacity, groups[0], ends_at)
    room = {id(g): usable_pools(capacity, g, ends_at) for g in groups}
    pools = {k: list(v) for k, v in room.items()}
    if topology is not None:
        keys: Sequence[str] = [topology.key]
        required = topology.required
    else:
        keys, required = topology_keys, False
    levels = [capacity.topo_keys.index(k) for k in keys if k in capacity.topo_keys]
    caps_by = {ki: _domain_caps(groups, room, ki) for ki in levels}
    for ki in levels:
        caps = caps_by[ki]
        need = [len(g.members) for g in groups]
        fitting = [
            d for d, per_group in caps.items()
            if d is not None and all(c >= n for c, n in zip(per_group, need, strict=True))
        ]
        fitting.sort(key=lambda d: (sum(caps[d]), d))  # fullest first
        for d in fitting[:DOMAIN_TRIES]:
            taken = _fill(capacity, groups, {
                k: [p for p in ps if p.topo[ki] == d] for k, ps in pools.items()
            })
            if taken is not None:
                return taken
    if required:
        return None
    if levels:
        # Spread: the widest domains with the most room first, then narrower ones
        # inside them, so the gang touches as few domains as it can.
        def order(p: Pool) -> tuple[object, ...]:
            key: list[object] = []
            for ki in reversed(levels):
                d = p.topo[ki]
                key += [-sum(caps_by[ki][d]), d or ""]
            return tuple(key)

        pools = {k: sorted(ps, key=order) for k, ps in pools.items()}
    return _fill(capacity, groups, pools)


def _place_one(capacity: Capacity, g: Group, ends_at: float) -> Taken | None:
    """One pod: the fullest node it fits on, found through the per-level pool index."""
    r = g.request
    for c in g.classes:
        m = c.min_level(r)
        for lv in range(m, c.levels + 1):
            for pool in c.pools_at[lv].values():
                if g.topo_filter and not g.pool_ok(pool):
                    continue
                i = _best_in_pool(capacity, pool, r, lv, g.node_check, lv + 1)
                if i is not None:
                    capacity.take(i, r)
                    return [(g.members[0], i)]
    held = [p for res in capacity.reservations if res.admits(ends_at) for p in res.pools
            if p.n and p.cls in g.classes and g.pool_ok(p)]
    return _fill(capacity, [g], {id(g): held}) if held else None


def unplace(capacity: Capacity, taken: Taken) -> None:
    for member, i in reversed(taken):
        capacity.release(i, member.request)


def _domain_caps(
    groups: Sequence[Group], room: dict[int, dict[Pool, float]], ki: int
) -> dict[str | None, list[float]]:
    caps: dict[str | None, list[float]] = defaultdict(lambda: [0.0] * len(groups))
    for gi, g in enumerate(groups):
        for p, n in room[id(g)].items():
            caps[p.topo[ki]][gi] += n
    return caps


def _fill(capacity: Capacity, groups: Sequence[Group], pools: dict[int, list[Pool]]) -> Taken | None:
    taken: Taken = []
    for g in groups:
        r = g.request
        members = g.members
        k = 0
        for pool in pools[id(g)]:
            m = pool.cls.min_level(r)
            while k < len(members):
                i = _best_in_pool(capacity, pool, r, m, g.node_check)
                if i is None:
                    break
                capacity.take(i, r)
                taken.append((members[k], i))
                k += 1
            if k == len(members):
                break
        if k < len(members):
            unplace(capacity, taken)
            return None
    return taken


def _best_in_pool(
    capacity: Capacity, pool: Pool, r: Resources, m: int, node_check: Member | None,
    top: int | None = None,
) -> int | None:
    fits = capacity.fits
    for lv in range(m, len(pool.buckets) if top is None else top):
        for i in pool.buckets[lv]:
            if fits(i, r) and (node_check is None or eligible(node_check, capacity.nodes[i])):
                return i
    return None
