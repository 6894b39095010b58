"""Several simulated clusters side by side on one virtual clock, and a router that sends
each arriving experiment to one of them.

Each cluster is a Simulation with its own pools and settings. At every instant the
clusters first handle their own events (nodes registering, gangs finishing) and run
their policy cycle; then the experiments submitted at that instant are routed one at a
time, each seeing the clusters as the ones before it left them, and decided at once by
the cluster it went to. At the end every cluster is accounted up to the same instant
(the last event of any of them), so a static pool is paid for the whole run even when
nothing was sent to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from shipyard.sim.engine import Simulation
from shipyard.sim.model import SimConfig, SimPool, SimResult
from shipyard.sim.trace import Arrival

# (the experiment, the clusters by name) -> the name of the cluster it goes to
Router = Callable[[Arrival, Mapping[str, Simulation]], str]


@dataclass(frozen=True, slots=True)
class SimCluster:
    name: str
    pools: tuple[SimPool, ...]
    config: SimConfig = field(default_factory=SimConfig)


@dataclass(frozen=True, slots=True)
class MultiResult:
    clusters: Mapping[str, SimResult]
    routed: Mapping[str, str]  # experiment -> cluster
    end_s: float  # the common end of the run

    @property
    def waits(self) -> tuple[float, ...]:
        return tuple(sorted(w for r in self.clusters.values() for w in r.waits))

    @property
    def not_started(self) -> int:
        return sum(r.not_started for r in self.clusters.values())

    @property
    def mean_wait_s(self) -> float:
        waits = self.waits
        return sum(waits) / len(waits) if waits else 0.0

    @property
    def p95_wait_s(self) -> float:
        """Nearest-rank 95th percentile."""
        waits = self.waits
        return waits[max(math.ceil(0.95 * len(waits)) - 1, 0)] if waits else 0.0


def simulate_clusters(arrivals: Sequence[Arrival], clusters: Sequence[SimCluster], route: Router,
                      horizon_s: float | None = None) -> MultiResult:
    """Run the clusters together; `route` picks a cluster for each arrival."""
    names = [c.name for c in clusters]
    if not clusters or len(set(names)) != len(names):
        raise ValueError(f"clusters: need at least one, with unique names (got {names})")
    order = sorted(arrivals, key=lambda a: (a.submit_s, a.name))
    if len({a.name for a in order}) != len(order):
        raise ValueError("arrivals: experiment names must be unique")
    if horizon_s is None:
        horizon_s = (order[-1].submit_s if order else 0.0) + 30 * 86400.0
    sims = {c.name: Simulation([], c.pools, c.config, fast=False) for c in clusters}
    for sim in sims.values():
        sim.horizon = horizon_s
    routed: dict[str, str] = {}
    i = 0
    while True:
        due = [t for t in (s.next_time() for s in sims.values()) if t is not None]
        t = min([*due, order[i].submit_s if i < len(order) else math.inf])
        if t == math.inf or t > horizon_s:
            break
        for sim in sims.values():
            if sim.next_time() == t:
                sim.step()
        while i < len(order) and order[i].submit_s == t:
            a = order[i]
            name = route(a, sims)
            if name not in sims:
                raise ValueError(f"router sent {a.name} to unknown cluster {name!r}; "
                                 f"clusters: {', '.join(sims)}")
            routed[a.name] = name
            sims[name].arrive(a)
            i += 1
    end = max(s.now for s in sims.values())
    for sim in sims.values():
        sim.advance(end)
    return MultiResult({n: s.result() for n, s in sims.items()}, routed, end)
