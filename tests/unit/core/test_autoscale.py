"""The autoscale planner: exact scale-ups for whole gangs, warm buffer, careful scale-down."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.api.vocab import TAINT_EARMARK
from shipyard.core.adapter import NodeViews
from shipyard.core.autoscale import (
    AutoscaleInput,
    AutoscalePlan,
    PoolState,
    plan,
)
from shipyard.core.model import (
    WAIT_CAPACITY,
    WAIT_QUOTA,
    CycleResult,
    Gang,
    Member,
    Node,
    Policy,
    Resources,
    Running,
    Snapshot,
    Taint,
    Toleration,
    Topology,
    Waiting,
)
from shipyard.core.queueing import schedule

from .builders import GIB, NODE, RACK, gang, node, res, running, with_used

TYPE = "node.kubernetes.io/instance-type"
A100 = {TYPE: "a100"}
H100 = {TYPE: "h100"}
CPU = {TYPE: "cpu-large"}
CPU_NODE = Resources(32_000, 128 * GIB, 0)


def template(labels: dict[str, str], alloc: Resources = NODE) -> Node:
    return Node("template", alloc, labels)


def pool(name: str, labels: dict[str, str], cost: float, *, alloc: Resources = NODE, min_nodes: int = 0,
         max_nodes: int = 100, warm: int = 0, idle_timeout: float = 600.0, **kw) -> PoolState:
    return PoolState(name, template(labels, alloc), cost, min_nodes, max_nodes, warm, idle_timeout, **kw)


def members(role: str, n: int, request: Resources, selector: dict[str, str]) -> tuple[Member, ...]:
    return tuple(Member(role, i, request, selector) for i in range(n))


def up(snap: Snapshot, pools: tuple[PoolState, ...], **kw) -> AutoscalePlan:
    """Plan with `waiting` straight from the scheduler, as the controller does."""
    result = schedule(snap)
    return plan(AutoscaleInput(snap, pools, result.waiting, admitted=result.admitted, **kw))


def counts(p: AutoscalePlan) -> dict[tuple[str | None, str], int]:
    return {(u.gang, u.pool): u.count for u in p.scale_up}


def waits(*keys: str, kind: str = WAIT_CAPACITY) -> tuple[Waiting, ...]:
    return tuple(Waiting(k, i + 1, "test", kind=kind) for i, k in enumerate(keys))


A = pool("a100", A100, 32.77)


# -- scale-up: exact counts ----------------------------------------------------------


def test_whole_node_gang_on_an_empty_pool_gets_exactly_one_node_per_member():
    p = up(Snapshot((), (gang("team-a/llm", 64, 8, selector=A100),)), (A,))
    assert counts(p) == {("team-a/llm", "a100"): 64}
    assert p.cannot_fit == ()
    assert "64 x a100 for team-a/llm" in p.scale_up[0].reason


def test_partial_node_members_are_packed():
    # 3 members of 4 GPUs on 8-GPU nodes: two nodes, not three.
    p = up(Snapshot((), (gang("g", 3, 4, selector=A100),)), (A,))
    assert counts(p) == {("g", "a100"): 2}


def test_mixed_gang_gets_nodes_of_each_machine_type_in_one_step():
    trainers = members("trainer", 4, res(8), A100)
    servers = members("ps", 3, Resources(10_000, 32 * GIB, 0), CPU)  # 3 fit on one 32-CPU node
    g = Gang("mixed", "default", 0, 0.0, trainers + servers)
    cpu = pool("cpu-large", CPU, 1.5, alloc=CPU_NODE)
    p = up(Snapshot((), (g,)), (A, cpu))
    assert counts(p) == {("mixed", "a100"): 4, ("mixed", "cpu-large"): 1}
    assert [u.pool for u in p.scale_up] == ["cpu-large", "a100"]  # cheapest first


def test_free_nodes_count_first():
    free = [node("n1"), node("n2"), node("busy", used=NODE)]
    p = up(Snapshot(tuple(free), (gang("g", 5, 8),)), (A,))
    assert counts(p) == {("g", "a100"): 3}


def test_capacity_given_to_an_earlier_gang_is_not_counted_again():
    free = (node("n1"), node("n2"))
    first, second = gang("first", 2, 8, at=0), gang("second", 2, 8, at=1)
    # Both waiting (e.g. held back this cycle): the free pair goes to the first only.
    p = plan(AutoscaleInput(Snapshot(free, (first, second)), (A,), waits("first", "second")))
    assert counts(p) == {("second", "a100"): 2}


def test_the_room_left_on_a_new_node_is_shared_with_the_next_gang():
    # a's second node keeps 4 GPUs free: b starts there once a has (its earmark ends).
    a, b = gang("a", 3, 4, at=0), gang("b", 1, 4, at=1)
    p = up(Snapshot((), (a, b)), (A,))
    assert counts(p) == {("a", "a100"): 2}
    assert [n.gang for n in p.on_the_way] == ["b"]
    # Without sharing (the plan before): each new node is only its own gang's.
    p = up(Snapshot((), (a, b)), (A,), share_coming=False)
    assert counts(p) == {("a", "a100"): 2, ("b", "a100"): 1} and p.on_the_way == ()


def test_only_waits_for_capacity_trigger_a_scale_up():
    g = gang("g", 2, 8)
    p = plan(AutoscaleInput(Snapshot((), (g,)), (A,), waits("g", kind=WAIT_QUOTA)))
    assert p.scale_up == () and p.cannot_fit == ()


def test_nodes_admitted_this_cycle_are_not_free():
    a, b = gang("a", 1, 8, at=0), gang("b", 1, 8, at=1)
    p = up(Snapshot((node("n1"),), (a, b)), (A,))  # a is admitted onto n1, b waits
    assert counts(p) == {("b", "a100"): 1}
    # The one behind a blocked gang starts on a free node: the blocked one needs one more.
    g, h = gang("g", 5, 8, at=0), gang("h", 1, 8, at=1)
    p = up(Snapshot((node("n1"), node("n2")), (g, h)), (A,))
    assert counts(p) == {("g", "a100"): 4}


# -- scale-up: which pool, and limits -----------------------------------------------

TOLERATE_GPU = (Toleration("gpu", "yes"),)


def any_gpu_gang(key: str, n: int) -> Gang:
    return Gang(key, "default", 0, 0.0, tuple(Member("w", i, res(8), {}, TOLERATE_GPU) for i in range(n)))


def gpu_pools(**a_kw) -> tuple[PoolState, ...]:
    taint = (Taint("gpu", "yes"),)
    a = replace(pool("a100", A100, 32.77, **a_kw), template=Node("t", NODE, A100, taint))
    h = replace(pool("h100", H100, 98.32), template=Node("t", NODE, H100, taint))
    return (h, a)


def test_the_cheapest_pool_that_fits_is_chosen():
    p = up(Snapshot((), (any_gpu_gang("g", 4),)), gpu_pools())
    assert counts(p) == {("g", "a100"): 4}


def test_an_unavailable_pool_is_skipped_and_another_is_tried():
    snap = Snapshot((), (any_gpu_gang("g", 4),), now=100.0)
    p = up(snap, gpu_pools(unavailable_until=160.0))
    assert counts(p) == {("g", "h100"): 4}
    later = up(replace(snap, now=160.0), gpu_pools(unavailable_until=160.0))
    assert counts(later) == {("g", "a100"): 4}


def test_when_the_cheap_pool_is_at_max_the_rest_comes_from_the_next():
    p = up(Snapshot((), (any_gpu_gang("g", 5),)), gpu_pools(max_nodes=3))
    assert counts(p) == {("g", "a100"): 3, ("g", "h100"): 2}


def test_max_nodes_counts_existing_and_provisioning_nodes():
    nodes = tuple(node(f"n{i}", used=NODE) for i in range(8))
    a = replace(A, max_nodes=12, nodes=tuple(n.name for n in nodes), provisioning=2)
    held = {"other": {"a100": 2}}  # the two on their way are another gang's
    p = up(Snapshot(nodes, (gang("g", 2, 8),)), (a,), earmarked=held)
    assert counts(p) == {("g", "a100"): 2}
    p = up(Snapshot(nodes, (gang("g", 3, 8),)), (a,), earmarked=held)
    assert p.scale_up == ()


def test_no_partial_scale_up_and_a_reason_to_act_on():
    a = replace(A, max_nodes=512)
    p = up(Snapshot((), (gang("team-a/huge", 600, 8, selector=A100), gang("small", 1, 8, at=1))), (a,))
    assert counts(p) == {("small", "a100"): 1}  # the one behind still gets its node
    [no] = p.cannot_fit
    assert no.gang == "team-a/huge"
    assert "at most 512 more" in no.reason and "max_nodes" in no.reason
    assert "600 x a100" in no.reason


def test_no_partial_scale_up_for_a_mixed_gang_when_one_type_is_at_max():
    g = Gang("mixed", "default", 0, 0.0,
             members("trainer", 2, res(8), A100) + members("ps", 1, Resources(10_000, GIB, 0), CPU))
    cpu = pool("cpu-large", CPU, 1.5, alloc=CPU_NODE, max_nodes=0)
    p = up(Snapshot((), (g,)), (A, cpu))
    assert p.scale_up == ()
    assert [n.gang for n in p.cannot_fit] == ["mixed"]


def test_a_machine_no_pool_offers_is_named():
    p = up(Snapshot((), (gang("g", 1, 8, selector={TYPE: "tpu"}),)), (A,))
    assert p.scale_up == ()
    assert "no growable node pool has a machine" in p.cannot_fit[0].reason


def test_required_topology_needs_labelled_templates():
    g = gang("g", 2, 8, topology=Topology(RACK, required=True))
    p = up(Snapshot((), (g,)), (A,))
    assert p.scale_up == () and RACK in p.cannot_fit[0].reason
    racked = replace(A, template=template({**A100, RACK: "r9"}))
    assert counts(up(Snapshot((), (g,)), (racked,))) == {("g", "a100"): 2}


def test_static_pools_are_never_grown():
    p = up(Snapshot((), (gang("g", 1, 8),)), (replace(A, static=True, warm_buffer=2, min_nodes=3),))
    assert p.scale_up == () and len(p.cannot_fit) == 1


def test_a_gang_no_new_node_helps_takes_what_ending_work_frees_before_the_next_counts_on_it():
    # A static pool of four: one free, one ending (time limit) in 60 s, before a new a100
    # (120 s) could be Ready. g0 needs two of them: no node helps it, but it starts in 60 s
    # on the free one and the ending one. g1 (a100 + one of them) comes after it, so the
    # free one is not g1's: an a100 for g1 would be paid and sit idle. Found by hypothesis
    # with look-ahead off (the default).
    t4 = {TYPE: "t4"}
    nodes = [node(f"t-{i}", labels=t4) for i in range(4)]
    runs = [running(gang(f"run-{i}", 1, 8, selector=t4, limit=1060.0 if i == 3 else None), [f"t-{i}"])
            for i in (1, 2, 3)]
    g0 = gang("g0", 2, 8, selector=t4)
    g1 = Gang("g1", "default", 0, 1.0, (Member("a", 0, res(8), A100), Member("t", 0, res(8), t4)))
    snap = Snapshot(with_used(nodes, runs), (g0, g1), 1000.0, tuple(runs))
    pools = (replace(A, max_nodes=1, provisioning_delay_s=120.0),
             pool("t4", t4, 4.0, static=True, nodes=tuple(n.name for n in nodes)))
    p = up(snap, pools)
    assert p.scale_up == ()
    assert [n.gang for n in p.ending_work] == ["g0"] and [n.gang for n in p.cannot_fit] == ["g1"]
    # Once the a100 could be Ready, g0 is the one that starts (what the plan must foresee).
    assert cycles(when_ready(snap, pools)) == {"g0"}


# -- earmarks -------------------------------------------------------------------------


def test_an_earmark_that_covers_the_gang_prevents_a_second_request():
    a = replace(A, provisioning=4)
    p = up(Snapshot((), (gang("g", 4, 8),)), (a,), earmarked={"g": {"a100": 4}})
    assert p.scale_up == () and p.cannot_fit == ()


def test_an_earmark_short_after_a_failure_gets_only_the_difference():
    a = replace(A, provisioning=3)
    p = up(Snapshot((), (gang("g", 4, 8),)), (a,), earmarked={"g": {"a100": 3}})
    assert counts(p) == {("g", "a100"): 1}


def test_registered_earmarked_nodes_count_for_their_gang_only():
    n1 = node("n1")  # arrived for `mine`, not yet used
    a = replace(A, nodes=("n1",), provisioning=1)
    mine, other = gang("mine", 2, 8, at=0), gang("other", 1, 8, at=1)
    inp = AutoscaleInput(Snapshot((n1,), (mine, other), now=5000.0), (a,), waits("mine", "other"),
                         earmarked={"mine": {"a100": 2}}, earmarked_nodes={"n1": "mine"},
                         idle_since={"n1": 0.0}, marked={"n1": 100.0})
    p = plan(inp)
    assert counts(p) == {("other", "a100"): 1}
    assert p.scale_down == () and p.mark == () and p.unmark == ("n1",)  # earmarked: protected


def test_an_earmarked_node_stays_its_gangs_when_its_pool_is_full():
    # The pool at its max: no hypothetical node to add, and the one node it has arrived
    # for `mine`. `other` may not count on it (nor does the planner trip on the empty pool).
    n1 = node("n1")
    a = replace(A, nodes=("n1",), max_nodes=1)
    mine, other = gang("mine", 1, 8, at=0), gang("other", 1, 8, at=1)
    inp = AutoscaleInput(Snapshot((n1,), (mine, other), now=5000.0), (a,), waits("mine", "other"),
                         earmarked={"mine": {"a100": 1}}, earmarked_nodes={"n1": "mine"})
    p = plan(inp)
    assert counts(p) == {} and p.scale_down == ()


def test_earmarked_nodes_registered_but_not_ready_are_not_asked_for_again():
    # Kubernetes shows a new node before it is Ready; placement cannot use it yet,
    # so it must still count as coming, not as arrived (and then missing).
    booting = (replace(node("n1"), ready=False), replace(node("n2"), ready=False))
    a = replace(A, nodes=("n1", "n2"), provisioning=2)
    inp = AutoscaleInput(Snapshot(booting, (gang("g", 4, 8),), now=10.0), (a,), waits("g"),
                         earmarked={"g": {"a100": 4}}, earmarked_nodes={"n1": "g", "n2": "g"})
    assert plan(inp).scale_up == ()


# -- warm buffer and min_nodes --------------------------------------------------------


def test_warm_buffer_is_topped_up_counting_idle_and_unclaimed_provisioning_nodes():
    nodes = (node("n1"), node("n2", used=NODE))
    a = replace(A, warm_buffer=3, nodes=("n1", "n2"))
    p = plan(AutoscaleInput(Snapshot(nodes), (a,), idle_since={"n1": 0.0}))
    assert counts(p) == {(None, "a100"): 2}
    p = plan(AutoscaleInput(Snapshot(nodes), (replace(a, provisioning=1),), idle_since={"n1": 0.0}))
    assert counts(p) == {(None, "a100"): 1}
    # Provisioning nodes earmarked for a gang are not warm.
    p = plan(AutoscaleInput(Snapshot(nodes), (replace(a, provisioning=1),), idle_since={"n1": 0.0},
                            earmarked={"g": {"a100": 1}}))
    assert counts(p) == {(None, "a100"): 2}


def test_warm_buffer_stays_within_max_and_skips_unavailable_pools():
    p = plan(AutoscaleInput(Snapshot(()), (replace(A, warm_buffer=5, max_nodes=2),)))
    assert counts(p) == {(None, "a100"): 2}
    p = plan(AutoscaleInput(Snapshot((), now=10.0), (replace(A, warm_buffer=5, unavailable_until=20.0),)))
    assert p.scale_up == ()


def test_min_nodes_is_restored():
    p = plan(AutoscaleInput(Snapshot(()), (replace(A, min_nodes=3, provisioning=1),)))
    assert counts(p) == {(None, "a100"): 2}
    assert "min_nodes" in p.scale_up[0].reason


def test_a_gang_on_idle_nodes_makes_room_for_a_fresh_warm_buffer():
    nodes = (node("n1"), node("n2"))
    a = replace(A, warm_buffer=2, nodes=("n1", "n2"))
    g = gang("g", 3, 8)  # takes both idle nodes and one new one
    p = up(Snapshot(nodes, (g,)), (a,), idle_since={"n1": 0.0, "n2": 0.0})
    assert counts(p) == {("g", "a100"): 1, (None, "a100"): 2}


# -- scale-down -----------------------------------------------------------------------


def idle_pool(n: int, **kw) -> tuple[tuple[Node, ...], PoolState]:
    nodes = tuple(node(f"n{i:02d}") for i in range(n))
    return nodes, replace(A, nodes=tuple(x.name for x in nodes), **kw)


def test_decide_wait_recheck():
    nodes, a = idle_pool(1)
    since = {"n00": 0.0}
    p = plan(AutoscaleInput(Snapshot(nodes, now=599.0), (a,), idle_since=since))
    assert p.mark == ()  # not idle long enough
    p = plan(AutoscaleInput(Snapshot(nodes, now=600.0), (a,), idle_since=since))
    assert p.mark == ("n00",) and p.scale_down == ()
    p = plan(AutoscaleInput(Snapshot(nodes, now=620.0), (a,), idle_since=since, marked={"n00": 600.0}))
    assert p.mark == () and p.unmark == () and p.scale_down == ()  # still waiting
    p = plan(AutoscaleInput(Snapshot(nodes, now=630.0), (a,), idle_since=since, marked={"n00": 600.0}))
    assert [d.nodes for d in p.scale_down] == [("n00",)]  # a one-node pool can reach zero
    # Work arrived before the re-check: the mark is dropped, nothing is removed.
    p = plan(AutoscaleInput(Snapshot(nodes, now=630.0), (a,), marked={"n00": 600.0}))
    assert p.unmark == ("n00",) and p.scale_down == ()


def test_at_most_half_a_pool_per_step_idlest_first():
    nodes, a = idle_pool(10)
    since = {x.name: float(i) for i, x in enumerate(nodes)}
    marked = dict.fromkeys(since, 700.0)
    p = plan(AutoscaleInput(Snapshot(nodes, now=1000.0), (a,), idle_since=since, marked=marked))
    assert [d.nodes for d in p.scale_down] == [("n00", "n01", "n02", "n03", "n04")]


def test_min_nodes_and_warm_buffer_are_kept():
    nodes, a = idle_pool(6, min_nodes=2, warm_buffer=3)
    since = {x.name: 0.0 for x in nodes}
    marked = dict.fromkeys(since, 0.0)
    p = plan(AutoscaleInput(Snapshot(nodes, now=1000.0), (a,), idle_since=since, marked=marked))
    [d] = p.scale_down
    assert len(d.nodes) == 3  # 6 idle, 3 kept warm
    assert len(p.unmark) == 3  # the kept ones are no longer candidates
    p = plan(AutoscaleInput(Snapshot(nodes, now=1000.0), (replace(a, warm_buffer=0, min_nodes=5),),
                            idle_since=since, marked=marked))
    assert sum(len(d.nodes) for d in p.scale_down) == 1


def test_nothing_is_removed_under_a_running_gang():
    nodes, a = idle_pool(2)
    g = gang("run", 1, 1)
    runs = [running(g, ["n00"])]
    # idle_since claims n00 is idle (a stale view): the running member still protects it.
    since = {"n00": 0.0, "n01": 0.0}
    inp = AutoscaleInput(Snapshot(with_used(list(nodes), runs), now=5000.0, running=tuple(runs)), (a,),
                         idle_since=since, marked=dict.fromkeys(since, 0.0))
    p = plan(inp)
    assert [d.nodes for d in p.scale_down] == [("n01",)]
    assert p.unmark == ("n00",)


def test_idle_nodes_a_waiting_gang_will_use_are_not_removed():
    nodes, a = idle_pool(2)
    since = dict.fromkeys(("n00", "n01"), 0.0)
    g = gang("g", 3, 8)
    p = plan(AutoscaleInput(Snapshot(nodes, (g,), now=5000.0), (a,), waits("g"), idle_since=since,
                            marked=dict.fromkeys(since, 0.0)))
    assert counts(p) == {("g", "a100"): 1}
    assert p.scale_down == () and p.unmark == ("n00", "n01")


def test_most_expensive_pool_first_and_static_pools_never_shrink():
    cheap = tuple(node(f"c{i}") for i in range(2))
    dear = tuple(node(f"d{i}") for i in range(2))
    onprem = (node("s0"),)
    pools = (replace(A, name="cheap", nodes=("c0", "c1")),
             replace(A, name="dear", cost_per_hour=98.0, nodes=("d0", "d1")),
             replace(A, name="onprem", static=True, nodes=("s0",)))
    since = {x.name: 0.0 for x in cheap + dear + onprem}
    p = plan(AutoscaleInput(Snapshot(cheap + dear + onprem, now=5000.0), pools, idle_since=since,
                            marked=dict.fromkeys(since, 0.0)))
    assert [d.pool for d in p.scale_down] == ["dear", "cheap"]
    assert p.unmark == ("s0",)


def test_duplicate_pool_names_are_an_error():
    with pytest.raises(ValueError, match="duplicate"):
        plan(AutoscaleInput(Snapshot(()), (A, A)))


# -- properties -----------------------------------------------------------------------

# No max_examples here: the profile decides (ci: the default 100; dev: many more).
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def worlds(draw) -> tuple[Snapshot, tuple[PoolState, ...], dict[str, float], dict[str, float]]:
    """Two to three pools (8-GPU, 4-GPU, CPU), some nodes busy, gangs of one or two roles."""
    kinds = [("a100", A100, NODE, 32.77), ("t4x4", {TYPE: "t4x4"}, Resources(32_000, 256 * GIB, 4), 4.0),
             ("cpu", CPU, CPU_NODE, 1.5)]
    chosen = draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=3, unique_by=lambda k: k[0]))
    pools, nodes, runs = [], [], []
    for name, labels, alloc, cost in chosen:
        n = draw(st.integers(0, 4))
        mine = [Node(f"{name}-{i}", alloc, labels) for i in range(n)]
        for x in mine:
            if draw(st.booleans()):  # busy with a one-pod gang taking all of it
                # Started at 0 with no limit, or one that ends at 1060, 1600 or later.
                limit = draw(st.sampled_from([None, 1060.0, 1600.0, 1e6]))
                g = Gang(f"run-{x.name}", "default", 0, -1.0, (Member("w", 0, alloc, labels),), limit)
                runs.append(running(g, [x.name]))
        nodes += mine
        pools.append(PoolState(
            name, template(labels, alloc), cost, draw(st.integers(0, 2)), n + draw(st.integers(0, 8)),
            draw(st.integers(0, 2)), 600.0, static=draw(st.integers(0, 5)) == 0,
            nodes=tuple(x.name for x in mine), provisioning=0,
            unavailable_until=draw(st.sampled_from([0.0, 0.0, 5000.0])),
            provisioning_delay_s=draw(st.sampled_from([0.0, 120.0]))))
    pending = []
    for k in range(draw(st.integers(0, 5))):
        roles: tuple[Member, ...] = ()
        for r in range(draw(st.integers(1, 2))):
            _, labels, alloc, _ = draw(st.sampled_from(chosen))
            frac = draw(st.sampled_from([1, 2, 4]))
            request = Resources(alloc.cpu_milli // frac, alloc.memory // frac, alloc.gpus // frac)
            roles += members(f"r{r}", draw(st.integers(1, 6)), request, labels)
        pending.append(Gang(f"g{k}", "default", draw(st.integers(0, 1)), float(k), roles))
    snap = Snapshot(with_used(nodes, runs), tuple(pending), 1000.0, tuple(runs))
    since = {x.name: draw(st.sampled_from([0.0, 900.0])) for x in nodes if draw(st.booleans())}
    marked = {x: draw(st.sampled_from([0.0, 990.0])) for x in since if draw(st.booleans())}
    return snap, tuple(pools), since, marked


CYCLE = Policy(preemption=False, reservations=0)


def applied(snap: Snapshot, pools: tuple[PoolState, ...], p: AutoscalePlan) -> Snapshot:
    """The snapshot once the nodes requested for gangs have registered, each earmarked for
    its gang (a taint only that gang tolerates, which is how the planner treats them).
    Warm-buffer nodes are left out: spare room could only change who goes where."""
    by_name = {x.name: x for x in pools}
    new: list[Node] = []
    earmarks: dict[str, str] = {}  # node -> gang
    for u in p.scale_up:
        if u.gang is None:
            continue
        t = by_name[u.pool].template
        for i in range(u.count):
            new.append(Node(f"{u.pool}-{u.gang}-{i}", t.allocatable, t.labels, t.taints))
            earmarks[new[-1].name] = u.gang
    views = NodeViews().snapshot(new, {}, earmarks, snap.pending, snap.now)  # core/adapter.py's
    return replace(snap, nodes=snap.nodes + views.nodes, pending=views.pending)


def cycles(snap: Snapshot) -> set[str]:
    """The gangs admitted by cycles on `snap` until one admits nothing more: a gang
    planned onto the room another gang leaves on its new nodes starts once that one has
    started (its earmark, which only it tolerates, ends then; a controller's next cycle
    follows at once)."""
    done: set[str] = set()
    while True:
        result = schedule(snap, CYCLE)
        if not result.admitted:
            return done
        done |= {a.gang for a in result.admitted}
        snap = admit(snap, result)
        snap = replace(snap, nodes=tuple(
            replace(n, taints=tuple(t for t in n.taints if t.key != TAINT_EARMARK or t.value not in done))
            for n in snap.nodes))


def admit(snap: Snapshot, result: CycleResult) -> Snapshot:
    """The snapshot once the cycle's admissions run (the plan counts their nodes taken)."""
    gangs = {g.key: g for g in snap.pending}
    runs = [Running(gangs[a.gang], a.placement, snap.now) for a in result.admitted]
    done = {a.gang for a in result.admitted}
    return replace(snap, nodes=with_used(list(snap.nodes), runs), running=snap.running + tuple(runs),
                   pending=tuple(g for g in snap.pending if g.key not in done))


