"""Autoscale planning: which nodes to add for waiting gangs, which idle ones to remove.

A pure function of an AutoscaleInput (the snapshot, the pools, what was already
requested) that returns an AutoscalePlan:

1. scale-up, for each gang waiting for capacity, in scheduling order: the cheapest new
   nodes that let the WHOLE gang fit, found with the scheduler's own placement on the
   snapshot plus hypothetical nodes (scaleup.py). Free nodes count first; what an
   earlier gang was given (free or new) is not counted again; a gang's earmark (nodes
   already requested for it) counts as its own. No partial scale-up: a gang that does
   not fit even with every pool at max gets a NoScaleUp saying why.
   Nodes on their way (`share_coming`): the room a gang leaves on the nodes requested
   for it (new or coming) is open to the gangs after it, which start there once it has;
   nodes provisioning for no pending gang (its gang started elsewhere, or is gone; or
   asked for the warm buffer) are open to all, after a gang's own (`reuse` says who).
   Look-ahead (`look_ahead_gangs`): running work that ends (known_end: time limit, or a
   confident estimate) before a new node like the one it runs on could be Ready (its
   pool's provisioning_delay_s; a node of no growable pool: the fastest pool's) counts
   as ended there. A gang that fits on what it frees (with what is free) is not given
   nodes: it starts there no later than on new ones, and the new ones would be paid and
   never used (the waste an autoscaler exists to cut). A gang that waits for nodes on
   their way anyway does not count it: it would sit unheld until they are Ready.
   Without look-ahead a gang that no new node lets fit still takes that room (it starts
   there when the work ends), so the gangs after it do not count on the free nodes it
   takes then;
2. warm buffer: top each pool up to `warm_buffer` idle nodes (and to `min_nodes`),
   counting nodes that running work leaves idle (known_end) within the idle timeout
   after a new one could be Ready, and unclaimed nodes on their way no gang counts on;
3. scale-down: decide, wait, re-check. Idle nodes past their pool's timeout are marked;
   one still a candidate `confirm_s` later is removed, never below min_nodes or the
   warm buffer, never more than half a pool per step, never under a running or earmarked
   gang.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from shipyard.core import reasons
from shipyard.core.estimate import Estimate
from shipyard.core.model import (
    WAIT_CAPACITY,
    WAIT_NEVER,
    WAIT_TOPOLOGY,
    Admission,
    Gang,
    Node,
    Policy,
    Resources,
    Running,
    Snapshot,
    Waiting,
)
from shipyard.core.node_index import Group
from shipyard.core.placement import Taken, eligible, unplace
from shipyard.core.scaleup import Extended

# Only these waits can end by adding nodes (quota, preemption and reservations cannot).
SCALE_UP_KINDS = frozenset({WAIT_CAPACITY, WAIT_NEVER, WAIT_TOPOLOGY})


@dataclass(frozen=True, slots=True)
class PoolState:
    name: str
    template: Node  # allocatable, labels and taints of one new node (name and used ignored)
    cost_per_hour: float
    min_nodes: int
    max_nodes: int
    warm_buffer: int  # idle nodes kept on purpose (the "balloon")
    idle_timeout_s: float
    static: bool = False  # on-prem, already paid for: never created nor deleted
    nodes: tuple[str, ...] = ()  # this pool's registered nodes
    provisioning: int = 0  # requested from the provider, not yet registered
    unavailable_until: float = 0.0  # after a provisioning failure: skipped until then
    # How soon a requested node is Ready: work ending (known_end) sooner frees its
    # capacity first. 0: no look-ahead (only capacity free now counts).
    provisioning_delay_s: float = 0.0

    @property
    def headroom(self) -> int:
        return max(self.max_nodes - len(self.nodes) - self.provisioning, 0)


@dataclass(frozen=True, slots=True)
class AutoscaleInput:
    snapshot: Snapshot
    pools: tuple[PoolState, ...]
    # schedule(snapshot).waiting, in scheduling order; only SCALE_UP_KINDS count.
    waiting: tuple[Waiting, ...] = ()
    # gang -> pool -> nodes requested for it and not yet used (provisioning or registered).
    earmarked: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    earmarked_nodes: Mapping[str, str] = field(default_factory=dict)  # node -> gang
    idle_since: Mapping[str, float] = field(default_factory=dict)  # absent: busy
    marked: Mapping[str, float] = field(default_factory=dict)  # node -> when marked
    confirm_s: float = 30.0
    # Admissions of the same cycle not yet in snapshot.used: their nodes are taken.
    admitted: tuple[Admission, ...] = ()
    # node -> what pods on their way out hold there (deleted, in their grace period: a
    # gang stopped by its time limit): freed sooner than any new node could be Ready.
    releasing: Mapping[str, Resources] = field(default_factory=dict)
    # Plan gangs onto nodes already on their way: the room an earlier gang leaves on the
    # nodes requested for it, and nodes requested for a gang that no longer waits.
    # False: each requested node is only ever its own gang's (the plan before, to compare).
    share_coming: bool = True
    # Give a waiting gang no nodes when running work frees room for it before a new node
    # could be Ready (pools' provisioning_delay_s > 0); False: only warm-buffer top-ups
    # look ahead (the default, as AutoscaleSettings.look_ahead_gangs).
    look_ahead_gangs: bool = False


@dataclass(frozen=True, slots=True)
class ScaleUp:
    pool: str
    count: int
    gang: str | None  # None: warm buffer or min_nodes top-up
    reason: str


@dataclass(frozen=True, slots=True)
class Reuse:
    """Nodes of `pool` on their way for no pending gang that `gang` was planned onto (no
    new request). Nothing holds them for it: they register free, and it is first in line."""

    pool: str
    count: int
    gang: str
    reason: str


@dataclass(frozen=True, slots=True)
class ScaleDown:
    pool: str
    nodes: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class NoScaleUp:
    gang: str
    reason: str


@dataclass(frozen=True, slots=True)
class AutoscalePlan:
    scale_up: tuple[ScaleUp, ...]  # gangs in scheduling order, then top-ups by pool name
    mark: tuple[str, ...]
    unmark: tuple[str, ...]
    scale_down: tuple[ScaleDown, ...]  # most expensive pool first
    cannot_fit: tuple[NoScaleUp, ...]
    # Gangs given no nodes because they fit on what running work frees first.
    ending_work: tuple[NoScaleUp, ...] = ()
    # Gangs given no nodes because they fit on nodes already on their way (requested for
    # an earlier gang with room to spare, or for a gang that no longer waits).
    on_the_way: tuple[NoScaleUp, ...] = ()
    # Nodes on their way that no pending gang holds, and the gang planned onto them: by
    # gang in scheduling order, then pool.
    reuse: tuple[Reuse, ...] = ()


def plan(inp: AutoscaleInput, policy: Policy = Policy()) -> AutoscalePlan:
    names = [p.name for p in inp.pools]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"pools: duplicate name(s) {', '.join(dup)}; pool names must be unique")
    up = _scale_up(inp, policy)
    ups = up.ups + _top_up(inp, up.ups, up.claimed, up.reused, policy)
    mark, unmark, down = _scale_down(inp, up.claimed)
    return AutoscalePlan(tuple(ups), mark, unmark, down, tuple(up.cannot), tuple(up.ending),
                         tuple(up.on_the_way), tuple(up.reuse))


# -- scale-up ---------------------------------------------------------------------


@dataclass(slots=True)
class _Up:
    ups: list[ScaleUp] = field(default_factory=list)
    cannot: list[NoScaleUp] = field(default_factory=list)
    ending: list[NoScaleUp] = field(default_factory=list)
    on_the_way: list[NoScaleUp] = field(default_factory=list)
    claimed: set[str] = field(default_factory=set)  # existing nodes gangs were planned onto
    reused: dict[str, int] = field(default_factory=dict)  # pool -> unclaimed nodes planned onto
    reuse: list[Reuse] = field(default_factory=list)


def ending_by(snap: Snapshot, horizon: float, estimates: Mapping[str, Estimate] | None = None
              ) -> list[Running]:
    """Running gangs that end by `horizon`: by their time limit, or by a confident
    estimate among `estimates` (known_end; one that finishes sooner frees its nodes sooner)."""
    out = []
    for r in snap.running:
        end = known_end(r, snap.now, estimates or {})
        if end is not None and end <= horizon:
            out.append(r)
    return out


def known_end(run: Running, now: float, estimates: Mapping[str, Estimate]) -> float | None:
    """When a running gang ends, as far as the planner may count on it: its time limit,
    else a confident estimate from history (its high quantile, as backfill takes it)
    while that still lies ahead; None: no known end."""
    if run.ends_at is not None:
        return run.ends_at
    est = estimates.get(run.gang.key)
    if est is not None and est.confident and run.started_at + est.high_s > now:
        return run.started_at + est.high_s
    return None


def _released(inp: AutoscaleInput, growable: Sequence[PoolState],
              policy: Policy) -> tuple[Snapshot, dict[str, Resources]]:
    """The snapshot with the requests of running members taken off their nodes where
    the run ends (time limit, or confident estimate) before a new node like that one
    could be Ready (and what pods on their way out hold); and what that frees, by node."""
    snap = inp.snapshot
    fastest = min((p.provisioning_delay_s for p in growable), default=0.0)
    delay = {n: p.provisioning_delay_s for p in growable for n in p.nodes}
    freed = {n: r for n, r in inp.releasing.items() if delay.get(n, fastest) > 0}
    estimates = snap.estimates if policy.estimates else {}
    for run in snap.running:
        end = known_end(run, snap.now, estimates)
        if end is None:
            continue
        for m in run.gang.members:
            node = run.placement.get(m.name)
            ahead = delay.get(node, fastest) if node is not None else 0.0
            if node is not None and ahead > 0 and end <= snap.now + ahead:  # 0: no look-ahead
                freed[node] = freed.get(node, Resources()) + m.request
    if not freed:
        return snap, {}
    nodes = tuple(replace(n, used=_less(n.used, freed[n.name])) if n.name in freed else n
                  for n in snap.nodes)
    return replace(snap, nodes=nodes), freed


def _less(used: Resources, freed: Resources) -> Resources:
    return Resources(max(used.cpu_milli - freed.cpu_milli, 0), max(used.memory - freed.memory, 0),
                     max(used.gpus - freed.gpus, 0))



def _coming(inp: AutoscaleInput) -> dict[str, dict[str, int]]:
    """gang -> pool -> earmarked nodes still provisioning (earmark minus registered).

    A node that registered but is not Ready yet is still coming: placement cannot use
    it, so counting it as arrived would ask for it a second time."""
    pool_of = {n: p.name for p in inp.pools for n in p.nodes}
    usable = {n.name for n in inp.snapshot.nodes if n.ready and n.schedulable}
    registered: dict[tuple[str, str], int] = {}
    for node, gang in inp.earmarked_nodes.items():
        pool = pool_of.get(node)
        if pool is not None and node in usable:
            registered[gang, pool] = registered.get((gang, pool), 0) + 1
    out: dict[str, dict[str, int]] = {}
    for gang, per_pool in inp.earmarked.items():
        for pool, n in per_pool.items():
            left = n - registered.get((gang, pool), 0)
            if left > 0:
                out.setdefault(gang, {})[pool] = left
    return out


def _unclaimed(inp: AutoscaleInput, coming: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """pool -> nodes provisioning that no pending gang holds: asked for a gang that has
    since started elsewhere or gone, or for the warm buffer."""
    held: dict[str, int] = {}
    for per in coming.values():
        for pool, n in per.items():
            held[pool] = held.get(pool, 0) + n
    return {p.name: p.provisioning - held.get(p.name, 0) for p in inp.pools
            if not p.static and p.provisioning > held.get(p.name, 0)}


def _scale_up(inp: AutoscaleInput, policy: Policy) -> _Up:
    snap = inp.snapshot
    pending = {g.key: g for g in snap.pending}
    gangs: list[Gang] = []
    for w in inp.waiting:
        g = pending.pop(w.gang, None)  # pop: a gang listed twice is decided once
        if g is not None and w.kind in SCALE_UP_KINDS and g.members:
            gangs.append(g)
    by_name = {p.name: p for p in inp.pools}
    growable = sorted((p for p in inp.pools if not p.static and snap.now >= p.unavailable_until),
                      key=lambda p: (p.cost_per_hour, p.name))
    # No gang takes more new nodes than it has members: that bounds the hypothetical set.
    budget = sum(len(g.members) for g in gangs)
    spare = [(p.name, p.template, min(p.headroom, budget)) for p in growable]
    held = _coming(inp)
    coming = {
        g: [(pool, by_name[pool].template, n) for pool, n in sorted(per.items()) if pool in by_name]
        for g, per in held.items()
    }
    share = inp.share_coming
    unclaimed = sorted(_unclaimed(inp, held).items()) if share and gangs else []
    keys = [*policy.topology_keys, *(g.topology.key for g in gangs if g.topology is not None)]
    # Work ending before a new node could be Ready frees capacity a gang can start on as
    # soon as on a new node.
    look = inp.look_ahead_gangs
    released, freeing = _released(inp, growable, policy) if gangs else (snap, {})
    ext = Extended(released, keys, spare, coming, inp.earmarked_nodes,
                   [(pool, by_name[pool].template, min(n, budget)) for pool, n in unclaimed])
    soon = {i: r for n, r in freeing.items() if (i := ext.index(n)) is not None}
    out = _Up()
    everything = {g.key: g for g in snap.pending}
    for adm in inp.admitted:
        g = everything.get(adm.gang)
        for m in g.members if g is not None else ():
            i = ext.index(adm.placement.get(m.name, ""))
            if i is not None:
                ext.cap.take(i, m.request)
                out.claimed.add(ext.cap.nodes[i].name)
    # Without look-ahead what running work frees is out of play, except for a gang that
    # no new node lets fit: it starts there as soon as the work ends, taking that room
    # (else a gang after it would count on the free nodes it takes then).
    out_of_play = {} if look else ext.withhold(soon)
    adopted: dict[int, str] = {}  # unclaimed node -> the first gang planned onto it
    for g in gangs:
        ext.open_own(g.key)
        groups = ext.cap.groups(g.members)
        free = _free_nodes(groups[0])
        # What it has first: the snapshot with what running work frees (it starts there as
        # soon as on anything new); then also its own nodes on their way and room left to
        # it; unclaimed ones only when that is not enough (else it would take another at
        # every step, over its own); new ones last.
        taken = ext.place_without(groups, g, keys, ext.hypothetical()) if look and soon else None
        if taken is None and ext.unclaimed:
            taken = ext.place_without(groups, g, keys, ext.unclaimed)
        if taken is None:
            taken = ext.smallest(groups, g, keys)
        if look and taken is not None and any(i in soon for _, i in taken) and ext.not_ready_among(taken):
            # It waits for nodes on their way anyway: what running work frees meanwhile
            # would sit unheld until they are Ready, open to other gangs (backfill), and
            # it would be short then. Only a gang that can start on it at once counts on it.
            unplace(ext.cap, taken)
            withheld = ext.withhold(soon)
            taken = ext.smallest(groups, g, keys)
            ext.restore(withheld)
        waits_for_work = look
        if taken is None and out_of_play:
            taken = _on_what_ends(ext, groups, g, keys, out_of_play)
            waits_for_work = True
        if taken is None:
            ext.show_counts({})
            out.cannot.append(NoScaleUp(g.key, _why_not(inp, g, groups, free)))
            ext.close_own(g.key)
            continue
        out.claimed |= ext.existing(taken)
        # Sharing: the room it leaves on new nodes (its own, or asked for now) is open to
        # the gangs after it; they start there once it has (or has started elsewhere).
        counts = ext.settle(taken, share)
        if counts:
            # Which existing nodes keep spare room (those or its new ones) is only decided
            # at admission, so later gangs may not count on that room.
            for _, i in taken:
                if i < ext.base and i not in ext.hidden:
                    ext.hide(i)
        on_way = ext.on_the_way(taken)
        _adopt(ext, g.key, on_way, adopted, out)
        shape = reasons.shape(groups)
        if not counts and waits_for_work and any(i in soon for _, i in taken):
            out.ending.append(NoScaleUp(g.key, (
                f"needs {shape}; fits on capacity that running work frees (by its time limit or "
                "a confident estimate) before a new node could be Ready: no nodes requested")))
        elif not counts and share and on_way - set(ext.own.get(g.key, ())):
            out.on_the_way.append(NoScaleUp(g.key, (
                f"needs {shape}; fits on nodes already on their way (room left by an earlier "
                "gang, or asked for one that no longer waits): no nodes requested")))
        for pool in sorted(counts, key=lambda p: (by_name[p].cost_per_hour, p)):
            n = counts[pool]
            out.ups.append(ScaleUp(pool, n, g.key, f"{n} x {pool} for {g.key} (needs {shape}; "
                                                   f"{free} such node(s) free)"))
        ext.close_own(g.key, on_way if share else ())
    return out


def _on_what_ends(ext: Extended, groups: list[Group], gang: Gang, keys: Sequence[str],
                  out_of_play: dict[int, Resources]) -> Taken | None:
    """Place the gang (kept taken) on the snapshot's nodes with what running work frees
    back in play; what it does not take of that goes out of play again (`out_of_play`
    updated)."""
    ext.restore(out_of_play)
    taken = ext.place_without(groups, gang, keys, ext.hypothetical())
    used: dict[int, Resources] = {}
    for m, i in taken or ():
        used[i] = used.get(i, Resources()) + m.request
    left = {i: _less(r, used.get(i, Resources())) for i, r in out_of_play.items()}
    out_of_play.clear()
    out_of_play.update(ext.withhold(left))
    return taken


def _adopt(ext: Extended, gang: str, on_way: set[int], adopted: dict[int, str], out: _Up) -> None:
    """The unclaimed nodes `gang` was placed on that no gang before it took: its `reuse`."""
    mine = sorted(i for i in on_way if i in ext.unclaimed and i not in adopted)
    per: dict[str, int] = {}
    for i in mine:
        adopted[i] = gang
        per[ext.unclaimed[i]] = per.get(ext.unclaimed[i], 0) + 1
    for pool, n in sorted(per.items()):
        out.reuse.append(Reuse(pool, n, gang, f"{n} x {pool} on their way for no waiting gang, "
                                              f"counted for {gang}"))
        out.reused[pool] = out.reused.get(pool, 0) + n


def _free_nodes(group: Group) -> int:
    """Open nodes with room for one member (by level; hidden nodes sit at level 0)."""
    r = group.request
    return sum(sum(c.n_level[max(c.min_level(r), 1):]) for c in group.classes)


def _per_node(r: Resources, alloc: Resources) -> int:
    return min(alloc.gpus // r.gpus if r.gpus else 1 << 30,
               alloc.cpu_milli // r.cpu_milli if r.cpu_milli else 1 << 30,
               alloc.memory // r.memory if r.memory else 1 << 30)


def _why_not(inp: AutoscaleInput, gang: Gang, groups: Sequence[Group], free: int) -> str:
    """Why no scale-up can make the gang fit, in words a person can act on."""
    now = inp.snapshot.now
    shape = reasons.shape(groups)
    growable = [p for p in inp.pools if not p.static]
    for g in groups:
        m = g.members[0]
        able = [p for p in growable
                if eligible(m, p.template) and m.request.fits_in(p.template.allocatable)]
        if not able:
            return (f"needs {shape}; no growable node pool has a machine for ({m.request.describe()}) "
                    "(node selector, taints, size): pick another machine type or add such a pool")
        topo = gang.topology
        if topo is not None and topo.required and not any(topo.key in p.template.labels for p in able):
            return (f"needs {shape} within one {topo.key}; new nodes of "
                    f"{', '.join(sorted(p.name for p in able))} carry no {topo.key} label, "
                    f"so added nodes cannot promise one {topo.key}")
        cheapest = min(able, key=lambda p: (p.cost_per_hour, p.name))
        need = math.ceil(len(g.members) / max(_per_node(m.request, cheapest.template.allocatable), 1))
        opened = [p for p in able if now >= p.unavailable_until]
        room = sum(p.headroom for p in opened)
        if need - free > room or len(groups) == 1:
            limits = ", ".join(f"{p.name}: {len(p.nodes)} nodes + {p.provisioning} provisioning "
                               f"of max_nodes {p.max_nodes}" for p in sorted(opened, key=lambda p: p.name))
            text = (f"needs {shape}; {free} such node(s) free, about {need} x {cheapest.name} in all, "
                    f"pools allow at most {room} more (max_nodes{'; ' + limits if limits else ''})")
            down = sorted(p.name for p in able if now < p.unavailable_until)
            if down:
                wait = min(p.unavailable_until for p in able if now < p.unavailable_until) - now
                text += (f"; {', '.join(down)} unavailable after a provisioning failure, "
                         f"retried in {reasons.duration(wait)}")
            return text + "; raise max_nodes, make it smaller, or it starts as running work ends"
    return (f"needs {shape}; the pools cannot add enough nodes for the whole gang at once "
            "(max_nodes); raise max_nodes or make it smaller")


# -- warm buffer and min_nodes ------------------------------------------------------


def _top_up(inp: AutoscaleInput, ups: Sequence[ScaleUp], claimed: set[str],
            reused: Mapping[str, int], policy: Policy) -> list[ScaleUp]:
    snap = inp.snapshot
    estimates = snap.estimates if policy.estimates else {}
    registered = {n.name for n in snap.nodes}
    asked: dict[str, int] = {}
    for u in ups:
        asked[u.pool] = asked.get(u.pool, 0) + u.count
    coming_for: dict[str, int] = {}
    for per in _coming(inp).values():
        for pool, n in per.items():
            coming_for[pool] = coming_for.get(pool, 0) + n
    busy = set(claimed)
    for run in snap.running:
        busy.update(run.placement.values())
    out: list[ScaleUp] = []
    for p in sorted(inp.pools, key=lambda p: p.name):
        if p.static or snap.now < p.unavailable_until:
            continue
        idle = sum(1 for n in p.nodes if n in registered and n in inp.idle_since
                   and n not in inp.earmarked_nodes and n not in busy)
        soon = _soon_idle(inp, p, claimed, estimates) if p.warm_buffer and p.provisioning_delay_s > 0 else 0
        # Unclaimed nodes on their way that a waiting gang was planned onto are not warm.
        spare_coming = max(p.provisioning - coming_for.get(p.name, 0) - reused.get(p.name, 0), 0)
        total = len(p.nodes) + p.provisioning + asked.get(p.name, 0)
        warm = p.warm_buffer - idle - soon - spare_coming
        low = p.min_nodes - total
        n = min(max(warm, low, 0), max(p.max_nodes - total, 0))
        if n <= 0:
            continue
        if low >= warm:
            why = f"{n} x {p.name}: {total} node(s) are below min_nodes {p.min_nodes}"
        else:
            why = (f"{n} x {p.name}: warm buffer of {p.warm_buffer} idle node(s), "
                   f"{idle} idle, {soon} soon idle and {spare_coming} unclaimed on the way")
        out.append(ScaleUp(p.name, n, None, why))
    return out


def _soon_idle(inp: AutoscaleInput, pool: PoolState, claimed: set[str],
               estimates: Mapping[str, Estimate]) -> int:
    """The pool's nodes that all their running work leaves (known_end) within the
    idle timeout after a new node could be Ready, and that no waiting gang was planned
    onto. A top-up node asked for now would see the buffer full again by then, and an
    idle node would be removed unused: the buffer is a hedge, one node short for less
    time than the pool is willing to pay an idle node."""
    snap = inp.snapshot
    mine = set(pool.nodes) - claimed - set(inp.earmarked_nodes)
    busy: set[str] = set()
    ending: set[str] = set()
    horizon = snap.now + pool.provisioning_delay_s + pool.idle_timeout_s
    done = {id(r) for r in ending_by(snap, horizon, estimates)}
    for run in snap.running:
        (ending if id(run) in done else busy).update(n for n in run.placement.values() if n in mine)
    ready = {n.name for n in snap.nodes if n.ready and n.schedulable}
    return len((ending - busy) & ready)


# -- scale-down --------------------------------------------------------------------


def _scale_down(
    inp: AutoscaleInput, claimed: set[str]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[ScaleDown, ...]]:
    snap = inp.snapshot
    now = snap.now
    registered = {n.name for n in snap.nodes}
    busy = set(claimed)
    for run in snap.running:
        busy.update(run.placement.values())
    candidates: set[str] = set()
    mark: list[str] = []
    down: list[ScaleDown] = []
    for p in sorted(inp.pools, key=lambda p: (-p.cost_per_hour, p.name)):
        if p.static:
            continue
        nodes = [n for n in p.nodes if n in registered]
        idle = [n for n in nodes if n in inp.idle_since and n not in inp.earmarked_nodes
                and n not in busy]
        # Removable at all: above min_nodes, and leaving warm_buffer idle nodes.
        allowed = min(len(nodes) - p.min_nodes, len(idle) - p.warm_buffer)
        if allowed <= 0:
            continue
        timed_out = [n for n in idle if now >= inp.idle_since[n] + p.idle_timeout_s]
        # Already-marked first, so a mark is not dropped for an equal node; then idlest.
        timed_out.sort(key=lambda n: (n not in inp.marked, inp.idle_since[n], n))
        chosen = timed_out[:allowed]
        candidates.update(chosen)
        mark += [n for n in chosen if n not in inp.marked]
        confirmed = [n for n in chosen if n in inp.marked and now >= inp.marked[n] + inp.confirm_s]
        # At most half a pool per step; max(1, ...) so a one-node pool can still reach zero.
        confirmed = confirmed[:max(1, len(nodes) // 2)]
        if confirmed:
            down.append(ScaleDown(p.name, tuple(sorted(confirmed)), (
                f"{len(confirmed)} node(s) of {p.name} idle for over "
                f"{reasons.duration(p.idle_timeout_s)} and still idle {reasons.duration(inp.confirm_s)} "
                f"after being marked; {len(nodes) - len(confirmed)} left (min_nodes {p.min_nodes}, "
                f"warm buffer {p.warm_buffer})")))
    unmark = sorted(n for n in inp.marked if n not in candidates)
    return tuple(sorted(mark)), tuple(unmark), tuple(down)
