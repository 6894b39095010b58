"""Metrics of the progress receiver: reports taken and refused, status writes,
stragglers (a rank persistently much slower than its gang's median), stalls and the
log reads that judge them. Labels: the transport and the queue only (no
per-experiment or per-rank series)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class ProgressMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.reports = Counter("shipyard_progress_reports", "Progress reports taken from ranks",
                               ["transport"], registry=r)
        self.refused = Counter("shipyard_progress_refused_reports", "Progress reports refused "
                               "(no token, or not the experiment's)", ["transport"], registry=r)
        self.writes = Counter("shipyard_progress_status_writes", "status.progress writes",
                              registry=r)
        self.stragglers = Counter("shipyard_stragglers", "Ranks found persistently much slower "
                                  "than their gang's median step rate", ["queue"], registry=r)
        self.stalls = Counter("shipyard_stalls", "Gangs found stalled (no progress report or log line for "
                              "their hang_timeout), by the on_hang action taken",
                              ["queue", "action"], registry=r)
        self.log_reads = Counter("shipyard_hang_log_reads", "Pod log reads made to judge hangs "
                                 "(only of gangs that would otherwise count as hung)", registry=r)
