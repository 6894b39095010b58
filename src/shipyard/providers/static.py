"""Static pools: on-prem hardware that is already there and already paid for.

Nothing is ever created or deleted; list() finds the pool's nodes by the pool label
and, when provider_config has "nodeSelector" ("k=v,k2=v2"), by that selector too, so
existing machines need no relabelling to join a pool.
"""

from __future__ import annotations

from collections.abc import Sequence

from shipyard.kube.api import ApiClient
from shipyard.kube.resources import NODES
from shipyard.providers.base import ProviderResult, format_selector, is_live, parse_selector, pool_selector
from shipyard.spec.nodepool import NodePool

REFUSAL = "static pool: on-prem nodes are never created or deleted"


class StaticProvider:
    def __init__(self, client: ApiClient) -> None:
        self.client = client

    async def create(self, pool: NodePool, count: int, *, earmark: str | None = None) -> ProviderResult:
        return ProviderResult(False, error=f"nodepool {pool.name}: {REFUSAL}")

    async def delete(self, pool: NodePool, nodes: Sequence[str]) -> ProviderResult:
        return ProviderResult(False, error=f"nodepool {pool.name}: {REFUSAL}")

    def provisioning(self, pool: NodePool) -> int:
        return 0

    def take_failures(self, pool: NodePool) -> list[str]:
        return []

    async def aclose(self) -> None:
        return None

    async def list(self, pool: NodePool) -> list[str]:
        """Nodes with the pool label or matching the nodeSelector. A malformed selector
        raises ValueError naming the field."""
        selectors = [pool_selector(pool)]
        if pool.provider_config.get("nodeSelector", "").strip():
            try:
                labels = parse_selector(pool.provider_config["nodeSelector"])
            except ValueError as exc:
                raise ValueError(f"nodepool {pool.name}: provider_config {exc}") from None
            selectors.append(format_selector(labels))
        names: set[str] = set()
        for selector in selectors:
            items, _ = await self.client.list(NODES, label_selector=selector)
            names.update(n["metadata"]["name"] for n in items if is_live(n))
        return sorted(names)
