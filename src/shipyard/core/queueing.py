"""One scheduling cycle: order the pending gangs fairly and decide for each of them.

The steps, for each gang in order:
1. order: higher priority first; within a priority, the queue with the lowest
   weighted dominant share (of GPUs, CPU, memory, counting what it runs and what this
   cycle admitted) goes next; within a queue, the earliest submitted (once the queue
   is backed up, the shortest estimated run first); a gang past the starvation bound
   before all of its priority;
2. quota: a gang whose queue would go over nominal + borrowing limit waits;
3. place: the whole gang on free nodes (placement.py), or nothing;
4. if it does not fit: preempt whole gangs of lower priority, or of queues over their
   nominal quota when this one is within its own (preemption.py); else hold nodes for
   its earliest start (backfill.py), which gangs behind it may use only if they end
   before that start;
5. every gang that does not start gets its position and a reason (reasons.py).
"""

from __future__ import annotations

import heapq
import math
import operator
from collections.abc import Iterable, Mapping

from shipyard.core import reasons
from shipyard.core.backfill import (
    GUESSED,
    Releases,
    earliest_start,
    guessed_ends,
    known_ends,
    never_fits,
)
from shipyard.core.estimate import Estimate
from shipyard.core.model import (
    UNLIMITED_RESOURCES,
    WAIT_CAPACITY,
    WAIT_NEVER,
    WAIT_NO_QUEUE,
    WAIT_PREEMPTING,
    WAIT_QUOTA,
    WAIT_RESERVED,
    WAIT_TOPOLOGY,
    Admission,
    CycleResult,
    Gang,
    Policy,
    Preemption,
    Queue,
    Resources,
    Running,
    Snapshot,
    Waiting,
)
from shipyard.core.node_index import Capacity, Group, Reservation
from shipyard.core.node_index import cap as capacity_cap
from shipyard.core.placement import could_fit, place
from shipyard.core.preemption import find_victims
from shipyard.core.starvation import MAX_STARVING_HOLDS, hold_free_part, starving_before

INF = math.inf
# A heap entry of the order: -priority, by share (0: starving, by age), share or
# submission, rank within the queue, bucket, index in it.
_Entry = tuple[int, int, float, tuple[object, ...], tuple[str, int], int]


def scheduling_order(gangs: Iterable[Gang]) -> list[Gang]:
    """Priority, then submission time, then key: the order within one queue."""
    return sorted(gangs, key=lambda g: (-g.priority, g.submitted_at, g.key))


# Gang totals by identity: an adapter that keeps its Gang objects from cycle to cycle
# (the simulator does) sums each gang's members once, not once per cycle.
_TOTALS: dict[int, tuple[Gang, Resources]] = {}
_TOTALS_MAX = 100_000


def total(gang: Gang) -> Resources:
    hit = _TOTALS.get(id(gang))
    if hit is not None and hit[0] is gang:
        return hit[1]
    cpu = mem = gpus = 0
    for m in gang.members:
        cpu += m.request.cpu_milli
        mem += m.request.memory
        gpus += m.request.gpus
    r = Resources(cpu, mem, gpus)
    if len(_TOTALS) >= _TOTALS_MAX:
        _TOTALS.clear()
    _TOTALS[id(gang)] = (gang, r)
    return r


def dominant_share(used: Resources, capacity: Resources, weight: float) -> float:
    """Weighted dominant-resource share: the largest fraction of any resource, / weight."""
    return max(
        used.gpus / capacity.gpus if capacity.gpus else 0.0,
        used.cpu_milli / capacity.cpu_milli if capacity.cpu_milli else 0.0,
        used.memory / capacity.memory if capacity.memory else 0.0,
    ) / weight


def schedule(snapshot: Snapshot, policy: Policy = Policy(), *,
             decisions_only: bool = False) -> CycleResult:
    """Decide, for every pending gang, to admit it (with placement) or why it waits.

    `decisions_only` (for the simulator): stop as soon as no gang left in order could
    start or preempt anything, leaving those out of `waiting`; admissions and
    preemptions are exactly those of the whole cycle."""
    if not snapshot.pending:
        # Nothing to decide (most cycles while a burst's pods are being written): skip
        # building the capacity index over every node.
        return CycleResult((), ())
    return _Cycle(snapshot, policy).run(decisions_only)


