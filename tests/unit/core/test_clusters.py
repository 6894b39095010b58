"""Several clusters: the capacity summary a cluster publishes, and where a gang should go."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.core.autoscale import PoolState
from shipyard.core.clusters import (
    ClusterCapacity,
    ClusterOption,
    MachineCapacity,
    RoleDemand,
    choose_cluster,
    demand_for,
    summarize,
)
from shipyard.core.model import (
    WAIT_CAPACITY,
    WAIT_NEVER,
    WAIT_QUOTA,
    Gang,
    Member,
    Node,
    Resources,
    Snapshot,
    Waiting,
)
from shipyard.spec import ClusterRef, Experiment

from .builders import GIB, NODE, res

TYPE = "node.kubernetes.io/instance-type"
CPU_NODE = Resources(32_000, 128 * GIB, 0)
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def typed(name: str, machine: str, used: Resources = Resources(), alloc: Resources = NODE, **kw) -> Node:
    return Node(name, alloc, {TYPE: machine}, used=used, **kw)


def pool(name: str, machine: str, *, alloc: Resources = NODE, cost: float = 10.0, max_nodes: int = 10,
         static: bool = False, nodes: tuple[str, ...] = (), provisioning: int = 0,
         unavailable_until: float = 0.0) -> PoolState:
    return PoolState(name, Node(f"{name}-template", alloc, {TYPE: machine}), cost, 0, max_nodes, 0, 600.0,
                     static, nodes, provisioning, unavailable_until)


def waiting_gang(key: str, *roles: tuple[str, int, Resources]) -> Gang:
    members = tuple(Member(f"r{i}", j, r, {TYPE: machine})
                    for i, (machine, n, r) in enumerate(roles) for j in range(n))
    return Gang(key, "default", 0, 0.0, members)


def machine(name: str = "gpu-a100", *, node: Resources = NODE, free: dict[int, int] | None = None,
            busy: int = 0, queued_gangs: int = 0, queued: Resources = Resources(), provisioning: int = 0,
            headroom: int = 0, cost: float = 0.0) -> MachineCapacity:
    """A machine type's summary: `free` maps level -> nodes, plus `busy` full nodes."""
    levels = [0] * 9
    for k, n in (free or {}).items():
        levels[k] += n
    levels[0] += busy
    return MachineCapacity(name, node, sum(levels), tuple(levels), queued_gangs, queued, provisioning,
                           headroom, cost)


def cluster(*machines: MachineCapacity) -> ClusterCapacity:
    total = sum(m.node.gpus * m.nodes for m in machines)
    return ClusterCapacity(tuple(machines), total, 0, 0.0)


def gpus(n_replicas: int, per: int = 8, machine_type: str = "gpu-a100") -> RoleDemand:
    return RoleDemand(machine_type, n_replicas, res(per))


def cpus(n_replicas: int, cores: int = 16, machine_type: str = "cpu-large") -> RoleDemand:
    return RoleDemand(machine_type, n_replicas, Resources(cores * 1000, 32 * GIB, 0))


def option(name: str, capacity: ClusterCapacity | None, *, prefer: str = "any", location: str = "cloud",
           **kw) -> ClusterOption:
    return ClusterOption(name, location, prefer, capacity, **kw)


def order(scores) -> list[str]:
    return [s.cluster for s in scores]


# -- summarize ------------------------------------------------------------------------


