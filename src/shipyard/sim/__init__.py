"""The simulator adapter: a virtual clock and a trace of experiments drive the same policy
(core.queueing, core.autoscale) as a cluster does."""

from shipyard.sim.engine import Simulation, simulate
from shipyard.sim.model import SimConfig, SimPool, SimResult, gang_of_arrival
from shipyard.sim.multi import MultiResult, Router, SimCluster, simulate_clusters
from shipyard.sim.trace import Arrival, TraceError, load_alibaba, load_csv

__all__ = [
    "Arrival",
    "MultiResult",
    "Router",
    "SimCluster",
    "SimConfig",
    "SimPool",
    "SimResult",
    "Simulation",
    "TraceError",
    "gang_of_arrival",
    "load_alibaba",
    "load_csv",
    "simulate",
    "simulate_clusters",
]
