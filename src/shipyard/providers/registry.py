"""Which provider serves a pool: one instance per kind per cluster client, shared, so
pending requests and failures of a pool are seen by every caller."""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import Mapping

from shipyard.kube.api import ApiClient
from shipyard.providers.base import Provider, machine_type_for, parse_selector
from shipyard.providers.clusterapi import CapiConfig, ClusterApiProvider
from shipyard.providers.kwok import KwokConfig, KwokProvider
from shipyard.providers.static import StaticProvider
from shipyard.spec.machines import MachineType
from shipyard.spec.nodepool import NodePool


class Providers:
    def __init__(self, client: ApiClient, *, machine_types: Mapping[str, MachineType] | None = None,
                 rng: random.Random | None = None) -> None:
        self.client = client
        self.machine_types = machine_types
        self.rng = rng
        self._by_kind: dict[str, Provider] = {}

    def get(self, pool: NodePool) -> Provider:
        kind = pool.provider
        if kind not in self._by_kind:
            if kind == "kwok":
                self._by_kind[kind] = KwokProvider(self.client, self.machine_types, self.rng)
            elif kind == "clusterapi":
                self._by_kind[kind] = ClusterApiProvider(self.client)
            elif kind == "static":
                self._by_kind[kind] = StaticProvider(self.client)
            else:  # NodePool's Literal keeps this unreachable for validated pools
                raise ValueError(f"nodepool {pool.name}: unknown provider {kind!r}; "
                                 "use kwok, clusterapi or static")
        return self._by_kind[kind]

    def set_machine_types(self, machine_types: Mapping[str, MachineType]) -> None:
        self.machine_types = machine_types
        kwok = self._by_kind.get("kwok")
        if isinstance(kwok, KwokProvider):
            kwok.machine_types = machine_types

    async def aclose(self) -> None:
        """Cancel pending simulated creations; call before closing the client."""
        await asyncio.gather(*(p.aclose() for p in self._by_kind.values()))


_shared: weakref.WeakKeyDictionary[ApiClient, Providers] = weakref.WeakKeyDictionary()


def shared_providers(client: ApiClient,
                     machine_types: Mapping[str, MachineType] | None = None) -> Providers:
    """The Providers of this client, made on first use; a catalog given replaces the last."""
    if client not in _shared:
        _shared[client] = Providers(client)
    providers = _shared[client]
    if machine_types is not None:
        providers.set_machine_types(machine_types)
    return providers


def config_error(pool: NodePool, machine_types: Mapping[str, MachineType] | None = None) -> str:
    """"" if the pool's provider_config (and machine type, for kwok) is usable, else
    the one error a user should see; lets a controller reject a pool up front."""
    try:
        if pool.provider == "kwok":
            KwokConfig.parse(pool)
            machine_type_for(pool, machine_types)
        elif pool.provider == "clusterapi":
            CapiConfig.parse(pool)
        elif pool.provider == "static":
            unknown = sorted(set(pool.provider_config) - {"nodeSelector"})
            if unknown:
                return (f"nodepool {pool.name}: unknown static provider_config {unknown}; "
                        "known: ['nodeSelector']")
            parse_selector(pool.provider_config.get("nodeSelector", ""))
    except ValueError as exc:
        return str(exc)
    return ""
