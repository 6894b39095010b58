"""The free-level arithmetic is a lower bound: what it says fits does fit, on every
resource, and one replica more would not (unless nothing limits it)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shipyard.core.cluster_summary import LEVELS
from shipyard.core.model import Resources
from shipyard.core.summary_solver import MANY, NOTHING, ChargedLevels, fill_levels, level_left, room

GIB = 1 << 30
nodes = st.builds(Resources, st.sampled_from([8_000, 96_000]), st.sampled_from([32 * GIB, 1152 * GIB]),
                  st.sampled_from([0, 1, 8]))
requests = st.builds(Resources, st.integers(0, 40_000), st.integers(0, 300 * GIB), st.integers(0, 8))


def free_of(level: int, node: Resources) -> tuple[float, ...]:
    return tuple(level * have / LEVELS for have in (node.cpu_milli, node.memory, node.gpus))


def fits(used: Resources, level: int, node: Resources) -> bool:
    return all(u <= f for u, f in zip((used.cpu_milli, used.memory, used.gpus), free_of(level, node), strict=True))


@given(st.integers(0, LEVELS), nodes, requests)
def test_room_is_exactly_what_surely_fits(level: int, node: Resources, r: Resources) -> None:
    n = room(level, NOTHING, node, r)
    if n == MANY:
        assert r == NOTHING  # only a request for nothing is not limited
        return
    assert fits(r.scaled(n), level, node)
    assert not fits(r.scaled(n + 1), level, node)


@given(st.integers(0, LEVELS), nodes, requests, st.integers(0, 20))
def test_the_level_left_never_overstates_what_is_free(level: int, node: Resources, r: Resources, n: int) -> None:
    used = r.scaled(min(n, room(level, NOTHING, node, r)))
    left = level_left(level, used, node)
    assert 0 <= left <= level
    # What is surely free at the new level is there on top of what was charged.
    for have, u in ((node.cpu_milli, used.cpu_milli), (node.memory, used.memory), (node.gpus, used.gpus)):
        assert left * have / LEVELS + u <= level * have / LEVELS + 1e-9


@given(nodes, st.lists(st.integers(0, 3), min_size=LEVELS + 1, max_size=LEVELS + 1),
       st.lists(st.tuples(requests, st.integers(0, 12)), min_size=1, max_size=3))
def test_placement_and_charging_agree_on_what_fits(node: Resources, levels: list[int],
                                                   roles: list[tuple[Resources, int]]) -> None:
    """The summary's placement (by level counts) and the ledger's (node by node) place as
    many replicas of one role on as many nodes; the exact charge never overfills a node."""
    r, replicas = roles[0]
    if r == NOTHING:
        return
    used, rest = fill_levels([(r, replicas)], node, levels)
    charged = ChargedLevels(list(levels))
    charged.place(node, r, replicas)
    left = sum(n for _, n in rest)
    # A node charged m replicas of r has room for exactly m fewer.
    placed = sum(room(n.base, NOTHING, node, r) - n.room(node, r) for n in charged.touched)
    assert placed == replicas - left
    assert len(charged.touched) == used
    for n in charged.touched:
        assert fits(n.used, n.base, node)
    assert sum(charged.fresh) + len(charged.touched) == sum(levels)
