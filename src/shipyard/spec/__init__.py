"""The user-facing model: experiments, roles, machine types; validation and loading."""

from shipyard.spec.errors import SpecError
from shipyard.spec.experiment import Experiment, Resources, RetryPolicy, Role
from shipyard.spec.load import experiment_from_data, load_experiment
from shipyard.spec.machines import DEFAULT_MACHINE_TYPES, MachineType, Taint

__all__ = [
    "DEFAULT_MACHINE_TYPES",
    "Experiment",
    "MachineType",
    "Resources",
    "RetryPolicy",
    "Role",
    "SpecError",
    "Taint",
    "experiment_from_data",
    "load_experiment",
]
