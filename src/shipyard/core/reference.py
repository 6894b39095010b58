"""The naive reference policy: strict order, first-fit over every node for every pod.

Kept as the yardstick for the benchmark (bench/policy_cycle.py) and as an oracle in
tests; the real cycle is queueing.schedule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shipyard.core.model import Admission, CycleResult, Gang, Node, Resources, Snapshot, Waiting
from shipyard.core.placement import eligible
from shipyard.core.queueing import scheduling_order


def place_gang_naive(
    gang: Gang, nodes: Sequence[Node], free: Mapping[str, Resources]
) -> dict[str, str] | None:
    """Member name -> node name by best fit over every node, or None."""
    remaining = dict(free)
    order = sorted(gang.members, key=lambda m: (m.request.gpus, m.request.cpu_milli,
                                                m.request.memory), reverse=True)
    placement: dict[str, str] = {}
    for member in order:
        best: tuple[tuple[int, int, int], str] | None = None
        for node in nodes:
            left = remaining[node.name]
            if not member.request.fits_in(left) or not eligible(member, node):
                continue
            after = left - member.request
            candidate = ((after.gpus, after.cpu_milli, after.memory), node.name)
            if best is None or candidate < best:
                best = candidate
        if best is None:
            return None
        remaining[best[1]] = remaining[best[1]] - member.request
        placement[member.name] = best[1]
    return placement


def schedule_naive(snapshot: Snapshot, *, strict: bool = True) -> CycleResult:
    """Admit in order while gangs fit. `strict`: the first that does not fit blocks the
    rest (the first policy shipyard had); otherwise every gang is tried."""
    free = {n.name: n.free for n in snapshot.nodes}
    admitted: list[Admission] = []
    waiting: list[Waiting] = []
    blocked = False
    for gang in scheduling_order(snapshot.pending):
        placement = None if blocked else place_gang_naive(gang, snapshot.nodes, free)
        if placement is None:
            blocked = strict
            waiting.append(Waiting(gang.key, len(waiting) + 1, "blocked"))
            continue
        for member in gang.members:
            free[placement[member.name]] = free[placement[member.name]] - member.request
        admitted.append(Admission(gang.key, placement))
    return CycleResult(tuple(admitted), tuple(waiting))