_BY_SUBMISSION = operator.attrgetter("submitted_at", "key")


class _Cycle:
    """Working state of one cycle; discarded after `run`."""

    def __init__(self, snapshot: Snapshot, policy: Policy) -> None:
        self.snap = snapshot
        self.policy = policy
        self.now = snapshot.now
        extra = [g.topology.key for g in snapshot.pending if g.topology is not None]
        self.keys = policy.topology_keys
        self.capacity = Capacity(snapshot, [*policy.topology_keys, *extra])
        self.queues = {q.name: q for q in snapshot.queues}
        self.implicit = not snapshot.queues
        cpu = mem = gpus = 0
        for n in snapshot.nodes:
            if n.ready and n.schedulable:
                a = n.allocatable
                cpu, mem, gpus = cpu + a.cpu_milli, mem + a.memory, gpus + a.gpus
        self.cluster = Resources(cpu, mem, gpus)
        self.running = list(snapshot.running)
        # Summed as ints per queue: thousands of running gangs (a 352-node replay) made
        # this loop of Resources additions a third of a cycle.
        sums: dict[str, list[int]] = {}
        for run in self.running:
            t = total(run.gang)
            acc = sums.get(run.gang.queue)
            if acc is None:
                sums[run.gang.queue] = [t.cpu_milli, t.memory, t.gpus]
            else:
                acc[0] += t.cpu_milli
                acc[1] += t.memory
                acc[2] += t.gpus
        self.usage: dict[str, Resources] = {q: Resources(*acc) for q, acc in sums.items()}
        # What running gangs hold (without this cycle's admissions): only that can be
        # over quota in a way preemption reclaims.
        self.run_usage = dict(self.usage)
        self.admitted: list[Admission] = []
        self.waiting: list[Waiting] = []
        self.preempted: list[Preemption] = []
        self.queue_waiting: dict[str, int] = {}
        self.failed: set[tuple[object, ...]] = set()
        self.reasons: dict[tuple[object, ...], tuple[str, str]] = {}
        self.reserved_for = 0
        self.preempt_budget = policy.preemption_attempts
        self.first_blocked: Gang | None = None
        self.releases: Releases | None = None  # built at the first reservation search
        self.starving_holds = 0
        self.starve_before = starving_before(self.now, policy.starvation_bound_s)
        self.estimates: Mapping[str, Estimate] = snapshot.estimates if policy.estimates else {}
        # A queue whose share is below this is under its fair share (1 / the weights of the
        # queues with work); -1: no such ordering (estimates off).
        self.fair_share = -1.0
        # The queues estimates order (backed up: the oldest waiting gang has waited
        # Policy.estimate_order_after_s); the rest go by submission.
        self.backed_up: set[str] = set()
        if policy.estimates:
            active = {g.queue for g in snapshot.pending} | {r.gang.queue for r in snapshot.running}
            weight = sum(found.weight for name in active if (found := self.queue(name)) is not None)
            self.fair_share = 1.0 / weight if weight > 0 else -1.0
            after = policy.estimate_order_after_s
            since = INF if after is None else self.now - after
            self.backed_up = {g.queue for g in snapshot.pending if g.submitted_at <= since}
        self.low_priority: int | None = None  # of running gangs, at the first preemption try
        self.quotas = False

    # -- queues ----------------------------------------------------------------

    def queue(self, name: str) -> Queue | None:
        if self.implicit:
            return self.queues.setdefault(name, Queue(name))
        return self.queues.get(name)

    def share(self, name: str) -> float:
        q = self.queue(name)
        return dominant_share(self.usage.get(name, Resources()), self.cluster,
                              q.weight if q else 1.0)

    def borrowing(self, name: str, extra: Resources = Resources()) -> bool:
        q = self.queue(name)
        return q is not None and (self.usage.get(name, Resources()) + extra).exceeds(q.nominal)

    def starving(self, gang: Gang) -> bool:
        """Past the bound (starvation.py): it goes before every gang of its priority not
        past it, oldest first, whatever the estimates and shares; the first few of them
        that do not fit hold their nodes."""
        return gang.submitted_at < self.starve_before

    def rank(self, g: Gang) -> tuple[object, ...]:
        """Order within a queue and priority: starving gangs first, oldest first; then,
        in a backed-up queue, the shortest expected run first (estimates, when used);
        then the earliest."""
        if self.starving(g):
            return (0, g.submitted_at, g.key)
        if g.queue not in self.backed_up:
            return (1, 0.0, g.submitted_at, g.key)
        est = self.estimates.get(g.key)
        return (1, INF if est is None else est.run_s, g.submitted_at, g.key)

    def group(self, g: Gang, share: float) -> tuple[int, float]:
        """A non-starving head's place across queues: (1, key) before the share order
        (its queue is below its fair share and it has an estimate), else (2, share)."""
        if share < self.fair_share and g.key in self.estimates:
            return (1, 0.0)  # then by rank: by submission where not backed up, else shortest
        return (2, share)

    def entry(self, g: Gang, bkey: tuple[str, int], i: int) -> _Entry:
        # Across queues: starving heads first, oldest first; then heads with an estimate
        # in queues below their fair share, shortest expected run first (fair share is
        # a share of the capacity over time, not an order: below it, the order may as
        # well shorten waits); then the queue with the lowest share. Entries after the
        # starving are re-read when popped.
        if self.starving(g):
            return (-g.priority, 0, g.submitted_at, self.rank(g), bkey, i)
        group, key = self.group(g, self.share(g.queue))
        return (-g.priority, group, key, self.rank(g), bkey, i)

    def order(self) -> Iterable[Gang]:
        """Pending gangs in order; shares are re-read as admissions change them."""
        buckets: dict[tuple[str, int], list[Gang]] = {}
        for g in self.snap.pending:
            buckets.setdefault((g.queue, g.priority), []).append(g)
        heap: list[_Entry] = []
        for bkey, gangs in buckets.items():
            # Outside a backed-up queue rank is (starving first, then) by submission,
            # and a gang starves exactly when it was submitted before a bound: the same
            # order as by (submitted_at, key), which sorts without calling Python.
            gangs.sort(key=self.rank if bkey[0] in self.backed_up else _BY_SUBMISSION)
            heap.append(self.entry(gangs[0], bkey, 0))
        heapq.heapify(heap)
        while heap:
            entry = heapq.heappop(heap)
            prio, by_share, share, rank, bkey, i = entry
            if by_share:
                gangs = buckets[bkey]
                group, key = self.group(gangs[i], self.share(bkey[0]))
                if (group, key) != (by_share, share):  # stale: its queue's share changed
                    heapq.heappush(heap, (prio, group, key, rank, bkey, i))
                    continue
            gangs = buckets[bkey]
            yield gangs[i]
            if i + 1 < len(gangs):
                heapq.heappush(heap, self.entry(gangs[i + 1], bkey, i + 1))

    # -- the cycle -------------------------------------------------------------

    def run(self, decisions_only: bool = False) -> CycleResult:
        rest = _Rest(self.snap, self.policy) if decisions_only else None
        for gang in self.order():
            if rest is not None and (rest.hopeless(gang, self.capacity) or (
                    self.first_blocked is not None and not self.policy.backfill)):
                break  # strict order: after the first blocked gang every one waits
            self.decide(gang)
        return CycleResult(tuple(self.admitted), tuple(self.waiting), tuple(self.preempted))

    def wait(self, gang: Gang, kind: str, reason: str, starts_at: float | None = None) -> None:
        qpos = self.queue_waiting[gang.queue] = self.queue_waiting.get(gang.queue, 0) + 1
        text = f"{reason}; {reasons.where(qpos, gang.queue)}"
        if starts_at is not None and math.isinf(starts_at):
            starts_at = None
        self.waiting.append(Waiting(gang.key, len(self.waiting) + 1, text, qpos, kind,
                                    starts_at))

    def decide(self, gang: Gang) -> None:
        queue = self.queue(gang.queue)
        if queue is None:
            known = ", ".join(sorted(self.queues)) or "(none)"
            self.wait(gang, WAIT_NO_QUEUE,
                      f"queue {gang.queue!r} does not exist; create it or use one of {known}")
            return
        need = total(gang)
        used = self.usage.get(gang.queue, Resources())
        if (used + need).exceeds(queue.limit):
            self.wait(gang, WAIT_QUOTA, reasons.quota_text(queue, used, need))
            return
        if self.first_blocked is not None and not self.policy.backfill:
            self.wait(gang, WAIT_CAPACITY,
                      f"waiting behind {self.first_blocked.key}, which is first in line")
            return
        cap = self.capacity
        groups = cap.groups(gang.members)
        if not gang.members or never_fits(cap, groups):
            self.wait(gang, WAIT_NEVER, reasons.never_text(cap, groups))
            return
        ends_at = self.ends_at(gang)
        memo = self.memo_key(gang, groups, ends_at)
        taken = None
        if memo not in self.failed:
            taken = place(cap, groups, gang.topology, self.keys, ends_at)
        if taken is not None:
            placement = {m.name: self.snap.nodes[i].name for m, i in taken}
            self.admitted.append(Admission(
                gang.key, placement, borrowing=self.borrowing(gang.queue, need),
                backfill=self.first_blocked is not None,
            ))
            self.usage[gang.queue] = used + need
            return
        self.failed.add(memo)
        if self.first_blocked is None:
            self.first_blocked = gang
        if (self.policy.preemption and self.preempt_budget > 0
                and (memo, gang.priority, gang.queue) not in self.failed
                and self.try_preempt(gang, groups, need)):
            return
        self.failed.add((memo, gang.priority, gang.queue))
        if not self.reserve(gang, groups):
            self.blocked(gang, groups, ends_at, memo)

    def ends_at(self, gang: Gang) -> float:
        """When it would end if it started now: its time limit, else a confident
        estimate (which lets it start on nodes held for a later start; it is never
        stopped at that time), else unknown."""
        if gang.time_limit_s is not None:
            return self.now + gang.time_limit_s
        est = self.estimates.get(gang.key)
        return self.now + est.high_s if est is not None and est.confident else INF

    def memo_key(self, gang: Gang, groups: list[Group], ends_at: float) -> tuple[object, ...]:
        # Free capacity only shrinks during a cycle, so a shape that failed fails again.
        held = tuple(id(r) for r in self.capacity.reservations if r.admits(ends_at))
        return (self.memo_key_groups(groups), gang.topology, held)

    @staticmethod
    def memo_key_groups(groups: list[Group]) -> tuple[object, ...]:
        # The request as plain ints: this key is hashed several times per gang, and a
        # dataclass hashes in Python.
        return tuple(((r := g.request).cpu_milli, r.memory, r.gpus, len(g.members), id(g.classes),
                      tuple(g.topo_filter.items()), g.node_check is None) for g in groups)

    def blocked(self, gang: Gang, groups: list[Group], ends_at: float, memo: object) -> None:
        cap = self.capacity
        # Gangs of one shape blocked at the same state share a reason: the state moves
        # only with admissions and reservations, so key the text on their counts.
        key = (memo, len(self.admitted), len(cap.reservations) + len(cap.held))
        if self.reserved_for >= self.policy.reservations or not self.policy.backfill:
            hit = self.reasons.get(key)
            if hit is not None:
                self.wait(gang, *hit)
                return
        kind, text = self.why_blocked(gang, groups, ends_at)
        self.reasons[key] = (kind, text)
        self.wait(gang, kind, text)

    def why_blocked(self, gang: Gang, groups: list[Group], ends_at: float) -> tuple[str, str]:
        cap = self.capacity
        if gang.topology is not None and gang.topology.required and gang.topology.key in (
            cap.topo_keys
        ) and could_fit(cap, groups, ends_at):
            return WAIT_TOPOLOGY, reasons.topology_text(cap, groups, gang.topology.key)
        holder = self.held_against(groups, ends_at)
        if holder is not None:
            return WAIT_RESERVED, (f"needs {reasons.shape(groups)}; "
                                   f"{reasons.blocked_by_reservation(holder, self.now)}")
        return WAIT_CAPACITY, reasons.capacity_text(cap, groups)

    def reserve(self, gang: Gang, groups: list[Group]) -> bool:
        """Hold nodes for the gang's earliest start; False if it has none. A starving
        gang (the first few blocked, oldest first) gets them however many are held
        already (starvation.py)."""
        cap = self.capacity
        if not self.policy.backfill:
            return False
        if self.starving(gang) and self.starving_holds < MAX_STARVING_HOLDS:
            self.starving_holds += 1
            found = earliest_start(cap, groups, gang.topology, self.keys, self.release_list(),
                                   self.now)
            if found is None:
                return False
            hold_free_part(cap, groups, found[1])
            self.wait(gang, WAIT_CAPACITY,
                      f"{reasons.starving_text(self.policy.starvation_bound_s or 0.0)}; "
                      f"{reasons.capacity_text(cap, groups)}; {reasons.reserved_text(INF, self.now)}")
            return True
        if self.reserved_for < self.policy.reservations:
            found = earliest_start(cap, groups, gang.topology, self.keys, self.release_list(),
                                   self.now)
        else:
            return False
        if found is None:
            return False
        start, nodes = found
        if start >= GUESSED:
            start = INF  # it rests on a guess: held outright
        cap.reserve(gang.key, start, nodes)
        self.reserved_for += 1
        self.wait(gang, WAIT_CAPACITY,
                  f"{reasons.capacity_text(cap, groups)}; {reasons.reserved_text(start, self.now)}",
                  start)
        return True

    def release_list(self) -> Releases:
        if self.releases is None:
            running, now, estimates = self.running, self.now, self.estimates
            known, unknown = known_ends(running, now, estimates, self.policy.estimates)
            self.releases = Releases(self.capacity, known,
                                     lambda: guessed_ends(running, unknown, now, estimates))
        return self.releases

    def held_against(self, groups: list[Group], ends_at: float) -> Reservation | None:
        """The earliest reservation in the way, if the gang would fit without them all
        (by counters: a reason needs no more precision)."""
        cap = self.capacity
        closed = [r for r in (*cap.reservations, *cap.held) if not r.admits(ends_at)]
        if not closed:
            return None
        for g in groups:
            r = g.request
            room = sum(capacity_cap(c, r, c.min_level(r), held=True) for c in g.classes)
            if room < len(g.members):
                return None
        return min(closed, key=lambda r: r.starts_at)

    # -- preemption ------------------------------------------------------------

    def try_preempt(self, gang: Gang, groups: list[Group], need: Resources) -> bool:
        if self.low_priority is None:
            self.low_priority = min((r.gang.priority for r in self.running), default=0)
            self.quotas = any(q.nominal != UNLIMITED_RESOURCES for q in self.snap.queues)
        if gang.priority <= self.low_priority and not self.quotas:
            return False  # nothing it outranks, no borrowed capacity to reclaim
        within_nominal = not self.borrowing(gang.queue, need)

        def allowed(run: Running, chosen: list[Running]) -> bool:
            v = run.gang
            if v.queue == gang.queue:
                return v.priority < gang.priority
            if not within_nominal:
                return False  # a borrowing queue takes nothing from another queue
            if v.priority < gang.priority:
                return True
            freed = Resources()
            for c in chosen:
                if c.gang.queue == v.queue:
                    freed = freed + total(c.gang)
            q = self.queue(v.queue)
            left = self.run_usage.get(v.queue, Resources()) - freed
            return q is not None and left.exceeds(q.nominal)  # reclaim what it borrowed

        candidates = [r for r in self.running if allowed(r, [])]
        if not candidates:
            return False

        def over(name: str) -> bool:
            q = self.queue(name)
            return q is not None and self.run_usage.get(name, Resources()).exceeds(q.nominal)

        def cost(run: Running) -> tuple[object, ...]:
            return (not over(run.gang.queue), run.gang.priority, -run.started_at,
                    len(run.gang.members), run.gang.key)

        self.preempt_budget -= 1
        found = find_victims(self.capacity, groups, gang.topology, self.keys, candidates,
                             cost, allowed)
        if found is None:
            return False
        victims, nodes = found
        for v in victims:
            why = ("lower priority" if v.gang.priority < gang.priority
                   else f"queue {v.gang.queue} is over its nominal quota")
            self.preempted.append(Preemption(
                v.gang.key, gang.key,
                f"preempted for {gang.key} ({why}); requeued, resumes from its checkpoint",
            ))
            self.usage[v.gang.queue] = self.usage.get(v.gang.queue, Resources()) - total(v.gang)
            self.run_usage[v.gang.queue] = self.run_usage[v.gang.queue] - total(v.gang)
        gone = {id(v) for v in victims}
        self.running = [r for r in self.running if id(r) not in gone]
        self.releases = None
        # Held for it from now: nothing else may start there while the victims stop.
        self.capacity.reserve(gang.key, -INF, nodes)
        names = ", ".join(v.gang.key for v in victims[:5])
        more = f" and {len(victims) - 5} more" if len(victims) > 5 else ""
        self.wait(gang, WAIT_PREEMPTING,
                  f"needs {reasons.shape(groups)}; preempting {len(victims)} experiment(s) "
                  f"({names}{more}) to make room; it starts when they have stopped")
        return True


