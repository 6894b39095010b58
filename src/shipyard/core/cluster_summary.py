"""The compact capacity summary a cluster's controller publishes for the others to read.

Its size is O(machine types), not O(nodes): per machine type, how many nodes there are,
how full they are (in eight buckets), what waits for them, and how far the node pools
may still grow. The CLI reads it from every cluster to choose where to launch
(core/clusters.py).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shipyard.core.autoscale import PoolState
from shipyard.core.model import WAIT_NO_QUEUE, WAIT_QUOTA, Node, Resources, Snapshot, Waiting
from shipyard.core.start_estimate import expected_end
from shipyard.spec.machines import LABEL_INSTANCE_TYPE

# Free-capacity buckets: free_levels[k] counts nodes with k/LEVELS to (k+1)/LEVELS free.
LEVELS = 8
FREEING_POINTS = 8
# Waits that queue ahead for capacity. Quota and unknown-queue waits end by other
# means, so they are not counted as demand on the nodes.
NOT_CAPACITY = frozenset({WAIT_QUOTA, WAIT_NO_QUEUE})


@dataclass(frozen=True, slots=True)
class MachineCapacity:
    machine_type: str
    node: Resources  # allocatable of one node of this type (the smallest seen)
    nodes: int  # registered, Ready, schedulable
    # free_levels[k]: nodes with at least k/8 and less than (k+1)/8 of the node free; k=8:
    # wholly free. "Free" is the scarcest of the node's resources (on GPU nodes running
    # GPU work, its GPUs), so a bucket never overstates what fits.
    free_levels: tuple[int, ...]
    queued_gangs: int  # gangs waiting for capacity that select this type
    queued: Resources  # their requests (of their members of this type)
    provisioning_nodes: int
    headroom_nodes: int  # sum over available non-static pools of max_nodes - (nodes + provisioning)
    cost_per_hour: float  # per node: the cheapest growable pool's price (0: only static pools)
    static_nodes: int = 0  # registered nodes of static (already paid for) pools
    # (time, n): by then (seconds since the epoch) n more nodes are wholly free, as the
    # running gangs on them end (core/start_estimate.expected_end); at most
    # FREEING_POINTS, both rising; absolute, so it changes only when the ends do. Nodes
    # whose end is unknown (work without a time limit, others' pods) are not counted.
    freeing: tuple[tuple[float, int], ...] = ()

    @property
    def free_nodes(self) -> int:
        """Nodes with any room (at least 1/8 free)."""
        return sum(self.free_levels[1:])

    @property
    def max_nodes(self) -> int:
        """The most nodes of this type the cluster can have."""
        return self.nodes + self.provisioning_nodes + self.headroom_nodes


@dataclass(frozen=True, slots=True)
class ClusterCapacity:
    machines: tuple[MachineCapacity, ...]
    total_gpus: int  # of registered, Ready, schedulable nodes
    running_gpus: int  # requested by the pods bound to them
    updated_at: float = 0.0
    _by_type: dict[str, MachineCapacity] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_type", {m.machine_type: m for m in self.machines})

    def machine(self, machine_type: str) -> MachineCapacity | None:
        return self._by_type.get(machine_type)

    def to_status(self) -> dict[str, Any]:
        """JSON-able, camelCase: the .status of the cluster's capacity custom resource."""
        return {
            "machines": [_machine_status(m) for m in self.machines],
            "totalGpus": self.total_gpus,
            "runningGpus": self.running_gpus,
            "updatedAt": self.updated_at,
        }

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> ClusterCapacity:
        """The inverse of to_status; missing keys read as zero or empty, garbage raises
        ValueError naming the key."""
        if not isinstance(status, Mapping):
            raise ValueError(f"capacity status: expected a mapping, got {type(status).__name__}")
        machines = status.get("machines")
        machines = [] if machines is None else machines
        if not isinstance(machines, list):
            raise ValueError(f"capacity status: machines: expected a list, got {type(machines).__name__}")
        return cls(
            machines=tuple(_machine_from(m, f"machines[{i}]") for i, m in enumerate(machines)),
            total_gpus=_count(status, "totalGpus", "capacity status"),
            running_gpus=_count(status, "runningGpus", "capacity status"),
            updated_at=_number(status, "updatedAt", "capacity status"),
        )


# -- summarize ----------------------------------------------------------------------


