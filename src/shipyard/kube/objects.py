"""Experiment spec <-> its custom resource."""

from __future__ import annotations

from typing import Any

from shipyard.kube.resources import EXPERIMENTS, NODEPOOLS
from shipyard.spec import Experiment, NodePool, experiment_from_data


def experiment_resource(exp: Experiment) -> dict[str, Any]:
    return {
        "apiVersion": EXPERIMENTS.api_version,
        "kind": EXPERIMENTS.kind,
        "metadata": {"name": exp.name, "namespace": exp.namespace, "labels": dict(exp.labels)},
        "spec": exp.model_dump(mode="json", exclude={"name", "namespace"}),
    }


def experiment_from_resource(obj: dict[str, Any]) -> Experiment:
    meta = obj["metadata"]
    data = {**obj.get("spec", {}), "name": meta["name"], "namespace": meta.get("namespace", "default")}
    return experiment_from_data(data, f"Experiment {meta.get('namespace')}/{meta['name']}")


def nodepool_resource(pool: NodePool) -> dict[str, Any]:
    return {
        "apiVersion": NODEPOOLS.api_version,
        "kind": NODEPOOLS.kind,
        "metadata": {"name": pool.name},
        "spec": pool.model_dump(mode="json", exclude={"name"}),
    }
