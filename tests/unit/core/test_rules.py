"""One example per rule of the scheduling policy, on small hand-built clusters."""

from __future__ import annotations

from shipyard.core.model import (
    WAIT_NEVER,
    WAIT_NO_QUEUE,
    WAIT_PREEMPTING,
    WAIT_QUOTA,
    WAIT_RESERVED,
    WAIT_TOPOLOGY,
    Node,
    Policy,
    Queue,
    Resources,
    Snapshot,
    Taint,
    Toleration,
    Topology,
)
from shipyard.core.queueing import schedule

from .builders import BLOCK, NODE, RACK, gang, node, res, running, with_used


def admitted(result) -> list[str]:
    return [a.gang for a in result.admitted]


def waiting(result, key: str):
    return next(w for w in result.waiting if w.gang == key)


def nodes(n: int, per_rack: int = 4, per_block: int = 8) -> list[Node]:
    return [node(f"n{i:02d}", rack=f"r{i // per_rack}", block=f"b{i // per_block}")
            for i in range(n)]


# -- order --------------------------------------------------------------------

def test_higher_priority_goes_first_even_if_submitted_later():
    snap = Snapshot(tuple(nodes(1)), (gang("old", at=0), gang("urgent", priority=10, at=5)))
    result = schedule(snap)
    assert admitted(result) == ["urgent"]
    assert waiting(result, "old").position == 1


def test_within_a_priority_the_queue_with_the_lower_weighted_share_goes_first():
    # 6 nodes. team-a (weight 2) runs 2: share 2/6/2 = 1/6; team-b (weight 1) runs 2:
    # share 1/3. Two nodes are free: both go to team-a (1/6, then 3/6/2 = 1/4 < 1/3),
    # although team-b submitted first.
    runs = [running(gang(f"{q}{i}", queue=f"team-{q}"), [f"n0{k}"])
            for k, (q, i) in enumerate([("a", 0), ("a", 1), ("b", 0), ("b", 1)])]
    queues = (Queue("team-a", weight=2), Queue("team-b"))
    pending = (gang("b2", queue="team-b", at=0), gang("a2", queue="team-a", at=1),
               gang("a3", queue="team-a", at=2))
    snap = Snapshot(with_used(nodes(6), runs), pending, 10, tuple(runs), queues)
    result = schedule(snap)
    assert admitted(result) == ["a2", "a3"]
    assert waiting(result, "b2").reason.endswith("position 1 in queue team-b")


def test_submission_time_breaks_ties_within_a_queue():
    result = schedule(Snapshot(tuple(nodes(1)), (gang("second", at=2), gang("first", at=1))))
    assert admitted(result) == ["first"]


# -- quota and borrowing -------------------------------------------------------

def test_a_gang_over_its_queues_limit_waits_with_the_resource_named():
    q = Queue("team-a", nominal=Resources(10**9, 10**15, 8), borrowing_limit=Resources(0, 0, 8))
    runs = [running(gang("a0", queue="team-a"), ["n00"])]
    snap = Snapshot(with_used(nodes(4), runs), (gang("a1", 2, queue="team-a"),), 0,
                    tuple(runs), (q,))
    w = waiting(schedule(snap), "a1")
    assert w.kind == WAIT_QUOTA
    assert "would use 24 GPUs, over its limit of 16" in w.reason


def test_beyond_nominal_a_queue_borrows_idle_capacity():
    q = Queue("team-a", nominal=Resources(10**9, 10**15, 8))
    result = schedule(Snapshot(tuple(nodes(4)), (gang("a1", 1, queue="team-a"),
                                                 gang("a2", 1, queue="team-a", at=1)),
                               0, (), (q,)))
    assert [(a.gang, a.borrowing) for a in result.admitted] == [("a1", False), ("a2", True)]


