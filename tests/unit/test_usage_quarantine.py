"""Quarantine strikes (controller/quarantine.py): failures of K different gangs within a window."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.controller.quarantine import (
    PROBLEM_CHARS,
    Strike,
    Strikes,
    strikes_from_text,
    strikes_text,
)

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


@given(st.lists(st.tuples(experiments, st.integers(1_600_000_000, 1_800_000_000),
                          st.text(max_size=300)), max_size=5))
def test_stored_strikes_read_back_to_the_second_with_problems_clipped(items):
    strikes = [Strike(e, float(at), p) for e, at, p in items]
    back = strikes_from_text(strikes_text(strikes))
    assert back == [Strike(s.experiment, s.at, s.problem[:PROBLEM_CHARS]) for s in strikes]


@pytest.mark.parametrize("text", [None, "", "{", "[1]", '[{"at": "x"}]', '{"a": 1}', '[{"at": null}]'])
def test_a_damaged_strikes_annotation_reads_as_none(text):
    assert strikes_from_text(text) == []
