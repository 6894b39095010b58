"""`shipyard usage [-c CTX] [--since 7d] [--by queue|namespace|both] [-o table|json]`.

Reads the ledger the controller keeps in the API server (monitor/usage_store.py):
GPU-, CPU- and node-hours and cost per queue (team) with each one's share, over the
hourly (then daily) buckets that begin within --since.
"""

from __future__ import annotations

import enum
import time
from typing import Annotated, Any

import typer

from shipyard.cli import cluster
from shipyard.cli.output import Format, console, dump, fail, table
from shipyard.controller.views import format_time
from shipyard.kube.install import SYSTEM_NAMESPACE
from shipyard.monitor.usage import Amount, Ledger, ReportRow, report
from shipyard.monitor.usage_store import NAME, read_ledger
from shipyard.spec.quantity import parse_duration_seconds


class By(enum.StrEnum):
    queue = "queue"
    namespace = "namespace"
    both = "both"


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 3)


def _row_data(r: ReportRow, by: By) -> dict[str, Any]:
    key = {"queue": r.queue} if by is By.queue else {"namespace": r.namespace} \
        if by is By.namespace else {"queue": r.queue, "namespace": r.namespace}
    return {**key, "gpu_hours": _hours(r.used.gpu_seconds), "cpu_hours": _hours(r.used.cpu_seconds),
            "node_hours": _hours(r.used.node_seconds), "cost": round(r.used.cost, 2),
            "gpu_share": round(r.gpu_share, 4), "cost_share": round(r.cost_share, 4)}


def usage_data(ledger: Ledger, since_s: float, by: By, now: float) -> dict[str, Any]:
    cutoff = now - since_s
    rows = report(ledger.since(cutoff), by.value)
    total = sum((r.used for r in rows), Amount())
    oldest = ledger.oldest
    return {
        "since": format_time(cutoff),
        # Buckets are hourly (daily past 8 days): the report starts at the bucket holding
        # `since`, and cannot reach before the ledger's first bucket.
        "recorded_from": format_time(oldest) if oldest is not None else None,
        "rows": [_row_data(r, by) for r in rows],
        "total": {"gpu_hours": _hours(total.gpu_seconds), "cpu_hours": _hours(total.cpu_seconds),
                  "node_hours": _hours(total.node_seconds), "cost": round(total.cost, 2)},
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def usage(
    context: Annotated[str | None, typer.Option(
        "--cluster", "-c", help="kubeconfig context (left out: the current one).")] = None,
    since: Annotated[str, typer.Option(
        "--since", help="How far back, e.g. 24h, 7d (hourly buckets up to 8 days, then daily; "
        "kept 92 days).")] = "7d",
    by: Annotated[By, typer.Option("--by", help="queue, namespace or both.")] = By.queue,
    output: Annotated[Format, typer.Option("--output", "-o", help="table, json or yaml.")]
    = Format.table,
) -> None:
    """GPU-hours, CPU-hours, node-hours and cost per queue (team), with shares, as
    recorded by the cluster's controller.

    Example:  shipyard usage -c shipyard-dev --since 7d -o json
    """
    try:
        since_s = parse_duration_seconds(since)
    except ValueError as exc:
        fail(f"--since: {exc}", 2)
    try:
        # None: the kubeconfig's current context.
        ledger = cluster.run(context, lambda c: read_ledger(c, SYSTEM_NAMESPACE))  # type: ignore[arg-type]
    except ValueError as exc:
        fail(f"the usage ledger ({SYSTEM_NAMESPACE}/{NAME}) is unreadable: {exc}")
    data = usage_data(ledger, since_s, by, time.time())
    if output is not Format.table:
        return dump(data, output)
    if not data["rows"]:
        console.print(f"no usage recorded since {data['since']}")
        return
    keys = {By.queue: ("QUEUE",), By.namespace: ("NAMESPACE",), By.both: ("QUEUE", "NAMESPACE")}[by]
    rows = [(*(r[k.lower()] for k in keys), f"{r['gpu_hours']:g}", _pct(r["gpu_share"]),
             f"{r['cpu_hours']:g}", f"{r['node_hours']:g}", f"{r['cost']:.2f}", _pct(r["cost_share"]))
            for r in data["rows"]]
    t = data["total"]
    rows.append((*(["TOTAL"] + [""] * (len(keys) - 1)), f"{t['gpu_hours']:g}", "",
                 f"{t['cpu_hours']:g}", f"{t['node_hours']:g}", f"{t['cost']:.2f}", ""))
    table((*keys, "GPU-HOURS", "GPU SHARE", "CPU-HOURS", "NODE-HOURS", "COST", "COST SHARE"), rows,
          title=f"usage since {data['since']} (recorded from {data['recorded_from']})")
