"""Experiment -> the exact Kubernetes objects it becomes: a headless Service for
rendezvous and one Pod per replica of every role. Pure: needs no cluster."""

from __future__ import annotations

from typing import Any

from shipyard.api.vocab import ANNOTATION_RANK, LABEL_EXPERIMENT, LABEL_INDEX, LABEL_QUEUE, LABEL_ROLE
from shipyard.render import runtime
from shipyard.render.dump import dump_all
from shipyard.render.env import pod_name, rank_layout, replica_env
from shipyard.render.pod_extras import apply_extras
from shipyard.spec import Experiment, Role
from shipyard.spec.machines import RESOURCE_GPU
from shipyard.spec.quantity import format_cpu, format_memory


def cluster_address(exp: Experiment):
    """Pods reach each other as <pod>.<service> through the headless Service."""

    def address(role: Role, index: int) -> tuple[str, int]:
        return f"{pod_name(exp, role, index)}.{exp.name}", role.port

    return address


def cluster_host_pattern(exp: Experiment):
    def pattern(role: Role) -> str:
        return f"{exp.name}-{role.name}-{{index}}.{exp.name}"

    return pattern


def render_service(exp: Experiment) -> dict[str, Any]:
    ports = sorted({r.port for r in exp.roles})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": exp.name,
            "namespace": exp.namespace,
            "labels": {LABEL_EXPERIMENT: exp.name},
        },
        "spec": {
            "clusterIP": "None",
            # Ranks must find each other before any of them is Ready.
            "publishNotReadyAddresses": True,
            "selector": {LABEL_EXPERIMENT: exp.name},
            "ports": [{"name": f"rdzv-{p}", "port": p, "targetPort": p} for p in ports],
        },
    }


def render_pod(exp: Experiment, role: Role, index: int) -> dict[str, Any]:
    machine = exp.machine(role)
    request = exp.request(role)
    requests: dict[str, str] = {
        "cpu": format_cpu(request.cpu),
        "memory": format_memory(request.memory),
    }
    limits: dict[str, str] = {"memory": requests["memory"]}
    if request.gpus:
        # Extended resources must be equal in requests and limits.
        requests[RESOURCE_GPU] = limits[RESOURCE_GPU] = str(request.gpus)
    env = replica_env(exp, role, index, cluster_address(exp), cluster_host_pattern(exp))
    container: dict[str, Any] = {
        "name": role.name,
        "image": role.image,
        "command": list(role.command),
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "resources": {"requests": requests, "limits": limits},
        "ports": [{"name": "rdzv", "containerPort": role.port}],
    }
    if role.working_dir:
        container["workingDir"] = role.working_dir
    name = pod_name(exp, role, index)
    labels = {
        **exp.labels,
        LABEL_EXPERIMENT: exp.name,
        LABEL_ROLE: role.name,
        LABEL_INDEX: str(index),
        LABEL_QUEUE: exp.queue,
    }
    annotations = dict(role.annotations)
    node_rank = rank_layout(exp).node_rank.get((role.name, index))
    if node_rank is not None:
        annotations[ANNOTATION_RANK] = str(node_rank)
    spec: dict[str, Any] = {
        "hostname": name,
        "subdomain": exp.name,
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "nodeSelector": machine.node_labels(),
        "containers": [container],
    }
    if machine.taints:
        spec["tolerations"] = [
            {"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect}
            for t in machine.taints
        ]
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": exp.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }
    apply_extras(pod, exp, role)
    runtime.apply(pod, exp, role)
    return pod


def render_experiment(exp: Experiment) -> list[dict[str, Any]]:
    """The Service first, then pods in role order and index order."""
    objects = [render_service(exp)]
    for role in exp.roles:
        objects.extend(render_pod(exp, role, i) for i in range(role.replicas))
    return objects


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """The objects as a multi-document YAML stream, as `shipyard render` prints them."""
    return dump_all(objects)