def free_level(node: Node) -> int:
    """The bucket of the node's scarcest free resource: floor(8 * free / allocatable)."""
    a, f = node.allocatable, node.free
    levels = [
        LEVELS * min(max(free, 0), alloc) // alloc
        for free, alloc in ((f.cpu_milli, a.cpu_milli), (f.memory, a.memory), (f.gpus, a.gpus))
        if alloc > 0
    ]
    return min(levels, default=0)


@dataclass(slots=True)
class _Acc:
    node: Resources | None = None
    nodes: int = 0
    levels: list[int] = field(default_factory=lambda: [0] * (LEVELS + 1))
    queued_gangs: int = 0
    queued: Resources = field(default_factory=Resources)
    provisioning: int = 0
    headroom: int = 0
    prices: list[float] = field(default_factory=list)  # of available growable pools
    other_prices: list[float] = field(default_factory=list)  # of growable pools in a backoff
    static: int = 0
    free_at: list[float] = field(default_factory=list)  # busy nodes: when wholly free

    def see(self, alloc: Resources) -> None:
        n = self.node
        self.node = alloc if n is None else Resources(
            min(n.cpu_milli, alloc.cpu_milli), min(n.memory, alloc.memory), min(n.gpus, alloc.gpus))


def summarize(snapshot: Snapshot, pools: Sequence[PoolState], waiting: Sequence[Waiting], now: float,
              type_label: str = LABEL_INSTANCE_TYPE, etas: Mapping[str, float] | None = None
              ) -> ClusterCapacity:
    """The summary of one cluster: `pools` are its autoscaler's PoolStates (static ones
    included), `waiting` the scheduler's last waiting list, `etas` running gangs'
    progress ETAs. Nodes and pools without the `type_label` label are in the GPU totals
    only."""
    acc: dict[str, _Acc] = {}
    total = running = 0
    usable: set[str] = set()
    free_at = _free_at(snapshot, now, etas or {})
    for n in snapshot.nodes:
        if not (n.ready and n.schedulable):
            continue
        usable.add(n.name)
        total += n.allocatable.gpus
        running += min(max(n.used.gpus, 0), n.allocatable.gpus)
        t = n.labels.get(type_label)
        if t is not None:
            a = acc.setdefault(t, _Acc())
            a.see(n.allocatable)
            a.nodes += 1
            level = free_level(n)
            a.levels[level] += 1
            if level < LEVELS and n.name in free_at:
                a.free_at.append(free_at[n.name])
    for p in pools:
        t = p.template.labels.get(type_label)
        if t is None:
            continue
        a = acc.setdefault(t, _Acc())
        a.see(p.template.allocatable)
        a.provisioning += p.provisioning
        if p.static:
            a.static += sum(1 for name in p.nodes if name in usable)
        elif now >= p.unavailable_until:
            a.headroom += p.headroom
            a.prices.append(p.cost_per_hour)
        else:  # after a provisioning failure: no room until its backoff ends
            a.other_prices.append(p.cost_per_hour)
    _add_queued(snapshot, waiting, acc, type_label)
    machines = tuple(
        MachineCapacity(t, a.node or Resources(), a.nodes, tuple(a.levels), a.queued_gangs, a.queued,
                        a.provisioning, a.headroom, min(a.prices or a.other_prices or [0.0]), a.static,
                        _freeing(a.free_at))
        for t, a in sorted(acc.items())
    )
    return ClusterCapacity(machines, total, running, now)


def _free_at(snapshot: Snapshot, now: float, etas: Mapping[str, float]) -> dict[str, float]:
    """Node -> when the running gangs there have all ended; only nodes that hold nothing
    but those gangs, each with a known end."""
    ours: dict[str, Resources] = {}
    end: dict[str, float] = {}
    for run in snapshot.running:
        at = expected_end(run, now, etas.get(run.gang.key), snapshot.estimates.get(run.gang.key)).at
        for m in run.gang.members:
            name = run.placement.get(m.name)
            if name is not None:
                ours[name] = ours.get(name, Resources()) + m.request
                end[name] = max(end.get(name, now), at)
    return {n.name: end[n.name] for n in snapshot.nodes
            if n.name in end and math.isfinite(end[n.name]) and not n.used.exceeds(ours[n.name])}


