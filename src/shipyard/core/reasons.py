"""Why a gang waits, in words a person can act on. Counts come from the index only."""

from __future__ import annotations

import math
from collections.abc import Sequence

from shipyard.core.model import Queue, Resources
from shipyard.core.node_index import Capacity, Group, Reservation


def shape(groups: Sequence[Group]) -> str:
    return " + ".join(f"{len(g.members)} x ({g.request.describe()})" for g in groups)


def free_nodes(capacity: Capacity, group: Group) -> int:
    """Open nodes with room for one member of `group` (by level: an upper bound)."""
    n = 0
    for c in group.classes:
        m = c.min_level(group.request)
        n += sum(c.n_level[m:])
    return n


def duration(seconds: float) -> str:
    if math.isinf(seconds):
        return "an unknown time"
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def where(position: int, queue: str) -> str:
    return f"position {position} in queue {queue}"


def capacity_text(capacity: Capacity, groups: Sequence[Group]) -> str:
    big = groups[0]
    n = free_nodes(capacity, big)
    such = "such node" if n == 1 else "such nodes"
    return f"needs {shape(groups)}; {n} {such} free"


def reserved_text(start: float, now: float) -> str:
    if math.isinf(start):
        return ("its nodes are held for it; it starts when running experiments without a "
                "time limit finish")
    return f"nodes are held for it; expected to start in {duration(start - now)}"


def starving_text(bound_s: float) -> str:
    return f"reserved: waiting longer than {duration(bound_s)} (the starvation bound)"


def blocked_by_reservation(res: Reservation, now: float) -> str:
    if math.isinf(res.starts_at):
        return (f"it would fit only on nodes held for {res.gang}, whose start is unknown; "
                "it starts after that one")
    left = duration(res.starts_at - now)
    return (f"it would fit only on nodes held for {res.gang}, which starts in {left}; "
            f"a time limit under {left} would let it start now")


def never_text(capacity: Capacity, groups: Sequence[Group]) -> str:
    if any(not g.classes for g in groups):
        return (f"needs {shape(groups)}; no node matches its machine type (node selector, "
                "taints and size); it can never start here: pick another machine type")
    nodes = len({i for g in groups for c in g.classes for i in c.nodes})
    return (f"needs {shape(groups)}, more than all {nodes} matching node(s) hold; it can "
            "never start here: make it smaller or add nodes")


def topology_text(capacity: Capacity, groups: Sequence[Group], key: str) -> str:
    ki = capacity.topo_keys.index(key)
    per_domain: dict[str | None, int] = {}
    big = groups[0]
    for c in big.classes:
        m = c.min_level(big.request)
        for p in c.pools:
            if p.topo[ki] is not None:
                per_domain[p.topo[ki]] = per_domain.get(p.topo[ki], 0) + sum(
                    len(b) for b in p.buckets[m:])
    most = max(per_domain.values(), default=0)
    return (f"needs {shape(groups)} within one {key}; the roomiest has {most} such node(s) "
            "free")


def quota_text(queue: Queue, used: Resources, need: Resources) -> str:
    after = used + need
    limit = queue.limit
    for name, a, lim, nom in (
        ("GPUs", after.gpus, limit.gpus, queue.nominal.gpus),
        ("CPU (millicores)", after.cpu_milli, limit.cpu_milli, queue.nominal.cpu_milli),
        ("memory (bytes)", after.memory, limit.memory, queue.nominal.memory),
    ):
        if a > lim:
            return (f"queue {queue.name} would use {a} {name}, over its limit of {lim} "
                    f"(nominal {nom} + borrowing); it starts as the queue's running "
                    "experiments finish, or raise the queue's quota")
    return f"queue {queue.name} is at its limit"