def test_a_queue_within_nominal_reclaims_borrowed_capacity_first():
    # team-b borrowed the whole cluster; team-a (same priority) asks for its nominal.
    qa = Queue("team-a", nominal=Resources(10**9, 10**15, 16))
    qb = Queue("team-b", nominal=Resources(10**9, 10**15, 16))
    runs = [running(gang(f"b{i}", queue="team-b", at=i), [f"n0{i}"], started=i)
            for i in range(4)]
    snap = Snapshot(with_used(nodes(4), runs), (gang("a1", 1, queue="team-a", at=10),),
                    100, tuple(runs), (qa, qb))
    result = schedule(snap)
    assert [(p.gang, p.for_gang) for p in result.preempted] == [("b3", "a1")]  # newest
    assert "over its nominal quota" in result.preempted[0].reason
    assert waiting(result, "a1").kind == WAIT_PREEMPTING


# -- placement ------------------------------------------------------------------

def test_whole_gang_or_nothing():
    # 3 free nodes: a 4-node gang gets none of them, and a 1-node gang behind it runs.
    runs = [running(gang("busy", 1, limit=60), ["n03"])]
    snap = Snapshot(with_used(nodes(4), runs), (gang("four", 4), gang("one", 1, at=1, limit=30)),
                    0, tuple(runs))
    result = schedule(snap)
    assert admitted(result) == ["one"]
    assert waiting(result, "four").starts_at == 60


def test_small_pods_fill_partly_used_nodes_and_keep_empty_nodes_whole():
    runs = [running(gang("half", gpus=4), ["n01"])]
    snap = Snapshot(with_used(nodes(2), runs), (gang("two-gpus", gpus=2),
                                                gang("whole", gpus=8, at=1)), 0, tuple(runs))
    result = schedule(snap)
    placed = {a.gang: a.placement for a in result.admitted}
    assert placed["two-gpus"] == {"worker-0": "n01"}
    assert placed["whole"] == {"worker-0": "n00"}


def test_machine_type_is_respected():
    gpu = node("gpu", taints=(Taint("nvidia.com/gpu", "present"),),
               labels={"node.kubernetes.io/instance-type": "gpu-a100"})
    cpu = node("cpu", allocatable=Resources(32_000, 128 * 2**30, 0),
               labels={"node.kubernetes.io/instance-type": "cpu-large"})
    want_gpu = gang("train", request=res(8), selector={"node.kubernetes.io/instance-type":
                                                       "gpu-a100"})
    plain = gang("eval", request=res(0, cpu=4, mem_gib=8), at=1)
    result = schedule(Snapshot((gpu, cpu), (want_gpu, plain)))
    # train has no toleration for the GPU taint: it can never start; eval goes to cpu.
    assert waiting(result, "train").kind == WAIT_NEVER
    assert "no node matches its machine type" in waiting(result, "train").reason
    assert {a.gang: a.placement["worker-0"] for a in result.admitted} == {"eval": "cpu"}
    tolerating = gang("train2", request=res(8), at=2)
    tolerating = type(tolerating)(**{**{f: getattr(tolerating, f) for f in (
        "key", "queue", "priority", "submitted_at", "time_limit_s", "topology")},
        "members": tuple(type(m)(m.role, m.index, m.request, m.node_selector,
                                 (Toleration("nvidia.com/gpu", "present"),))
                         for m in tolerating.members)})
    result = schedule(Snapshot((gpu, cpu), (tolerating,)))
    assert result.admitted[0].placement == {"worker-0": "gpu"}