def when_ready(snap: Snapshot, pools: tuple[PoolState, ...]) -> Snapshot:
    """The snapshot once new nodes could be Ready: running work whose time limit ends
    before a node like its own could be (its growable pool's delay, else the fastest
    growable pool's) is gone."""
    growable = [x for x in pools if not x.static and snap.now >= x.unavailable_until]
    fastest = min((x.provisioning_delay_s for x in growable), default=0.0)
    delay = {n: x.provisioning_delay_s for x in growable for n in x.nodes}

    def gone(run: Running) -> bool:  # the worlds' runs hold one node each
        ahead = delay.get(next(iter(run.placement.values())), fastest)
        return ahead > 0 and run.ends_at is not None and run.ends_at <= snap.now + ahead

    left = [r for r in snap.running if not gone(r)]
    bare = [replace(n, used=Resources()) for n in snap.nodes]
    return replace(snap, nodes=with_used(bare, left), running=tuple(left))


@SETTINGS
@given(worlds())
def test_every_gang_given_nodes_then_fits_and_no_pool_goes_over_max(world):
    snap, pools, since, marked = world
    result = schedule(snap, CYCLE)
    p = plan(AutoscaleInput(snap, pools, result.waiting, idle_since=since, marked=marked,
                            admitted=result.admitted), CYCLE)
    # The next cycles, once the nodes are Ready: what this cycle admitted is running
    # (leaving it pending would let a gang ahead take the room the plan saw it take).
    started = cycles(applied(when_ready(admit(snap, result), pools), pools, p))
    got = {u.gang for u in p.scale_up if u.gang}
    later = {n.gang for n in p.ending_work}
    shared = {n.gang for n in p.on_the_way}
    assert got | later | shared <= started, p
    # Decided once each: a gang gets nodes, waits for running work, shares nodes on
    # their way, or gets a reason.
    assert not got & {n.gang for n in p.cannot_fit}
    assert not later & (got | {n.gang for n in p.cannot_fit})
    assert not shared & (got | later | {n.gang for n in p.cannot_fit})
    for x in pools:
        asked = sum(u.count for u in p.scale_up if u.pool == x.name)
        if x.static or snap.now < x.unavailable_until:
            assert asked == 0
        assert len(x.nodes) + x.provisioning + asked <= max(x.max_nodes, len(x.nodes))


