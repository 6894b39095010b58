"""Scheduler, queue and usage metrics of the controller.

Gauges are computed at scrape time (`SchedulerCollector`) from what the controller
already holds: its experiment and node caches, and the snapshot and decisions of its
last cycle, so they are always consistent with each other and cost nothing between
scrapes. Counters and histograms (`SchedulerMetrics`) are incremented where the
controller acts. Labels are queue, namespace (usage only), phase, reason kinds and
causes: bounded sets, never a pod or an experiment.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from shipyard.api.vocab import HOLDING, TAINT_QUARANTINE, TERMINAL, Phase
from shipyard.core.model import UNLIMITED, CycleResult, Resources, Snapshot
from shipyard.core.queueing import dominant_share
from shipyard.monitor.usage import Ledger

PHASES = tuple(p.value for p in Phase)  # metric label values: every phase, in lifecycle order
WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
START_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
CYCLE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


def restart_cause(problem: str) -> str:
    """The cause of a gang stop, from the lifecycle's problem text: a bounded label."""
    if "time limit" in problem:
        return "TimeLimit"
    if problem.startswith("node "):
        return "NodeLost"
    if "was deleted" in problem:
        return "PodDeleted"
    if "failed" in problem:
        return "PodFailed"
    return "Other"


class SchedulerMetrics:
    """What the controller did, counted as it does it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.admission_wait = Histogram(
            "shipyard_admission_wait_seconds", "Time from submission to first admission",
            ["queue"], buckets=WAIT_BUCKETS, registry=r)
        self.start_latency = Histogram(
            "shipyard_start_latency_seconds", "Time from admission to every pod of the gang "
            "Running", ["queue"], buckets=START_BUCKETS, registry=r)
        self.cycle = Histogram("shipyard_scheduling_cycle_duration_seconds",
                               "Time of one scheduling cycle (lifecycle, policy, decisions)",
                               buckets=CYCLE_BUCKETS, registry=r)
        self.admissions = Counter("shipyard_admissions", "Gangs admitted (placed)", ["queue"],
                                  registry=r)
        self.preemptions = Counter("shipyard_preemptions", "Running gangs preempted, by the "
                                   "queue of the preempted gang", ["queue"], registry=r)
        self.restarts = Counter("shipyard_restarts", "Whole-gang restarts, by cause",
                                ["queue", "cause"], registry=r)
        self.evictions = Counter("shipyard_evictions", "Running gangs stopped through no fault "
                                 "of their own (preempted, node lost, held)", ["queue", "reason"],
                                 registry=r)
        self.finished = Counter("shipyard_experiments_finished", "Experiments that reached a "
                                "final phase", ["queue", "phase"], registry=r)

    def admitted(self, queue: str, attempt: int, submitted_at: float, now: float) -> None:
        self.admissions.labels(queue).inc()
        if attempt == 0:  # later admissions wait from a requeue, not from the submission
            self.admission_wait.labels(queue).observe(max(0.0, now - submitted_at))

    def preempted(self, queue: str) -> None:
        self.preemptions.labels(queue).inc()
        self.evictions.labels(queue, "Preempted").inc()

    def transition(self, queue: str, old: Mapping[str, Any], new: Mapping[str, Any],
                   admitted_at: float | None, now: float) -> None:
        """Count what one lifecycle decision did to an experiment's phase."""
        before, after = old.get("phase"), new.get("phase")
        if before == after:
            return
        if after == Phase.RUNNING and admitted_at is not None:
            self.start_latency.labels(queue).observe(max(0.0, now - admitted_at))
        problem = str(new.get("failedPod") or "")
        if after == Phase.RESTARTING:
            self.restarts.labels(queue, restart_cause(problem)).inc()
        if before in HOLDING and (after == Phase.HOLDING or (after in (Phase.RESTARTING, Phase.FAILED)
                                                             and restart_cause(problem) == "NodeLost")):
            self.evictions.labels(queue, "Held" if after == Phase.HOLDING else "NodeLost").inc()
        if after in TERMINAL:
            self.finished.labels(queue, after).inc()


def _resource_gauges(prefix: str, help_: str, labels: list[str]) -> dict[str, GaugeMetricFamily]:
    units = {"gpus": "GPUs", "cpu_cores": "CPU cores", "memory_bytes": "bytes of memory"}
    return {u: GaugeMetricFamily(f"{prefix}_{u}", f"{help_} ({text})", labels=labels)
            for u, text in units.items()}


def _add(gauges: dict[str, GaugeMetricFamily], labels: list[str], r: Resources) -> None:
    values = {"gpus": r.gpus, "cpu_cores": r.cpu_milli / 1000, "memory_bytes": r.memory}
    for unit, value in values.items():
        if value < UNLIMITED / 1000:  # an unlimited quota is no number to chart
            gauges[unit].add_metric(labels, value)