def test_summary_counts_usable_nodes_by_type_and_level_and_leaves_out_the_rest():
    nodes = (
        typed("a1", "gpu-a100"),  # wholly free: level 8
        typed("a2", "gpu-a100", used=res(4)),  # half free: level 4
        typed("a3", "gpu-a100", used=res(7)),  # 1/8 free: level 1
        typed("a4", "gpu-a100", used=res(8)),  # full: level 0
        typed("a5", "gpu-a100", used=res(1), ready=False),
        typed("a6", "gpu-a100", schedulable=False),
        typed("c1", "cpu-large", used=Resources(20_000, 0, 0), alloc=CPU_NODE),  # 12/32 CPU free: level 3
        Node("unlabelled", NODE),
    )
    s = summarize(Snapshot(nodes), [], [], now=42.0)
    assert [m.machine_type for m in s.machines] == ["cpu-large", "gpu-a100"]
    a100, cpu = s.machine("gpu-a100"), s.machine("cpu-large")
    assert a100 is not None and cpu is not None
    assert a100.nodes == 4 and a100.free_levels == (1, 1, 0, 0, 1, 0, 0, 0, 1)
    assert cpu.free_levels == (0, 0, 0, 1, 0, 0, 0, 0, 0) and cpu.node == CPU_NODE
    # GPU totals: every usable node, labelled or not.
    assert (s.total_gpus, s.running_gpus, s.updated_at) == (5 * 8, 4 + 7 + 8, 42.0)


def test_the_level_is_set_by_the_scarcest_resource_so_it_never_overstates_room():
    # All GPUs free, but another pod took 7/8 of the CPU: only 1/8 of the node is surely free.
    s = summarize(Snapshot((typed("a1", "gpu-a100", used=Resources(56_000, 0, 0)),)), [], [], 0.0)
    assert s.machines[0].free_levels == (0, 1, 0, 0, 0, 0, 0, 0, 0)


def test_summary_takes_pools_growth_room_price_and_the_queue_for_capacity():
    nodes = (typed("a1", "gpu-a100", used=res(8)), typed("a2", "gpu-a100", used=res(8)),
             typed("s1", "gpu-a100", used=res(8)))
    pools = [
        pool("cheap", "gpu-a100", cost=20.0, max_nodes=5, nodes=("a1", "a2"), provisioning=1),
        pool("dear", "gpu-a100", cost=30.0, max_nodes=4),
        pool("broken", "gpu-a100", cost=5.0, max_nodes=9, unavailable_until=100.0),  # in a backoff
        pool("rack", "gpu-a100", static=True, max_nodes=1, nodes=("s1",)),
        pool("cpu", "cpu-large", alloc=CPU_NODE, cost=1.5, max_nodes=3),  # scaled to zero
    ]
    mixed = waiting_gang("mixed", ("gpu-a100", 2, res(8)), ("cpu-large", 1, Resources(4000, GIB, 0)))
    small = waiting_gang("small", ("gpu-a100", 1, res(2)))
    quota = waiting_gang("quota", ("gpu-a100", 4, res(8)))
    elsewhere = waiting_gang("other", ("gpu-h100", 1, res(8)))
    snap = Snapshot(nodes, (mixed, small, quota, elsewhere))
    waiting = [Waiting("mixed", 1, "", kind=WAIT_CAPACITY), Waiting("small", 2, "", kind=WAIT_NEVER),
               Waiting("quota", 3, "", kind=WAIT_QUOTA), Waiting("other", 4, "", kind=WAIT_CAPACITY),
               Waiting("mixed", 5, "", kind=WAIT_CAPACITY)]  # listed twice: counted once
    s = summarize(snap, pools, waiting, now=50.0)
    a100, cpu = s.machine("gpu-a100"), s.machine("cpu-large")
    assert a100 is not None and cpu is not None and s.machine("gpu-h100") is None
    assert (a100.queued_gangs, a100.queued) == (2, res(8).scaled(2) + res(2))
    assert a100.provisioning_nodes == 1 and a100.static_nodes == 1
    # cheap: 5 - 2 - 1; dear: 4; broken is skipped until its backoff ends, static never grows.
    assert a100.headroom_nodes == 2 + 4 and a100.max_nodes == 3 + 1 + 6
    assert a100.cost_per_hour == 20.0
    # A type with no node yet is there through its pool, sized by the pool's template.
    assert (cpu.nodes, cpu.node, cpu.headroom_nodes, cpu.cost_per_hour) == (0, CPU_NODE, 3, 1.5)
    assert (cpu.queued_gangs, cpu.queued) == (1, Resources(4000, GIB, 0))


