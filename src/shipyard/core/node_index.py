"""Free capacity, indexed so that one scheduling cycle never scans every node per gang.

Nodes that look alike to a pod (same allocatable, labels other than topology and host
name, taints) form a *class*: eligibility is decided once per class, not per node.
The nodes of one class in one topology domain form a *pool*, and a pool files its
nodes in buckets by *level* (the scarcest free resource, in GPUs or in eighths), so
best fit is "the lowest level that is high enough" and "does not fit" is answered from
per-class counters without looking at a node.

Nodes held for a blocked gang (a reservation) move out of the open pools into pools of
their own, which only gangs that end before the reservation starts may use.

This is mutable working state for one cycle, built from an immutable Snapshot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shipyard.core.model import Member, Node, Resources, Snapshot, Taint, Toleration

CPU_LEVELS = 8
HOSTNAME = "kubernetes.io/hostname"
INF = math.inf


class NodeClass:
    """Nodes a pod cannot tell apart; counters cover the open (unreserved) ones."""

    __slots__ = (
        "alloc", "fcpu", "fgpu", "fmem", "held", "id", "levels", "n_level", "nodes", "pools",
        "pools_at", "sample",
    )

    def __init__(self, cid: int, sample: Node) -> None:
        self.id = cid
        self.sample = sample
        self.alloc = sample.allocatable
        self.levels = sample.allocatable.gpus or CPU_LEVELS
        self.nodes: list[int] = []
        self.pools: list[Pool] = []  # open pools only
        self.n_level = [0] * (self.levels + 1)
        # Open pools with at least one node at each level: best fit for one pod in O(levels).
        self.pools_at: list[dict[int, Pool]] = [{} for _ in range(self.levels + 1)]
        self.fcpu = self.fmem = self.fgpu = 0
        # The same counters over this class's reserved nodes, for "it would fit but
        # for the reservations" (a reason, so one aggregate will do).
        self.held = HeldCounters(self.levels)

    def level_of(self, fc: int, fm: int, fg: int) -> int:
        """A node's level with these free amounts: the scarcest resource, in steps of
        1/levels of the node (a whole-node pod needs the top level, which only an
        entirely free node has)."""
        a, top = self.alloc, self.levels
        lv = top
        if a.gpus:
            lv = min(lv, fg)
        if a.cpu_milli:
            lv = min(lv, fc * top // a.cpu_milli)
        if a.memory:
            lv = min(lv, fm * top // a.memory)
        return lv if lv > 0 else 0

    def min_level(self, r: Resources) -> int:
        """The lowest level at which a node of this class might hold `r`."""
        a = self.alloc
        if r.gpus > a.gpus:
            return self.levels + 1
        if a.gpus and not r.gpus:
            return 0  # a CPU-only pod on a GPU node: any level, the node check decides
        lv = r.gpus
        if a.cpu_milli:
            lv = max(lv, r.cpu_milli * self.levels // a.cpu_milli)
        if a.memory:
            lv = max(lv, r.memory * self.levels // a.memory)
        return lv

    def per_node(self, r: Resources) -> int:
        """At most this many pods of `r` fit on one empty node of this class."""
        a = self.alloc
        return min(
            a.gpus // r.gpus if r.gpus else 1 << 30,
            a.cpu_milli // r.cpu_milli if r.cpu_milli else 1 << 30,
            a.memory // r.memory if r.memory else 1 << 30,
        )


class HeldCounters:
    __slots__ = ("fcpu", "fgpu", "fmem", "n_level")

    def __init__(self, levels: int) -> None:
        self.n_level = [0] * (levels + 1)
        self.fcpu = self.fmem = self.fgpu = 0


@dataclass(slots=True, eq=False)
class Reservation:
    """Nodes held for `gang` from `starts_at` (inf: start unknown, nothing may use them)."""

    gang: str
    starts_at: float
    nodes: list[int] = field(default_factory=list)
    pools: list[Pool] = field(default_factory=list)

    def admits(self, ends_at: float) -> bool:
        # A gang may use held nodes only if it is sure to be gone before they are needed.
        return ends_at < INF and self.starts_at < INF and ends_at <= self.starts_at


class Pool:
    __slots__ = ("buckets", "cls", "fcpu", "fgpu", "fmem", "id", "n", "reservation", "topo")

    def __init__(self, pid: int, cls: NodeClass, topo: tuple[str | None, ...],
                 reservation: Reservation | None) -> None:
        self.id = pid
        self.cls = cls
        self.topo = topo
        self.reservation = reservation
        self.buckets: list[dict[int, None]] = [{} for _ in range(cls.levels + 1)]
        self.n = 0
        self.fcpu = self.fmem = self.fgpu = 0


@dataclass(slots=True, eq=False)
class Group:
    """Members of a gang with the same request and the same node constraints."""

    request: Resources
    members: list[Member]
    classes: list[NodeClass]
    # Selector terms on topology labels: topology index -> required value.
    topo_filter: dict[int, str]
    # Set when a selector names the host: every node is then checked one by one.
    node_check: Member | None

    def pool_ok(self, pool: Pool) -> bool:
        return all(pool.topo[i] == v for i, v in self.topo_filter.items())


def cap(where: Pool | NodeClass, r: Resources, m: int, *, held: bool = False) -> float:
    """Upper bound on how many pods of request `r` fit, from counters alone.

    `m` is the class's min level for `r`. Exact for whole-node pods (level == top
    means the node is entirely free). `held`: a class's reserved nodes count too.
    """
    cls = where if isinstance(where, NodeClass) else where.cls
    top = cls.levels
    if m > top:
        return 0
    if isinstance(where, NodeClass):
        nodes = sum(where.n_level[m:])
        if held:
            h = where.held
            nodes += sum(h.n_level[m:])
            fgpu, fcpu, fmem = where.fgpu + h.fgpu, where.fcpu + h.fcpu, where.fmem + h.fmem
            return free_bound(nodes * cls.per_node(r), r, fgpu, fcpu, fmem) if nodes else 0
    else:
        nodes = sum(map(len, where.buckets[m:]))  # levels m..top (hot: no generator)
    if not nodes:
        return 0
    return free_bound(nodes * cls.per_node(r), r, where.fgpu, where.fcpu, where.fmem)


def free_bound(bound: float, r: Resources, fgpu: int, fcpu: int, fmem: int) -> float:
    if r.gpus:
        bound = min(bound, fgpu // r.gpus)
    if r.cpu_milli:
        bound = min(bound, fcpu // r.cpu_milli)
    if r.memory:
        bound = min(bound, fmem // r.memory)
    return bound


# What a node's labels say about its class (every label but its name and topology) and
# its topology domain, by the labels mapping, kept across cycles: a controller's node
# cache keeps each node's mapping until the node changes, so a cycle at 7,500 nodes
# would otherwise rebuild the same 7,500 sets (a quarter of the controller's CPU under a
# burst, by py-spy). An entry holds the mapping itself, so its id is not reused while
# the entry lives; the memo is cleared when it outgrows the nodes it serves.
_LabelEntry = tuple[Mapping[str, str], frozenset[tuple[str, str]], tuple[str | None, ...]]
_LABEL_MEMOS: dict[tuple[str, ...], dict[int, _LabelEntry]] = {}


def _label_memo(topo_keys: tuple[str, ...], nodes: int) -> dict[int, _LabelEntry]:
    memo = _LABEL_MEMOS.setdefault(topo_keys, {})
    if len(memo) > 2 * nodes + 1024:
        memo.clear()
    if len(_LABEL_MEMOS) > 64:  # topology keys come from specs: keep a few sets
        _LABEL_MEMOS.clear()
        memo = _LABEL_MEMOS[topo_keys] = {}
    return memo


def _class_labels(labels: Mapping[str, str], skip: tuple[str, ...]) -> frozenset[tuple[str, str]]:
    items = frozenset(labels.items())
    drop = [(k, labels[k]) for k in skip if k in labels]
    return items.difference(drop) if drop else items


class Capacity:
    """Free resources per node, with the class and pool indexes over them."""

    def __init__(self, snapshot: Snapshot, topology_keys: Iterable[str]) -> None:
        self.nodes = snapshot.nodes
        self.topo_keys = tuple(dict.fromkeys(topology_keys))
        self.index_of = {n.name: i for i, n in enumerate(self.nodes)}
        self.fcpu, self.fmem, self.fgpu = [], [], []
        for n in self.nodes:  # one pass, not three (this build runs every cycle)
            a, u = n.allocatable, n.used
            self.fcpu.append(a.cpu_milli - u.cpu_milli)
            self.fmem.append(a.memory - u.memory)
            self.fgpu.append(a.gpus - u.gpus)
        self.level = [0] * len(self.nodes)
        self.pool_of: list[Pool | None] = [None] * len(self.nodes)
        self.classes: list[NodeClass] = []
        # Reservations with a known start, which a short gang may use until then.
        self.reservations: list[Reservation] = []
        self.held: list[Reservation] = []  # no known start: no one else may use them
        self.version = 0  # bumps on every change: keys caches of "does it fit"
        self._pools: dict[tuple[int, tuple[str | None, ...], int], Pool] = {}
        self._eligible: dict[tuple[object, ...], tuple[list[NodeClass], dict[int, str], bool]] = {}
        # The same, by identity of (selector, tolerations): replicas share those objects,
        # and the content key hashes in Python. The objects are kept, so ids stay unique.
        self._eligible_by_id: dict[tuple[int, int], tuple[object, object,
                                                         tuple[list[NodeClass], dict[int, str], bool]]] = {}
        by_key: dict[tuple[object, ...], NodeClass] = {}
        # The same by identity (nodes of a pool share their allocatable, label class and
        # taints objects; the content key hashes a dataclass in Python): the objects are
        # held by the nodes for this build, so their ids stay unique.
        by_ids: dict[tuple[int, int, int], NodeClass] = {}
        pool_by: dict[tuple[int, tuple[str | None, ...]], Pool] = {}
        skip = (*self.topo_keys, HOSTNAME)
        memo = _label_memo(self.topo_keys, len(self.nodes))
        for i, node in enumerate(self.nodes):
            if not (node.ready and node.schedulable):
                continue
            hit = memo.get(id(node.labels))
            if hit is None or hit[0] is not node.labels:
                hit = memo[id(node.labels)] = (node.labels, _class_labels(node.labels, skip),
                                               tuple(node.labels.get(k) for k in self.topo_keys))
            _, labels, topo = hit
            ids = (id(node.allocatable), id(labels), id(node.taints))
            cls = by_ids.get(ids)
            if cls is None:
                key = (node.allocatable, labels, node.taints)
                cls = by_key.get(key)
                if cls is None:
                    cls = by_key[key] = NodeClass(len(self.classes), node)
                    self.classes.append(cls)
                by_ids[ids] = cls
            cls.nodes.append(i)
            pool = pool_by.get((cls.id, topo))
            if pool is None:
                pool = pool_by[cls.id, topo] = self._pool(cls, topo, None)
            self._enter_open(i, pool)

    # -- pools and levels ----------------------------------------------------

    def _pool(self, cls: NodeClass, topo: tuple[str | None, ...],
              res: Reservation | None) -> Pool:
        key = (cls.id, topo, -1 if res is None else id(res))
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = Pool(len(self._pools), cls, topo, res)
            (cls.pools if res is None else res.pools).append(pool)
        return pool

    def _enter(self, i: int, pool: Pool) -> None:
        cls = pool.cls
        lv = self.level[i] = cls.level_of(self.fcpu[i], self.fmem[i], self.fgpu[i])
        self.pool_of[i] = pool
        pool.buckets[lv][i] = None
        pool.n += 1
        pool.fcpu += self.fcpu[i]
        pool.fmem += self.fmem[i]
        pool.fgpu += self.fgpu[i]
        if pool.reservation is None:
            cls.n_level[lv] += 1
            cls.pools_at[lv][pool.id] = pool
            counters: NodeClass | HeldCounters = cls
        else:
            counters = cls.held
            counters.n_level[lv] += 1
        counters.fcpu += self.fcpu[i]
        counters.fmem += self.fmem[i]
        counters.fgpu += self.fgpu[i]

    def _enter_open(self, i: int, pool: Pool) -> None:
        # _enter for an open pool, inlined for the build over every node.
        cls = pool.cls
        fc, fm, fg = self.fcpu[i], self.fmem[i], self.fgpu[i]
        lv = self.level[i] = cls.level_of(fc, fm, fg)
        self.pool_of[i] = pool
        pool.buckets[lv][i] = None
        pool.n += 1
        pool.fcpu += fc
        pool.fmem += fm
        pool.fgpu += fg
        cls.n_level[lv] += 1
        cls.pools_at[lv][pool.id] = pool
        cls.fcpu += fc
        cls.fmem += fm
        cls.fgpu += fg

    def _leave(self, i: int) -> Pool:
        pool = self.pool_of[i]
        if pool is None:
            raise ValueError(f"node {self.nodes[i].name} is not schedulable")
        cls = pool.cls
        lv = self.level[i]
        del pool.buckets[lv][i]
        pool.n -= 1
        pool.fcpu -= self.fcpu[i]
        pool.fmem -= self.fmem[i]
        pool.fgpu -= self.fgpu[i]
        if pool.reservation is None:
            cls.n_level[lv] -= 1
            if not pool.buckets[lv]:
                del cls.pools_at[lv][pool.id]
            counters: NodeClass | HeldCounters = cls
        else:
            counters = cls.held
            counters.n_level[lv] -= 1
        counters.fcpu -= self.fcpu[i]
        counters.fmem -= self.fmem[i]
        counters.fgpu -= self.fgpu[i]
        return pool

    def add(self, i: int, r: Resources, sign: int) -> None:
        """Free (+1) or take (-1) `r` on node i; ignored for unschedulable nodes.

        _leave then _enter, inlined (the hottest call of a cycle): the counters move by
        the change, and the node changes bucket only if its level does."""
        pool = self.pool_of[i]
        if pool is None:
            return
        dc, dm, dg = sign * r.cpu_milli, sign * r.memory, sign * r.gpus
        fc = self.fcpu[i] = self.fcpu[i] + dc
        fm = self.fmem[i] = self.fmem[i] + dm
        fg = self.fgpu[i] = self.fgpu[i] + dg
        pool.fcpu += dc
        pool.fmem += dm
        pool.fgpu += dg
        cls = pool.cls
        counters: NodeClass | HeldCounters = cls if pool.reservation is None else cls.held
        counters.fcpu += dc
        counters.fmem += dm
        counters.fgpu += dg
        lv = cls.level_of(fc, fm, fg)
        # The node goes to the end of its bucket, and a pool whose bucket held only it to
        # the end of its level's pools, as leaving and entering again did: placement
        # walks them in order, and decisions stay the same.
        old = self.level[i]
        buckets = pool.buckets
        was = buckets[old]
        del was[i]
        open_ = pool.reservation is None
        if open_ and not was:
            del cls.pools_at[old][pool.id]
        buckets[lv][i] = None
        if lv != old:
            self.level[i] = lv
            counters.n_level[old] -= 1
            counters.n_level[lv] += 1
        if open_:
            cls.pools_at[lv][pool.id] = pool
        self.version += 1

    def take(self, i: int, r: Resources) -> None:
        self.add(i, r, -1)

    def release(self, i: int, r: Resources) -> None:
        self.add(i, r, +1)

    def fits(self, i: int, r: Resources) -> bool:
        return (
            r.gpus <= self.fgpu[i] and r.cpu_milli <= self.fcpu[i] and r.memory <= self.fmem[i]
        )

    def reserve(self, gang: str, starts_at: float, nodes: Iterable[int]) -> Reservation:
        """Hold `nodes` for `gang`: out of the open pools, into the reservation's own."""
        res = Reservation(gang, starts_at)
        for i in dict.fromkeys(nodes):
            pool = self.pool_of[i]
            if pool is None or pool.reservation is not None:
                continue  # already held for a gang ahead: never counted on
            self._leave(i)
            self._enter(i, self._pool(pool.cls, pool.topo, res))
            res.nodes.append(i)
        (self.reservations if math.isfinite(starts_at) else self.held).append(res)
        self.version += 1
        return res

    def is_open(self, i: int) -> bool:
        pool = self.pool_of[i]
        return pool is not None and pool.reservation is None

    # -- eligibility -------------------------------------------------------------

    def groups(self, members: Iterable[Member]) -> list[Group]:
        """Members grouped by request and constraints, biggest request first."""
        members = list(members)
        f = members[0] if members else None
        if f is not None and all(m.request is f.request and m.node_selector is f.node_selector
                                 and m.tolerations is f.tolerations for m in members):
            # Replicas of one role share their objects (most gangs): one group, no hashing.
            classes, topo_filter, host = self._classes_for(f)
            return [Group(f.request, members, classes, topo_filter, f if host else None)]
        # By identity of the selector first (replicas of a role share one mapping:
        # cheap), then merged by content.
        by_id: dict[tuple[object, ...], list[Member]] = {}
        keys = [(m.request, id(m.node_selector), m.tolerations) for m in members]
        for k, m in zip(keys, members, strict=True):
            by_id.setdefault(k, []).append(m)
        by_key: dict[tuple[object, ...], Group] = {}
        for ms in by_id.values():
            m = ms[0]
            key = (m.request, tuple(sorted(m.node_selector.items())), m.tolerations)
            group = by_key.get(key)
            if group is None:
                classes, topo_filter, host = self._classes_for(m)
                group = by_key[key] = Group(m.request, [], classes, topo_filter,
                                            m if host else None)
            if group.members:
                group.members.extend(ms)
            else:
                group.members = list(ms)
        out = list(by_key.values())
        # Whole-node pods first: they need empty nodes; small ones fill the gaps after.
        out.sort(key=lambda g: (g.request.gpus, g.request.cpu_milli, g.request.memory),
                 reverse=True)
        return out

    def _classes_for(self, m: Member) -> tuple[list[NodeClass], dict[int, str], bool]:
        ident = (id(m.node_selector), id(m.tolerations))
        seen = self._eligible_by_id.get(ident)
        if seen is not None and seen[0] is m.node_selector and seen[1] is m.tolerations:
            return seen[2]
        hit = self._classes_by_content(m)
        self._eligible_by_id[ident] = (m.node_selector, m.tolerations, hit)
        return hit

    def _classes_by_content(self, m: Member) -> tuple[list[NodeClass], dict[int, str], bool]:
        key = (tuple(sorted(m.node_selector.items())), m.tolerations)
        hit = self._eligible.get(key)
        if hit is None:
            topo_filter = {self.topo_keys.index(k): v for k, v in m.node_selector.items()
                           if k in self.topo_keys}
            host = HOSTNAME in m.node_selector
            plain = {k: v for k, v in m.node_selector.items()
                     if k not in self.topo_keys and k != HOSTNAME}
            classes = [c for c in self.classes
                       if _matches(plain, m.tolerations, c.sample)
                       and m.request.fits_in(c.alloc)]
            hit = self._eligible[key] = (classes, topo_filter, host)
        return hit


def _matches(selector: dict[str, str], tolerations: tuple[Toleration, ...], node: Node) -> bool:
    labels = node.labels
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    return all(_tolerated(t, tolerations) for t in node.taints)


def _tolerated(taint: Taint, tolerations: tuple[Toleration, ...]) -> bool:
    if taint.effect not in ("NoSchedule", "NoExecute"):
        return True
    return any(t.tolerates(taint) for t in tolerations)
