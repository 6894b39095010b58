"""The parts of the pages that need more than the hub's rows: they ask the sources
(per cluster, at once, each bounded by fleet/connect.py's timeout) and render a fragment."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.templating import Jinja2Templates

from shipyard.cli.fleet_cmd import TIERS
from shipyard.dashboard.fleet_views import by_machine, gpu_hours_series, quota_text, used_text
from shipyard.dashboard.hub import Hub
from shipyard.dashboard.sources import ClusterSource, Detail
from shipyard.dashboard.views import Row, cells
from shipyard.fleet.capacity_reader import ClusterReading
from shipyard.fleet.placement import rank
from shipyard.fleet.report import capacity_rows
from shipyard.spec import Experiment
from shipyard.spec.quantity import parse_duration_seconds


def problems(hub: Hub) -> list[str]:
    return [f"cluster {s.name}: {s.problem}" for s in hub.clusters() if s.problem]


def row_data(r: Row) -> dict[str, Any]:
    c = cells(r)
    return {"key": r.key, "source": r.source, "namespace": r.namespace, "id": r.id, "queue": r.queue,
            "priority": r.priority, "phase": r.phase, "position": r.position, "reason": r.reason,
            "restarts": r.restarts, "age": c["age"], "progress": c["progress"], "percent": c["percent"],
            "eta": c["eta"], "estimated_start": c["estimate"]}


def detail_html(templates: Jinja2Templates, d: Detail) -> str:
    return templates.get_template("_detail.html").render(d=d, c=cells(d.row))


async def _per_cluster(hub: Hub, *parts: Callable[[ClusterSource], Awaitable[Any]],
                       build: Callable[[ClusterSource, Any], dict[str, Any]]) -> list[dict[str, Any]]:
    """`parts` of every cluster, asked at once and bounded by its timeout, then `build`
    per cluster; a cluster that did not answer gets its problem instead."""
    async def ask(s: ClusterSource) -> Any:
        return await asyncio.wait_for(asyncio.gather(*(p(s) for p in parts)), s.clusters.timeout_s * 2)

    sources = hub.clusters()
    results = await asyncio.gather(*(ask(s) for s in sources), return_exceptions=True)
    return [{"name": s.name, "problem": f"{type(r).__name__}: {r}"} if isinstance(r, BaseException)
            else build(s, r) for s, r in zip(sources, results, strict=True)]


def _queues(s: ClusterSource, result: Any) -> dict[str, Any]:
    rows, ledger = result
    hours: dict[str, float] = {}
    for (queue, _ns), amount in ledger.since(time.time() - 7 * 86400).items():
        hours[queue] = hours.get(queue, 0.0) + amount.gpu_seconds / 3600
    return {"name": s.name, "problem": "", "rows": [
        {"q": r, "used": used_text(r.used), "quota": quota_text(r), "demand": used_text(r.pending_demand),
         "gpu_hours": round(hours.get(r.name, 0.0), 2)} for r in rows]}


async def queues_html(templates: Jinja2Templates, hub: Hub) -> str:
    clusters = await _per_cluster(hub, ClusterSource.queues, ClusterSource.ledger, build=_queues)
    local = [r for r in hub.rows if r.source == "local"]
    return templates.get_template("_queues.html").render(clusters=clusters, local=local)


async def usage_series(hub: Hub, name: str, since: str) -> dict[str, Any]:
    source = hub.source(name)
    if not isinstance(source, ClusterSource):
        return {"t": []}
    try:
        since_s = parse_duration_seconds(since)
    except ValueError:
        since_s = 7 * 86400
    ledger = await source.ledger()
    return gpu_hours_series(ledger, time.time() - since_s)


def _capacity(s: ClusterSource, result: Any) -> dict[str, Any]:
    reading, cells_ = result
    return {"name": s.name, "problem": reading.problem or "", "capacity": capacity_rows([reading]),
            "machines": by_machine(cells_), "nodes": len(cells_), "reading": reading}


async def clusters_html(templates: Jinja2Templates, hub: Hub, explain: Experiment | None = None) -> str:
    clusters = await _per_cluster(hub, ClusterSource.capacity, ClusterSource.nodes, build=_capacity)
    return templates.get_template("_clusters.html").render(
        clusters=clusters, explain=explanation(explain, [c["reading"] for c in clusters if "reading" in c]))


def explanation(exp: Experiment | None, readings: list[ClusterReading]) -> dict[str, Any] | None:
    """`shipyard launch --cluster auto --explain` for the spec the dashboard was given."""
    if exp is None:
        return None
    scores = rank(exp, readings)
    chosen = scores[0] if scores and scores[0].tier.runnable else None
    return {"name": exp.name, "chosen": chosen, "scores": [
        {"cluster": s.cluster, "tier": f"{s.tier} {TIERS.get(s.tier, '')}", "cost": f"{s.cost_per_hour:.2f}",
         "wait": "" if s.wait_s in (None, float("inf")) else f"{s.wait_s:.0f}s", "reason": s.reason}
        for s in scores], "tiers": TIERS}
