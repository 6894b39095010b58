"""Which cluster an experiment should go to: its demand, every cluster's capacity, and
the pure ranking in core.clusters.choose_cluster."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

from shipyard.core.clusters import ClusterScore, Tier, choose_cluster, demand_for
from shipyard.fleet.capacity_reader import ClusterReading, read_capacities
from shipyard.fleet.connect import DEFAULT_TIMEOUT_S
from shipyard.fleet.ledger import Ledger
from shipyard.spec import Experiment
from shipyard.spec.clusters import ClusterRef, ClustersConfig


class NoClusterFits(Exception):
    """No configured cluster can run the experiment; the message names each one's reason."""

    def __init__(self, name: str, scores: Sequence[ClusterScore]) -> None:
        lines = "\n".join(f"  {s.cluster}: {s.reason}" for s in scores) or "  (no clusters configured)"
        super().__init__(f"no cluster can run {name}:\n{lines}")
        self.scores = list(scores)


@dataclass(frozen=True, slots=True)
class Placement:
    cluster: ClusterRef
    scores: list[ClusterScore]  # every cluster, best first; scores[0] is the chosen one

    @property
    def chosen(self) -> ClusterScore:
        return self.scores[0]


def rank(exp: Experiment, readings: Sequence[ClusterReading],
         provisioning_delay_s: float = 120.0, now: float | None = None) -> list[ClusterScore]:
    """Waits count from `now` (default: the clock), as each cluster's nodes free up."""
    return choose_cluster(demand_for(exp), [r.option() for r in readings],
                          provisioning_delay_s=provisioning_delay_s,
                          now=time.time() if now is None else now)


def pick(exp: Experiment, readings: Sequence[ClusterReading],
         provisioning_delay_s: float = 120.0) -> Placement:
    """The best cluster from capacities already read; NoClusterFits when none can run it."""
    scores = rank(exp, readings, provisioning_delay_s)
    if not scores or not scores[0].tier.runnable:
        raise NoClusterFits(exp.name, scores)
    refs = {r.ref.name: r.ref for r in readings}
    return Placement(refs[scores[0].cluster], scores)


class ChargedReadings:
    """Every cluster's reading, with what was placed since charged to it (fleet/ledger.py),
    so placements made from one reading do not count on the same free capacity."""

    def __init__(self, readings: Sequence[ClusterReading]) -> None:
        self.readings = list(readings)
        self.ledgers = {r.ref.name: Ledger(r.capacity, r.ref.machine_types)
                        for r in readings if r.capacity is not None}

    def current(self) -> list[ClusterReading]:
        return [dataclasses.replace(r, capacity=self.ledgers[r.ref.name].capacity())
                if r.ref.name in self.ledgers else r for r in self.readings]

    def charge(self, exp: Experiment, cluster: str, tier: Tier) -> None:
        if cluster in self.ledgers:
            self.ledgers[cluster].charge(demand_for(exp), tier)


def pick_many(exps: Sequence[Experiment], readings: Sequence[ClusterReading]
              ) -> list[Placement | NoClusterFits]:
    """Place each experiment in turn from one reading, charging each placement to it."""
    out: list[Placement | NoClusterFits] = []
    book = ChargedReadings(readings)
    for exp in exps:
        try:
            p = pick(exp, book.current())
        except NoClusterFits as exc:
            out.append(exc)
            continue
        book.charge(exp, p.cluster.name, p.chosen.tier)
        out.append(p)
    return out


async def choose(exp: Experiment, config: ClustersConfig, timeout_s: float = DEFAULT_TIMEOUT_S) -> Placement:
    """Read every cluster's capacity now and choose where `exp` should run."""
    return pick(exp, await read_capacities(list(config.clusters), timeout_s))


async def choose_many(exps: Sequence[Experiment], config: ClustersConfig,
                     timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Placement | NoClusterFits]:
    """Where each of `exps` should run, from one reading of every cluster."""
    return pick_many(exps, await read_capacities(list(config.clusters), timeout_s))
