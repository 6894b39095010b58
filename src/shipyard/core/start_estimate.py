"""When will a waiting experiment start? An estimate over one snapshot, for people.

Each running gang gets an expected end (`expected_end`): its progress ETA when that is
sooner than its time limit (the limit stops it anyway, so the sooner is the better
guess), else its time limit, else a confident run-time estimate from history, else
none. Then the waiting gangs are played forward in scheduling order, strictly (no
backfill, no preemption): each starts at the first end, not before the start of the
gang ahead of it, after which it fits; it then holds its nodes for its own time limit
(or confident estimate), forever if it has neither. Gangs that can never share a node
(disjoint node classes: a CPU pool and a GPU pool) do not wait for each other.

A gang whose start depends on an end nobody knows (work ahead without a time limit or
ETA) gets no time, and says so. Strict order makes the estimate monotone (work added
ahead never makes it earlier; a property over whole-node gangs). The real start can
differ: backfill may start a gang sooner, a preemption or a gang of higher priority
arriving later, and ends that come early or late, move it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shipyard.core.estimate import Estimate
from shipyard.core.model import (
    WAIT_NEVER,
    WAIT_NO_QUEUE,
    WAIT_QUOTA,
    Gang,
    Policy,
    Resources,
    Running,
    Snapshot,
    Waiting,
)
from shipyard.core.node_index import Capacity, Group
from shipyard.core.placement import place
from shipyard.core.reasons import duration

INF = math.inf
# What an end rests on, from the firmest to the weakest.
BY_LIMIT = "time limit"
BY_ETA = "progress ETA"
BY_HISTORY = "history"
NO_END = "no time limit"
# Waits that end by other means than capacity freeing up: no start estimate.
NOT_BY_CAPACITY = frozenset({WAIT_QUOTA, WAIT_NO_QUEUE, WAIT_NEVER})


@dataclass(frozen=True, slots=True)
class End:
    at: float  # inf: unknown
    basis: str  # BY_LIMIT, BY_ETA, BY_HISTORY or NO_END


@dataclass(frozen=True, slots=True)
class StartEstimate:
    gang: str
    at: float | None  # None: unknown
    after: tuple[str, ...]  # the gangs whose end it waits for last (or those with no end)
    basis: str  # what that end rests on (NO_END when unknown)
    reason: str  # "after ddp finishes (time limit)", "unknown: work ahead has no time limit"

    def text(self, now: float) -> str:
        return start_text(self.at, self.reason, now)


def start_text(at: float | None, reason: str, now: float) -> str:
    """"about 40m, after ddp finishes (time limit)"; the reason alone when unknown."""
    if at is None:
        return reason
    return f"about {duration(at - now)}, {reason}" if at > now else f"about now, {reason}"


def expected_end(run: Running, now: float, eta: float | None = None,
                 estimate: Estimate | None = None) -> End:
    """A running gang's expected end (never before `now`)."""
    limit = run.ends_at
    if eta is not None and (limit is None or eta < limit):
        return End(max(eta, now), BY_ETA)
    if limit is not None:
        return End(max(limit, now), BY_LIMIT)
    if estimate is not None and estimate.confident and run.started_at + estimate.high_s > now:
        return End(run.started_at + estimate.high_s, BY_HISTORY)
    return End(INF, NO_END)


def _own_run(gang: Gang, estimates: Mapping[str, Estimate]) -> tuple[float, str]:
    """How long a waiting gang holds its nodes once started."""
    if gang.time_limit_s is not None:
        return gang.time_limit_s, BY_LIMIT
    est = estimates.get(gang.key)
    if est is not None and est.confident:
        return est.high_s, BY_HISTORY
    return INF, NO_END


def estimate_starts(snapshot: Snapshot, waiting: Sequence[Waiting], policy: Policy = Policy(),
                    etas: Mapping[str, float] | None = None) -> dict[str, StartEstimate]:
    """An estimate for each gang of `waiting` (a cycle's waiting list, in its order)
    that waits for capacity; `etas`: running gang key -> its progress ETA."""
    etas = etas or {}
    pending = {g.key: g for g in snapshot.pending}
    order = [pending[w.gang] for w in waiting
             if w.kind not in NOT_BY_CAPACITY and w.gang in pending]
    keys = [*policy.topology_keys, *(g.topology.key for g in order if g.topology is not None)]
    probe = Capacity(snapshot, keys)
    lanes = _lanes(probe, order)
    ends = {r.gang.key: expected_end(r, snapshot.now, etas.get(r.gang.key),
                                     snapshot.estimates.get(r.gang.key))
            for r in snapshot.running}
    out: dict[str, StartEstimate] = {}
    for i, lane in enumerate(lanes):
        cap = probe if i == 0 else Capacity(snapshot, keys)
        out.update(_play(cap, snapshot, lane, ends, policy, keys))
    return out