@SETTINGS
@given(worlds())
def test_scale_down_spares_running_work_and_keeps_min_and_warm(world):
    snap, pools, since, marked = world
    p = plan(AutoscaleInput(snap, pools, schedule(snap, CYCLE).waiting, idle_since=since, marked=marked),
             CYCLE)
    busy = {n for r in snap.running for n in r.placement.values()}
    removed = {n for d in p.scale_down for n in d.nodes}
    assert not removed & busy
    assert removed <= set(marked) and not set(p.mark) & set(marked)
    assert not set(p.mark) & set(p.unmark)
    for x in pools:
        gone = [n for n in x.nodes if n in removed]
        if x.static:
            assert not gone
        if gone:
            assert len(x.nodes) - len(gone) >= x.min_nodes
            assert len(gone) <= max(1, len(x.nodes) // 2)
            still_idle = [n for n in x.nodes if n in since and n not in removed and n not in busy]
            assert len(still_idle) >= x.warm_buffer
    assert plan(AutoscaleInput(snap, pools, schedule(snap, CYCLE).waiting, idle_since=since,
                               marked=marked), CYCLE) == p  # deterministic


@SETTINGS
@given(worlds())
def test_the_first_gang_given_nodes_would_not_fit_with_one_fewer(world):
    """Exact counts: beside what the cycle admitted, one node less of any pool is too few.
    A gang that waits for new nodes counts only what is free now (what running work frees
    before they are Ready would sit unheld meanwhile), so with no gang ahead of it waiting
    for running work, one fewer is too few even once that work has ended."""
    snap, pools, _, _ = world
    result = schedule(snap, CYCLE)
    p = plan(AutoscaleInput(snap, pools, result.waiting, admitted=result.admitted), CYCLE)
    ups = [u for u in p.scale_up if u.gang]
    if not ups:
        return
    first = ups[0].gang
    mine = [u for u in ups if u.gang == first]
    # Alone but for the gangs before it that wait for running work (they take what it frees).
    ahead = {n.gang for n in p.ending_work}
    order = [w.gang for w in result.waiting]
    keep = {g for g in ahead if order.index(g) < order.index(first)} | {first}
    ready = when_ready(admit(snap, result), pools)
    alone = replace(ready, pending=tuple(g for g in snap.pending if g.key in keep))

    def admitted(ups: tuple) -> bool:
        cycle = schedule(applied(alone, pools, replace(p, scale_up=ups)), CYCLE)
        return first in {a.gang for a in cycle.admitted}

    assert admitted(tuple(mine))
    if keep != {first}:
        return  # the gangs ahead may leave some of what ends free: fewer may fit then
    alone = replace(alone, nodes=admit(snap, result).nodes, running=admit(snap, result).running)
    for i, u in enumerate(mine):
        assert not admitted((*mine[:i], replace(u, count=u.count - 1), *mine[i + 1:])), u
