"""The one cluster adapter (core/adapter.py): the snapshot with earmarks and the planner's
input, as the controller and the simulator both build them."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from shipyard.api.vocab import TAINT_EARMARK
from shipyard.core.adapter import NodeViews, autoscale_input, earmarked_counts
from shipyard.core.autoscale import SCALE_UP_KINDS
from shipyard.core.model import (
    WAIT_CAPACITY,
    WAIT_QUOTA,
    WAIT_RESERVED,
    Node,
    Resources,
    Snapshot,
    Taint,
    Toleration,
    Waiting,
)
from shipyard.core.placement import eligible
from shipyard.core.queueing import schedule
from shipyard.sim import Arrival, SimConfig, SimPool
from shipyard.sim.engine import Simulation
from shipyard.spec import DEFAULT_MACHINE_TYPES

from .builders import gang, node, res
from .test_autoscale import SETTINGS

GPU_TAINT = Taint("nvidia.com/gpu", "present", "NoSchedule")


@st.composite
def worlds(draw):
    """Nodes (some tainted, some partly used), pending gangs, and earmarks of some nodes
    for some of the pending gangs (or for a gang no longer pending)."""
    n = draw(st.integers(1, 8))
    seen = [node(f"n{i}", rack=f"r{i % 2}",
                 taints=(GPU_TAINT,) if draw(st.booleans()) else ()) for i in range(n)]
    used = {x.name: res(draw(st.integers(0, 8))) for x in seen if draw(st.booleans())}
    pending = []
    for k in range(draw(st.integers(0, 5))):
        g = gang(f"g{k}", draw(st.integers(1, 3)), draw(st.sampled_from([1, 2, 4, 8])), at=float(k))
        if draw(st.booleans()):  # tolerates the GPU taint
            tol = Toleration(GPU_TAINT.key, GPU_TAINT.value, GPU_TAINT.effect)
            g = replace(g, members=tuple(replace(m, tolerations=(tol,)) for m in g.members))
        pending.append(g)
    owners = [g.key for g in pending] + ["gone"]
    earmarks = {x.name: draw(st.sampled_from(owners)) for x in seen if draw(st.booleans())}
    return seen, used, earmarks, pending


def old_snapshot(seen, used, earmarks, pending, now):
    """The controller's construction before core/adapter.py, verbatim in effect."""
    held_by = set(earmarks.values())
    tol = {g.key: Toleration(TAINT_EARMARK, g.key, "NoSchedule") for g in pending}
    gangs = tuple(replace(g, members=tuple(replace(m, tolerations=(*m.tolerations, tol[g.key]))
                                           for m in g.members)) if g.key in held_by else g
                  for g in pending)
    nodes = tuple(Node(x.name, x.allocatable, x.labels,
                       x.taints + ((Taint(TAINT_EARMARK, earmarks[x.name]),) if x.name in earmarks else ()),
                       used.get(x.name) or Resources(), x.ready, x.schedulable) for x in seen)
    return Snapshot(nodes, gangs, now, (), (), {})


@SETTINGS
@given(worlds())
def test_the_snapshot_equals_the_old_construction_and_the_memo_changes_nothing(world):
    seen, used, earmarks, pending = world
    views = NodeViews()
    first = views.snapshot(seen, used, earmarks, pending, 10.0)
    assert first == old_snapshot(seen, used, earmarks, pending, 10.0)
    # Built again from the same facts: the very same nodes (nothing rebuilt) ...
    again = views.snapshot(seen, dict(used), dict(earmarks), pending, 20.0)
    assert all(a is b for a, b in zip(first.nodes, again.nodes, strict=True))
    # ... and once an earmark or a usage moves, what a fresh build gives.
    moved = dict.fromkeys(earmarks, "gone")
    moved.setdefault(seen[0].name, "g0")
    more = {k: v + res(1) for k, v in used.items()}
    assert views.snapshot(seen, more, moved, pending, 30.0) == old_snapshot(seen, more, moved, pending, 30.0)


