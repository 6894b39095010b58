"""Machine type names across clusters.

A cluster may call a machine type by its own name (`machine_types: {gpu-a100: dgx-a100}`
in its ClusterRef): the spec's name is used to compare clusters, and the experiment
created there asks for the cluster's name, so that cluster's controller finds the nodes.
"""

from __future__ import annotations

from collections.abc import Mapping

from shipyard.spec import Experiment
from shipyard.spec.clusters import ClusterRef


def _renamed(exp: Experiment, mapping: Mapping[str, str]) -> Experiment:
    mapping = {k: v for k, v in mapping.items() if k != v}
    if not any(r.machine_type in mapping for r in exp.roles):
        return exp
    catalog = exp.catalog()
    extra = list(exp.machine_types)
    for role in exp.roles:
        new = mapping.get(role.machine_type)
        if new is not None and new not in catalog:
            # The same machine under the cluster's name (its nodes carry that name).
            catalog[new] = catalog[role.machine_type].model_copy(update={"name": new})
            extra.append(catalog[new])
    roles = [r.model_copy(update={"machine_type": mapping.get(r.machine_type, r.machine_type)})
             for r in exp.roles]
    return exp.model_copy(update={"roles": roles, "machine_types": extra})


def for_cluster(exp: Experiment, ref: ClusterRef) -> Experiment:
    """`exp` as it should be created in `ref`'s cluster (spec names -> its names)."""
    return _renamed(exp, ref.machine_types)


def from_cluster(exp: Experiment, ref: ClusterRef) -> Experiment:
    """`exp` read from `ref`'s cluster with the spec's machine type names again."""
    return _renamed(exp, {v: k for k, v in ref.machine_types.items()})


def between(exp: Experiment, source: ClusterRef, target: ClusterRef) -> Experiment:
    return for_cluster(from_cluster(exp, source), target)
