"""Properties of the scheduling cycle over random clusters, queues and experiments."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.core.model import (
    Node,
    Policy,
    Queue,
    Resources,
    Running,
    Snapshot,
)
from shipyard.core.placement import eligible
from shipyard.core.queueing import schedule, total

from .builders import NODE, gang, node, res, running, with_used

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
QUEUES = ("team-a", "team-b", "team-c")


@st.composite
def clusters(draw) -> Snapshot:
    """Up to 12 nodes in racks and blocks, random running gangs, queues and pending."""
    n = draw(st.integers(1, 12))
    cluster = [node(f"n{i:02d}", rack=f"r{i // draw(st.sampled_from([2, 3, 4]))}",
                    block=f"b{i // 6}") for i in range(n)]
    free = {nd.name: nd.allocatable for nd in cluster}
    runs: list[Running] = []
    for k in range(draw(st.integers(0, 6))):
        g = gang(f"run{k}", draw(st.integers(1, 3)), draw(st.sampled_from([1, 2, 4, 8])),
                 queue=draw(st.sampled_from(QUEUES)), priority=draw(st.integers(0, 2)),
                 limit=draw(st.sampled_from([None, 600.0, 3600.0])))
        placement: list[str] = []
        trial = dict(free)
        for m in g.members:
            spot = next((x for x in trial if m.request.fits_in(trial[x])), None)
            if spot is None:
                break
            trial[spot] = trial[spot] - m.request
            placement.append(spot)
        if len(placement) == len(g.members):
            free = trial
            runs.append(running(g, placement, started=-draw(st.integers(0, 3000))))
    pending = tuple(
        gang(f"exp{k}", draw(st.integers(1, 5)), draw(st.sampled_from([1, 2, 4, 8])),
             queue=draw(st.sampled_from(QUEUES)), priority=draw(st.integers(0, 2)),
             at=float(draw(st.integers(0, 100))),
             limit=draw(st.sampled_from([None, 300.0, 1800.0, 7200.0])))
        for k in range(draw(st.integers(0, 10)))
    )
    queues: tuple[Queue, ...] = ()
    if draw(st.booleans()):
        queues = tuple(
            Queue(q, weight=draw(st.sampled_from([1.0, 2.0, 3.0])),
                  nominal=Resources(10**9, 10**15, draw(st.integers(0, 48))),
                  borrowing_limit=Resources(10**9, 10**15, draw(st.sampled_from([0, 16, 10**6]))))
            for q in QUEUES
        )
    return Snapshot(with_used(cluster, runs), pending, 0.0, tuple(runs), queues)


policies = st.builds(Policy, preemption=st.booleans(), backfill=st.booleans(),
                     reservations=st.integers(0, 3))


@SETTINGS
@given(clusters(), policies)
def test_every_pending_gang_has_exactly_one_decision_and_positions_count_up(snap, policy):
    result = schedule(snap, policy)
    decided = [a.gang for a in result.admitted] + [w.gang for w in result.waiting]
    assert sorted(decided) == sorted(g.key for g in snap.pending)
    assert [w.position for w in result.waiting] == list(range(1, len(result.waiting) + 1))
    for q in {g.queue for g in snap.pending}:
        mine = [w for w in result.waiting if w.gang.startswith("exp") and
                next(g for g in snap.pending if g.key == w.gang).queue == q]
        assert [w.queue_position for w in mine] == list(range(1, len(mine) + 1))
    assert all(w.reason for w in result.waiting)


@SETTINGS
@given(clusters(), policies)
def test_no_node_is_overcommitted_and_no_gang_is_partial(snap, policy):
    result = schedule(snap, policy)
    by_name = {n.name: n for n in snap.nodes}
    gangs = {g.key: g for g in snap.pending}
    used = {n.name: n.used for n in snap.nodes}
    for a in result.admitted:
        g = gangs[a.gang]
        assert set(a.placement) == {m.name for m in g.members}  # all members, no more
        for m in g.members:
            where = a.placement[m.name]
            assert eligible(m, by_name[where])
            used[where] = used[where] + m.request
    for name, u in used.items():
        # Victims still hold their nodes this cycle, so this counts them too.
        assert u.fits_in(by_name[name].allocatable), name


@SETTINGS
@given(clusters())
def test_preemption_only_of_lower_priority_or_over_quota_work(snap):
    result = schedule(snap, Policy(preemption=True))
    pending = {g.key: g for g in snap.pending}
    runs = {r.gang.key: r for r in snap.running}
    queues = {q.name: q for q in snap.queues}
    usage: dict[str, Resources] = {}
    for r in snap.running:
        usage[r.gang.queue] = usage.get(r.gang.queue, Resources()) + total(r.gang)
    admitted = {a.gang for a in result.admitted}
    for p in result.preempted:
        victim, beneficiary = runs[p.gang].gang, pending[p.for_gang]
        assert beneficiary.key not in admitted
        lower = victim.priority < beneficiary.priority
        over = victim.queue in queues and usage[victim.queue].exceeds(queues[victim.queue].nominal)
        assert lower or (over and victim.queue != beneficiary.queue), p


@SETTINGS
@given(clusters())
def test_backfill_never_delays_the_reserved_gang(snap):
    """At its reserved start, the reserved gang fits beside everything started now."""
    result = schedule(snap, Policy(preemption=False, reservations=1))
    reserved = [w for w in result.waiting if w.starts_at is not None]
    if not reserved:
        return
    w = reserved[0]
    start = w.starts_at
    gangs = {g.key: g for g in snap.pending}
    # The world at `start`: what ends by then is gone; what started now and runs on stays.
    still = [r for r in snap.running if r.ends_at is None or r.ends_at > start]
    still += [Running(gangs[a.gang], a.placement, snap.now) for a in result.admitted
              if gangs[a.gang].time_limit_s is None
              or snap.now + gangs[a.gang].time_limit_s > start]
    foreign = {n.name: Resources() for n in snap.nodes}  # no one else's pods in these clusters
    bare = tuple(replace(n, used=foreign[n.name]) for n in snap.nodes)
    later = Snapshot(with_used(list(bare), still), (gangs[w.gang],), start, tuple(still))
    assert [a.gang for a in schedule(later, Policy(preemption=False)).admitted] == [w.gang]


@settings(max_examples=15, deadline=None)
@given(st.lists(st.sampled_from([1.0, 2.0, 3.0, 4.0]), min_size=2, max_size=3))
def test_fair_shares_converge_to_weights_under_contention(weights):
    """Queues with endless backlogs, repeated cycles on a simulated clock: each queue's
    share of GPU-time ends up proportional to its weight."""
    names = [f"q{i}" for i in range(len(weights))]
    queues = tuple(Queue(n, weight=w) for n, w in zip(names, weights, strict=True))
    cluster = [Node(f"n{i:02d}", NODE) for i in range(24)]
    backlog = {n: 0 for n in names}
    runs: list[Running] = []
    gpu_time = dict.fromkeys(names, 0.0)
    now, duration = 0.0, 100.0
    for step in range(60):
        runs = [r for r in runs if r.ends_at > now]
        pending = tuple(
            gang(f"{n}-{backlog[n] + k}", 1, 8, queue=n, at=float(backlog[n] + k),
                 limit=duration)
            for n in names for k in range(24)  # more than the cluster holds
        )
        snap = Snapshot(with_used(cluster, runs), pending, now, tuple(runs), queues)
        result = schedule(snap)
        gangs = {g.key: g for g in pending}
        for a in result.admitted:
            g = gangs[a.gang]
            runs.append(Running(g, a.placement, now))
            backlog[g.queue] += 1
        if step >= 20:  # after the warm-up
            for r in runs:
                gpu_time[r.gang.queue] += 8 * 10.0
        now += 10.0
    total_time = sum(gpu_time.values())
    for n, w in zip(names, weights, strict=True):
        expected = w / sum(weights)
        assert abs(gpu_time[n] / total_time - expected) < 0.06, (gpu_time, weights)


@SETTINGS
@given(st.integers(1, 8), st.integers(1, 8))
def test_single_node_cycle_admits_exactly_what_fits_in_order(gpus_a, gpus_b):
    local = Node("local", Resources(64_000, 512 * 2**30, 8))
    a, b = gang("a", 1, request=res(gpus_a, 1, 1)), gang("b", 1, request=res(gpus_b, 1, 1), at=1)
    result = schedule(Snapshot((local,), (a, b)))
    expected = ["a", "b"] if gpus_a + gpus_b <= 8 else ["a"]
    assert [x.gang for x in result.admitted] == expected
