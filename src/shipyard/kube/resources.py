"""The kinds shipyard reads and writes, and their REST paths."""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "shipyard.dev"
VERSION = "v1alpha1"


@dataclass(frozen=True, slots=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


PODS = Kind("", "v1", "pods", "Pod", True)
NODES = Kind("", "v1", "nodes", "Node", False)
SERVICES = Kind("", "v1", "services", "Service", True)
NAMESPACES = Kind("", "v1", "namespaces", "Namespace", False)
EVENTS = Kind("", "v1", "events", "Event", True)
CONFIG_MAPS = Kind("", "v1", "configmaps", "ConfigMap", True)
SECRETS = Kind("", "v1", "secrets", "Secret", True)
SERVICE_ACCOUNTS = Kind("", "v1", "serviceaccounts", "ServiceAccount", True)
LEASES = Kind("coordination.k8s.io", "v1", "leases", "Lease", True)
CRDS = Kind("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False)
CLUSTER_ROLES = Kind("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False)
CLUSTER_ROLE_BINDINGS = Kind(
    "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False
)
ROLES = Kind("rbac.authorization.k8s.io", "v1", "roles", "Role", True)
ROLE_BINDINGS = Kind("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True)
DEPLOYMENTS = Kind("apps", "v1", "deployments", "Deployment", True)

EXPERIMENTS = Kind(GROUP, VERSION, "experiments", "Experiment", True)
QUEUES = Kind(GROUP, VERSION, "queues", "Queue", False)
NODEPOOLS = Kind(GROUP, VERSION, "nodepools", "NodePool", False)
# One object, CLUSTER_CAPACITY_NAME: the controller's compact capacity summary, so a
# multi-cluster client reads one object per cluster instead of every node and pod.
CLUSTER_CAPACITIES = Kind(GROUP, VERSION, "clustercapacities", "ClusterCapacity", False)
CLUSTER_CAPACITY_NAME = "shipyard"

# Cluster API (the clusterapi node provider); v1beta2 is the storage version since v1.11.
CAPI_GROUP = "cluster.x-k8s.io"
MACHINE_DEPLOYMENTS = Kind(CAPI_GROUP, "v1beta2", "machinedeployments", "MachineDeployment", True)
MACHINES = Kind(CAPI_GROUP, "v1beta2", "machines", "Machine", True)

BY_KIND = {
    k.kind: k
    for k in (PODS, NODES, SERVICES, NAMESPACES, EVENTS, CONFIG_MAPS, SECRETS, SERVICE_ACCOUNTS, LEASES, CRDS,
              CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS, ROLES, ROLE_BINDINGS, DEPLOYMENTS,
              EXPERIMENTS, QUEUES, NODEPOOLS, CLUSTER_CAPACITIES, MACHINE_DEPLOYMENTS, MACHINES)
}
