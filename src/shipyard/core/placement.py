"""Gang placement: every member of a gang on a node, or none at all.

Decided in memory over a copy of each node's free resources, so a gang that does
not fit leaves nothing behind (there is nothing to roll back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shipyard.core.model import Gang, Member, Node, Resources


def eligible(member: Member, node: Node) -> bool:
    """Could `member` ever run on `node` (ignoring what is free right now)?"""
    if not (node.ready and node.schedulable):
        return False
    labels = node.labels
    for key, value in member.node_selector.items():
        if labels.get(key) != value:
            return False
    for taint in node.taints:
        if taint.effect in ("NoSchedule", "NoExecute") and not any(
            t.tolerates(taint) for t in member.tolerations
        ):
            return False
    return True


def _score(free_after: Resources) -> tuple[int, int, int]:
    # Best fit: leave as little as possible behind, GPUs first, so whole-node
    # GPU pods pack nodes full and keep other nodes whole for the next big gang.
    return (free_after.gpus, free_after.cpu_milli, free_after.memory)


def place_gang(
    gang: Gang, nodes: Sequence[Node], free: Mapping[str, Resources] | None = None
) -> dict[str, str] | None:
    """Member name -> node name for the whole gang, or None if it cannot all fit.

    `free` overrides each node's free resources (the caller's running tally within
    one scheduling cycle); it is not modified.
    """
    remaining = {n.name: n.free for n in nodes} if free is None else dict(free)
    # Biggest members first: the hard ones decide whether the gang fits at all.
    order = sorted(
        gang.members, key=lambda m: (m.request.gpus, m.request.cpu_milli, m.request.memory),
        reverse=True,
    )
    placement: dict[str, str] = {}
    for member in order:
        best: tuple[tuple[int, int, int], str] | None = None
        for node in nodes:
            left = remaining[node.name]
            if not member.request.fits_in(left) or not eligible(member, node):
                continue
            candidate = (_score(left - member.request), node.name)
            if best is None or candidate < best:
                best = candidate
        if best is None:
            return None
        node_name = best[1]
        remaining[node_name] = remaining[node_name] - member.request
        placement[member.name] = node_name
    return placement


def shortfall(
    gang: Gang, nodes: Sequence[Node], free: Mapping[str, Resources] | None = None
) -> str:
    """Why a gang does not fit, in words a person can act on."""
    free_of = {n.name: n.free for n in nodes} if free is None else free
    members = len(gang.members)
    request = gang.members[0].request if members else Resources()
    same = all(m.request == request for m in gang.members)
    shape = f"{members} x ({request.describe()})" if same else f"{members} pods"
    usable = [n for n in nodes if any(eligible(m, n) for m in gang.members)]
    if not usable:
        return f"needs {shape}; no node matches its machine type"
    total_free = Resources()
    for node in usable:
        total_free = total_free + free_of[node.name]
    capacity = Resources()
    for node in usable:
        capacity = capacity + node.allocatable
    if not gang.total.fits_in(capacity):
        return (
            f"needs {shape} = {gang.total.describe()}, more than all matching nodes hold "
            f"({capacity.describe()}); it can never start here"
        )
    return f"needs {shape}; {total_free.describe()} free on {len(usable)} matching node(s)"