class _Rest:
    """The gangs not yet decided in a cycle, by shape, to tell when none of them can
    start any more: each needs room that free capacity (open, or held with a known
    start) no longer has. Within a cycle free capacity only shrinks and held nodes stay
    held, so once that is so it stays so. Never when one could preempt."""

    def __init__(self, snap: Snapshot, policy: Policy) -> None:
        # By (cpu, memory, GPUs, members) as ints: hashing a Resources runs in Python.
        self.shapes: dict[tuple[int, int, int, int], int] = {}
        self.shape_of: dict[tuple[int, int, int, int], tuple[Resources, int]] = {}
        self.off = False  # True: never stop early (a gang that may preempt, or mixed pods)
        if policy.preemption and snap.running and snap.pending and (
                any(q.nominal != UNLIMITED_RESOURCES for q in snap.queues)
                or max(g.priority for g in snap.pending) > min(r.gang.priority for r in snap.running)):
            self.off = True
            return
        shapes, shape_of = self.shapes, self.shape_of
        for g in snap.pending:
            hit = _shape_key(g)
            if hit is None:
                self.off = True
                return
            key, shape = hit
            n = shapes.get(key)
            if n is None:
                shapes[key] = 1
                shape_of[key] = shape
            else:
                shapes[key] = n + 1
        self.version = -1

    def hopeless(self, gang: Gang, cap: Capacity) -> bool:
        """Called with each gang before it is decided: True if it and every gang after
        it certainly wait."""
        if self.off:
            return False
        if cap.version != self.version:
            self.version = cap.version
            self.fitting = {k for k in self.shapes if _may_fit(cap, *self.shape_of[k])}
        if not self.fitting:
            return True
        hit = _shape_key(gang)
        assert hit is not None
        key = hit[0]
        left = self.shapes[key] - 1
        if left:
            self.shapes[key] = left
        else:
            del self.shapes[key]
            self.fitting.discard(key)
        return False


