"""A node pool: nodes of one machine type from one provider, between min and max."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from shipyard.spec.experiment import DNS_LABEL, Seconds
from shipyard.spec.machines import MAX_PRICE, StrictModel

MAX_NODES = 100_000  # nodes in one pool; Kubernetes' tested limit is 5,000 per cluster


class NodePool(StrictModel):
    """Where nodes come from. `static` pools (on-prem hardware already paid for) are
    never grown or shrunk; `kwok` (simulated cloud) and `clusterapi` pools are."""

    name: str = Field(pattern=DNS_LABEL, max_length=63)
    machine_type: str = Field(min_length=1)
    provider: Literal["kwok", "clusterapi", "static"] = "kwok"
    min_nodes: int = Field(default=0, ge=0, le=MAX_NODES)
    max_nodes: int = Field(default=100, ge=0, le=MAX_NODES)
    # Idle capacity kept on purpose for fast starts (the "balloon" trick).
    warm_buffer: int = Field(default=0, ge=0, le=MAX_NODES)
    idle_timeout: Seconds = 600.0
    # Overrides the machine type's price (e.g. a negotiated or amortised on-prem rate).
    cost_per_hour: float | None = Field(default=None, ge=0, le=MAX_PRICE)
    # Provider settings, e.g. {"machineDeployment": "md-a100", "namespace": "capi"}.
    provider_config: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _bounds(self) -> NodePool:
        if self.min_nodes > self.max_nodes:
            raise ValueError(
                f"min_nodes: must be <= max_nodes ({self.max_nodes}), got {self.min_nodes}; "
                "raise max_nodes or lower min_nodes"
            )
        return self