def test_a_type_with_only_static_pools_costs_nothing_more():
    s = summarize(Snapshot((typed("s1", "gpu-a100"),)), [pool("rack", "gpu-a100", static=True,
                                                               nodes=("s1",), cost=50.0)], [], 0.0)
    assert s.machines[0].cost_per_hour == 0.0 and s.machines[0].headroom_nodes == 0


def test_the_summary_grows_with_machine_types_not_nodes():
    nodes = tuple(typed(f"a{i}", "gpu-a100", used=res(i % 9)) for i in range(2000))
    s = summarize(Snapshot(nodes), [], [], 0.0)
    assert len(s.machines) == 1 and sum(s.machines[0].free_levels) == 2000
    assert len(json.dumps(s.to_status())) < 1000


def test_status_is_json_with_camel_case_keys_and_reads_back():
    s = cluster(machine(free={8: 2, 3: 1}, busy=4, queued_gangs=2, queued=res(16), provisioning=1,
                        headroom=3, cost=32.77),
                machine("cpu-large", node=CPU_NODE, free={8: 1}))
    status = json.loads(json.dumps(s.to_status()))
    assert set(status) == {"machines", "totalGpus", "runningGpus", "updatedAt"}
    assert status["machines"][0]["freeLevels"] == [4, 0, 0, 1, 0, 0, 0, 0, 2]
    assert status["machines"][0]["headroomNodes"] == 3
    assert ClusterCapacity.from_status(status) == s


def test_status_with_missing_keys_reads_as_empty():
    s = ClusterCapacity.from_status({"machines": [{"machineType": "gpu-a100"}]})
    assert s.total_gpus == 0 and s.machines[0].free_levels == (0,) * 9 and s.machines[0].node == Resources()
    assert ClusterCapacity.from_status({}).machines == ()


@pytest.mark.parametrize(("status", "message"), [
    ([], "expected a mapping, got list"),
    ({"machines": {}}, "machines: expected a list"),
    ({"totalGpus": "many"}, "totalGpus: expected a whole number >= 0, got 'many'"),
    ({"runningGpus": -1}, "runningGpus: expected a whole number >= 0, got -1"),
    ({"updatedAt": True}, "updatedAt: expected a number"),
    ({"machines": [{"nodes": 1}]}, "machines[0]: machineType: expected a machine type name"),
    ({"machines": [{"machineType": "x", "freeLevels": [1, 2]}]}, "freeLevels: expected a list of 9"),
    ({"machines": [{"machineType": "x", "freeLevels": [0] * 8 + [1.5]}]}, "got 1.5"),
    ({"machines": [{"machineType": "x", "node": {"gpus": "8"}}]}, "machines[0].node: gpus"),
    ({"machines": [{"machineType": "x", "queued": 3}]}, "machines[0].queued: expected a mapping"),
    ({"machines": [{"machineType": "x", "costPerHour": float("nan")}]}, "costPerHour: expected a number"),
])
def test_garbage_status_raises_a_clear_value_error(status, message):
    with pytest.raises(ValueError, match="capacity status") as info:
        ClusterCapacity.from_status(status)
    assert message in str(info.value)


# -- choose_cluster ---------------------------------------------------------------------


def test_fits_now_beats_scale_up_beats_waiting():
    wait = option("wait", cluster(machine(busy=4)))
    grow = option("grow", cluster(machine(busy=4, headroom=4, cost=30.0)))
    now = option("now", cluster(machine(free={8: 2}, busy=2, cost=30.0)))
    scores = choose_cluster([gpus(2)], [wait, grow, now])
    assert order(scores) == ["now", "grow", "wait"]
    assert [s.tier for s in scores] == [0, 1, 2]
    assert scores[0].reason == "fits now: 2 x gpu-a100 free of 4"
    assert scores[0].cost_per_hour == 60.0 and scores[0].wait_s == 0.0
    assert scores[1].reason == "fits after scale-up: needs 2 x gpu-a100, 0 free; 2 new node(s) at $30.00/h"
    assert scores[1].wait_s == 120.0 and scores[1].cost_per_hour == 60.0
    assert scores[2].reason.startswith("must wait about")


