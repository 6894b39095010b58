"""The user-facing model: experiments, roles, machine types, queues; validation and loading."""

from shipyard.spec.clusters import (
    ClusterRef,
    ClustersConfig,
    ClustersConfigMissing,
    clusters_config_from_data,
    load_clusters_config,
)
from shipyard.spec.errors import SpecError
from shipyard.spec.experiment import Checkpoint, Experiment, Resources, RetryPolicy, Role, Topology
from shipyard.spec.load import experiment_from_data, load_experiment
from shipyard.spec.machines import DEFAULT_MACHINE_TYPES, MachineType, Taint
from shipyard.spec.nodepool import NodePool
from shipyard.spec.podspec import EmptyDirSource, EnvFrom, EnvKey, Mount, NfsSource, SecurityContext, Volume
from shipyard.spec.queue import Queue, Quota

__all__ = [
    "DEFAULT_MACHINE_TYPES",
    "Checkpoint",
    "ClusterRef",
    "ClustersConfig",
    "ClustersConfigMissing",
    "EmptyDirSource",
    "EnvFrom",
    "EnvKey",
    "Experiment",
    "MachineType",
    "Mount",
    "NfsSource",
    "NodePool",
    "Queue",
    "Quota",
    "Resources",
    "RetryPolicy",
    "Role",
    "SecurityContext",
    "SpecError",
    "Taint",
    "Topology",
    "Volume",
    "clusters_config_from_data",
    "experiment_from_data",
    "load_clusters_config",
    "load_experiment",
]
