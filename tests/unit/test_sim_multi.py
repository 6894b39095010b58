"""Several simulated clusters on one clock, with a router choosing where each experiment goes."""

from __future__ import annotations

import pytest

from shipyard.core.clusters import ClusterOption, RoleDemand, choose_cluster, summarize
from shipyard.sim import (
    Arrival,
    SimCluster,
    SimPool,
    Simulation,
    gang_of_arrival,
    simulate,
    simulate_clusters,
)
from shipyard.spec import DEFAULT_MACHINE_TYPES

A100 = DEFAULT_MACHINE_TYPES["gpu-a100"]
ONPREM = SimCluster("onprem", (SimPool("rack", A100, max_nodes=1, static=True, start_nodes=1),))
CLOUD = SimCluster("cloud", (SimPool("gpu", A100, max_nodes=4),))


def fits_now_else_cloud(arrival: Arrival, sims) -> str:
    """Onprem when the capacity summary says it fits there now, else the cloud."""
    snap, pools, waiting = sims["onprem"].state()
    member = gang_of_arrival(arrival, A100).members
    demand = [RoleDemand(A100.name, len(member), member[0].request)]
    option = ClusterOption("onprem", "onprem", "gpu", summarize(snap, pools, waiting, snap.now))
    return "onprem" if choose_cluster(demand, [option])[0].tier == 0 else "cloud"


def test_each_arrival_sees_the_clusters_as_they_are_at_its_instant():
    arrivals = [Arrival("a", 0, 8, 100), Arrival("b", 10, 8, 50), Arrival("c", 200, 8, 10),
                Arrival("d", 200, 8, 10)]
    r = simulate_clusters(arrivals, [ONPREM, CLOUD], fits_now_else_cloud)
    # b finds the rack busy and goes to the cloud (one provisioning delay); c finds it free
    # again; d, at the same instant, finds c on it and goes to the cloud, where b's node is
    # still up (idle since 180).
    assert r.routed == {"a": "onprem", "b": "cloud", "c": "onprem", "d": "cloud"}
    onprem, cloud = r.clusters["onprem"], r.clusters["cloud"]
    assert onprem.started == {"a": 0, "c": 200} and cloud.started == {"b": 130, "d": 200}
    assert r.waits == (0.0, 0.0, 0.0, 120.0) and r.mean_wait_s == 30.0 and r.p95_wait_s == 120.0
    # The common end: the cloud removes its idle node 600 s + 30 s after d ends at 210.
    assert r.end_s == 210 + 630 and onprem.end_s == cloud.end_s == r.end_s
    assert onprem.node_s == {"rack": r.end_s}  # static: paid for the whole run
    assert onprem.busy_gpu_s == 8 * (100 + 10) and cloud.busy_gpu_s == 8 * (50 + 10)
    assert r.not_started == 0


def test_one_cluster_alone_runs_as_the_single_cluster_simulation_does():
    arrivals = [Arrival("a", 0, 8, 3600), Arrival("b", 10, 16, 600), Arrival("c", 100, 1, 100)]
    pool = SimPool("gpu-a100", A100, max_nodes=10)
    alone = simulate(arrivals, [pool])
    multi = simulate_clusters(arrivals, [SimCluster("only", (pool,))], lambda a, sims: "only")
    r = multi.clusters["only"]
    assert (r.started, r.ended, r.node_s, r.end_s) == (alone.started, alone.ended, alone.node_s, alone.end_s)
    assert r.busy_gpu_s == alone.busy_gpu_s == 8 * 3600 + 16 * 600 + 1 * 100


def test_the_state_is_what_a_controller_would_summarize():
    sim = Simulation([], CLOUD.pools)
    sim.arrive(Arrival("a", 5, 16, 100))
    snap, pools, waiting = sim.state()
    assert snap.now == 5 and snap.nodes == ()
    assert [(p.name, p.provisioning) for p in pools] == [("gpu", 2)]
    assert [w.gang for w in waiting] == ["a"]
    [machine] = summarize(snap, pools, waiting, snap.now).machines
    assert (machine.provisioning_nodes, machine.headroom_nodes, machine.queued_gangs) == (2, 2, 1)


def test_bad_routing_and_bad_arrivals_raise():
    with pytest.raises(ValueError, match="unknown cluster 'mars'"):
        simulate_clusters([Arrival("a", 0, 1, 1)], [ONPREM], lambda a, sims: "mars")
    with pytest.raises(ValueError, match="unique names"):
        simulate_clusters([], [ONPREM, ONPREM], lambda a, sims: "onprem")
    sim = Simulation([], ONPREM.pools)
    sim.arrive(Arrival("a", 10, 1, 1))
    with pytest.raises(ValueError, match="names must be unique"):
        sim.arrive(Arrival("a", 20, 1, 1))
    with pytest.raises(ValueError, match="before the clock"):
        sim.arrive(Arrival("b", 5, 1, 1))