def test_scale_up_prefers_the_cheapest_new_nodes_with_cost_factor_and_uses_free_nodes_first():
    dear = option("dear", cluster(machine(free={8: 1}, busy=1, headroom=8, cost=40.0)))
    cheap = option("cheap", cluster(machine(busy=2, headroom=8, cost=40.0)), cost_factor=0.5)
    scores = choose_cluster([gpus(3)], [dear, cheap])
    # dear needs 2 new nodes at $40 (80/h); cheap needs 3 at $20 (60/h).
    assert order(scores) == ["cheap", "dear"]
    assert [s.cost_per_hour for s in scores] == [60.0, 80.0]
    assert "needs 3 x gpu-a100, 1 free; 2 new node(s) at $40.00/h" in scores[1].reason


def test_a_queue_ahead_uses_the_growth_room_first():
    # 3 nodes of room, but 2 gangs of 2 whole nodes queue ahead with one node on its way.
    busy = machine(busy=2, headroom=3, provisioning=1, queued_gangs=2, queued=res(8).scaled(4))
    [score] = choose_cluster([gpus(1)], [option("c", cluster(busy))])
    assert score.tier == 2
    assert "2 gang(s) queued ahead" in score.reason and "pools allow 3 more node(s)" in score.reason
    # Estimate: 4 nodes ahead + 1 missing = 5 to free up; the 2 there free up within a runtime
    # (an hour), the other 3 at 1/6 runtime each (6 nodes at most).
    assert score.wait_s == pytest.approx(3600 * (1 + 3 / 6))
    [score] = choose_cluster([gpus(1)], [option("c", cluster(busy))], typical_runtime_s=600.0)
    assert score.wait_s == pytest.approx(900.0)


def test_the_wait_is_that_of_the_emptiest_busy_nodes():
    # Both full for an 8-GPU replica; one has a node with 6/8 free, the other 1/8 at most.
    nearly = option("nearly", cluster(machine(free={6: 1}, busy=3)), prefer="cpu")
    packed = option("packed", cluster(machine(free={1: 2}, busy=2)), prefer="gpu")
    scores = choose_cluster([gpus(1)], [packed, nearly])
    assert order(scores) == ["nearly", "packed"]
    assert [s.wait_s for s in scores] == [3600 * 2 / 8, 3600 * 7 / 8]
    assert choose_cluster([gpus(2)], [nearly])[0].wait_s == 3600.0  # the 2nd emptiest is full


def test_free_capacity_goes_to_the_queue_ahead_first():
    # Two free nodes, but a gang of two whole nodes waits ahead (say, for a third one).
    held = machine(free={8: 2}, busy=1, queued_gangs=1, queued=res(8).scaled(3))
    [score] = choose_cluster([gpus(1)], [option("c", cluster(held))])
    assert score.tier == 2 and "1 gang(s) queued ahead" in score.reason
    # A queued 1-GPU replica takes one GPU of the emptiest node: 7 are left there, not 8.
    small = machine(free={8: 1}, queued_gangs=1, queued=res(1))
    assert choose_cluster([gpus(7, per=1)], [option("c", cluster(small))])[0].tier == 0
    assert choose_cluster([gpus(1)], [option("c", cluster(small))])[0].tier == 2


def test_room_left_on_nodes_already_coming_counts_as_scale_up_at_no_extra_cost():
    # One node on its way for a queued 1-GPU gang, no more room: a second 1-GPU gang rides along.
    coming = machine(busy=1, provisioning=1, queued_gangs=1, queued=res(1), cost=30.0)
    [score] = choose_cluster([gpus(1, per=1)], [option("c", cluster(coming))])
    assert (score.tier, score.cost_per_hour, score.wait_s) == (1, 0.0, 120.0)
    assert score.reason == "fits after scale-up: needs 1 x gpu-a100, 0 free, room on 1 on their way"
    # 7 GPUs are left on it: 8 more would need a new node.
    assert choose_cluster([gpus(7, per=1)], [option("c", cluster(coming))])[0].tier == 1
    assert choose_cluster([gpus(8, per=1)], [option("c", cluster(coming))])[0].tier == 2


