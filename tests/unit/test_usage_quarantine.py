"""Quarantine strikes (controller/quarantine.py): failures of K different gangs within a window."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shipyard.controller.quarantine import Strike, Strikes

nodes = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3)
experiments = st.sampled_from(["ns/x", "ns/y", "ns/z", "ns/w"])
events = st.lists(st.tuples(nodes, experiments, st.floats(0, 100)), max_size=40)


@given(events, st.integers(1, 4), st.floats(1, 50))
def test_a_node_is_reported_once_k_different_experiments_failed_there_within_the_window(
        evs, k, window):
    strikes = Strikes(k, window)
    now = 0.0
    history: dict[str, list[tuple[float, str]]] = {}
    for names, exp, dt in evs:
        now += dt
        reached = strikes.record(names, Strike(exp, now, "pod failed"))
        for node in set(names):
            history.setdefault(node, []).append((now, exp))
            recent = {e for t, e in history[node] if now - t <= window}
            assert (node in reached) == (len(recent) >= k)
            assert len(strikes.by_node[node]) == len(recent)  # one strike per experiment


def test_one_experiment_failing_again_and_again_does_not_quarantine_its_nodes():
    strikes = Strikes(after=2, window_s=3600)
    for i in range(10):
        assert strikes.record(["a", "b"], Strike("ns/buggy", float(i), f"failure {i}")) == []
    assert strikes.by_node["a"] == [Strike("ns/buggy", 9.0, "failure 9")]  # the latest is the evidence
    assert strikes.record(["b", "c"], Strike("ns/other", 10.0, "pod failed")) == ["b"]
