"""The fast simulator decides exactly as the plain event loop: a cycle of the policy and
of the autoscaler at every instant something happens, with the reservation search
freeing member by member (the code before the speed-up, kept here as the reference)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.core import queueing
from shipyard.core.autoscale import plan
from shipyard.core.model import Policy, Resources, Running, Topology
from shipyard.core.node_index import Capacity, Group
from shipyard.core.placement import place, unplace
from shipyard.sim import Arrival, SimConfig, SimPool, Simulation
from shipyard.spec import DEFAULT_MACHINE_TYPES

A100 = DEFAULT_MACHINE_TYPES["gpu-a100"]


def reference_earliest_start(capacity: Capacity, groups: list[Group], topology: Topology | None,
                             topology_keys, running: list[tuple[float, Running]], now: float):
    """backfill.earliest_start as it was: every member freed and taken back one by one."""
    useful = {c.id for g in groups for c in g.classes}
    released: list[tuple[int, Resources]] = []
    result = None
    ordered = sorted(running, key=lambda e: e[0])
    k = 0
    while k < len(ordered) and result is None:
        end = ordered[k][0]
        touched = False
        while k < len(ordered) and ordered[k][0] == end:
            run = ordered[k][1]
            k += 1
            for member in run.gang.members:
                i = capacity.index_of.get(run.placement.get(member.name, ""))
                if i is None or not capacity.is_open(i):
                    continue
                pool = capacity.pool_of[i]
                if pool is None or pool.cls.id not in useful:
                    continue
                capacity.release(i, member.request)
                released.append((i, member.request))
                touched = True
        if not touched:
            continue
        taken = place(capacity, groups, topology, topology_keys)
        if taken is not None:
            result = (max(end, now), [i for _, i in taken])
            unplace(capacity, taken)
    for i, r in reversed(released):
        capacity.take(i, r)
    return result


class ReferenceSimulation(Simulation):
    """The event loop before the speed-up: schedule() and plan() at every instant."""

    def __init__(self, arrivals, pools, config) -> None:
        super().__init__(arrivals, pools, config, fast=False)

    def cycle(self) -> None:
        self.cycles += 1
        result = queueing.schedule(self.snapshot(), self.policy)
        for pre in result.preempted:
            run = self.running.get(pre.gang)
            if run is not None:
                self.stop(run)
                self.duration[pre.gang] = run.ends_at - self.now
                self.queue_up(pre.gang)
        if result.preempted:
            self.push(self.now, "tick")
        for adm in result.admitted:
            self.start(adm.gang, adm.placement)
        snap = self.snapshot()
        waiting = tuple(w for w in result.waiting if w.gang in self.pending)
        self.waiting = waiting
        self.apply(plan(self.autoscale_input(snap, waiting), self.policy))
        self.peaks()
        self.wake()


def reference_run(arrivals, pools, cfg, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(queueing, "earliest_start", reference_earliest_start)
        m.setattr(queueing, "Releases", lambda capacity, known, more: [*known, *more()])
        return ReferenceSimulation(arrivals, pools, cfg).run()


def fixed(n: int) -> SimPool:
    return SimPool("fixed", A100, max_nodes=n, static=True, start_nodes=n)


traces = st.lists(
    st.tuples(st.integers(0, 20_000), st.sampled_from([1, 1, 1, 2, 3, 4, 8, 8, 16, 24, 32, 64]),
              st.integers(1, 6_000)),
    min_size=1, max_size=40,
).map(lambda rows: [Arrival(f"e{i:02d}", float(t), g, float(d)) for i, (t, g, d) in enumerate(rows)])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrivals=traces, nodes=st.integers(1, 6), limits=st.booleans(),
       reservations=st.integers(0, 4), backfill=st.booleans())
def test_on_a_fixed_cluster_every_start_is_the_reference_loops(arrivals, nodes, limits, reservations,
                                                              backfill, monkeypatch):
    cfg = SimConfig(time_limits=limits, policy=Policy(reservations=reservations, backfill=backfill))
    fast = Simulation(arrivals, [fixed(nodes)], cfg).run()
    ref = reference_run(arrivals, [fixed(nodes)], cfg, monkeypatch)
    assert fast.started == ref.started
    assert fast.ended == ref.ended
    assert fast.busy_gpu_s == pytest.approx(ref.busy_gpu_s)
    assert fast.cycles <= ref.cycles


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrivals=traces, limits=st.booleans())
def test_autoscaled_runs_decide_as_the_reference_loop(arrivals, limits, monkeypatch):
    pools = [SimPool("gpu-a100", A100, max_nodes=6, warm_buffer=1)]
    cfg = SimConfig(time_limits=limits)
    fast = Simulation(arrivals, pools, cfg).run()
    ref = reference_run(arrivals, pools, cfg, monkeypatch)
    assert (fast.started, fast.ended, fast.requested_nodes) == (ref.started, ref.ended, ref.requested_nodes)
    assert math.isclose(fast.cost, ref.cost)


def test_a_loaded_fixed_cluster_skips_the_instants_where_nothing_can_start(monkeypatch):
    # One 8-GPU node busy with a long job; 1-GPU... arrivals keep coming while it is full.
    arrivals = [Arrival("long", 0, 8, 10_000)] + [Arrival(f"s{i}", 10.0 * i + 5, 8, 100) for i in range(20)]
    fast = Simulation(arrivals, [fixed(1)], SimConfig()).run()
    ref = reference_run(arrivals, [fixed(1)], SimConfig(), monkeypatch)
    assert fast.started == ref.started
    # The reference runs a cycle at each of the 20 arrivals; the fast loop at none of them.
    assert ref.cycles - fast.cycles >= 20
