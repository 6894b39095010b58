"""The starvation bound and run-time estimates: hand-built cases and properties."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.core.estimate import Estimate, EstimateSettings, History, weighted_quantiles
from shipyard.core.model import Policy, Resources, Running, Snapshot
from shipyard.core.placement import eligible
from shipyard.core.queueing import schedule
from shipyard.sim import Arrival, SimConfig, SimPool, simulate
from shipyard.spec import DEFAULT_MACHINE_TYPES

from .builders import gang, node, running, with_used
from .test_properties import QUEUES, clusters

A100 = DEFAULT_MACHINE_TYPES["gpu-a100"]
HOUR = 3600.0


# -- the bound, by hand ---------------------------------------------------------------


def one_node_with(runs, pending, now):
    n = [node("n1")]
    return Snapshot(with_used(n, runs), tuple(pending), now, tuple(runs))


def test_a_gang_past_the_bound_keeps_the_free_part_of_its_node_and_says_why():
    busy = running(gang("busy", 1, 4), ["n1"], started=0.0)
    big = gang("big", 1, 8, at=0.0)  # needs the whole node: waits for busy
    small = gang("small", 1, 2, at=HOUR)  # fits beside busy now
    snap = one_node_with([busy], [big, small], now=7 * HOUR)
    # No reservations for the first blocked gangs, so that only the bound holds nodes.
    policy = Policy(reservations=0)
    fresh = schedule(replace(snap, now=2 * HOUR), policy)  # within the 6 h bound
    assert [a.gang for a in fresh.admitted] == ["small"]
    starved = schedule(snap, policy)
    assert starved.admitted == ()  # the 4 free GPUs are held for big
    why = {w.gang: w.reason for w in starved.waiting}
    assert why["big"].startswith("reserved: waiting longer than 6h 0m")
    assert schedule(snap, replace(policy, starvation_bound_s=None)).admitted[0].gang == "small"


def test_a_starving_gang_goes_ahead_of_a_queue_with_a_lower_share():
    # team-a runs a lot (high share); its old gang still goes first once starving.
    hog = running(gang("hog", 1, 4, queue="team-a"), ["n1"])
    old = gang("old", 1, 4, queue="team-a", at=0.0)
    new = gang("new", 1, 4, queue="team-b", at=7 * HOUR)
    snap = one_node_with([hog], [old, new], now=7 * HOUR + 1)
    assert [a.gang for a in schedule(snap, Policy(starvation_bound_s=None)).admitted] == ["new"]
    assert [a.gang for a in schedule(snap, Policy()).admitted] == ["old"]


def test_every_gang_past_the_bound_goes_by_age_ahead_of_the_estimates_and_the_first_four_hold():
    # Six gangs past the bound, the node busy: all go oldest first, the youngest's short
    # estimate notwithstanding (an estimate never passes over a gang past the bound); the
    # first 4 of them hold nodes. Two younger gangs within the bound keep the estimate order.
    busy = running(gang("busy", 1, 8), ["n1"], started=0.0)
    old = [gang(f"g{i}", 1, 8, at=float(i)) for i in range(6)]
    young = [gang("y-long", 1, 8, at=6 * HOUR), gang("y-short", 1, 8, at=6 * HOUR + 1)]
    est = {"g4": Estimate(9 * HOUR, 10 * HOUR, True, 9), "g5": Estimate(60.0, 90.0, True, 9),
           "y-long": Estimate(9 * HOUR, 10 * HOUR, True, 9), "y-short": Estimate(60.0, 90.0, True, 9)}
    snap = replace(one_node_with([busy], old + young, now=7 * HOUR), estimates=est)
    waits = sorted(schedule(snap, Policy()).waiting, key=lambda w: w.queue_position)
    assert [w.gang for w in waits] == ["g0", "g1", "g2", "g3", "g4", "g5", "y-short", "y-long"]
    assert all(w.reason.startswith("reserved: waiting longer than") for w in waits[:4])
    assert not any(w.reason.startswith("reserved: waiting longer than") for w in waits[4:])


# -- the bound, for any arrival order (simulated, time limits known) -----------------

traces = st.lists(
    st.tuples(st.integers(0, 4_000), st.sampled_from([1, 1, 2, 4, 8, 8, 16]), st.integers(1, 2_000)),
    min_size=1, max_size=25,
).map(lambda rows: [Arrival(f"e{i:02d}", float(t), g, float(d)) for i, (t, g, d) in enumerate(rows)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrivals=traces, nodes=st.integers(2, 4), bound=st.sampled_from([0.0, 300.0, 1_500.0]),
       reservations=st.integers(0, 4))
def test_no_gang_waits_longer_than_the_bound_plus_the_longest_time_limit_in_the_way(
        arrivals, nodes, bound, reservations):
    assert_bound_holds(arrivals, nodes, Policy(starvation_bound_s=bound, reservations=reservations))


def assert_bound_holds(arrivals: list[Arrival], nodes: int, policy: Policy) -> None:
    """What the bound guarantees, simulated with time limits known (each run ends at its
    limit), for any arrival order and any estimates, however wrong and confident.

    From T = the later of (its submission + the bound) and the start of the last gang
    submitted before it, a gang is past the bound and the oldest still waiting: it goes
    first every cycle and holds its nodes, so it starts by T or by the latest end of
    the gangs running at T, whichever is later. So a gang with no older one still
    waiting at its submission + bound waits at most the bound plus the longest time
    limit in the way (the issue's statement). With k older gangs still waiting then,
    the wait chains through them, one time limit in the way each at most; no order
    that never stops work does better
    (test_with_an_older_gang_still_waiting_no_policy_keeps_the_bound_alone)."""
    pool = SimPool("fixed", A100, max_nodes=nodes, static=True, start_nodes=nodes)
    r = simulate(arrivals, [pool], SimConfig(time_limits=True, policy=policy))
    bound = policy.starvation_bound_s or 0.0
    older_started = -math.inf
    for a in sorted(arrivals, key=lambda a: (a.submit_s, a.name)):
        assert a.name in r.started
        t = max(a.submit_s + bound, older_started)
        in_the_way = max((r.ended[b] for b, s in r.started.items() if s <= t < r.ended[b]), default=t)
        assert r.started[a.name] <= max(t, in_the_way) + 1e-6, (a.name, t, in_the_way)
        older_started = max(older_started, r.started[a.name])


def test_with_an_older_gang_still_waiting_no_policy_keeps_the_bound_alone():
    # Why the guarantee chains: two whole-cluster gangs and a 1-GPU run, all at 0, bound
    # 0. e01 waits for e00 (1 s), e02 for both (2 s): past bound + the time limit in the
    # way at its bound (1 s), as it would be under any order that never stops work.
    arrivals = [Arrival("e00", 0.0, 1, 1.0), Arrival("e01", 0.0, 16, 1.0), Arrival("e02", 0.0, 16, 1.0)]
    pool = SimPool("fixed", A100, max_nodes=2, static=True, start_nodes=2)
    r = simulate(arrivals, [pool], SimConfig(time_limits=True, policy=Policy(starvation_bound_s=0.0)))
    assert (r.started["e01"], r.started["e02"]) == (1.0, 2.0)
    assert_bound_holds(arrivals, 2, Policy(starvation_bound_s=0.0))


# -- estimates never break admission -------------------------------------------------


@st.composite
def with_estimates(draw):
    snap = draw(clusters())
    keys = [g.key for g in snap.pending] + [r.gang.key for r in snap.running]
    est = {}
    for k in keys:
        if draw(st.booleans()):
            run = float(draw(st.integers(1, 20_000)))
            est[k] = Estimate(run, run * draw(st.sampled_from([1.0, 2.0, 5.0])), draw(st.booleans()), 5)
    return replace(snap, now=float(draw(st.integers(0, 400))), estimates=est)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(with_estimates(), st.booleans(), st.sampled_from([None, 0.0, 50.0]),
       st.sampled_from([None, 0.0, 100.0]))
def test_estimates_and_the_bound_never_overcommit_a_node_nor_split_a_gang(snap, backfill, bound, after):
    assert_admission_exact(snap, schedule(snap, Policy(estimates=True, backfill=backfill,
                                                       starvation_bound_s=bound,
                                                       estimate_order_after_s=after)))


def draw_estimates(data, keys) -> dict[str, Estimate]:
    """Arbitrary estimates for some of `keys`: any run time, any spread, confident or not."""
    est = {}
    for k in keys:
        if data.draw(st.booleans()):
            run = float(data.draw(st.integers(1, 20_000)))
            est[k] = Estimate(run, run * data.draw(st.sampled_from([1.0, 2.0, 5.0])),
                              data.draw(st.booleans()), 5)
    return est


def assert_admission_exact(snap: Snapshot, result) -> None:
    """Each pending gang decided once; every admitted gang whole, each member on a node
    it may use; no node given more than it has (on top of what is bound there)."""
    decided = [a.gang for a in result.admitted] + [w.gang for w in result.waiting]
    assert sorted(decided) == sorted(g.key for g in snap.pending)
    by_name = {n.name: n for n in snap.nodes}
    gangs = {g.key: g for g in snap.pending}
    used = {n.name: n.used for n in snap.nodes}
    for a in result.admitted:
        g = gangs[a.gang]
        assert set(a.placement) == {m.name for m in g.members}
        for m in g.members:
            assert eligible(m, by_name[a.placement[m.name]])
            used[a.placement[m.name]] = used[a.placement[m.name]] + m.request
    for name, u in used.items():
        assert u.fits_in(by_name[name].allocatable), name


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(), st.data(), st.booleans(), st.sampled_from([None, 0.0, 300.0]),
       st.sampled_from([None, 0.0, 100.0]))
def test_over_several_cycles_estimates_never_overcommit_a_node_nor_split_a_gang(
        snap, data, backfill, bound, after):
    # Cycle after cycle, as an adapter would run them: admitted gangs start and stay on
    # their nodes, preempted ones come back pending, some runs end, new gangs arrive, and
    # the estimates (of pending and running gangs) are redrawn every cycle, however wrong.
    policy = Policy(estimates=True, backfill=backfill, starvation_bound_s=bound,
                    estimate_order_after_s=after)
    bare = tuple(replace(n, used=Resources()) for n in snap.nodes)
    runs, pending, now = list(snap.running), list(snap.pending), snap.now
    for cycle in range(data.draw(st.integers(2, 6), label="cycles")):
        keys = [g.key for g in pending] + [r.gang.key for r in runs]
        snap = replace(snap, nodes=with_used(list(bare), runs), pending=tuple(pending), now=now,
                       running=tuple(runs), estimates=draw_estimates(data, keys))
        result = schedule(snap, policy)
        assert_admission_exact(snap, result)
        gangs = {g.key: g for g in pending}
        victims = {p.gang for p in result.preempted}
        assert victims <= {r.gang.key for r in runs}
        assert not victims & {a.gang for a in result.admitted}
        back = [r.gang for r in runs if r.gang.key in victims]
        runs = [r for r in runs if r.gang.key not in victims]
        runs += [Running(gangs[a.gang], a.placement, now) for a in result.admitted]
        admitted = {a.gang for a in result.admitted}
        pending = [g for g in pending if g.key not in admitted] + back
        now += float(data.draw(st.integers(1, 4_000), label="step"))
        runs = [r for r in runs if (r.ends_at is None or r.ends_at > now) and not data.draw(
            st.booleans(), label=f"{r.gang.key} ends")]
        pending += [gang(f"new{cycle}-{k}", data.draw(st.integers(1, 3)),
                         data.draw(st.sampled_from([1, 2, 4, 8])), queue=data.draw(st.sampled_from(QUEUES)),
                         at=now, limit=data.draw(st.sampled_from([None, 300.0, 1800.0])))
                    for k in range(data.draw(st.integers(0, 3), label="arrivals"))]


# -- estimates order only a backed-up queue ------------------------------------------


def test_estimates_reorder_a_queue_only_once_its_oldest_gang_has_waited_long_enough():
    busy = running(gang("busy", 1, 8), ["n1"], started=0.0)
    long_old = gang("long-old", 1, 8, at=0.0)
    short_new = gang("short-new", 1, 8, at=60.0)
    est = {"long-old": Estimate(5_000.0, 6_000.0, True, 9), "short-new": Estimate(60.0, 90.0, True, 9)}
    snap = replace(one_node_with([busy], [long_old, short_new], now=600.0), estimates=est)
    policy = Policy(estimate_order_after_s=1_800.0)

    def first(s: Snapshot) -> str:
        return min(schedule(s, policy).waiting, key=lambda w: w.queue_position).gang

    assert first(snap) == "long-old"  # waited 10 min: submission order
    assert first(replace(snap, now=1_800.0)) == "short-new"  # backed up: shortest first
    assert first(replace(snap, now=600.0)) == first(replace(snap, estimates={}))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(with_estimates(), st.booleans())
def test_a_queue_that_is_not_backed_up_waits_in_submission_order_whatever_the_estimates(
        snap, backfill):
    # Every gang was submitted at most 400 s before now: no queue is backed up at 1,000 s.
    result = schedule(snap, Policy(backfill=backfill, estimate_order_after_s=1_000.0))
    gangs = {g.key: g for g in snap.pending}
    for queue in {g.queue for g in snap.pending}:
        waits = sorted((w for w in result.waiting if gangs[w.gang].queue == queue),
                       key=lambda w: w.queue_position)
        order = [w.gang for w in waits]
        assert order == sorted(order, key=lambda k: (-gangs[k].priority, gangs[k].submitted_at, k))


# Arbitrary, confident and wrong: each experiment's kind is drawn apart from its duration,
# and one run of a kind makes a confident estimate however much runs of it disagree.
wrong_estimates = EstimateSettings(min_samples=1, confident_samples=1, max_spread=1e12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrivals=traces, kinds=st.lists(st.sampled_from("abc"), min_size=25, max_size=25),
       nodes=st.integers(2, 4), bound=st.sampled_from([0.0, 300.0, 1_500.0]),
       after=st.sampled_from([None, 0.0, 600.0]))
def test_wrong_estimates_never_make_a_gang_wait_past_the_bound_plus_the_longest_time_limit(
        arrivals, kinds, nodes, bound, after):
    arrivals = [replace(a, kind=k) for a, k in zip(arrivals, kinds, strict=False)]
    assert_bound_holds(arrivals, nodes, Policy(starvation_bound_s=bound, estimate_order_after_s=after,
                                               estimate=wrong_estimates))


# -- the estimator ---------------------------------------------------------------------


def test_recent_runs_weigh_more_in_the_estimate():
    runs = [(0.0, 100.0)] * 3 + [(10 * 86400.0, 1000.0)] * 2  # old short runs, recent long ones
    mid, = weighted_quantiles(runs, 10 * 86400.0, 86400.0, (0.5,))
    assert mid == 1000.0  # three old runs weigh 3 x 2^-10, the two recent ones 2
    mid, = weighted_quantiles(runs, 10 * 86400.0, 1e12, (0.5,))
    assert mid == 100.0  # no decay: a plain median


def test_an_estimate_is_confident_only_when_enough_runs_of_its_kind_agree():
    h = History(EstimateSettings(min_samples=3, confident_samples=5, max_spread=3.0))
    assert h.estimate("alice/train", "team", 8, 0.0) is None
    for t in range(4):
        h.add("alice/train", "team", 8, 600.0 + t, float(t))
    e = h.estimate("alice/train", "team", 8, 10.0)
    assert e is not None and e.run_s == pytest.approx(601.0, abs=1) and not e.confident  # 4 < 5
    h.add("alice/train", "team", 8, 610.0, 5.0)
    assert h.estimate("alice/train", "team", 8, 10.0).confident
    h.add("alice/train", "team", 8, 50_000.0, 6.0)
    h.add("alice/train", "team", 8, 60_000.0, 7.0)
    assert not h.estimate("alice/train", "team", 8, 10.0).confident  # they disagree now
    # An unknown kind of the same queue and size: that level's estimate, never confident.
    other = h.estimate("bob/eval", "team", 8, 10.0)
    assert other is not None and not other.confident
    assert h.estimate("bob/eval", "team", 1, 10.0) is None


def test_the_simulator_learns_from_finished_runs_and_orders_the_short_kind_first():
    # Three short and three long runs teach the kinds; then, with the node busy, a long
    # and a short one queue: with estimates the short one (queued later) goes first.
    hist = [Arrival(f"s{i}", i * 10.0, 8, 50.0, kind="short") for i in range(3)]
    hist += [Arrival(f"l{i}", 100 + i * 10.0, 8, 500.0, kind="long") for i in range(3)]
    hist.sort(key=lambda a: a.submit_s)
    # The blocker runs past Policy.estimate_order_after_s: the queue is backed up when it ends.
    tail = [Arrival("blocker", 5_000, 8, 4_000.0), Arrival("long-next", 5_010, 8, 500.0, kind="long"),
            Arrival("short-next", 5_020, 8, 50.0, kind="short")]
    pool = SimPool("fixed", A100, max_nodes=1, static=True, start_nodes=1)
    plain = simulate(hist + tail, [pool], SimConfig(policy=Policy(estimates=False)))
    learnt = simulate(hist + tail, [pool], SimConfig(policy=Policy(estimates=True)))
    assert plain.started["long-next"] < plain.started["short-next"]
    assert learnt.started["short-next"] < learnt.started["long-next"]
