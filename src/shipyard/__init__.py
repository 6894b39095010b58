"""shipyard: run deep-learning experiments on Kubernetes as a batch system."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.sdk.progress import progress
    from shipyard.spec import (
        Checkpoint,
        EmptyDirSource,
        EnvFrom,
        EnvKey,
        Experiment,
        MachineType,
        Mount,
        NfsSource,
        Resources,
        RetryPolicy,
        Role,
        SecurityContext,
        Taint,
        Volume,
    )

__all__ = ["Checkpoint", "EmptyDirSource", "EnvFrom", "EnvKey", "Experiment", "MachineType", "Mount",
           "NfsSource", "Resources", "RetryPolicy", "Role", "SecurityContext", "Taint", "Volume",
           "progress"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported on first use: `import shipyard.cli.main` (every CLI start) must not pay for
    # the spec's pydantic models; `from shipyard import Experiment` works as before.
    if name == "progress":  # the standard library only: cheap in every training job
        from shipyard.sdk.progress import progress

        return progress
    if name in __all__:
        import shipyard.spec

        return getattr(shipyard.spec, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
