"""Everything `shipyard install` puts in a cluster: CRDs, least-privilege RBAC for the
controller, and its Deployment. Applied with server-side apply, so it is idempotent."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from shipyard.kube.api import ApiClient
from shipyard.kube.crds import all_crds
from shipyard.kube.resources import BY_KIND, CRDS, GROUP

SYSTEM_NAMESPACE = "shipyard-system"
CONTROLLER = "shipyard-controller"
DEFAULT_IMAGE = "shipyard/controller:0.1.0"

# Exactly what the controller reads and writes, nothing more.
CLUSTER_RULES: list[dict[str, Any]] = [
    {"apiGroups": [GROUP], "resources": ["experiments", "queues", "nodepools"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [GROUP], "resources": ["experiments/status", "queues/status", "nodepools/status"],
     "verbs": ["get", "patch", "update"]},
    # Its capacity summary: the one object it creates and keeps current.
    {"apiGroups": [GROUP], "resources": ["clustercapacities", "clustercapacities/status"],
     "verbs": ["get", "create", "patch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "create", "delete",
                                                         "deletecollection"]},
    {"apiGroups": [""], "resources": ["pods/binding"], "verbs": ["create"]},
    # The last log line of a gang about to count as hung (hang_timeout: logs are activity).
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "create", "delete"]},
    # Each experiment's progress token: created with its gang, read to check reports.
    # (delete: a Secret of an earlier experiment of the same name, not yet collected)
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "delete"]},
    # Nodes: read by the scheduler; patched (earmarks, scale-down marks) by the
    # autoscaler; created and deleted only by the kwok provider (simulated pools).
    {"apiGroups": [""], "resources": ["nodes"],
     "verbs": ["get", "list", "watch", "patch", "create", "delete"]},
    # Cluster API pools: scale MachineDeployments, mark the Machines to remove.
    {"apiGroups": ["cluster.x-k8s.io"], "resources": ["machinedeployments"],
     "verbs": ["get", "list", "watch", "update", "patch"]},
    {"apiGroups": ["cluster.x-k8s.io"], "resources": ["machines"],
     "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
]
LEASE_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
     "verbs": ["get", "create", "update"]},
    # The usage ledger (GPU-hours per queue), kept so a restarted controller goes on counting.
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch"]},
]


def progress_url(port: int) -> str:
    """Where ranks reach an installed controller's progress receiver: its Service."""
    return f"http://{CONTROLLER}.{SYSTEM_NAMESPACE}.svc:{port}"


def manifests(image: str = DEFAULT_IMAGE, replicas: int = 1, *, cpu: str = "1",
              memory: str = "512Mi", memory_limit: str = "1Gi", node_selector: dict[str, str] | None = None,
              tolerations: list[dict[str, str]] | None = None,
              progress_port: int | None = None, metrics_port: int | None = None,
              quarantine_after: int = 0, quarantine_window: float | None = None,
              preflight_image: str | None = None, preflight_command: str | None = None,
              ) -> list[dict[str, Any]]:
    """`node_selector`/`tolerations` place the controller (a dev cluster's real nodes
    are tainted); `cpu`/`memory` are its requests. `progress_port`: the controller
    receives shipyard.progress reports there (on 0.0.0.0), behind a Service that pods
    are told of; the same objects as the chart's `progressPort`. `metrics_port` is
    served on 0.0.0.0 too, for Prometheus to scrape the pod. The rest are passed
    to `shipyard controller run` as its flags of the same names (the chart's
    metricsPort, quarantineAfter, quarantineWindow, preflightImage, preflightCommand)."""
    labels = {"app.kubernetes.io/name": CONTROLLER}
    meta = {"name": CONTROLLER, "namespace": SYSTEM_NAMESPACE, "labels": labels}
    subject = [{"kind": "ServiceAccount", "name": CONTROLLER, "namespace": SYSTEM_NAMESPACE}]
    run_args = [
        # In the pod, on every address: Prometheus scrapes it from outside.
        *([f"--metrics-port={metrics_port}", "--metrics-address=0.0.0.0"] if metrics_port else []),
        *([f"--quarantine-after={quarantine_after}"] if quarantine_after else []),
        *([f"--quarantine-window={quarantine_window:g}"] if quarantine_window else []),
        *([f"--preflight-image={preflight_image}"] if preflight_image else []),
        *([f"--preflight-command={preflight_command}"] if preflight_command else []),
    ]
    progress_args = [] if progress_port is None else [
        f"--progress-port={progress_port}", "--progress-address=0.0.0.0",
        f"--progress-url={progress_url(progress_port)}"]
    service = [] if progress_port is None else [{
        "apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {
            "selector": labels,
            "ports": [{"name": "progress", "port": progress_port, "targetPort": progress_port}]}}]
    return [
        *all_crds(),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": CONTROLLER, "labels": labels}, "rules": CLUSTER_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": CONTROLLER, "labels": labels}, "subjects": subject,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CONTROLLER}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
         "rules": LEASE_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
         "subjects": subject,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CONTROLLER}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "serviceAccountName": CONTROLLER,
                "containers": [{
                    "name": "controller", "image": image,
                    "command": ["shipyard", "controller", "run", "--in-cluster",
                                "--leader-elect", *run_args, *progress_args],
                    "env": [{"name": "POD_NAME",
                             "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "resources": {"requests": {"cpu": cpu, "memory": memory},
                                  "limits": {"memory": memory_limit}},
                }],
                **({"nodeSelector": node_selector} if node_selector else {}),
                **({"tolerations": tolerations} if tolerations else {}),
            }},
        }},
        *service,
    ]


async def install(client: ApiClient, objects: list[dict[str, Any]], timeout_s: float = 60) -> None:
    """Apply every object (CRDs first), then wait until the CRDs are Established."""
    for obj in objects:
        await client.apply(BY_KIND[obj["kind"]], obj)
    deadline = time.monotonic() + timeout_s
    for crd in (o for o in objects if o["kind"] == "CustomResourceDefinition"):
        while True:
            live = await client.get(CRDS, crd["metadata"]["name"])
            conditions = (live.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {crd['metadata']['name']} not Established after {timeout_s}s")
            await asyncio.sleep(0.2)