def test_among_waits_the_shorter_estimate_goes_first_even_against_preference():
    long = option("a-long", cluster(machine(busy=4, queued_gangs=3, queued=res(8).scaled(12))),
                  prefer="gpu")
    short = option("b-short", cluster(machine(busy=4, queued_gangs=1, queued=res(8))), prefer="cpu")
    scores = choose_cluster([gpus(2)], [long, short])
    assert order(scores) == ["b-short", "a-long"] and scores[0].wait_s < scores[1].wait_s
    # Equal waits: preference decides.
    same = option("a-first", cluster(machine(busy=4, queued_gangs=3, queued=res(8).scaled(12))),
                  prefer="cpu")
    assert order(choose_cluster([gpus(2)], [same, long])) == ["a-long", "a-first"]


def test_gpu_work_prefers_a_gpu_cluster_and_cpu_work_a_cpu_cluster():
    both = (machine(free={8: 4}), machine("cpu-large", node=CPU_NODE, free={8: 4}))
    onprem = option("onprem", cluster(*both), prefer="gpu", location="onprem", cost_factor=3.0)
    cloud = option("cloud", cluster(*both), prefer="cpu")
    both_fit = [cloud, onprem]
    gpu_scores = choose_cluster([gpus(2)], both_fit)
    assert order(gpu_scores) == ["onprem", "cloud"]
    assert [s.preference for s in gpu_scores] == [0, 1]
    assert order(choose_cluster([cpus(2)], both_fit)) == ["cloud", "onprem"]
    # A mixed gang with any GPUs counts as GPU work.
    assert order(choose_cluster([cpus(4), gpus(1)], both_fit)) == ["onprem", "cloud"]


def test_preference_never_beats_a_better_tier():
    onprem = option("onprem", cluster(machine(busy=4)), prefer="gpu", location="onprem")
    cloud = option("cloud", cluster(machine(headroom=4, cost=30.0)), prefer="cpu")
    assert order(choose_cluster([gpus(1)], [onprem, cloud])) == ["cloud", "onprem"]


def test_within_a_tier_cost_then_name_decide():
    a, b, c = (option(n, cluster(machine(free={8: 2}, cost=cost))) for n, cost in
               (("b", 5.0), ("a", 5.0), ("c", 1.0)))
    assert order(choose_cluster([gpus(1)], [a, b, c])) == ["c", "a", "b"]


def test_machine_types_are_mapped_to_each_clusters_own_names():
    onprem = cluster(machine("a100-80g", free={8: 2}))
    unmapped = option("onprem", onprem)
    mapped = option("onprem", onprem, machine_types={"gpu-a100": "a100-80g"})
    [score] = choose_cluster([gpus(1)], [unmapped])
    assert score.tier == 3 and score.wait_s == math.inf
    assert score.reason == "cannot run here: no gpu-a100 nodes or node pools here (it has: a100-80g)"
    [score] = choose_cluster([gpus(1)], [mapped])
    assert score.tier == 0 and score.reason == "fits now: 1 x a100-80g (for gpu-a100) free of 2"


def test_a_gang_larger_than_the_cluster_at_max_or_a_replica_larger_than_a_node_cannot_run():
    small = option("small", cluster(machine(free={8: 2}, provisioning=1, headroom=1)))
    [score] = choose_cluster([gpus(5)], [small])
    assert score.tier == 3 and "needs 5 x gpu-a100, more than the cluster can ever have" in score.reason
    assert "(2 nodes + 1 provisioning + 1 more allowed by its pools)" in score.reason
    [score] = choose_cluster([RoleDemand("gpu-a100", 1, res(16))], [small])
    assert score.tier == 3 and "more than a whole gpu-a100 node has" in score.reason


def test_an_unreachable_cluster_is_skipped_with_a_reason():
    scores = choose_cluster([gpus(1)], [option("gone", None, prefer="gpu"),
                                        option("never", cluster(machine("cpu-large", node=CPU_NODE)))])
    assert order(scores) == ["never", "gone"] and [s.tier for s in scores] == [3, 4]
    assert scores[1].reason.startswith("unreachable: no capacity summary")


