"""Create experiments in the clusters placement chose."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any

from shipyard.fleet.capacity_reader import read_capacities
from shipyard.fleet.connect import DEFAULT_TIMEOUT_S, ask
from shipyard.fleet.machines import for_cluster
from shipyard.fleet.placement import NoClusterFits, Placement, pick_many
from shipyard.kube import experiments as kexp
from shipyard.kube.api import ApiClient
from shipyard.spec import Experiment
from shipyard.spec.clusters import ClusterRef, ClustersConfig

# Creating the namespace and the Experiment: two round trips, more than a capacity GET.
SUBMIT_TIMEOUT_S = 30.0


async def submit(ref: ClusterRef, exp: Experiment, timeout_s: float = SUBMIT_TIMEOUT_S) -> dict[str, Any]:
    """Create `exp` in `ref`'s cluster, its machine types renamed to that cluster's."""
    spec = for_cluster(exp, ref)
    return await ask(ref, lambda c: kexp.submit(c, spec), timeout_s)


async def launch_many(exps: Sequence[Experiment], config: ClustersConfig, *,
                      timeout_s: float = DEFAULT_TIMEOUT_S,
                      submit_timeout_s: float = 120.0) -> list[Placement | NoClusterFits]:
    """Place every experiment from one reading of all clusters (each charged to the
    reading as it is placed), then create each where it was placed: one connection per
    cluster. A cluster that fails the creation raises (Unreachable or an ApiError)."""
    placements = pick_many(exps, await read_capacities(list(config.clusters), timeout_s))
    by_cluster: dict[str, list[Experiment]] = {}
    refs: dict[str, ClusterRef] = {}
    for exp, p in zip(exps, placements, strict=True):
        if isinstance(p, Placement):
            by_cluster.setdefault(p.cluster.name, []).append(for_cluster(exp, p.cluster))
            refs[p.cluster.name] = p.cluster

    async def create_all(batch: list[Experiment], c: ApiClient) -> None:
        await asyncio.gather(*(kexp.submit(c, e) for e in batch))

    await asyncio.gather(*(ask(refs[name], functools.partial(create_all, batch), submit_timeout_s)
                           for name, batch in by_cluster.items()))
    return placements
