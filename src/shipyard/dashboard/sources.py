"""Where the dashboard's data comes from: the readers the CLI uses, never copies of them.

- LocalSource: this machine's runs (local/store.py's Store, local/backend.py's
  read_logs, the same summary `shipyard list -o json` prints, the same first-failure
  rule as `shipyard logs`).
- ClusterSource: one cluster. Experiments are kept by an Informer (list, then watch:
  one LIST at start, then only changes, so 5,000 experiments cost one small row each
  and no polling); each row is cli/cluster.py's `summary`, as `shipyard list -c`.
  Pages that need more (one experiment's pods, logs and events; queues; nodes;
  the usage ledger; the capacity summary) ask the API server when they are shown,
  through fleet/connect.py's short-timeout clients.

Read-only: nothing here writes to a cluster or to the runs on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shipyard.api.vocab import LABEL_EXPERIMENT, LABEL_QUEUE
from shipyard.cli.cluster import _exit_code
from shipyard.cli.cluster import summary as cluster_summary
from shipyard.cli.cluster_logs import collect
from shipyard.cli.rank_logs import local_failure, rank_of
from shipyard.controller.views import node_view, parse_time, pod_view, queue_view
from shipyard.core.clusters import demand_for
from shipyard.core.model import Resources
from shipyard.dashboard.fleet_views import NodeCell, QueueRow, node_cells, queue_rows
from shipyard.dashboard.views import (
    LOCAL,
    Event,
    Rank,
    Row,
    event_from_object,
    local_events,
    row_from_summary,
)
from shipyard.fleet.capacity_reader import ClusterReading, read_capacities
from shipyard.fleet.connect import Clusters
from shipyard.kube import experiments as kexp
from shipyard.kube.errors import NotFound
from shipyard.kube.informer import Informer, object_key
from shipyard.kube.install import SYSTEM_NAMESPACE
from shipyard.kube.objects import experiment_from_resource
from shipyard.kube.resources import EVENTS, EXPERIMENTS, NODES, PODS, QUEUES
from shipyard.monitor.usage import Ledger
from shipyard.monitor.usage_store import read_ledger
from shipyard.spec import SpecError
from shipyard.spec.clusters import ClusterRef

TAIL_LINES = 200  # of each rank on the experiment page


@dataclass
class Detail:
    """One experiment's page."""

    row: Row
    ranks: list[Rank] = field(default_factory=list)
    failure: str = ""  # "rank worker-1 failed first: exited with code 3"
    events: list[Event] = field(default_factory=list)
    raw_status: dict[str, Any] = field(default_factory=dict)


class Source(Protocol):
    name: str
    on_change: Callable[[], None]  # set by the hub: called when the source knows it changed

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def rows(self) -> list[Row]: ...
    async def refresh(self) -> None: ...
    async def detail(self, namespace: str, ident: str) -> Detail | None: ...


class LocalSource:
    """This machine's runs: re-read from disk on each refresh (a few small files per run)."""

    name = LOCAL

    def __init__(self, root: Any = None) -> None:
        from shipyard.local import Store

        self.store = Store(root)
        self.on_change: Callable[[], None] = lambda: None  # runs on disk are polled
        self._rows: list[Row] = []

    async def start(self) -> None:
        await self.refresh()

    async def close(self) -> None:
        pass

    def rows(self) -> list[Row]:
        return self._rows

    async def refresh(self) -> None:
        self._rows = await asyncio.to_thread(self._read)

    def _summary(self, s: Any) -> dict[str, Any]:
        """`shipyard list -o json`'s entry for the run, progress included."""
        from shipyard.cli.main import _progress, _summary

        return _summary(s) | {"progress": _progress(self.store, s)}

    def _read(self) -> list[Row]:
        return [row_from_summary(LOCAL, self._summary(s)) for s in self.store.all()]

    async def detail(self, namespace: str, ident: str) -> Detail | None:
        return await asyncio.to_thread(self._detail, ident)

    def _detail(self, ident: str) -> Detail | None:
        from shipyard.local import RunNotFound, read_logs

        try:
            s = self.store.load(ident)
        except RunNotFound:
            return None
        summary = self._summary(s)
        lines: dict[str, list[str]] = {}
        with contextlib.suppress(RunNotFound):
            for rank, line in read_logs(s.id, store=self.store):
                lines.setdefault(rank, []).append(line)
        failure = local_failure(s.ranks)
        ranks = [Rank(name, r.state, None, r.exit_code, failure is not None and failure.rank == name,
                      lines.get(name, [])[-TAIL_LINES:]) for name, r in s.ranks.items()]
        return Detail(row_from_summary(LOCAL, summary), ranks,
                      failure.describe() if failure else "", local_events(summary))


def _demand(obj: dict[str, Any]) -> Resources | None:
    """The whole gang's request, as placement reads it (None for a spec that does not load)."""
    try:
        roles = demand_for(experiment_from_resource(obj))
        return sum((d.request.scaled(d.replicas) for d in roles), Resources())
    except (SpecError, KeyError, TypeError, ValueError):
        return None


