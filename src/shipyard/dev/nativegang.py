"""kube-scheduler's own gang scheduling (alpha in v1.35/v1.36), for comparing with shipyard.

With the feature gates in `GATES` on (`shipyard dev up --feature-gates ...`), a
standalone PodGroup (scheduling.k8s.io/v1alpha2) with `schedulingPolicy.gang.minCount`
holds its pods: the GangScheduling plugin admits none to the queue before minCount of
them exist (PreEnqueue), schedules the group in one cycle and keeps every assumed pod
at Permit until minCount are, then binds them. A pod joins through
`spec.schedulingGroup.podGroupName`; no Workload object is needed (the PodGroup's
`podGroupTemplateRef` is optional).
"""

from __future__ import annotations

from typing import Any

from shipyard.kube.resources import Kind

GATES = {"GenericWorkload": True, "GangScheduling": True}
PODGROUPS = Kind("scheduling.k8s.io", "v1alpha2", "podgroups", "PodGroup", True)


def pod_group(name: str, namespace: str, min_count: int) -> dict[str, Any]:
    return {"apiVersion": PODGROUPS.api_version, "kind": PODGROUPS.kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"schedulingPolicy": {"gang": {"minCount": min_count}}}}


def join(pod: dict[str, Any], group: str) -> dict[str, Any]:
    """`pod` as a member of PodGroup `group` (left for kube-scheduler to place)."""
    pod["spec"].pop("nodeName", None)
    pod["spec"]["schedulingGroup"] = {"podGroupName": group}
    return pod
