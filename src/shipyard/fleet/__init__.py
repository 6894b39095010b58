"""Several clusters, from the client's side: read every cluster's capacity summary,
choose where an experiment goes, launch it there, move it between clusters.

Joins kube/ (the API servers) and core/ (the pure choice); never imports controller/
or cli/. The logic is async, written once; the CLI runs it with asyncio.run.
"""

from shipyard.core.clusters import demand_for
from shipyard.fleet.capacity_reader import ClusterReading, read_capacities
from shipyard.fleet.connect import Unreachable
from shipyard.fleet.launch import launch_many, submit
from shipyard.fleet.move import MoveError, MoveResult, move
from shipyard.fleet.placement import NoClusterFits, Placement, choose, choose_many, pick, pick_many
from shipyard.fleet.redispatch import redispatch_once
from shipyard.fleet.report import capacity_rows

__all__ = [
    "ClusterReading",
    "MoveError",
    "MoveResult",
    "NoClusterFits",
    "Placement",
    "Unreachable",
    "capacity_rows",
    "choose",
    "choose_many",
    "demand_for",
    "launch_many",
    "move",
    "pick",
    "pick_many",
    "read_capacities",
    "redispatch_once",
    "submit",
]