@SETTINGS
@given(worlds())
def test_a_node_earmarked_for_a_gang_is_that_gangs_alone(world):
    seen, used, earmarks, pending = world
    snap = NodeViews().snapshot(seen, used, earmarks, pending, 0.0)
    plain = {x.name: x for x in seen}
    for g in snap.pending:
        for m in g.members:
            bare = next(b for b in pending if b.key == g.key).members[m.index]
            for x in snap.nodes:
                owner = earmarks.get(x.name)
                # Exactly as before the earmark for its own gang and nodes not earmarked;
                # never on a node earmarked for another gang.
                expected = eligible(bare, plain[x.name]) and owner in (None, g.key)
                assert eligible(m, x) == expected
    # And what a cycle admits keeps to it: no member on another gang's node.
    for adm in schedule(snap).admitted:
        for node_name in adm.placement.values():
            assert earmarks.get(node_name) in (None, adm.gang)


@st.composite
def plans(draw):
    pools = ["a", "b"]
    nodes = {f"{p}{i}": p for p in pools for i in range(draw(st.integers(0, 3)))}
    gangs = [f"g{k}" for k in range(draw(st.integers(1, 4)))]
    pending = set(draw(st.lists(st.sampled_from(gangs), unique=True)))
    requested = {(g, p): draw(st.integers(0, 3)) for g in gangs for p in pools if draw(st.booleans())}
    earmarks = {n: draw(st.sampled_from(sorted(pending))) for n in nodes if pending and draw(st.booleans())}
    return nodes, pending, requested, earmarks


@SETTINGS
@given(plans())
def test_each_pending_gang_owns_what_was_requested_for_it_and_what_registered(world):
    pool_of, pending, requested, earmarks = world
    out = earmarked_counts(pending, requested, earmarks, pool_of)
    for gang_key in {g for g, _ in requested} | set(earmarks.values()):
        for p in ("a", "b"):
            coming = requested.get((gang_key, p), 0) if gang_key in pending else 0
            registered = sum(1 for n, g in earmarks.items() if g == gang_key and pool_of[n] == p)
            assert out.get(gang_key, {}).get(p, 0) == coming + registered
    assert all(n > 0 for per in out.values() for n in per.values())
    assert set(out) <= pending


def test_the_input_keeps_only_the_waits_more_nodes_can_end():
    snap = Snapshot((node("a0"),), (gang("g0"), gang("g1"), gang("g2")))
    waits = (Waiting("g0", 1, "", kind=WAIT_CAPACITY), Waiting("g1", 2, "", kind=WAIT_QUOTA),
             Waiting("g2", 3, "", kind=WAIT_RESERVED))
    inp = autoscale_input(snap, (), waits, earmarks={"a0": "g2"}, pool_of={"a0": "a"},
                          requested={("g0", "a"): 2}, confirm_s=5.0)
    assert [w.gang for w in inp.waiting] == [w.gang for w in waits if w.kind in SCALE_UP_KINDS] == ["g0"]
    assert inp.earmarked == {"g0": {"a": 2}, "g2": {"a": 1}}
    assert inp.earmarked_nodes == {"a0": "g2"} and inp.confirm_s == 5.0


def test_the_simulator_earmarks_with_the_controllers_taint():
    # A 16-GPU gang on an empty pool: two nodes requested for it. While they come, a
    # first one registered: it carries the earmark taint, and only that gang tolerates it.
    pool = SimPool("gpu", DEFAULT_MACHINE_TYPES["gpu-a100"], max_nodes=4)
    sim = Simulation([Arrival("big", 0.0, 16, 100.0), Arrival("small", 1.0, 1, 100.0)], [pool],
                     SimConfig(), fast=False)
    sim.step()  # the arrival: scale-up for big
    assert len(sim.index) == 2
    sim.handle("ready", next(iter(sim.index)))  # one of the two registers
    snap = sim.snapshot()
    (view,) = snap.nodes
    assert Taint(TAINT_EARMARK, "big", "NoSchedule") in view.taints
    big = next(g for g in snap.pending if g.key == "big")
    assert all(eligible(m, view) for m in big.members)
    sim.step()  # small arrives
    small = next(g for g in sim.snapshot().pending if g.key == "small")
    assert not eligible(small.members[0], sim.snapshot().nodes[0])
