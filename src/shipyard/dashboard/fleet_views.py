"""The queues and nodes pages as plain data: usage against quota, dominant share,
pending demand, GPU-hours per team over time, and a node map by allocation and health.

Pure: core Nodes and PodViews (controller/views.py reads them from objects), spec
Queues and the usage Ledger come in; rows come out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipyard.api.vocab import HOLDING, TAINT_QUARANTINE, TAINT_UNHEALTHY, Phase
from shipyard.controller.views import PodView
from shipyard.core.model import Node, Resources
from shipyard.core.queueing import dominant_share
from shipyard.dashboard.views import Row
from shipyard.monitor.usage import HOUR, Ledger, node_fraction
from shipyard.spec import Queue
from shipyard.spec.machines import LABEL_INSTANCE_TYPE
from shipyard.spec.queue import Quota


@dataclass(frozen=True, slots=True)
class QueueRow:
    name: str
    weight: float
    used: Resources
    nominal: Quota
    borrowing_limit: Quota | None
    dominant_share: float
    running: int
    pending: int  # experiments waiting in it
    pending_demand: Resources  # what they ask for, together


def _quota_text(q: Quota | None, unlimited: str) -> str:
    if q is None:
        return unlimited
    parts = [f"{q.gpus} GPU" if q.gpus is not None else "",
             f"{q.cpu / 1000:g} CPU" if q.cpu is not None else "",
             f"{q.memory / 2**30:.0f} GiB" if q.memory is not None else ""]
    return ", ".join(p for p in parts if p) or unlimited


def quota_text(row: QueueRow) -> tuple[str, str]:
    """(nominal, borrowing limit) in words."""
    return _quota_text(row.nominal, "none"), _quota_text(row.borrowing_limit, "any idle capacity")


def used_text(r: Resources) -> str:
    return f"{r.gpus} GPU, {r.cpu_milli / 1000:g} CPU, {r.memory / 2**30:.1f} GiB"


def queue_rows(queues: Iterable[Queue], pods: Iterable[PodView], queue_of_pod: Mapping[str, str],
               rows: Iterable[Row], capacity: Resources) -> list[QueueRow]:
    """One row per queue (a Queue object, or a queue experiments name without one).
    `queue_of_pod`: "namespace/pod" -> queue (the pod's queue label)."""
    weights = {q.name: q for q in queues}
    used: dict[str, Resources] = {}
    for p in pods:
        queue = queue_of_pod.get(f"{p.namespace}/{p.name}")
        if queue is not None and p.holds_resources:
            used[queue] = used.get(queue, Resources()) + p.request
    running: dict[str, int] = {}
    pending: dict[str, int] = {}
    demand: dict[str, Resources] = {}
    for r in rows:
        if r.source == "local":
            continue
        if r.phase == Phase.QUEUED:
            pending[r.queue] = pending.get(r.queue, 0) + 1
            demand[r.queue] = demand.get(r.queue, Resources()) + (r.demand or Resources())
        elif r.phase in (*HOLDING, Phase.RESTARTING):  # placed, or between two attempts
            running[r.queue] = running.get(r.queue, 0) + 1
    names = sorted(set(weights) | set(used) | set(pending) | set(running))
    out = []
    for name in names:
        q = weights.get(name) or Queue(name=name)
        u = used.get(name, Resources())
        out.append(QueueRow(name, q.weight, u, q.nominal, q.borrowing_limit,
                            dominant_share(u, capacity, q.weight), running.get(name, 0),
                            pending.get(name, 0), demand.get(name, Resources())))
    return out


def gpu_hours_series(ledger: Ledger, since: float, by: str = "queue") -> dict[str, list[Any]]:
    """Columns for a chart: hour starts, then GPU-hours per hour for each queue
    (or namespace), from the ledger's hourly buckets."""
    starts = sorted(s for s in ledger.hourly if s >= int(since // HOUR) * HOUR)
    teams = sorted({(q if by == "queue" else ns) for s in starts for (q, ns) in ledger.hourly[s]})
    out: dict[str, list[Any]] = {"t": starts}
    for team in teams:
        col = []
        for s in starts:
            total = sum(a.gpu_seconds for (q, ns), a in ledger.hourly[s].items()
                        if (q if by == "queue" else ns) == team)
            col.append(round(total / HOUR, 3))
        out[team] = col
    return out


@dataclass(frozen=True, slots=True)
class NodeCell:
    name: str
    machine_type: str
    allocated: float  # dominant fraction of the node that pods hold, 0..1
    health: str  # ok, NotReady, quarantined, preflight, unhealthy, cordoned
    detail: str


def health(node: Node) -> tuple[str, str]:
    """The one word the map colours a node by, and why."""
    if not node.ready:
        return "NotReady", "the kubelet does not report Ready"
    for t in node.taints:
        if t.key == TAINT_QUARANTINE:
            return "quarantined", t.value or "taken out after repeated failures"
        if "preflight" in t.key:
            return "preflight", t.value or "checks running before it takes work"
        if t.key == TAINT_UNHEALTHY:
            return "unhealthy", t.value
    if not node.schedulable:
        return "cordoned", "marked unschedulable"
    return "ok", ""


def node_cells(nodes: Iterable[Node], pods: Iterable[PodView]) -> list[NodeCell]:
    held: dict[str, Resources] = {}
    for p in pods:
        if p.holds_resources and p.node:
            held[p.node] = held.get(p.node, Resources()) + p.request
    out = []
    for n in nodes:
        word, why = health(n)
        frac = node_fraction(held.get(n.name, Resources()), n.allocatable)
        out.append(NodeCell(n.name, n.labels.get(LABEL_INSTANCE_TYPE, "-"), frac, word, why))
    return sorted(out, key=lambda c: (c.machine_type, c.name))


def by_machine(cells: Sequence[NodeCell]) -> dict[str, list[NodeCell]]:
    out: dict[str, list[NodeCell]] = {}
    for c in cells:
        out.setdefault(c.machine_type, []).append(c)
    return out
