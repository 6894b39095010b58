"""The one interface every node provider offers the autoscaler, and what they share.

A provider turns "this pool needs N more nodes" or "remove these nodes" into writes
against some cloud (kwok's simulated one, Cluster API, or nobody for static pools).
Expected cloud failures (no capacity, a refused request, an API error) come back as
data, in ProviderResult or take_failures(), never as exceptions: the autoscaler backs
the pool off and tries another. list() may raise kube.errors.ApiError when the API
server itself cannot answer; that is the caller's retry loop's business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from shipyard.api.vocab import LABEL_NODEPOOL
from shipyard.spec.machines import DEFAULT_MACHINE_TYPES, MachineType
from shipyard.spec.nodepool import NodePool

if TYPE_CHECKING:
    from shipyard.kube.api import ApiClient



@dataclass(frozen=True, slots=True)
class ProviderResult:
    ok: bool
    nodes: tuple[str, ...] = ()  # node names created/requested or deleted
    error: str = ""  # failures are returned as data, never raised for expected cloud errors


class Provider(Protocol):
    async def create(self, pool: NodePool, count: int, *, earmark: str | None = None) -> ProviderResult:
        """Request `count` new nodes; returns at once, nodes register later. A refusal
        comes back here (ok=False); failures of accepted requests come from take_failures()."""
        ...

    async def delete(self, pool: NodePool, nodes: Sequence[str]) -> ProviderResult:
        """Remove these nodes of the pool; `nodes` in the answer are the ones going away."""
        ...

    def provisioning(self, pool: NodePool) -> int:
        """Nodes requested and not yet registered (nor failed)."""
        ...

    def take_failures(self, pool: NodePool) -> list[str]:
        """Provisioning failures since the last call, as human messages."""
        ...

    async def aclose(self) -> None:
        """Stop background work (pending simulated creations)."""
        ...

    async def list(self, pool: NodePool) -> list[str]:
        """Names of this pool's nodes registered in the cluster."""
        ...


def provider_for(pool: NodePool, client: ApiClient,
                 machine_types: Mapping[str, MachineType] | None = None) -> Provider:
    """The provider of `pool.provider` kind for this client: one shared instance per kind,
    so every caller sees the same pending requests and failures. `machine_types`
    (a catalog beyond the defaults) is remembered for later calls of this client."""
    # Imported here: the registry imports the providers, and they import this module.
    from shipyard.providers.registry import shared_providers

    return shared_providers(client, machine_types).get(pool)


def machine_type_for(pool: NodePool, catalog: Mapping[str, MachineType] | None = None) -> MachineType:
    """The pool's machine type by name; a clear error names the field and the choices."""
    types = DEFAULT_MACHINE_TYPES if catalog is None else catalog
    try:
        return types[pool.machine_type]
    except KeyError:
        known = ", ".join(sorted(types))
        raise ValueError(
            f"nodepool {pool.name}: machine_type {pool.machine_type!r} is unknown; known: {known}"
        ) from None


def parse_selector(text: str) -> dict[str, str]:
    """"k=v,k2=v2" -> {"k": "v", "k2": "v2"} (equality selectors only)."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"nodeSelector: {part!r} is not key=value; write e.g. 'rack=r1,zone=a'")
        out[key.strip()] = value.strip()
    return out


def format_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def pool_selector(pool: NodePool) -> str:
    return f"{LABEL_NODEPOOL}={pool.name}"


def is_live(obj: Mapping) -> bool:
    """Not on its way out (deletionTimestamp unset)."""
    return not (obj.get("metadata") or {}).get("deletionTimestamp")
