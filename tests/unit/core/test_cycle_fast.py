"""The cycle's shortcuts decide exactly as the plain cycle does: stopping once nothing
left can start, and the reservation search freeing node by node."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.core.backfill import earliest_start
from shipyard.core.model import Policy, Snapshot
from shipyard.core.node_index import Capacity
from shipyard.core.queueing import schedule

from ..test_sim_speed import reference_earliest_start
from .builders import node, running, with_used
from .test_properties import clusters

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
policies = st.builds(Policy, preemption=st.booleans(), backfill=st.booleans(),
                     reservations=st.integers(0, 4), starvation_bound_s=st.sampled_from([None, 0.0, 60.0]))


@SETTINGS
@given(clusters(), policies, st.integers(0, 200))
def test_a_cycle_that_stops_early_admits_and_preempts_exactly_as_the_whole_cycle(snap, policy, now):
    snap = replace(snap, now=float(now))
    whole = schedule(snap, policy)
    short = schedule(snap, policy, decisions_only=True)
    assert short.admitted == whole.admitted
    assert short.preempted == whole.preempted
    # What it did decide is what the whole cycle said, in the same order.
    assert short.waiting == whole.waiting[:len(short.waiting)]


def state(cap: Capacity) -> tuple[object, ...]:
    """Everything placement reads: free amounts, levels and the order within buckets."""
    pools = tuple((p.id, tuple(tuple(b) for b in p.buckets), p.fgpu, p.fcpu, p.fmem)
                  for c in cap.classes for p in c.pools)
    at = tuple(tuple(tuple(d) for d in c.pools_at) for c in cap.classes)
    return (tuple(cap.fgpu), tuple(cap.fcpu), tuple(cap.fmem), tuple(cap.level), pools, at)


@st.composite
def one_rack_or_many(draw) -> Snapshot:
    snap = draw(clusters())
    if draw(st.booleans()):  # one pool per class: the node-by-node path
        names = [n.name for n in snap.nodes]
        flat = [node(n) for n in names]
        snap = replace(snap, nodes=with_used(flat, list(snap.running)))
    # Ends shared by several gangs, so that one step frees several nodes.
    runs = tuple(running(r.gang, [r.placement[m.name] for m in r.gang.members],
                         started=float(draw(st.sampled_from([-100, -50])))) for r in snap.running)
    return replace(snap, running=runs)


@SETTINGS
@given(one_rack_or_many())
def test_the_reservation_search_finds_and_leaves_what_the_member_by_member_one_does(snap):
    keys = Policy().topology_keys
    for g in snap.pending:
        ends = [(math.inf if r.ends_at is None else r.ends_at, r) for r in snap.running]
        results, states = [], []
        for search in (earliest_start, reference_earliest_start):
            cap = Capacity(snap, keys)
            groups = cap.groups(g.members)
            results.append(search(cap, groups, g.topology, keys, ends, snap.now))
            states.append(state(cap))
        assert results[0] == results[1]
        assert states[0] == states[1]
