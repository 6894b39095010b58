"""One scheduling cycle: order the pending gangs, admit each that fits in turn."""

from __future__ import annotations

from shipyard.core.model import Admission, CycleResult, Gang, Snapshot, Waiting
from shipyard.core.placement import place_gang, shortfall


def scheduling_order(gangs: tuple[Gang, ...] | list[Gang]) -> list[Gang]:
    """Higher priority first, then earlier submission, then key (stable, total order)."""
    return sorted(gangs, key=lambda g: (-g.priority, g.submitted_at, g.key))


def schedule(snapshot: Snapshot) -> CycleResult:
    """Admit gangs in order while they fit; the first that does not blocks the rest.

    Strict order keeps a large gang from starving behind a stream of small ones.
    """
    free = {n.name: n.free for n in snapshot.nodes}
    admitted: list[Admission] = []
    waiting: list[Waiting] = []
    blocked_by: Gang | None = None
    for position, gang in enumerate(scheduling_order(snapshot.pending), start=1):
        if blocked_by is None:
            placement = place_gang(gang, snapshot.nodes, free)
            if placement is not None:
                for member in gang.members:
                    node = placement[member.name]
                    free[node] = free[node] - member.request
                admitted.append(Admission(gang.key, placement))
                continue
            blocked_by = gang
            reason = shortfall(gang, snapshot.nodes, free)
        else:
            reason = f"waiting behind {blocked_by.key}, which is first in line"
        waiting.append(Waiting(gang.key, position - len(admitted), reason))
    return CycleResult(tuple(admitted), tuple(waiting))