def test_free_levels_count_only_their_lower_bound():
    # A node at level 3 has between 3/8 and 4/8 free: surely 3 GPUs, not 4.
    c = cluster(machine(free={3: 1}, busy=1))
    assert choose_cluster([gpus(1, per=3)], [option("c", c)])[0].tier == 0
    assert choose_cluster([gpus(1, per=4)], [option("c", c)])[0].tier == 2
    # Two 1-GPU replicas fit on one level-3 node ... and three, but not four.
    assert choose_cluster([gpus(3, per=1)], [option("c", c)])[0].tier == 0
    assert choose_cluster([gpus(4, per=1)], [option("c", c)])[0].tier == 2


def test_a_mixed_gang_fits_only_where_every_role_fits():
    gang = [gpus(2), cpus(3, cores=16)]  # two 8-GPU nodes, three half CPU nodes (two nodes)
    gpu_only = option("gpu-only", cluster(machine(free={8: 4})))
    both = option("both", cluster(machine(free={8: 2}), machine("cpu-large", node=CPU_NODE, free={8: 2},
                                                                      cost=1.5)))
    short_of_cpu = option("short", cluster(machine(free={8: 2}),
                                           machine("cpu-large", node=CPU_NODE, free={8: 1}, headroom=5,
                                                   cost=1.5)))
    scores = choose_cluster(gang, [gpu_only, short_of_cpu, both])
    assert order(scores) == ["both", "short", "gpu-only"]
    assert [s.tier for s in scores] == [0, 1, 3]
    assert scores[0].reason == "fits now: 2 x gpu-a100 free of 2; 2 x cpu-large free of 2"
    # Only the new nodes are priced: one CPU node.
    assert scores[1].cost_per_hour == 1.5
    assert "cannot run here: no cpu-large" in scores[2].reason


def test_roles_of_one_type_share_a_node():
    # A 4-GPU launcher and a 4-GPU worker fill one free node together.
    one_node = option("c", cluster(machine(free={8: 1})))
    [score] = choose_cluster([gpus(1, per=4), RoleDemand("gpu-a100", 1, res(4))], [one_node])
    assert score.tier == 0 and score.reason == "fits now: 1 x gpu-a100 free of 1"


def test_an_experiment_and_a_configured_cluster_become_demand_and_an_option():
    exp = Experiment.model_validate({"name": "e", "roles": [
        {"name": "trainer", "replicas": 2, "machine_type": "gpu-a100", "command": "python t.py"},
        {"name": "eval", "machine_type": "cpu-large", "command": "python e.py",
         "resources": {"cpu": 4, "memory": "8Gi"}}]})
    trainer, evaluator = demand_for(exp)
    a100 = exp.catalog()["gpu-a100"]
    assert trainer == RoleDemand("gpu-a100", 2, Resources(a100.allocatable_cpu, a100.allocatable_memory, 8))
    assert evaluator == RoleDemand("cpu-large", 1, Resources(4000, 8 * GIB, 0))
    ref = ClusterRef(name="onprem", context="ctx", location="onprem", prefer="gpu", cost_factor=0.5,
                     machine_types={"gpu-a100": "a100-80g"})
    opt = ClusterOption.from_ref(ref, None)
    assert opt == ClusterOption("onprem", "onprem", "gpu", None, {"gpu-a100": "a100-80g"}, 0.5)


def test_bad_demand_or_options_raise():
    with pytest.raises(ValueError, match="no replicas"):
        choose_cluster([], [option("c", cluster(machine()))])
    with pytest.raises(ValueError, match="duplicate cluster name"):
        choose_cluster([gpus(1)], [option("c", None), option("c", None)])


# -- properties -----------------------------------------------------------------------

REQUESTS = [res(1), res(2), res(4), res(8), res(3, cpu=40, mem_gib=100), res(0, cpu=20, mem_gib=300)]