def test_a_gang_is_kept_in_one_rack_when_one_can_hold_it():
    # Rack r0 has 2 free nodes, r1 has 4: a 3-node gang goes wholly into r1.
    runs = [running(gang("busy", 2), ["n00", "n01"])]
    snap = Snapshot(with_used(nodes(8), runs), (gang("three", 3),), 0, tuple(runs))
    placement = schedule(snap).admitted[0].placement
    assert {p[:2] for p in placement.values()} == {"n0"}
    assert {int(p[1:]) // 4 for p in placement.values()} == {1}


def test_the_fullest_rack_that_fits_is_chosen():
    # r0 has 2 free nodes, r1 has 4: a 2-node gang takes r0 and keeps r1 whole.
    runs = [running(gang("busy", 2), ["n00", "n01"])]
    snap = Snapshot(with_used(nodes(8), runs), (gang("two", 2),), 0, tuple(runs))
    assert set(schedule(snap).admitted[0].placement.values()) == {"n02", "n03"}


def test_required_topology_waits_rather_than_spread():
    # Two racks with 2 free nodes each: 3 nodes fit only spread.
    runs = [running(gang("busy", 4), ["n00", "n01", "n04", "n05"])]
    snap_nodes = with_used(nodes(8, per_rack=4, per_block=4), runs)
    required = gang("strict", 3, topology=Topology(BLOCK, required=True))
    preferred = gang("loose", 3, topology=Topology(BLOCK), at=1)
    result = schedule(Snapshot(snap_nodes, (required,), 0, tuple(runs)), Policy(backfill=False))
    w = waiting(result, "strict")
    assert w.kind == WAIT_TOPOLOGY
    assert f"within one {BLOCK}; the roomiest has 2 such node(s) free" in w.reason
    result = schedule(Snapshot(snap_nodes, (preferred,), 0, tuple(runs)))
    assert len(result.admitted[0].placement) == 3


def test_topology_labels_may_be_missing():
    bare = tuple(Node(f"m{i}", NODE) for i in range(3))
    assert len(schedule(Snapshot(bare, (gang("g", 3),))).admitted) == 1


# -- preemption ---------------------------------------------------------------

def test_higher_priority_preempts_the_fewest_cheapest_lower_priority_gangs():
    # Needs 2 nodes. Candidates: a 2-node gang (one victim) or two 1-node gangs.
    runs = [running(gang("pair", 2, priority=0), ["n00", "n01"], started=50),
            running(gang("solo-a", 1, priority=0), ["n02"], started=60),
            running(gang("solo-b", 1, priority=0), ["n03"], started=70),
            running(gang("vip-run", 1, priority=5), ["n04"], started=80)]
    snap = Snapshot(with_used(nodes(5, per_rack=8), runs), (gang("vip", 2, priority=5),), 100,
                    tuple(runs))
    result = schedule(snap)
    victims = sorted(p.gang for p in result.preempted)
    assert len(victims) in (1, 2) and "vip-run" not in victims
    assert all(p.for_gang == "vip" for p in result.preempted)
    assert "lower priority" in result.preempted[0].reason
    # Newest first, then spare the unneeded: the two newest single gangs suffice.
    assert victims == ["solo-a", "solo-b"]
    assert waiting(result, "vip").kind == WAIT_PREEMPTING


def test_equal_priority_in_the_same_queue_is_never_preempted():
    runs = [running(gang("first", 2), ["n00", "n01"])]
    snap = Snapshot(with_used(nodes(2), runs), (gang("second", 2, at=5),), 10, tuple(runs))
    result = schedule(snap)
    assert result.preempted == () and result.admitted == ()


def test_preemption_can_be_switched_off():
    runs = [running(gang("low", 1), ["n00"])]
    snap = Snapshot(with_used(nodes(1), runs), (gang("high", 1, priority=9),), 0, tuple(runs))
    assert schedule(snap, Policy(preemption=False)).preempted == ()


# -- backfill -------------------------------------------------------------------

def test_backfill_starts_a_short_gang_that_ends_before_the_reserved_start():
    # 4 nodes; one runs until t=3600. "big" needs all 4 and is blocked until then.
    runs = [running(gang("busy", 1, limit=3600), ["n00"], started=0)]
    cluster = with_used(nodes(4), runs)
    pending = (gang("big", 4, at=0), gang("short", 1, at=1, limit=1800),
               gang("long", 1, at=2, limit=7200), gang("forever", 1, at=3))
    result = schedule(Snapshot(cluster, pending, 0, tuple(runs)))
    assert admitted(result) == ["short"]
    assert result.admitted[0].backfill
    big = waiting(result, "big")
    assert big.starts_at == 3600 and big.position == 1
    assert "expected to start in 1h 0m" in big.reason
    long = waiting(result, "long")
    assert long.kind == WAIT_RESERVED
    assert "held for big, which starts in 1h 0m; a time limit under 1h 0m" in long.reason
    assert waiting(result, "forever").kind == WAIT_RESERVED


def test_without_known_end_the_blocked_gang_holds_its_nodes_outright():
    runs = [running(gang("busy", 1), ["n00"], started=0)]  # no time limit
    cluster = with_used(nodes(2), runs)
    pending = (gang("big", 2, at=0), gang("short", 1, at=1, limit=60))
    result = schedule(Snapshot(cluster, pending, 0, tuple(runs)))
    assert admitted(result) == []
    assert "without a time limit" in waiting(result, "big").reason
    assert waiting(result, "big").starts_at is None


def test_a_gang_on_other_nodes_is_not_held_back():
    runs = [running(gang("busy", 1, limit=3600), ["n00"], started=0)]
    cluster = with_used(nodes(4), runs)
    pending = (gang("big", 3, at=0), gang("other", 1, at=1))
    # big fits at once on n01..n03; other waits for... nothing: there is no room left.
    result = schedule(Snapshot(cluster, pending, 0, tuple(runs)))
    assert admitted(result) == ["big"]


def test_strict_order_when_backfill_is_off():
    runs = [running(gang("busy", 1, limit=3600), ["n00"], started=0)]
    cluster = with_used(nodes(4), runs)
    pending = (gang("big", 4, at=0), gang("short", 1, at=1, limit=60))
    result = schedule(Snapshot(cluster, pending, 0, tuple(runs)), Policy(backfill=False))
    assert admitted(result) == []
    assert "waiting behind big" in waiting(result, "short").reason


# -- reasons and positions -----------------------------------------------------

def test_every_pending_gang_gets_a_position_and_an_actionable_reason():
    cluster = tuple(nodes(2))
    pending = (gang("a", 2, queue="team-a", at=0), gang("b", 4, queue="team-a", at=1),
               gang("c", 3, queue="team-b", at=2), gang("huge", 64, queue="team-b", at=3))
    result = schedule(Snapshot(cluster, pending))
    assert admitted(result) == ["a"]
    assert [w.position for w in result.waiting] == [1, 2, 3]
    by = {w.gang: w for w in result.waiting}
    assert by["huge"].kind == WAIT_NEVER
    assert by["huge"].reason.startswith("needs 64 x (64 CPU, 512 GiB, 8 GPU), more than all 2")
    assert by["b"].reason == (
        "needs 4 x (64 CPU, 512 GiB, 8 GPU), more than all 2 matching node(s) hold; it can "
        "never start here: make it smaller or add nodes; position 1 in queue team-a")
    assert by["c"].queue_position == 1
    assert by["huge"].queue_position == 2


def test_capacity_reason_counts_free_nodes_of_the_right_shape():
    runs = [running(gang("busy", 2, limit=None), ["n00", "n01"])]
    cluster = with_used(nodes(4), runs)
    result = schedule(Snapshot(cluster, (gang("w", 3),), 0, tuple(runs)),
                      Policy(reservations=0))
    assert waiting(result, "w").reason == (
        "needs 3 x (64 CPU, 512 GiB, 8 GPU); 2 such nodes free; position 1 in queue default")


def test_unknown_queue_is_named_with_the_known_ones():
    snap = Snapshot(tuple(nodes(1)), (gang("x", queue="nope"),), 0, (), (Queue("team-a"),))
    w = waiting(schedule(snap), "x")
    assert w.kind == WAIT_NO_QUEUE
    assert "queue 'nope' does not exist; create it or use one of team-a" in w.reason


def test_one_local_node_without_queues_works_as_before():
    local = Node("local", Resources(8000, 32 * 2**30, 2), used=Resources(4000, 0, 1))
    pending = (gang("a", 1, request=res(1, cpu=2, mem_gib=4)),
               gang("b", 1, request=res(2, cpu=2, mem_gib=4), at=1))
    result = schedule(Snapshot((local,), pending, 5.0))
    assert admitted(result) == ["a"]
    assert waiting(result, "b").position == 1
    assert RACK not in local.labels
