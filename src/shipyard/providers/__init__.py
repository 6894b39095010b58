"""Where nodes come from: kwok (a simulated cloud), Cluster API MachineDeployments, and
static on-prem pools, behind one small async interface (providers.base.Provider)."""

from shipyard.api.vocab import ANNOTATION_EARMARK, LABEL_NODEPOOL
from shipyard.providers.base import Provider, ProviderResult, provider_for
from shipyard.providers.clusterapi import ClusterApiProvider
from shipyard.providers.kwok import KwokProvider
from shipyard.providers.registry import Providers, config_error, shared_providers
from shipyard.providers.static import StaticProvider

__all__ = [
    "ANNOTATION_EARMARK",
    "LABEL_NODEPOOL",
    "ClusterApiProvider",
    "KwokProvider",
    "Provider",
    "ProviderResult",
    "Providers",
    "StaticProvider",
    "config_error",
    "provider_for",
    "shared_providers",
]
