"""Quarantine strikes (controller/quarantine.py): K gang failures within a window."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shipyard.controller.quarantine import Strike, Strikes

nodes = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3)
events = st.lists(st.tuples(nodes, st.floats(0, 100)), max_size=40)


@given(events, st.integers(1, 4), st.floats(1, 50))
def test_a_node_is_reported_once_it_took_part_in_k_failures_within_the_window(evs, k, window):
    strikes = Strikes(k, window)
    now = 0.0
    history: dict[str, list[float]] = {}
    for names, dt in evs:
        now += dt
        reached = strikes.record(names, Strike("ns/x", now, "pod failed"))
        for node in set(names):
            history.setdefault(node, []).append(now)
            recent = [t for t in history[node] if now - t <= window]
            assert (node in reached) == (len(recent) >= k)
            assert len(strikes.by_node[node]) == len(recent)
