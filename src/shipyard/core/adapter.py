"""What every cluster adapter hands the policy, built once for the controller and the
simulator: the snapshot with its earmarks, and the autoscale planner's input.

An earmark holds a registered node for the waiting gang it was provisioned for: in the
snapshot the node carries a taint (TAINT_EARMARK, value = the gang) that only that gang
tolerates, so no other gang takes it first; the planner counts every node requested
for a gang (registered or still coming) as that gang's own. The adapters differ only in
where the facts come from (watch caches, the simulator's own nodes).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace

from shipyard.api.vocab import TAINT_EARMARK
from shipyard.core.autoscale import SCALE_UP_KINDS, AutoscaleInput, PoolState
from shipyard.core.estimate import Estimate
from shipyard.core.model import (
    Admission,
    Gang,
    Node,
    Queue,
    Resources,
    Running,
    Snapshot,
    Taint,
    Toleration,
    Waiting,
)


def earmark_taint(gang: str) -> Taint:
    return Taint(TAINT_EARMARK, gang, "NoSchedule")


def tolerating_earmark(gang: Gang) -> Gang:
    """The gang as allowed onto the nodes earmarked for it."""
    toleration = Toleration(TAINT_EARMARK, gang.key, "NoSchedule")
    members = tuple(replace(m, tolerations=(*m.tolerations, toleration)) for m in gang.members)
    return replace(gang, members=members)


def earmarked_pending(pending: Iterable[Gang], earmarks: Mapping[str, str]) -> tuple[Gang, ...]:
    """The pending gangs, each one that a node is earmarked for (`earmarks`: node ->
    gang) tolerating its own earmark."""
    held_by = set(earmarks.values())
    if not held_by:
        return tuple(pending)
    return tuple(tolerating_earmark(g) if g.key in held_by else g for g in pending)


class NodeViews:
    """The snapshot's nodes: a seen node with its usage and earmark applied, built again
    only when one of the three changed (a cycle at 7,500 nodes otherwise spends a tenth
    of the controller's CPU rebuilding nodes that did not move). Plain memo, no I/O."""

    __slots__ = ("_built",)

    def __init__(self) -> None:
        self._built: dict[str, tuple[Node, Resources | None, str | None, Node]] = {}

    def node(self, seen: Node, used: Resources | None, earmark: str | None) -> Node:
        """`seen` with `used` (None: nothing) and the taint of `earmark` (None: none)."""
        hit = self._built.get(seen.name)
        if hit is not None and hit[0] is seen and hit[2] == earmark and (
                hit[1] is used or hit[1] == used):
            return hit[3]
        node = Node(seen.name, seen.allocatable, seen.labels,
                    seen.taints + ((earmark_taint(earmark),) if earmark else ()),
                    used or Resources(), seen.ready, seen.schedulable)
        self._built[seen.name] = (seen, used, earmark, node)
        return node

    def forget_gone(self, live: int) -> None:
        """Drop the memo when it holds many more nodes than the `live` ones (deleted
        nodes' entries); the next build makes them again."""
        if len(self._built) > 2 * live + 1024:
            self._built.clear()

    def snapshot(self, seen: Iterable[Node], used: Mapping[str, Resources],
                 earmarks: Mapping[str, str], pending: Iterable[Gang], now: float,
                 running: Iterable[Running] = (), queues: Iterable[Queue] = (),
                 estimates: Mapping[str, Estimate] | None = None) -> Snapshot:
        """The Snapshot of `seen` nodes with `used` (node -> requests held there) and
        `earmarks` (node -> gang) applied, the pending gangs tolerating their own."""
        nodes = tuple(self.node(n, used.get(n.name), earmarks.get(n.name)) for n in seen)
        self.forget_gone(len(nodes))
        return Snapshot(nodes, earmarked_pending(pending, earmarks), now, tuple(running),
                        tuple(queues), {} if estimates is None else estimates)


def earmarked_counts(pending: Collection[str], requested: Mapping[tuple[str, str], int],
                     earmarks: Mapping[str, str], pool_of: Mapping[str, str]
                     ) -> dict[str, dict[str, int]]:
    """gang -> pool -> nodes requested for it and not yet used: those still coming
    (`requested`: (gang, pool) -> count, kept for pending gangs only) and the registered
    ones (`earmarks`: node -> gang; `pool_of`: node -> pool)."""
    out: dict[str, dict[str, int]] = {}
    for (gang, pool), n in requested.items():
        if gang in pending and n > 0:
            out.setdefault(gang, {})[pool] = n
    for node, gang in earmarks.items():
        per = out.setdefault(gang, {})
        pool = pool_of[node]
        per[pool] = per.get(pool, 0) + 1
    return out


def autoscale_input(snapshot: Snapshot, pools: Iterable[PoolState], waiting: Iterable[Waiting], *,
                    earmarks: Mapping[str, str], pool_of: Mapping[str, str],
                    requested: Mapping[tuple[str, str], int] | None = None,
                    idle_since: Mapping[str, float] | None = None,
                    marked: Mapping[str, float] | None = None, confirm_s: float = 30.0,
                    admitted: Iterable[Admission] = (),
                    releasing: Mapping[str, Resources] | None = None,
                    share_coming: bool = True, look_ahead_gangs: bool = False) -> AutoscaleInput:
    """The planner's input over `snapshot` (the one the scheduler saw, with `earmarks`
    applied): the waits that more nodes can end, and each pending gang's earmark."""
    pending = {g.key for g in snapshot.pending}
    return AutoscaleInput(
        snapshot=snapshot, pools=tuple(pools),
        waiting=tuple(w for w in waiting if w.kind in SCALE_UP_KINDS),
        earmarked=earmarked_counts(pending, requested or {}, earmarks, pool_of),
        earmarked_nodes=dict(earmarks), idle_since=dict(idle_since or {}),
        marked=dict(marked or {}), confirm_s=confirm_s, admitted=tuple(admitted),
        releasing=releasing or {}, share_coming=share_coming, look_ahead_gangs=look_ahead_gangs)
