"""Every configured cluster's capacity summary, read at once.

Each cluster's controller publishes one small ClusterCapacity object; reading it costs
one GET, so asking ten clusters takes as long as the slowest answer, bounded by a short
timeout. A cluster that cannot be asked is kept, with no capacity and the reason, so
the caller can say why it was skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shipyard.core.clusters import ClusterCapacity, ClusterOption
from shipyard.fleet.connect import DEFAULT_TIMEOUT_S, Unreachable, ask_all
from shipyard.kube.api import ApiClient
from shipyard.kube.errors import ApiError, NotFound
from shipyard.kube.resources import CLUSTER_CAPACITIES, CLUSTER_CAPACITY_NAME
from shipyard.spec.clusters import ClusterRef


@dataclass(frozen=True, slots=True)
class ClusterReading:
    ref: ClusterRef
    capacity: ClusterCapacity | None
    problem: str | None = None  # why capacity is None

    def option(self) -> ClusterOption:
        return ClusterOption.from_ref(self.ref, self.capacity)


async def _capacity_status(client: ApiClient) -> dict[str, Any] | None:
    obj = await client.get(CLUSTER_CAPACITIES, CLUSTER_CAPACITY_NAME)
    return obj.get("status") or None


def _reading(ref: ClusterRef, result: object) -> ClusterReading:
    if isinstance(result, Unreachable):
        return ClusterReading(ref, None, result.why)
    if isinstance(result, NotFound):
        return ClusterReading(ref, None, "no ClusterCapacity object: is the shipyard controller "
                                         "installed and running there?")
    if isinstance(result, ApiError):
        return ClusterReading(ref, None, str(result))
    if result is None:
        return ClusterReading(ref, None, "capacity not published yet (is the controller running?)")
    try:
        return ClusterReading(ref, ClusterCapacity.from_status(result))  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError) as exc:
        return ClusterReading(ref, None, f"unreadable ClusterCapacity status: {exc}")


async def read_capacities(refs: list[ClusterRef],
                          timeout_s: float = DEFAULT_TIMEOUT_S) -> list[ClusterReading]:
    """One reading per cluster, in config order; never raises for a cluster's fault."""
    results = await ask_all(refs, _capacity_status, timeout_s)
    return [_reading(ref, results[ref.name]) for ref in refs]
