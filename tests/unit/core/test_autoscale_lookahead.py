"""Look-ahead: capacity that running work frees (by time limit) before a new node could be
Ready counts before new nodes are asked for (for waiting gangs only with
look_ahead_gangs, which is opt-in; the warm buffer always)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given

from shipyard.core.autoscale import AutoscaleInput, plan
from shipyard.core.model import Snapshot
from shipyard.core.queueing import schedule
from shipyard.sim import Arrival, SimConfig, SimPool, simulate
from shipyard.spec import DEFAULT_MACHINE_TYPES

from .builders import NODE, gang, node, running, with_used
from .test_autoscale import CYCLE, SETTINGS, A, counts, worlds
from .test_autoscale import up as _up

DELAY = 120.0
LA = replace(A, provisioning_delay_s=DELAY)


def up(snap: Snapshot, pools: tuple, **kw):
    """test_autoscale's plan, looking ahead for waiting gangs too."""
    return _up(snap, pools, look_ahead_gangs=True, **kw)


def busy_until(ends: float, name: str = "busy") -> tuple[Snapshot, tuple]:
    """One free node and one held by a one-node run that its time limit stops at `ends`."""
    run = running(gang(f"run-{name}", 1, 8, limit=ends), [name])
    return with_used([node("free"), node(name)], [run]), (run,)


def test_a_gang_that_fits_on_what_running_work_frees_first_gets_no_nodes():
    nodes, runs = busy_until(60.0)  # frees at 60 s; a new node would be Ready at 120 s
    snap = Snapshot(nodes, (gang("g", 2, 8),), 0.0, runs)
    p = up(snap, (replace(LA, nodes=("free", "busy")),))
    assert p.scale_up == () and p.cannot_fit == ()
    [later] = p.ending_work
    assert later.gang == "g" and "running work frees" in later.reason
    # Without a provisioning delay to look ahead by: today's plan, one new node.
    assert counts(up(snap, (replace(A, nodes=("free", "busy")),))) == {("g", "a100"): 1}


def test_a_gang_that_cannot_fit_soon_enough_still_gets_nodes():
    nodes, runs = busy_until(300.0)  # ends after a new node would be Ready
    snap = Snapshot(nodes, (gang("g", 2, 8),), 0.0, runs)
    p = up(snap, (replace(LA, nodes=("free", "busy")),))
    assert counts(p) == {("g", "a100"): 1} and p.ending_work == ()
    # Work without a time limit has no known end: it is never counted.
    run = running(gang("run-open", 1, 8), ["busy"])
    snap = Snapshot(with_used([node("free"), node("busy")], [run]), (gang("g", 2, 8),), 0.0, (run,))
    assert counts(up(snap, (replace(LA, nodes=("free", "busy")),))) == {("g", "a100"): 1}


def test_what_ending_work_frees_is_counted_once_then_new_nodes_make_up_the_rest():
    nodes, runs = busy_until(60.0)
    a, b = gang("a", 2, 8, at=0), gang("b", 3, 8, at=1)
    p = up(Snapshot(nodes, (a, b), 0.0, runs), (replace(LA, nodes=("free", "busy")),))
    # a waits for the busy node; b is not given it too and gets all three of its own.
    assert [n.gang for n in p.ending_work] == ["a"]
    assert counts(p) == {("b", "a100"): 3}
    # A gang bigger than what frees waits for new nodes anyway: what frees meanwhile would
    # sit unheld (open to backfill) until they are Ready, so only the free node counts.
    p = up(Snapshot(nodes, (gang("big", 4, 8),), 0.0, runs), (replace(LA, nodes=("free", "busy")),))
    assert counts(p) == {("big", "a100"): 3} and p.ending_work == ()


def test_pods_on_their_way_out_free_their_node_first():
    # A gang just stopped by its time limit: no longer running, its pod still terminating.
    nodes = (node("free"), node("busy", used=NODE))
    snap = Snapshot(nodes, (gang("g", 2, 8),), 0.0)
    pool = replace(LA, nodes=("free", "busy"))
    result = schedule(snap, CYCLE)
    inp = AutoscaleInput(snap, (pool,), result.waiting, releasing={"busy": NODE},
                         look_ahead_gangs=True)
    p = plan(inp, CYCLE)
    assert p.scale_up == () and [n.gang for n in p.ending_work] == ["g"]
    # Without a delay to look ahead by, what is on the node now is all that counts.
    p = plan(replace(inp, pools=(replace(pool, provisioning_delay_s=0.0),)), CYCLE)
    assert counts(p) == {("g", "a100"): 1}