def _lanes(cap: Capacity, order: Sequence[Gang]) -> list[list[tuple[Gang, list[Group]]]]:
    """The gangs split into groups that share no node class, each in order."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    grouped = []
    for g in order:
        groups = cap.groups(g.members)
        ids = [c.id for gr in groups for c in gr.classes]
        for c in ids[1:]:
            parent[find(c)] = find(ids[0])
        grouped.append((g, groups, ids))
    lanes: dict[int, list[tuple[Gang, list[Group]]]] = {}
    for g, groups, ids in grouped:
        if ids:  # no class: it can never start, nothing to estimate
            lanes.setdefault(find(ids[0]), []).append((g, groups))
    return list(lanes.values())


def _play(cap: Capacity, snap: Snapshot, lane: Sequence[tuple[Gang, list[Group]]],
          ends: Mapping[str, End], policy: Policy, keys: Sequence[str]) -> dict[str, StartEstimate]:
    now = snap.now
    # (end, seq, gang, basis, [(node, request)]): what frees up, soonest first.
    events: list[tuple[float, int, str, str, list[tuple[int, Resources]]]] = []
    forever: list[str] = []  # gangs holding nodes with no known end
    for run in snap.running:
        end = ends[run.gang.key]
        members = [(cap.index_of[n], m.request) for m in run.gang.members
                   if (n := run.placement.get(m.name)) in cap.index_of]
        if math.isinf(end.at):
            forever.append(run.gang.key)
        else:
            events.append((end.at, len(events), run.gang.key, end.basis, members))
    heapq.heapify(events)
    seq = len(events)
    t = now
    after: tuple[str, ...] = ()
    basis = ""
    out: dict[str, StartEstimate] = {}
    estimates = snap.estimates if policy.estimates else {}
    for gang, groups in lane:
        key = gang.key
        if t == INF:
            out[key] = _unknown(key, forever)
            continue
        while (taken := place(cap, groups, gang.topology, keys)) is None:
            if not events:
                t = INF
                break
            freed_at, _, who, why, members = heapq.heappop(events)
            for i, r in members:
                cap.release(i, r)
            if freed_at > t:
                t, after, basis = freed_at, (who,), why
            elif freed_at == t and t > now:
                after, basis = (*after, who), _weaker(basis, why)
        if taken is None:
            out[key] = _unknown(key, forever)
            continue
        out[key] = _known(key, t, now, after, basis)
        run_s, run_basis = _own_run(gang, estimates)
        if math.isinf(run_s):
            forever.append(key)
        else:
            events_members = [(i, m.request) for m, i in taken]
            heapq.heappush(events, (t + run_s, seq, key, run_basis, events_members))
            seq += 1
    return out


_FIRMNESS = (BY_LIMIT, BY_ETA, BY_HISTORY)


def _weaker(a: str, b: str) -> str:
    if not a:
        return b
    return a if _FIRMNESS.index(a) >= _FIRMNESS.index(b) else b


def _names(keys: Sequence[str]) -> str:
    short = [k.rsplit("/", 1)[-1] for k in keys[:3]]
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return ", ".join(short) + more


def _known(key: str, at: float, now: float, after: tuple[str, ...], basis: str) -> StartEstimate:
    if not after or at <= now:
        return StartEstimate(key, at, (), "", "its room is free once the gangs ahead have started")
    verb = "finishes" if len(after) == 1 else "finish"
    return StartEstimate(key, at, after, basis, f"after {_names(after)} {verb} ({basis})")


def _unknown(key: str, forever: Sequence[str]) -> StartEstimate:
    if not forever:
        return StartEstimate(key, None, (), NO_END,
                             "unknown: it does not fit even once the work ahead has ended")
    return StartEstimate(key, None, tuple(forever), NO_END,
                         f"unknown: work ahead has no time limit ({_names(forever)})")
