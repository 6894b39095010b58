"""The capacity summary's `freeing` (nodes free by when, from running gangs' ends) and the
`--cluster auto` wait it gives."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.core.clusters import ClusterCapacity, ClusterOption, RoleDemand, choose_cluster, summarize
from shipyard.core.model import Gang, Member, Node, Running, Snapshot

from .builders import NODE, res

TYPE = "node.kubernetes.io/instance-type"


def busy_cluster(limits: list[float | None], foreign: int = 0, now: float = 1000.0):
    """One whole-node gang per node (started at 0, these time limits); `foreign` nodes
    more hold pods that are not ours."""
    nodes, runs = [], []
    for i, limit in enumerate(limits):
        g = Gang(f"g{i}", "default", 0, 0.0, (Member("w", 0, NODE, {TYPE: "gpu-a100"}),), limit)
        runs.append(Running(g, {"w-0": f"n{i}"}, 0.0))
        nodes.append(Node(f"n{i}", NODE, {TYPE: "gpu-a100"}, used=NODE))
    nodes += [Node(f"x{i}", NODE, {TYPE: "gpu-a100"}, used=NODE) for i in range(foreign)]
    return Snapshot(tuple(nodes), (), now, tuple(runs))


def option(cap: ClusterCapacity) -> ClusterOption:
    return ClusterOption("c", "onprem", "any", cap)


def test_nodes_free_up_at_their_gangs_time_limits_and_unknown_ends_are_left_out():
    snap = busy_cluster([1600.0, 4600.0, None], foreign=1)
    [mc] = summarize(snap, [], [], snap.now).machines
    assert mc.freeing == ((1600.0, 1), (4600.0, 2))
    # A progress ETA sooner than the limit counts instead.
    [mc] = summarize(snap, [], [], snap.now, etas={"g1": 2000.0}).machines
    assert mc.freeing == ((1600.0, 1), (2000.0, 2))
    cap = summarize(snap, [], [], snap.now)
    assert ClusterCapacity.from_status(json.loads(json.dumps(cap.to_status()))) == cap


def test_the_auto_wait_is_when_enough_nodes_have_freed_up_and_a_guess_past_that():
    cap = summarize(busy_cluster([1600.0, 4600.0, None]), [], [], 1000.0)
    two = [RoleDemand("gpu-a100", 2, res(8))]
    [score] = choose_cluster(two, [option(cap)])
    assert score.tier == 2 and score.wait_s == 3600.0
    assert "as the running work there ends" in score.reason
    # Read later, the same summary promises less wait.
    assert choose_cluster(two, [option(cap)], now=2000.0)[0].wait_s == 2600.0
    # Three nodes: the third has no known end, so it is the guess from how full they are.
    [score] = choose_cluster([RoleDemand("gpu-a100", 3, res(8))], [option(cap)])
    assert score.wait_s == 3600.0 and "is a guess: work there has no known end" in score.reason


def test_a_summary_without_freeing_still_reads():
    status = summarize(busy_cluster([1600.0]), [], [], 1000.0).to_status()
    del status["machines"][0]["freeing"]
    assert ClusterCapacity.from_status(status).machines[0].freeing == ()
    status["machines"][0]["freeing"] = [[5.0, 2], [4.0, 3]]
    with pytest.raises(ValueError, match="freeing: expected seconds and nodes rising"):
        ClusterCapacity.from_status(status)


@given(st.lists(st.one_of(st.none(), st.floats(0, 10**6)), max_size=40), st.integers(0, 5))
def test_freeing_is_bounded_rising_and_never_promises_a_node_sooner(limits, foreign):
    snap = busy_cluster(limits, foreign, now=0.0)
    [mc] = summarize(snap, [], [], 0.0).machines or [None]
    if mc is None:
        return
    known = sorted(x for x in limits if x is not None)
    assert len(mc.freeing) <= 8 and [n for _, n in mc.freeing] == sorted({n for _, n in mc.freeing})
    assert (mc.freeing[-1][1] if mc.freeing else 0) == len(known)
    for at, n in mc.freeing:  # n nodes are free by `at`: the n-th end is no later
        assert known[n - 1] <= at