_ShapeKey = tuple[tuple[int, int, int, int], tuple[Resources, int]]
# _uniform with its key by gang identity, as _TOTALS: every cycle asks it of every
# pending gang.
_UNIFORM: dict[int, tuple[Gang, _ShapeKey | None]] = {}


def _shape_key(g: Gang) -> _ShapeKey | None:
    hit = _UNIFORM.get(id(g))
    if hit is not None and hit[0] is g:
        return hit[1]
    shape = _uniform(g)
    out = None if shape is None else (
        (shape[0].cpu_milli, shape[0].memory, shape[0].gpus, shape[1]), shape)
    if len(_UNIFORM) >= _TOTALS_MAX:
        _UNIFORM.clear()
    _UNIFORM[id(g)] = (g, out)
    return out


def _uniform(g: Gang) -> tuple[Resources, int] | None:
    """(request, members) of a gang whose members all request the same; else None."""
    if not g.members:
        return (Resources(), 0)
    r = g.members[0].request
    return (r, len(g.members)) if all(m.request is r or m.request == r for m in g.members) else None


def _may_fit(cap: Capacity, request: Resources, members: int) -> bool:
    """Necessary condition, from counters over every class: open nodes, and nodes held
    with a known start (which a short gang may use); nodes held with no known start
    are used by no one."""
    if not members:
        return True
    room = 0.0
    for c in cap.classes:
        room += capacity_cap(c, request, c.min_level(request))
        if room >= members:
            return True
    for res in cap.reservations:
        for p in res.pools:
            room += capacity_cap(p, request, p.cls.min_level(request))
            if room >= members:
                return True
    return False
