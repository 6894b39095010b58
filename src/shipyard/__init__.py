"""shipyard: run deep-learning experiments on Kubernetes as a batch system."""

from shipyard.spec import Experiment, MachineType, Resources, RetryPolicy, Role, Taint

__all__ = ["Experiment", "MachineType", "Resources", "RetryPolicy", "Role", "Taint"]
__version__ = "0.1.0"
