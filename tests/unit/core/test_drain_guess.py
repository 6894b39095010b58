"""Which nodes a blocked gang holds when nothing running has a known end (backfill.py's
drain guesses), and shorter-first across queues below their fair share (estimates on)."""

from __future__ import annotations

import math
import random
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from shipyard.core.backfill import _median_drain, drain_guesses
from shipyard.core.estimate import Estimate
from shipyard.core.model import Policy, Queue, Snapshot
from shipyard.core.queueing import schedule

from .builders import gang, node, running, with_used

HOUR = 3600.0


def held_nodes(snap: Snapshot, key: str, policy: Policy = Policy()) -> str:
    [w] = [w for w in schedule(snap, policy).waiting if w.gang == key]
    assert "its nodes are held for it" in w.reason
    return w.reason


def test_a_blocked_whole_node_gang_waits_on_the_node_whose_oldest_work_is_youngest():
    # a: one run 50 h old; b: three runs of 1-2 h. Heavy tails: b drains first.
    runs = [running(gang("old", 1, 4), ["a"], started=-50 * HOUR),
            running(gang("r1", 1, 2), ["b"], started=-2 * HOUR),
            running(gang("r2", 1, 2), ["b"], started=-1 * HOUR),
            running(gang("r3", 1, 2), ["b"], started=-1 * HOUR)]
    nodes = [node("a"), node("b")]
    snap = Snapshot(with_used(nodes, runs), (gang("big", 1, 8),), 0.0, tuple(runs))
    held_nodes(snap, "big")
    # Held outright: a 1-GPU gang fits beside "old" on a, not on b.
    snap = Snapshot(with_used(nodes, runs), (gang("big", 1, 8), gang("one", 1, 1, at=1.0)), 0.0,
                    tuple(runs))
    result = schedule(snap)
    assert [(a.gang, a.placement["worker-0"]) for a in result.admitted] == [("one", "a")]


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 4), st.integers(0, 200)), min_size=1,
                max_size=8), st.randoms(use_true_random=False))
def test_the_held_nodes_do_not_depend_on_the_order_running_gangs_are_listed(runs, rng: random.Random):
    nodes = [node(f"n{i}") for i in range(4)]
    used = [0] * 4
    placed = []
    for k, (where, gpus, hours) in enumerate(runs):
        if used[where] + gpus <= 8:
            used[where] += gpus
            placed.append(running(gang(f"r{k}", 1, gpus), [f"n{where}"], started=-hours * HOUR))
    big = gang("big", 2, 8)
    shuffled = list(placed)
    rng.shuffle(shuffled)
    first, second = (schedule(Snapshot(with_used(nodes, order), (big, gang("one", 1, 1, at=1.0)), 0.0,
                                       tuple(order))) for order in (placed, shuffled))
    assert first.admitted == second.admitted


@given(st.lists(st.integers(0, 500), min_size=1, max_size=6), st.integers(0, 500))
def test_more_work_on_a_node_never_drains_it_sooner(ages, extra):
    runs = [running(gang(f"r{k}", 1, 1), ["n"], started=-h * HOUR) for k, h in enumerate(ages)]
    before = drain_guesses(runs, 0.0, {})["n"]
    more = [*runs, running(gang("extra", 1, 1), ["n"], started=-extra * HOUR)]
    after = drain_guesses(more, 0.0, {})["n"]
    assert after >= before * (1 - 1e-5) and before >= max(ages) * HOUR * (1 - 1e-5)


def test_an_estimate_ahead_or_a_time_limit_sets_the_least_drain_time():
    runs = [running(gang("lim", 1, 1, limit=30 * HOUR), ["n"], started=0.0),
            running(gang("new", 1, 1), ["m"], started=0.0)]
    est = {"new": Estimate(run_s=5 * HOUR, high_s=6 * HOUR, confident=False, samples=3)}
    guess = drain_guesses(runs, 1 * HOUR, est)
    assert guess == {"n": 30 * HOUR, "m": 5 * HOUR}


def test_with_estimates_the_short_run_of_a_queue_below_its_share_goes_first():
    # Two queues with no running work (both below their fair share), both backed up
    # (waiting over Policy.estimate_order_after_s): shorter first, whatever the queue;
    # without estimates, or before they are backed up, the older first.
    nodes = (node("n1"),)
    long_a = gang("long-a", 1, 8, queue="a", at=0.0)
    short_b = gang("short-b", 1, 8, queue="b", at=10.0)
    est = {"long-a": Estimate(10 * HOUR, 12 * HOUR, True, 9), "short-b": Estimate(60.0, 90.0, True, 9)}
    snap = Snapshot(nodes, (long_a, short_b), HOUR, (), (Queue("a"), Queue("b")), est)
    assert schedule(snap, Policy(estimates=True)).admitted[0].gang == "short-b"
    assert schedule(snap, Policy(estimates=False)).admitted[0].gang == "long-a"
    assert schedule(replace(snap, now=20.0), Policy(estimates=True)).admitted[0].gang == "long-a"
    # Queue b far over its share (it runs on n2): a goes first again.
    hog = running(gang("hog", 1, 8, queue="b"), ["n2"])
    snap = Snapshot(with_used([node("n1"), node("n2")], [hog]), (long_a, short_b), 20.0, (hog,),
                    (Queue("a"), Queue("b")), est)
    assert schedule(snap, Policy(estimates=True)).admitted[0].gang == "long-a"


def _bisected_drain(lo: float, ages: list[float]) -> float:
    """_median_drain as first written: bisection evaluating the product at every step."""
    def done(x: float) -> bool:
        return sum(math.log(x / (a + x)) for a in ages) >= math.log(0.5)

    if lo > 0 and done(lo):
        return lo
    low, high = max(lo, max(ages)), max(lo, max(ages) * (1 + len(ages) / math.log(2)))
    while high - low > 1e-6 * high:
        mid = (low + high) / 2
        low, high = (low, mid) if done(mid) else (mid, high)
    return high


@given(st.just(0.0) | st.floats(1e-3, 1e7), st.lists(st.floats(60.0, 1e8), min_size=2, max_size=40))
def test_the_drain_guess_found_by_newton_is_the_bisections_to_the_bit(lo, ages):
    # The guess orders blocked gangs' held nodes: the faster search must give the same
    # float, or a simulation's decisions could change.
    assert _median_drain(lo, ages) == _bisected_drain(lo, ages)
