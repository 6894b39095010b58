"""Reservations for blocked gangs, so that backfill never delays them (as Slurm does).

A gang that does not fit now gets its earliest start computed from the running gangs'
time limits: release them in order of their end until the gang fits. The nodes it
would then use are held for it (`Capacity.reserve`); a gang behind it in the queue may
use held nodes only if its own time limit ends it before the reserved start. A gang
that needs capacity held by work without a time limit has no known start: its nodes
are held outright.

Which nodes, when the start is unknown: work without an end is released in
UNKNOWN_STEPS steps ordered by a guess of when their nodes drain (`drain_guesses`: run
times are heavy-tailed, so a gang is as likely as not to run as long again as it has
run so far; an estimate whose end lies ahead counts as that end), not all at once. The
guess only orders (a start that rests on it counts as unknown). A node then frees with
its oldest work, so a gang holds the nodes whose oldest work is youngest, and those
stay the same while they drain (nothing new starts there), instead of moving with the
order in which other gangs happen to end, or waiting on the one run of 130 h.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence

from shipyard.core.estimate import Estimate
from shipyard.core.model import Resources, Running, Topology
from shipyard.core.node_index import Capacity, Group
from shipyard.core.placement import place, unplace

INF = math.inf
# Release times at or past this are guesses (see guessed_ends): they order the search,
# and a start found at one is unknown.
GUESSED = 1e15
UNKNOWN_STEPS = 8
MIN_RUN_S = 600.0  # a gang that just started is guessed to run at least this long


def known_ends(running: Sequence[Running], now: float, estimates: Mapping[str, Estimate],
               confident_ends: bool) -> tuple[list[tuple[float, Running]], list[Running]]:
    """When each running gang frees its nodes for a reservation search, where that is
    known: its time limit; else (`confident_ends`) a confident estimate's end while not
    yet past. Also the gangs left without one, for guessed_ends."""
    out: list[tuple[float, Running]] = []
    unknown: list[Running] = []
    for r in running:
        limit = r.gang.time_limit_s
        if limit is not None:
            out.append((max(r.started_at + limit, now), r))
            continue
        est = estimates.get(r.gang.key)
        if confident_ends and est is not None and est.confident and r.started_at + est.high_s > now:
            out.append((r.started_at + est.high_s, r))
        else:
            unknown.append(r)
    return out, unknown


def guessed_ends(running: Sequence[Running], unknown: Sequence[Running], now: float,
                 estimates: Mapping[str, Estimate]) -> list[tuple[float, Running]]:
    """For the gangs of `running` without a known end (`unknown`): guessed steps at or
    past GUESSED, in the order of the guessed ends (`drain_guesses`). They sort after
    every known end, so a search builds them only when it gets past those."""
    if not unknown:
        return []
    drain = drain_guesses(running, now, estimates)
    guessed = sorted((max((drain[n] for n in r.placement.values()), default=now), r.gang.key, r)
                     for r in unknown)
    n = len(guessed)
    return [(GUESSED + k * UNKNOWN_STEPS // n, r) for k, (_, _, r) in enumerate(guessed)]


def drain_guesses(running: Sequence[Running], now: float, estimates: Mapping[str, Estimate]
                  ) -> dict[str, float]:
    """Node -> the median time by which every gang on it has ended, if run times are
    heavy-tailed: a gang that has run for e (at least MIN_RUN_S) is done within x more
    with probability x / (e + x) (half of them run as long again: Lindy), one with an
    estimate whose end lies ahead ends then, one with a time limit by then. So a node
    frees with its oldest work, and more work there makes it later."""
    by_node: dict[str, tuple[float, list[float]]] = {}
    for r in running:
        est = estimates.get(r.gang.key)
        sure = None if r.ends_at is None else max(r.ends_at - now, 0.0)
        if sure is None and est is not None and r.started_at + est.run_s > now:
            sure = r.started_at + est.run_s - now
        ran = max(now - r.started_at, MIN_RUN_S)
        for node in set(r.placement.values()):
            lo, ages = by_node.get(node, (0.0, []))
            if sure is not None:
                by_node[node] = (max(lo, sure), ages)
            else:
                ages.append(ran)
                by_node[node] = (lo, ages)
    return {node: now + _median_drain(lo, ages) for node, (lo, ages) in by_node.items()}


def _median_drain(lo: float, ages: list[float]) -> float:
    """The least x >= lo with prod(x / (a + x)) >= 1/2 (to a millionth)."""
    if not ages:
        return lo
    if len(ages) == 1:
        return max(lo, ages[0])  # x / (a + x) = 1/2
    half = math.log(0.5)

    log = math.log

    def done(x: float) -> bool:
        return sum([log(x / (a + x)) for a in ages]) >= half  # a list: faster, same sum

    if lo > 0 and done(lo):
        return lo
    low, high = max(lo, max(ages)), max(lo, max(ages) * (1 + len(ages) / math.log(2)))
    # The bisection's answer, with the root found first by Newton's method (a handful of
    # steps, not twenty-odd sums): each midpoint is then compared with the root, and
    # `done` evaluated only for one too close to it to tell, so the answer is the same.
    root = _drain_root(low, ages, half)
    while high - low > 1e-6 * high:
        mid = (low + high) / 2
        below = done(mid) if abs(mid - root) <= 1e-9 * root else mid >= root
        low, high = (low, mid) if below else (mid, high)
    return high


def _drain_root(x: float, ages: list[float], half: float) -> float:
    """The root of f(x) = sum(log(x / (a + x))) - half from x at or left of it: f rises
    and is concave, so Newton's steps stay left of the root and close in on it, the
    error squared at each: after a step of 1e-8 x it is down to rounding."""
    log = math.log
    for _ in range(100):
        f = sum([log(x / (a + x)) for a in ages]) - half
        slope = sum([a / (x * (a + x)) for a in ages])
        step = -f / slope
        x += step
        if step <= 1e-8 * x:
            return x
    return x


class Releases:
    """The running gangs' members by end, for one cycle's reservation searches: built
    once (the searches of one cycle differ only in what is open and useful).

    Each step is what ends at one instant: its members in order, and the same summed
    per node in the order of each node's last member (freeing a node once with the sum
    leaves the same free amounts and the same order of nodes within every level bucket
    as freeing member by member, with far fewer index updates).

    `more` (optional) gives the ends that sort after every one of `running` (the guessed
    ones): computed only if a search gets past the known ends, as most do not (the
    guesses cost a third of a loaded simulation's cycle)."""

    def __init__(self, capacity: Capacity, running: Sequence[tuple[float, Running]],
                 more: Callable[[], Sequence[tuple[float, Running]]] | None = None) -> None:
        self.steps: list[tuple[float, list[tuple[int, Resources]], dict[int, Resources]]] = []
        self.first: dict[int, int] = {}  # node -> position of its first member overall
        self.capacity = capacity
        self.pos = 0
        self.more = more
        if more is not None and any(end >= GUESSED for end, _ in running):
            self.more = None  # they would not sort after: all of them now, in one order
            running = [*running, *more()]
        self.add(running)

    def add(self, running: Sequence[tuple[float, Running]]) -> None:
        capacity, pos = self.capacity, self.pos
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
        self.pos = pos

    def iter_steps(self) -> Iterator[tuple[float, list[tuple[int, Resources]], dict[int, Resources]]]:
        k = 0
        while True:
            while k < len(self.steps):
                yield self.steps[k]
                k += 1
            if self.more is None:
                return
            more, self.more = self.more, None
            self.add(more())


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
    for end, members, per_node in releases.iter_steps():
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