class SchedulerCollector:
    """Reads the controller at scrape time (duck-typed: `experiments.items`,
    `status(key)`, `nodes.items`, `last_snapshot`, `last_result`, `usage.ledger`).
    Copies of the caches are taken first: scrapes run on another thread."""

    def __init__(self, controller: Any) -> None:
        self.c = controller

    def collect(self) -> Iterator[Metric]:
        yield from self._experiments()
        snapshot: Snapshot | None = self.c.last_snapshot
        result: CycleResult | None = self.c.last_result
        if snapshot is not None:
            yield from self._queues(snapshot, result)
        yield from self._nodes(list(self.c.nodes.items.values()))
        yield from _usage(self.c.usage.ledger)

    def _experiments(self) -> Iterator[Metric]:
        counts: dict[tuple[str, str], int] = {}
        stalled: dict[str, int] = {}
        for key, exp in list(self.c.experiments.items.items()):
            queue = exp.spec.queue if exp.spec is not None else ""
            status = self.c.status(key)
            phase = status.get("phase") or Phase.QUEUED.value
            counts[(queue, phase)] = counts.get((queue, phase), 0) + 1
            stalled.setdefault(queue, 0)
            # A gang restarted or failed for its hang keeps the condition: not counted.
            if phase == Phase.RUNNING and any(c.get("type") == "Stalled" and c.get("status") == "True"
                                              for c in status.get("conditions") or []):
                stalled[queue] += 1
        by_phase = GaugeMetricFamily("shipyard_experiments", "Experiments by phase and queue",
                                     labels=["queue", "phase"])
        for queue in sorted({q for q, _ in counts}):
            for phase in PHASES:  # every phase, zeros included, so rates and sums just work
                by_phase.add_metric([queue, phase], counts.get((queue, phase), 0))
        yield by_phase
        g = GaugeMetricFamily("shipyard_experiments_stalled", "Running experiments with the "
                              "Stalled condition (no progress report or log line for hang_timeout)",
                              labels=["queue"])
        for queue, n in sorted(stalled.items()):
            g.add_metric([queue], n)
        yield g

    def _queues(self, snapshot: Snapshot, result: CycleResult | None) -> Iterator[Metric]:
        gangs = {g.key: g for g in snapshot.pending}
        queues = {q.name: q for q in snapshot.queues}
        names = set(queues) | {g.queue for g in snapshot.pending} | {
            r.gang.queue for r in snapshot.running}
        pending = GaugeMetricFamily("shipyard_pending_gangs", "Gangs waiting, by queue and "
                                    "the kind of reason they wait", labels=["queue", "reason"])
        demand = _resource_gauges("shipyard_pending_demand", "What waiting gangs request",
                                  ["queue", "reason"])
        by_kind: dict[tuple[str, str], tuple[int, Resources]] = {}
        for w in result.waiting if result is not None else ():
            gang = gangs.get(w.gang)
            if gang is None:
                continue
            n, total = by_kind.get((gang.queue, w.kind), (0, Resources()))
            by_kind[(gang.queue, w.kind)] = (n + 1, total + gang.total)
        for (queue, kind), (n, total) in sorted(by_kind.items()):
            pending.add_metric([queue, kind], n)
            _add(demand, [queue, kind], total)
        yield pending
        yield from demand.values()
        oldest = GaugeMetricFamily("shipyard_pending_oldest_wait_seconds", "How long the "
                                   "longest-waiting gang of a queue has waited since submission "
                                   "(0: none waits)", labels=["queue"])
        first: dict[str, float] = {}
        for g in snapshot.pending:
            first[g.queue] = min(first.get(g.queue, g.submitted_at), g.submitted_at)
        for name in sorted(names):
            oldest.add_metric([name], max(0.0, snapshot.now - first[name]) if name in first else 0)
        yield oldest

        used: dict[str, Resources] = {}
        for run in snapshot.running:
            used[run.gang.queue] = used.get(run.gang.queue, Resources()) + run.gang.total
        cluster = Resources()
        for node in snapshot.nodes:
            if node.ready and node.schedulable:
                cluster = cluster + node.allocatable
        usage = _resource_gauges("shipyard_queue_used", "What a queue's admitted gangs hold",
                                 ["queue"])
        nominal = _resource_gauges("shipyard_queue_nominal_quota", "A queue's guaranteed "
                                   "quota; absent where unlimited", ["queue"])
        share = GaugeMetricFamily("shipyard_queue_dominant_share", "Weighted dominant-resource "
                                  "share of the cluster a queue holds (what fair share orders by)",
                                  labels=["queue"])
        for name in sorted(names):
            q = queues.get(name)
            _add(usage, [name], used.get(name, Resources()))
            if q is not None:
                _add(nominal, [name], q.nominal)
            share.add_metric([name], dominant_share(used.get(name, Resources()), cluster,
                                                    q.weight if q else 1.0))
        yield from usage.values()
        yield from nominal.values()
        yield share

    def _nodes(self, nodes: Iterable[Any]) -> Iterator[Metric]:
        states = {"ready": 0, "not_ready": 0, "cordoned": 0, "quarantined": 0}
        for node in nodes:
            states["ready" if node.ready else "not_ready"] += 1
            states["cordoned"] += not node.schedulable
            states["quarantined"] += any(t.key == TAINT_QUARANTINE for t in node.taints)
        g = GaugeMetricFamily("shipyard_cluster_nodes", "Nodes by state (cordoned and "
                              "quarantined are counted among ready/not_ready too)",
                              labels=["state"])
        for state, n in states.items():
            g.add_metric([state], n)
        yield g


def _usage(ledger: Ledger) -> Iterator[Metric]:
    families = {
        "gpu_seconds": CounterMetricFamily("shipyard_usage_gpu_seconds", "GPU-seconds held by "
                                           "Running pods", labels=["queue", "namespace"]),
        "cpu_seconds": CounterMetricFamily("shipyard_usage_cpu_seconds", "CPU core-seconds "
                                           "requested by Running pods", labels=["queue", "namespace"]),
        "node_seconds": CounterMetricFamily("shipyard_usage_node_seconds", "Node-seconds: each "
                                            "pod's dominant fraction of its node",
                                            labels=["queue", "namespace"]),
        "cost": CounterMetricFamily("shipyard_usage_cost_dollars", "Node-seconds times the "
                                    "node's price per hour / 3600", labels=["queue", "namespace"]),
    }
    for (queue, namespace), amount in sorted(ledger.totals.items()):
        for name, value in zip(families, amount.values(), strict=True):
            families[name].add_metric([queue, namespace], value)
    yield from families.values()