class _Demands:
    """_demand per Experiment, kept until its uid or generation changes: status writes
    (progress every few seconds per running experiment) leave the spec as it was, so it
    is not parsed again."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[tuple[Any, Any], Resources | None]] = {}  # key -> (version, demand)

    def __call__(self, obj: dict[str, Any]) -> Resources | None:
        meta = obj["metadata"]
        key, version = object_key(obj), (meta.get("uid"), meta.get("generation"))
        known = self.seen.get(key)
        if known is None or known[0] != version:
            known = self.seen[key] = (version, _demand(obj))
        return known[1]


def _row(source: str, obj: dict[str, Any], demands: _Demands | None = None) -> Row:
    demand = demands(obj) if demands is not None else _demand(obj)
    return row_from_summary(source, cluster_summary(obj), obj.get("status") or {}, demand)


class ClusterSource:
    """One cluster running the shipyard controller."""

    def __init__(self, ref: ClusterRef, clusters: Clusters) -> None:
        self.ref = ref
        self.name = ref.name
        self.clusters = clusters
        self.problem = ""  # why the cluster cannot be read, shown on the pages
        self.on_change: Callable[[], None] = lambda: None
        self.informer: Informer[Row] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def client(self) -> Any:
        return self.clusters.client(self.name)

    async def start(self) -> None:
        demands = _Demands()

        def changed(key: str, old: Row | None, new: Row | None) -> None:
            if new is None:
                demands.seen.pop(key, None)
            self.on_change()

        try:
            self.informer = Informer(self.client, EXPERIMENTS, lambda o: _row(self.name, o, demands),
                                     changed)
        except Exception as exc:  # Unreachable: a bad context; shown, not raised
            self.problem = str(exc)
            return
        self._task = asyncio.create_task(self.informer.run(), name=f"dashboard-{self.name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def rows(self) -> list[Row]:
        return list(self.informer.items.values()) if self.informer else []

    async def refresh(self) -> None:
        """Say why the rows may be missing or old: the watch stopped, or the API server
        does not answer (the Informer retries with backoff; the rows are what it last saw)."""
        if self.informer is None or self._task is None:
            return
        if self._task.done():
            self.problem = f"watch stopped: {self._task.exception()}"
        elif self.informer.outage.failing:
            self.problem = (f"not answering ({self.informer.outage.failures} failed attempts); "
                            "retrying, the table shows what was last seen")
        else:
            self.problem = ""

    async def detail(self, namespace: str, ident: str) -> Detail | None:
        c = self.client
        try:
            obj = await kexp.get_experiment(c, ident, namespace)
        except NotFound:
            return None
        pods = await kexp.pods_of(c, ident, namespace)
        lines, failure = await collect(c, ident, namespace, None, None, TAIL_LINES)
        ranks = [Rank(rank_of(p), (p.get("status") or {}).get("phase", "Pending"),
                      (p.get("spec") or {}).get("nodeName"), _exit_code(p),
                      failure is not None and failure.rank == rank_of(p), lines.get(rank_of(p), []))
                 for p in pods]
        events, _ = await c.list(EVENTS, namespace, field_selector=f"involvedObject.name={ident},"
                                 "involvedObject.kind=Experiment")
        timeline = sorted((event_from_object(e, parse_time) for e in events),
                          key=lambda e: e.at or 0.0)
        return Detail(_row(self.name, obj), ranks, failure.describe() if failure else "", timeline,
                      obj.get("status") or {})

    async def queues(self) -> list[QueueRow]:
        c = self.client
        (queues, _), (pods, _), (nodes, _) = await asyncio.gather(
            c.list(QUEUES), c.list(PODS, label_selector=LABEL_EXPERIMENT), c.list(NODES))
        views = [pod_view(p) for p in pods]
        queue_of_pod = {f"{p['metadata']['namespace']}/{p['metadata']['name']}":
                        (p["metadata"].get("labels") or {}).get(LABEL_QUEUE, "default") for p in pods}
        capacity = sum((node_view(n).allocatable for n in nodes), Resources())
        specs = [q for q in (queue_view(o) for o in queues) if q is not None]
        return queue_rows(specs, views, queue_of_pod, self.rows(), capacity)

    async def ledger(self) -> Ledger:
        return await read_ledger(self.client, SYSTEM_NAMESPACE)

    async def nodes(self) -> list[NodeCell]:
        c = self.client
        (nodes, _), (pods, _) = await asyncio.gather(
            c.list(NODES), c.list(PODS, field_selector="status.phase!=Succeeded,status.phase!=Failed"))
        return node_cells((node_view(n) for n in nodes), (pod_view(p) for p in pods))

    async def capacity(self) -> ClusterReading:
        return (await read_capacities([self.ref]))[0]
