"""Estimated starts of waiting gangs: hand-built cases and properties."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from shipyard.core.model import WAIT_CAPACITY, WAIT_QUOTA, Resources, Snapshot, Waiting
from shipyard.core.queueing import schedule
from shipyard.core.start_estimate import BY_ETA, BY_LIMIT, estimate_starts

from .builders import gang, node, running, with_used
from .test_properties import clusters

MIN = 60.0


def waits(*keys: str, kind: str = WAIT_CAPACITY) -> list[Waiting]:
    return [Waiting(k, i + 1, "", kind=kind) for i, k in enumerate(keys)]


def one_node(runs, pending, now=0.0):
    return Snapshot(with_used([node("n1")], runs), tuple(pending), now, tuple(runs))


def test_a_gang_behind_a_run_with_a_time_limit_starts_when_it_ends():
    ddp = running(gang("team/ddp", 1, 8, limit=60 * MIN), ["n1"], started=-20 * MIN)
    snap = one_node([ddp], [gang("team/next", 1, 8)])
    est = estimate_starts(snap, waits("team/next"))["team/next"]
    assert est.at == 40 * MIN and est.after == ("team/ddp",) and est.basis == BY_LIMIT
    assert est.text(snap.now) == "about 40m, after ddp finishes (time limit)"


def test_a_sooner_progress_eta_wins_over_the_time_limit_and_a_later_one_does_not():
    ddp = running(gang("ddp", 1, 8, limit=60 * MIN), ["n1"])
    snap = one_node([ddp], [gang("next", 1, 8)])
    sooner = estimate_starts(snap, waits("next"), etas={"ddp": 10 * MIN})["next"]
    assert (sooner.at, sooner.basis) == (10 * MIN, BY_ETA)
    later = estimate_starts(snap, waits("next"), etas={"ddp": 90 * MIN})["next"]
    assert (later.at, later.basis) == (60 * MIN, BY_LIMIT)
    # No time limit: the ETA alone gives the end.
    free_run = running(gang("ddp", 1, 8), ["n1"])
    snap = one_node([free_run], [gang("next", 1, 8)])
    assert estimate_starts(snap, waits("next"), etas={"ddp": 5 * MIN})["next"].at == 5 * MIN


def test_work_ahead_without_an_end_makes_it_unknown_and_says_which():
    ddp = running(gang("ddp", 1, 8), ["n1"])
    snap = one_node([ddp], [gang("next", 1, 8, limit=MIN)])
    est = estimate_starts(snap, waits("next"))["next"]
    assert est.at is None
    assert est.text(snap.now) == "unknown: work ahead has no time limit (ddp)"


def test_the_second_in_line_waits_for_the_first_ones_time_limit_too():
    ddp = running(gang("ddp", 1, 8, limit=30 * MIN), ["n1"])
    snap = one_node([ddp], [gang("a", 1, 8, limit=20 * MIN), gang("b", 1, 4)])
    est = estimate_starts(snap, waits("a", "b"))
    assert est["a"].at == 30 * MIN and est["b"].at == 50 * MIN and est["b"].after == ("a",)


def test_quota_waits_get_no_estimate_and_a_cpu_pool_does_not_wait_for_gpu_work():
    cpu_node = node("c1", allocatable=Resources(16_000, 64 * 2**30, 0), labels={"type": "cpu"})
    sel, req = {"type": "cpu"}, Resources(16_000, 2**30, 0)
    gpu = running(gang("gpu-run", 1, 8), ["n1"])  # no end
    cpu = running(gang("cpu-run", 1, 0, request=req, selector=sel, limit=5 * MIN), ["c1"])
    pending = [gang("gpu-next", 1, 8), gang("cpu-next", 1, 0, request=req, selector=sel),
               gang("capped", 1, 8)]
    snap = Snapshot(with_used([node("n1"), cpu_node], [gpu, cpu]), tuple(pending), 0.0, (gpu, cpu))
    est = estimate_starts(snap, [*waits("gpu-next", "cpu-next"), *waits("capped", kind=WAIT_QUOTA)])
    assert est["gpu-next"].at is None and est["cpu-next"].at == 5 * MIN
    assert "capped" not in est


def test_the_first_blocked_gang_starts_at_the_policys_reserved_start():
    runs = [running(gang("r1", 1, 8, limit=10 * MIN), ["n1"]),
            running(gang("r2", 1, 8, limit=25 * MIN), ["n2"])]
    snap = Snapshot(with_used([node("n1"), node("n2")], runs), (gang("big", 2, 8),), 0.0, tuple(runs))
    result = schedule(snap)
    assert result.waiting[0].starts_at == 25 * MIN
    assert estimate_starts(snap, result.waiting)["big"].at == 25 * MIN


# -- properties -----------------------------------------------------------------------


@given(clusters(), st.floats(0, 7200))
def test_never_earlier_than_now_and_one_for_every_capacity_wait(snap, now):
    snap = replace(snap, now=now)
    result = schedule(snap)
    est = estimate_starts(snap, result.waiting)
    for w in result.waiting:
        e = est.get(w.gang)
        if e is not None and e.at is not None:
            assert e.at >= now


@given(clusters())
def test_unknown_or_now_when_nothing_has_an_end(snap):
    snap = replace(snap, running=tuple(replace(r, gang=replace(r.gang, time_limit_s=None))
                                       for r in snap.running),
                   pending=tuple(replace(g, time_limit_s=None) for g in snap.pending))
    for e in estimate_starts(snap, schedule(snap).waiting).values():
        assert e.at is None or e.at == snap.now


# Whole-node gangs on identical nodes: fitting is a count of empty nodes, so work added
# ahead can only take nodes, never free them sooner.
whole = st.tuples(st.integers(1, 4), st.sampled_from([None, 600.0, 1800.0, 3600.0]))


@st.composite
def whole_node_worlds(draw):
    n = draw(st.integers(1, 6))
    nodes = [node(f"n{i}") for i in range(n)]
    runs, at = [], 0
    for k, (size, limit) in enumerate(draw(st.lists(whole, max_size=4))):
        if at + size > n:
            break
        runs.append(running(gang(f"run{k}", size, 8, limit=limit),
                            [f"n{i}" for i in range(at, at + size)], started=-draw(st.integers(0, 500))))
        at += size
    pending = [gang(f"p{k}", min(size, n), 8, limit=limit)
               for k, (size, limit) in enumerate(draw(st.lists(whole, min_size=1, max_size=6)))]
    return Snapshot(with_used(nodes, runs), tuple(pending), 0.0, tuple(runs))


def _at(e) -> float:
    return math.inf if e.at is None else e.at


@given(whole_node_worlds(), st.data())
def test_adding_work_ahead_never_makes_it_earlier(snap, data):
    keys = [g.key for g in snap.pending]
    target = data.draw(st.sampled_from(keys))
    before = estimate_starts(snap, waits(*keys))[target]
    size = data.draw(st.integers(1, len(snap.nodes)))
    extra = gang("extra", size, 8, limit=data.draw(st.sampled_from([None, 60.0, 3600.0])))
    where = data.draw(st.integers(0, keys.index(target)))
    more = replace(snap, pending=(*snap.pending, extra))
    after = estimate_starts(more, waits(*keys[:where], "extra", *keys[where:]))[target]
    assert _at(after) >= _at(before)


@given(whole_node_worlds())
def test_known_ends_give_a_start_no_later_than_every_end_ahead(snap):
    snap = replace(snap, running=tuple(replace(r, gang=replace(r.gang, time_limit_s=r.gang.time_limit_s
                                                               or 900.0)) for r in snap.running),
                   pending=tuple(replace(g, time_limit_s=g.time_limit_s or 900.0) for g in snap.pending))
    est = estimate_starts(snap, waits(*(g.key for g in snap.pending)))
    last_run = max((r.ends_at or 0.0 for r in snap.running), default=0.0)
    ahead = 0.0
    for g in snap.pending:
        assert est[g.key].at is not None and est[g.key].at <= max(last_run, 0.0) + ahead
        ahead += g.time_limit_s or 0.0
