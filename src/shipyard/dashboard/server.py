"""Start the dashboard: choose the sources, make the token, serve with uvicorn."""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shipyard.spec import Experiment
from shipyard.spec.clusters import ClusterRef, ClustersConfigMissing, load_clusters_config

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True, slots=True)
class Plan:
    refs: list[ClusterRef]
    local: bool
    host: str
    port: int
    token: str | None  # None: loopback without a token
    explain: Experiment | None = None  # the clusters page explains where it would go

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"/?token={self.token}" if self.token else "/"
        return f"http://{host}:{self.port}{query}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cluster_refs(contexts: Sequence[str], clusters_file: Path | None) -> list[ClusterRef]:
    """`-c` values: a cluster's name in the clusters config, else a kubeconfig context.
    None given: every configured cluster (none when there is no config)."""
    try:
        configured = list(load_clusters_config(clusters_file).clusters)
    except ClustersConfigMissing:
        if clusters_file is not None:
            raise
        configured = []
    if not contexts:
        return configured
    by_name = {r.name: r for r in configured}
    by_context = {r.context: r for r in configured}
    out = []
    for ctx in contexts:
        ref = by_name.get(ctx) or by_context.get(ctx)
        if ref is None:
            name = re.sub(r"[^a-z0-9-]+", "-", ctx.lower()).strip("-")[:63] or "cluster"
            ref = ClusterRef(name=name if name[0].isalpha() else f"c-{name}"[:63], context=ctx)
        out.append(ref)
    return out


def plan(contexts: Sequence[str], clusters_file: Path | None, host: str, port: int,
         token: str | None, local: bool, explain: Experiment | None = None) -> Plan:
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(24)  # anyone who can reach the port must not read it all
    return Plan(cluster_refs(contexts, clusters_file), local, host, port, token, explain)


def serve(p: Plan, on_ready: object = None) -> None:
    import uvicorn

    from shipyard.dashboard.app import create_app
    from shipyard.dashboard.hub import Hub
    from shipyard.dashboard.sources import ClusterSource, LocalSource
    from shipyard.fleet.connect import Clusters

    clusters = Clusters(p.refs)
    sources: list = [LocalSource()] if p.local else []
    sources += [ClusterSource(ref, clusters) for ref in p.refs]
    hosts = None if not is_loopback(p.host) else ["127.0.0.1", "localhost", "[::1]", "::1"]
    app = create_app(Hub(sources, interval_s=0.5), token=p.token, allowed_hosts=hosts, explain=p.explain)
    config = uvicorn.Config(app, host=p.host, port=p.port, log_level="warning", access_log=False,
                            lifespan="on")
    uvicorn.Server(config).run()
