"""The embedded backend: an experiment's replicas as processes on this machine."""

from shipyard.local.backend import cancel, launch, read_logs
from shipyard.local.store import RunNotFound, RunStatus, Store

__all__ = ["RunNotFound", "RunStatus", "Store", "cancel", "launch", "read_logs"]