@st.composite
def real_clusters(draw) -> tuple[Snapshot, list[Resources]]:
    """Up to 4 nodes of one type with random used resources; returns the snapshot and the free."""
    nodes = []
    for i in range(draw(st.integers(1, 4))):
        used = Resources(draw(st.integers(0, 64)) * 1000, draw(st.integers(0, 512)) * GIB,
                         draw(st.integers(0, 8)))
        nodes.append(typed(f"n{i}", "gpu-a100", used=used))
    return Snapshot(tuple(nodes)), [n.free for n in nodes]


def feasible(free: list[Resources], replicas: list[Resources]) -> bool:
    """Exact: can every replica be put on some node (backtracking, tiny inputs)?"""
    if not replicas:
        return True
    r, rest = replicas[0], replicas[1:]
    seen = set()
    for i, f in enumerate(free):
        if f in seen or not r.fits_in(f):
            continue
        seen.add(f)
        if feasible([*free[:i], f - r, *free[i + 1:]], rest):
            return True
    return False


@SETTINGS
@given(real_clusters(), st.lists(st.tuples(st.sampled_from(REQUESTS), st.integers(1, 3)),
                                 min_size=1, max_size=2))
def test_fits_now_is_never_optimistic(world, roles):
    snap, free = world
    summary = summarize(snap, [], [], 0.0)
    demand = [RoleDemand("gpu-a100", n, r) for r, n in roles]
    [score] = choose_cluster(demand, [option("c", summary)])
    if score.tier == 0:
        assert feasible(free, [r for r, n in roles for _ in range(n)])


def summaries() -> st.SearchStrategy[ClusterCapacity]:
    levels = st.lists(st.integers(0, 3), min_size=9, max_size=9).map(tuple)
    one = st.builds(
        MachineCapacity,
        machine_type=st.sampled_from(["gpu-a100", "cpu-large", "a100-80g"]),
        node=st.sampled_from([NODE, CPU_NODE]),
        nodes=st.integers(0, 20), free_levels=levels, queued_gangs=st.integers(0, 5),
        queued=st.sampled_from([Resources(), res(8), res(8).scaled(7)]),
        provisioning_nodes=st.integers(0, 3), headroom_nodes=st.integers(0, 6),
        cost_per_hour=st.sampled_from([0.0, 1.5, 32.77]), static_nodes=st.integers(0, 4),
    )
    return st.builds(lambda ms, total, run, at: ClusterCapacity(
        tuple({m.machine_type: m for m in ms}.values()), total, run, at),
        st.lists(one, max_size=3), st.integers(0, 200), st.integers(0, 200),
        st.floats(0, 2e9, allow_nan=False))


@SETTINGS
@given(summaries())
def test_status_round_trips_through_json(summary):
    assert ClusterCapacity.from_status(json.loads(json.dumps(summary.to_status()))) == summary


@SETTINGS
@given(st.lists(st.one_of(st.none(), summaries()), min_size=1, max_size=5),
       st.lists(st.tuples(st.sampled_from(["gpu-a100", "cpu-large"]), st.integers(1, 4),
                          st.sampled_from(REQUESTS)), min_size=1, max_size=3),
       st.lists(st.sampled_from(["gpu", "cpu", "any"]), min_size=5, max_size=5))
def test_a_cluster_where_it_fits_now_ranks_above_every_one_where_it_does_not(caps, roles, prefers):
    options = [option(f"c{i}", c, prefer=p, cost_factor=1.0 + i) for i, (c, p) in
               enumerate(zip(caps, prefers, strict=False))]
    demand = [RoleDemand(t, n, r) for t, n, r in roles]
    scores = choose_cluster(demand, options)
    assert sorted(order(scores)) == sorted(o.name for o in options)
    tiers = [s.tier for s in scores]
    assert tiers == sorted(tiers)
    for better, worse in itertools.combinations(scores, 2):
        if better.tier == worse.tier == 2:
            assert better.wait_s <= worse.wait_s
        elif better.tier == worse.tier:
            assert better.preference <= worse.preference
    for s, o in ((s, next(o for o in options if o.name == s.cluster)) for s in scores):
        assert (s.tier == 4) == (o.capacity is None)
        assert s.reason and "\n" not in s.reason
