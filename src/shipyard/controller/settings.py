"""The controller's settings, one tree: what `shipyard controller run`'s flags set.

Plain frozen dataclasses, each small and documented. The scheduling `Policy` and the
`AutoscaleSettings` are core's, the very ones the simulator takes (SimConfig.policy,
SimConfig.autoscale), so a benchmarked policy is the deployed one. The defaults are
the flags' defaults (cli/controller_cmd.py reads them from here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shipyard.core.model import AutoscaleSettings, Policy


@dataclass(frozen=True, slots=True)
class QuarantineSettings:
    """Taking out nodes on which gang after gang fails (controller/quarantine.py)."""

    after: int = 0  # experiments failed on a node within window_s that quarantine it; 0: never
    window_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class LeaderSettings:
    """Leader election among replicas (kube/leader.py): 0 < retry_s < renew_deadline_s < lease_s."""

    elect: bool = True  # False: this replica acts alone, no Lease
    lease_s: float = 15.0  # a standby waits this long, seeing the lease unrenewed, then takes over
    renew_deadline_s: float = 10.0  # the leader stops writing and exits past this without renewing
    retry_s: float = 2.0  # between renewals (and a standby's tries)


@dataclass(frozen=True, slots=True)
class ProgressSettings:
    """The receiver of ranks' progress reports (controller/progress.py)."""

    port: int
    address: str = "127.0.0.1"
    url: str | None = None  # where ranks reach it; None: http://ADDRESS:PORT
    interval_s: float = 10.0  # between two status.progress writes of an experiment
    grpc_port: int | None = None  # also over gRPC on this port (needs grpcio)


@dataclass(frozen=True, slots=True)
class PreflightSettings:
    """Check pods on new nodes tainted shipyard.dev/preflight (controller/preflight.py)."""

    image: str
    command: tuple[str, ...] | None = None  # None: the image's own


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """Everything the controller is configured with."""

    policy: Policy = field(default_factory=Policy)
    autoscale: AutoscaleSettings = field(default_factory=AutoscaleSettings)
    quarantine: QuarantineSettings = field(default_factory=QuarantineSettings)
    leader: LeaderSettings = field(default_factory=LeaderSettings)
    progress: ProgressSettings | None = None  # None: no receiver
    preflight: PreflightSettings | None = None  # None: no check pods
    metrics_port: int | None = None  # Prometheus metrics on metrics_address:PORT; None: not served
    metrics_address: str = "127.0.0.1"  # 0.0.0.0 in a cluster's pod, for Prometheus to scrape
