"""The starvation bound and run-time estimates: hand-built cases and properties."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.core.estimate import Estimate, EstimateSettings, History, weighted_quantiles
from shipyard.core.model import Policy, Snapshot
from shipyard.core.placement import eligible
from shipyard.core.queueing import schedule
from shipyard.sim import Arrival, SimConfig, SimPool, simulate
from shipyard.spec import DEFAULT_MACHINE_TYPES

from .builders import gang, node, running, with_used
from .test_properties import clusters

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
    """Simulated with time limits: every gang starts, within the bound (or after the
    older ones) plus the longest time limit."""
    pool = SimPool("fixed", A100, max_nodes=nodes, static=True, start_nodes=nodes)
    r = simulate(arrivals, [pool], SimConfig(time_limits=True, policy=policy))
    bound = policy.starvation_bound_s or 0.0
    longest = max(a.duration_s for a in arrivals)
    older_started = 0.0
    for a in sorted(arrivals, key=lambda a: (a.submit_s, a.name)):
        assert a.name in r.started
        # Once past the bound and the oldest still waiting, it holds its nodes: what is
        # in the way then ends within one time limit.
        assert r.started[a.name] <= max(a.submit_s + bound, older_started) + longest + 1e-6
        older_started = max(older_started, r.started[a.name])


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
    result = schedule(snap, Policy(estimates=True, backfill=backfill, starvation_bound_s=bound,
                                   estimate_order_after_s=after))
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
