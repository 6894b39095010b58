"""Prometheus metrics of the controller, served on 127.0.0.1 unless told otherwise.

Each controller owns its registry (tests run several in one process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily

from shipyard.core.model import Resources

POOL_STATES = ("ready", "not_ready", "provisioning", "idle")


class AutoscalerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.nodes = Gauge("shipyard_nodepool_nodes", "Nodes of a pool by state (idle: no shipyard "
                           "workload; counted among ready/not_ready too)", ["pool", "state"], registry=r)
        self.cost = Gauge("shipyard_nodepool_cost_per_hour", "What a pool's nodes cost per hour, "
                          "provisioning ones included", ["pool"], registry=r)
        self.idle_hours = Counter("shipyard_nodepool_idle_node_hours", "Node-hours spent idle",
                                  ["pool"], registry=r)
        self.demand = Gauge("shipyard_pending_gang_demand", "Resources requested by gangs waiting "
                            "for capacity (cpu in cores, memory in bytes)", ["resource"], registry=r)
        self.decisions = Counter("shipyard_autoscaler_nodes", "Nodes the autoscaler asked for, "
                                 "removed, or failed to get", ["pool", "action"], registry=r)
        self.plan_seconds = Histogram("shipyard_autoscaler_plan_seconds", "Time to plan one step",
                                      registry=r, buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5))
        self._last_idle: dict[str, tuple[float, int]] = {}

    def pool(self, name: str, *, ready: int, not_ready: int, provisioning: int, idle: int,
             cost_per_hour: float, now: float) -> None:
        for state, value in zip(POOL_STATES, (ready, not_ready, provisioning, idle), strict=True):
            self.nodes.labels(name, state).set(value)
        self.cost.labels(name).set(cost_per_hour)
        # Idle node-hours: the idle count since the last report, times the time since.
        last = self._last_idle.get(name)
        if last is not None and now > last[0]:
            self.idle_hours.labels(name).inc(last[1] * (now - last[0]) / 3600)
        self._last_idle[name] = (now, idle)

    def pending_demand(self, total: Resources) -> None:
        self.demand.labels("gpus").set(total.gpus)
        self.demand.labels("cpu").set(total.cpu_milli / 1000)
        self.demand.labels("memory").set(total.memory)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        start_http_server(port, addr=addr, registry=self.registry)


class CacheCollector:
    """The controller's watch caches and API-server outages, read at scrape time.

    `informers`: objects with `.kind.plural`, `.relists`, `.malformed` (kube.Informer);
    `outage`: one with `.outages` (kube.outage.Outage)."""

    def __init__(self, informers: Callable[[], Iterable[Any]], outage: Any) -> None:
        self.informers, self.outage = informers, outage

    def collect(self) -> Iterator[CounterMetricFamily]:
        relists = CounterMetricFamily("shipyard_informer_relists", "Lists after the first, "
                                      "forced by an expired watch (410) or an error", labels=["kind"])
        unreadable = CounterMetricFamily("shipyard_informer_unreadable_objects", "Objects a "
                                         "watch cache could not read and skipped", labels=["kind"])
        # Summed per kind: the scheduler and the autoscaler each watch nodes, and one
        # series per label set is all an exposition may carry.
        counts: dict[str, tuple[int, int]] = {}
        for informer in self.informers():
            r, m = counts.get(informer.kind.plural, (0, 0))
            counts[informer.kind.plural] = (r + informer.relists, m + informer.malformed)
        for kind, (r, m) in counts.items():
            relists.add_metric([kind], r)
            unreadable.add_metric([kind], m)
        yield relists
        yield unreadable
        yield CounterMetricFamily("shipyard_api_outages", "Times the API server began failing "
                                  "this controller's requests", value=self.outage.outages)
