"""Sharing nodes on their way: the room an earlier gang leaves on the nodes requested for
it, and nodes requested for a gang that no longer waits, count before new nodes are
asked for (AutoscaleInput.share_coming; False: the plan before, to compare)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from shipyard.core.adapter import autoscale_input
from shipyard.core.autoscale import AutoscaleInput, AutoscalePlan, plan
from shipyard.core.model import AutoscaleSettings, Gang, Member, Snapshot
from shipyard.core.queueing import schedule
from shipyard.sim import Arrival, SimConfig, SimPool, simulate
from shipyard.spec import DEFAULT_MACHINE_TYPES

from .builders import NODE, gang, node
from .test_autoscale import A100, CYCLE, SETTINGS, TYPE, A, counts, up, worlds
from .test_autoscale import pool as a_pool

FULL = (node("full", used=NODE),)  # the cluster's one node, busy


def _gang_nodes(p: AutoscalePlan) -> int:
    return sum(u.count for u in p.scale_up if u.gang is not None)


def test_a_burst_of_small_gangs_shares_one_new_node():
    # Four 1-GPU experiments on a full cluster: one 8-GPU node holds them all.
    burst = tuple(gang(f"g{i}", 1, 1, at=float(i)) for i in range(4))
    pool = replace(A, nodes=("full",))
    p = up(Snapshot(FULL, burst, 10.0), (pool,))
    assert counts(p) == {("g0", "a100"): 1}
    assert [n.gang for n in p.on_the_way] == ["g1", "g2", "g3"]
    assert "on their way" in p.on_the_way[0].reason
    # The next step: g0's node is on its way (earmarked for g0); the others still share it.
    p = up(Snapshot(FULL, burst, 20.0), (replace(pool, provisioning=1),), earmarked={"g0": {"a100": 1}})
    assert p.scale_up == () and [n.gang for n in p.on_the_way] == ["g1", "g2", "g3"]
    # Today's plan: a node each, three of which the burst never needs.
    p = up(Snapshot(FULL, burst, 10.0), (pool,), share_coming=False)
    assert counts(p) == {(f"g{i}", "a100"): 1 for i in range(4)}


def test_a_node_on_its_way_for_no_waiting_gang_is_given_to_the_next_one():
    # Requested for a gang that started elsewhere meanwhile: provisioning, held by nobody.
    pool = replace(A, nodes=("full",), provisioning=1)
    p = up(Snapshot(FULL, (gang("late", 1, 8),), 10.0), (pool,))
    assert p.scale_up == ()
    [re] = p.reuse
    assert (re.pool, re.count, re.gang) == ("a100", 1, "late")
    # Nor is it counted again for the warm buffer: the buffer asks for its own.
    p = up(Snapshot(FULL, (gang("late", 1, 8),), 10.0), (replace(pool, warm_buffer=1),))
    assert counts(p) == {(None, "a100"): 1} and len(p.reuse) == 1
    # Without sharing it is ignored and a second node is bought.
    p = up(Snapshot(FULL, (gang("late", 1, 8),), 10.0), (pool,), share_coming=False)
    assert counts(p) == {("late", "a100"): 1} and p.reuse == ()


def test_a_gang_uses_its_own_nodes_before_unclaimed_ones():
    # Its own node is on its way, another is unclaimed: it keeps its own and leaves the
    # other to the next gang (it would otherwise take one more at every step).
    pool = replace(A, nodes=("full",), provisioning=2)
    mine, next_ = gang("mine", 1, 8, at=0), gang("next", 1, 8, at=1)
    p = up(Snapshot(FULL, (mine, next_), 10.0), (pool,), earmarked={"mine": {"a100": 1}})
    assert p.scale_up == ()
    assert [(r.gang, r.count) for r in p.reuse] == [("next", 1)]


def test_a_gang_that_fits_only_by_reusing_a_node_takes_a_free_one_first():
    # An a100 on its way for nobody; the pool is at max with it. g0 (a100 + t4) fits only
    # by reusing it, and takes one of the three free t4 nodes; g1 (four t4) then needs
    # two new ones, one more than without sharing, where g0 cannot fit at all. Found by
    # hypothesis (the property's bound counts what such a gang takes).
    t4 = {TYPE: "t4"}
    nodes = (node("a-0", labels=A100, used=NODE), *(node(f"t-{i}", labels=t4) for i in range(3)))
    g0 = Gang("g0", "default", 0, 0.0, (Member("a", 0, NODE, A100), Member("t", 0, NODE, t4)))
    g1 = gang("g1", 4, 8, at=1.0, selector=t4)
    pools = (replace(A, nodes=("a-0",), provisioning=1, max_nodes=2),
             a_pool("t4", t4, 4.0, max_nodes=5, nodes=("t-0", "t-1", "t-2")))
    snap = Snapshot(nodes, (g0, g1), 1000.0)
    p = up(snap, pools)
    assert [(r.gang, r.pool, r.count) for r in p.reuse] == [("g0", "a100", 1)]
    assert counts(p) == {("g1", "t4"): 2}
    p = up(snap, pools, share_coming=False)
    assert counts(p) == {("g1", "t4"): 1} and [n.gang for n in p.cannot_fit] == ["g0"]


def test_simulated_a_burst_buys_one_node_and_starts_as_soon():
    # A full node until 1000 s; four 1-GPU experiments at 10-13 s.
    arrivals = [Arrival("long", 0.0, 8, 1000.0)] + [Arrival(f"s{i}", 10.0 + i, 1, 60.0) for i in range(4)]
    pool = SimPool("gpu", DEFAULT_MACHINE_TYPES["gpu-a100"], max_nodes=8, start_nodes=1)
    cfg = SimConfig(provisioning_delay_s=120.0, time_limits=True)
    new = simulate(arrivals, [pool], cfg)
    old = simulate(arrivals, [pool], replace(cfg, autoscale=replace(cfg.autoscale, look_ahead=False,
                                                                    share_coming=False)))
    # Today's plan buys a node each; all four then start on the first one to be Ready
    # (best fit packs them), and the other three are removed unused.
    assert (old.requested_nodes, old.never_used) == (4, 3)
    assert (new.requested_nodes, new.never_used) == (1, 0)
    assert new.started == old.started == {"long": 0.0, **{f"s{i}": 130.0 for i in range(4)}}
    assert new.node_hours < old.node_hours


@st.composite
def worlds_on_the_way(draw):
    """test_autoscale's worlds, with nodes on their way: some held for pending gangs, the
    rest for nobody (asked for a gang that no longer waits, or the warm buffer)."""
    snap, pools, since, marked = draw(worlds())
    earmarked: dict[str, dict[str, int]] = {}
    out = []
    for x in pools:
        if x.static:
            out.append(x)
            continue
        n = draw(st.integers(0, 3))
        held = 0
        for g in snap.pending:
            if held < n and draw(st.booleans()):
                earmarked.setdefault(g.key, {})[x.name] = 1
                held += 1
        out.append(replace(x, provisioning=n, max_nodes=max(x.max_nodes, len(x.nodes) + n)))
    return snap, tuple(out), since, marked, earmarked


def _plan(world, share: bool, ahead: bool = False) -> AutoscalePlan:
    snap, pools, since, marked, earmarked = world
    result = schedule(snap, CYCLE)
    return plan(AutoscaleInput(snap, pools, result.waiting, earmarked=earmarked, idle_since=since,
                               marked=marked, admitted=result.admitted, share_coming=share,
                               look_ahead_gangs=ahead), CYCLE)


@SETTINGS
@given(worlds_on_the_way(), st.booleans())
def test_sharing_never_asks_for_more_nodes_and_reuses_only_what_nobody_holds(world, ahead):
    """With or without the opt-in look-ahead for waiting gangs."""
    snap, pools, _, _, earmarked = world
    new, old = _plan(world, True, ahead), _plan(world, False, ahead)
    # Never more nodes for gangs than without sharing (what is on its way counts first),
    # but for gangs that fit only with it (max_nodes counts nodes on their way): each of
    # their members takes at most one node (new, or free) that a gang after it would
    # otherwise have had.
    only_now = {n.gang for n in old.cannot_fit} - {n.gang for n in new.cannot_fit}
    members = sum(len(g.members) for g in snap.pending if g.key in only_now)
    assert _gang_nodes(new) <= _gang_nodes(old) + members
    assert old.on_the_way == () and old.reuse == ()
    waiting = {g.key for g in snap.pending}
    held = {}
    for per in earmarked.values():
        for pool, n in per.items():
            held[pool] = held.get(pool, 0) + n
    for x in pools:
        reused = [r for r in new.reuse if r.pool == x.name]
        # Only nodes on their way that no pending gang holds, each given to one gang.
        assert sum(r.count for r in reused) <= max(x.provisioning - held.get(x.name, 0), 0)
        assert len({r.gang for r in reused}) == len(reused)
        assert {r.gang for r in reused} <= waiting
    # A gang sharing nodes on their way is given none of its own, nor told it cannot fit.
    shared = {n.gang for n in new.on_the_way}
    assert not shared & ({u.gang for u in new.scale_up} | {n.gang for n in new.cannot_fit})


@SETTINGS
@given(worlds_on_the_way(), st.booleans())
def test_no_node_is_bought_while_one_on_its_way_is_left_to_nobody(world, ahead):
    """A node asked for a gang that no longer waits is counted by the next gang that
    needs one like it before that gang is given new ones (the worlds' gangs have no
    topology: any node of a pool suits any member that fits its machine)."""
    _, pools, _, _, earmarked = world
    p = _plan(world, True, ahead)
    held: dict[str, int] = {}
    for per in earmarked.values():
        for pool, n in per.items():
            held[pool] = held.get(pool, 0) + n
    for x in pools:
        left = max(x.provisioning - held.get(x.name, 0), 0) - sum(r.count for r in p.reuse if r.pool == x.name)
        if left > 0:
            assert not [u for u in p.scale_up if u.pool == x.name and u.gang is not None], (x.name, p)


def test_the_adapters_pass_the_settings_on():
    inp = autoscale_input(Snapshot(()), (A,), (), earmarks={}, pool_of={}, share_coming=False,
                          look_ahead_gangs=False)
    assert (inp.share_coming, inp.look_ahead_gangs) == (False, False)
    # The planner's defaults are the settings' (sharing; no look-ahead for gangs).
    default = AutoscaleInput(Snapshot(()), (A,))
    assert (default.share_coming, default.look_ahead_gangs) == (AutoscaleSettings().share_coming,
                                                                AutoscaleSettings().look_ahead_gangs)
    assert autoscale_input(Snapshot(()), (A,), (), earmarks={}, pool_of={}).look_ahead_gangs is False