def test_warm_buffer_counts_nodes_that_running_work_leaves_soon():
    nodes, runs = busy_until(500.0)  # within delay + idle timeout (120 + 600 s)
    pool = replace(LA, warm_buffer=2, nodes=("free", "busy"))
    inp = AutoscaleInput(Snapshot(nodes, (), 0.0, runs), (pool,), idle_since={"free": 0.0})
    assert plan(inp).scale_up == ()
    far_nodes, far = busy_until(5000.0)
    inp = AutoscaleInput(Snapshot(far_nodes, (), 0.0, far), (pool,), idle_since={"free": 0.0})
    [u] = plan(inp).scale_up
    assert (u.gang, u.count) == (None, 1)
    inp = AutoscaleInput(Snapshot(nodes, (), 0.0, runs), (replace(pool, provisioning_delay_s=0.0),),
                         idle_since={"free": 0.0})
    assert [(u.gang, u.count) for u in plan(inp).scale_up] == [(None, 1)]  # today's plan


def _without_look_ahead(world):
    snap, pools, since, marked = world
    return snap, tuple(replace(x, provisioning_delay_s=0.0) for x in pools), since, marked


def _plan(world):
    snap, pools, since, marked = world
    result = schedule(snap, CYCLE)
    return plan(AutoscaleInput(snap, pools, result.waiting, idle_since=since, marked=marked,
                               admitted=result.admitted, look_ahead_gangs=True), CYCLE)


@SETTINGS
@given(worlds())
def test_look_ahead_never_plans_more_than_the_unmet_demand(world):
    """Never more new nodes for a gang than it has members; a gang gets nodes with the
    look-ahead only if it got them, or could not fit at all, without it (what ending work
    frees can make a gang fit under max_nodes); and no gang given nodes without it is left
    with neither nodes nor a reason (it gets nodes, or waits for work that ends first).
    That each count is the fewest that fit is test_autoscale's one-fewer property."""
    new, old = _plan(world), _plan(_without_look_ahead(world))
    members = {g.key: len(g.members) for g in world[0].pending}
    per: dict[str, int] = {}
    for u in new.scale_up:
        if u.gang is not None:
            per[u.gang] = per.get(u.gang, 0) + u.count
    assert all(n <= members[g] for g, n in per.items())
    given_before = {u.gang for u in old.scale_up if u.gang}
    assert set(per) <= given_before | {n.gang for n in old.cannot_fit}
    assert given_before <= set(per) | {n.gang for n in new.ending_work} | {n.gang for n in new.cannot_fit}
    assert old.ending_work == ()


A100 = DEFAULT_MACHINE_TYPES["gpu-a100"]


def test_simulated_the_node_a_gang_would_not_have_used_is_not_bought():
    # `first` holds the only node until 100 s; `second` arrives at 10 s. A new node would
    # be Ready at 130 s: today's plan buys it and `second` starts at 100 s anyway.
    arrivals = [Arrival("first", 0.0, 8, 100.0), Arrival("second", 10.0, 8, 50.0)]
    pool = SimPool("gpu", A100, max_nodes=4, start_nodes=1)
    cfg = SimConfig(provisioning_delay_s=DELAY, time_limits=True)
    cfg = replace(cfg, autoscale=replace(cfg.autoscale, look_ahead_gangs=True))
    new = simulate(arrivals, [pool], cfg)
    old = simulate(arrivals, [pool], replace(cfg, autoscale=replace(cfg.autoscale, look_ahead=False,
                                                                    share_coming=False)))
    assert (old.requested_nodes, old.never_used) == (1, 1)
    assert (new.requested_nodes, new.never_used) == (0, 0)
    assert new.started == old.started == {"first": 0.0, "second": 100.0}
    assert new.node_hours < old.node_hours

