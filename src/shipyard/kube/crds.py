"""CustomResourceDefinitions for Experiment, Queue and NodePool.

Specs are generated from the same pydantic models that validate spec files, so the
API server rejects exactly what `shipyard launch` would. Status is written only by
the controller, through the status subresource.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shipyard.kube.resources import (
    CLUSTER_CAPACITIES,
    EXPERIMENTS,
    GROUP,
    NODEPOOLS,
    QUEUES,
    VERSION,
    Kind,
)
from shipyard.kube.schema import structural_schema
from shipyard.spec import Experiment, NodePool, Queue

_STRING = {"type": "string"}
_INT = {"type": "integer"}

EXPERIMENT_STATUS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "phase": _STRING,          # a shipyard.api.vocab.Phase: Queued, Admitted, Starting, Running, ...
        "message": _STRING,        # why it waits / what happened, for a person
        "position": _INT,          # 1-based place in scheduling order while queued
        # While queued: when it may start (core/start_estimate.py); no `at`: unknown.
        "startEstimate": {"type": "object", "properties": {
            "at": _STRING, "after": {"type": "array", "items": _STRING}, "basis": _STRING,
            "reason": _STRING}},
        "restarts": _INT,
        "attempt": _INT,
        # Bumped by every status write (api/status.py): how the controller tells that
        # the watch has caught up with what it wrote. Pruned, every status read as 0.
        "revision": _INT,
        "pods": _STRING,           # "ready/total", for `kubectl get`
        "placement": {"type": "object", "additionalProperties": _STRING},  # pod -> node
        "submittedAt": _STRING,
        "admittedAt": _STRING,
        "startedAt": _STRING,
        "finishedAt": _STRING,
        "nextAttemptAt": _STRING,
        "failedPod": _STRING,
        # Written by the progress receiver (controller/progress.py), at most once per interval.
        "progress": {"type": "object", "properties": {
            "step": _INT, "totalSteps": {**_INT, "nullable": True},
            "percent": {"type": "number", "nullable": True}, "stepsPerSecond": {"type": "number"},
            "eta": {**_STRING, "nullable": True}, "updatedAt": _STRING,
            "metrics": {"type": "object", "additionalProperties": {"type": "number"}}}},
        "conditions": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    },
}

PRINTER_COLUMNS: dict[str, list[dict[str, Any]]] = {
    "Experiment": [
        {"name": "Queue", "type": "string", "jsonPath": ".spec.queue"},
        {"name": "Priority", "type": "integer", "jsonPath": ".spec.priority"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Pods", "type": "string", "jsonPath": ".status.pods"},
        {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts"},
        {"name": "Position", "type": "integer", "jsonPath": ".status.position"},
        {"name": "Start", "type": "string", "jsonPath": ".status.startEstimate.at"},  # while queued
        {"name": "Progress", "type": "number", "jsonPath": ".status.progress.percent"},
        {"name": "ETA", "type": "string", "jsonPath": ".status.progress.eta"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Message", "type": "string", "jsonPath": ".status.message"},
    ],
    "Queue": [
        {"name": "Weight", "type": "number", "jsonPath": ".spec.weight"},
        {"name": "Pending", "type": "integer", "jsonPath": ".status.pending"},
        {"name": "Running", "type": "integer", "jsonPath": ".status.running"},
        {"name": "GPUs", "type": "integer", "jsonPath": ".status.usage.gpus"},
        {"name": "Share", "type": "string", "jsonPath": ".status.share"},
    ],
    "NodePool": [
        {"name": "Machine", "type": "string", "jsonPath": ".spec.machine_type"},
        {"name": "Provider", "type": "string", "jsonPath": ".spec.provider"},
        {"name": "Min", "type": "integer", "jsonPath": ".spec.min_nodes"},
        {"name": "Max", "type": "integer", "jsonPath": ".spec.max_nodes"},
        {"name": "Desired", "type": "integer", "jsonPath": ".status.desired"},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.ready"},
        {"name": "Idle", "type": "integer", "jsonPath": ".status.idle"},
    ],

    "ClusterCapacity": [
        {"name": "GPUs", "type": "integer", "jsonPath": ".status.totalGpus"},
        {"name": "Running GPUs", "type": "integer", "jsonPath": ".status.runningGpus"},
        {"name": "Updated", "type": "string", "jsonPath": ".status.updatedAt"},
    ],
}

SHORT_NAMES = {"Experiment": ["exp", "exps"], "Queue": ["sq"], "NodePool": ["np"],
               "ClusterCapacity": ["capacity"]}


def _crd(kind: Kind, model: type[BaseModel] | None, exclude: set[str],
         status: dict[str, Any]) -> dict[str, Any]:
    """`model`: the spec's pydantic model (None: a status-only resource)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced" if kind.namespaced else "Cluster",
            "names": {
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "kind": kind.kind,
                "shortNames": SHORT_NAMES[kind.kind],
                "categories": ["shipyard"],
            },
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": PRINTER_COLUMNS[kind.kind],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "required": ["spec"] if model is not None else [],
                    "properties": {
                        "apiVersion": _STRING,
                        "kind": _STRING,
                        "metadata": {"type": "object"},
                        "spec": structural_schema(model, exclude) if model is not None
                        else {"type": "object"},
                        "status": status,
                    },
                }},
            }],
        },
    }


_OPEN_STATUS = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def all_crds() -> list[dict[str, Any]]:
    # name (and namespace) live in metadata, not in spec.
    return [
        _crd(EXPERIMENTS, Experiment, {"name", "namespace"}, EXPERIMENT_STATUS),
        _crd(QUEUES, Queue, {"name"}, _OPEN_STATUS),
        _crd(NODEPOOLS, NodePool, {"name"}, _OPEN_STATUS),
        _crd(CLUSTER_CAPACITIES, None, set(), _OPEN_STATUS),
    ]