def _freeing(free_at: list[float]) -> tuple[tuple[float, int], ...]:
    """At most FREEING_POINTS (seconds, nodes) of the sorted ends; between points the
    next one's time is taken, so a count is never promised sooner than it comes."""
    ends = sorted(free_at)
    n = len(ends)
    points = sorted({math.ceil(k * n / FREEING_POINTS) for k in range(1, FREEING_POINTS + 1)})
    return tuple((float(math.ceil(ends[c - 1])), c) for c in points if c > 0)


def _add_queued(snapshot: Snapshot, waiting: Sequence[Waiting], acc: dict[str, _Acc],
                type_label: str) -> None:
    pending = {g.key: g for g in snapshot.pending}
    for w in waiting:
        g = pending.pop(w.gang, None)  # pop: a gang listed twice counts once
        if g is None or w.kind in NOT_CAPACITY:
            continue
        per_type: dict[str, Resources] = {}
        for m in g.members:
            t = m.node_selector.get(type_label)
            if t is not None and t in acc:  # a type this cluster lacks queues for nothing here
                per_type[t] = per_type.get(t, Resources()) + m.request
        for t, r in per_type.items():
            acc[t].queued_gangs += 1
            acc[t].queued = acc[t].queued + r


# -- status (de)serialisation ---------------------------------------------------------


def _resources_status(r: Resources) -> dict[str, int]:
    return {"cpuMilli": r.cpu_milli, "memory": r.memory, "gpus": r.gpus}


def _machine_status(m: MachineCapacity) -> dict[str, Any]:
    return {
        "machineType": m.machine_type,
        "node": _resources_status(m.node),
        "nodes": m.nodes,
        "freeLevels": list(m.free_levels),
        "queuedGangs": m.queued_gangs,
        "queued": _resources_status(m.queued),
        "provisioningNodes": m.provisioning_nodes,
        "headroomNodes": m.headroom_nodes,
        "costPerHour": m.cost_per_hour,
        "staticNodes": m.static_nodes,
        "freeing": [[s, n] for s, n in m.freeing],
    }


def _count(d: Mapping[str, Any], key: str, where: str) -> int:
    value = d.get(key, 0)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: {key}: expected a whole number >= 0, got {value!r}")
    return value


def _number(d: Mapping[str, Any], key: str, where: str) -> float:
    value = d.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"{where}: {key}: expected a number >= 0, got {value!r}")
    return float(value)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"capacity status: {where}: expected a mapping, got {type(value).__name__}")
    return value


def _resources_from(value: Any, where: str) -> Resources:
    d = _mapping(value, where)
    w = f"capacity status: {where}"
    return Resources(_count(d, "cpuMilli", w), _count(d, "memory", w), _count(d, "gpus", w))


def _machine_from(value: Any, where: str) -> MachineCapacity:
    d = _mapping(value, where)
    w = f"capacity status: {where}"
    name = d.get("machineType")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{w}: machineType: expected a machine type name, got {name!r}")
    raw = d.get("freeLevels")
    levels = [0] * (LEVELS + 1) if raw is None else raw
    if not isinstance(levels, list) or len(levels) != LEVELS + 1:
        raise ValueError(f"{w}: freeLevels: expected a list of {LEVELS + 1} node counts, got {raw!r}")
    counts = tuple(_count({"freeLevels": v}, "freeLevels", w) for v in levels)
    return MachineCapacity(
        name, _resources_from(d.get("node"), f"{where}.node"), _count(d, "nodes", w), counts,
        _count(d, "queuedGangs", w), _resources_from(d.get("queued"), f"{where}.queued"),
        _count(d, "provisioningNodes", w), _count(d, "headroomNodes", w), _number(d, "costPerHour", w),
        _count(d, "staticNodes", w), _freeing_from(d.get("freeing"), w))


def _freeing_from(value: Any, where: str) -> tuple[tuple[float, int], ...]:
    if value is None:
        return ()  # a summary from before freeing was published
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
        raise ValueError(f"{where}: freeing: expected a list of [seconds, nodes] pairs, got {value!r}")
    out = tuple((_number({"s": s}, "s", f"{where}: freeing"), _count({"n": n}, "n", f"{where}: freeing"))
                for s, n in value)
    if any(b[1] <= a[1] or b[0] < a[0] for a, b in itertools.pairwise(out)):
        raise ValueError(f"{where}: freeing: expected seconds and nodes rising, got {value!r}")
    return out
