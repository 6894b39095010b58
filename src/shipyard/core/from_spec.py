"""Spec -> what the policy schedules: an Experiment's gang, a Queue's share."""

from __future__ import annotations

from shipyard.core.model import UNLIMITED, Gang, Member, Queue, Resources, Toleration, Topology
from shipyard.spec import Experiment, Quota
from shipyard.spec import Queue as QueueSpec


def gang_for(
    exp: Experiment, key: str, submitted_at: float, *, select_machine_type: bool = True
) -> Gang:
    """One member per replica. `select_machine_type=False` for a single local machine,
    which stands in for every machine type as long as the resources are there."""
    members: list[Member] = []
    for role in exp.roles:
        req = exp.request(role)
        machine = exp.machine(role)
        request = Resources(req.cpu, req.memory, req.gpus)
        selector = machine.node_labels() if select_machine_type else {}
        tolerations = tuple(
            Toleration(key=t.key, value=t.value, effect=t.effect) for t in machine.taints
        )
        members.extend(
            Member(role.name, i, request, selector, tolerations) for i in range(role.replicas)
        )
    topology = (
        Topology(exp.topology.key, exp.topology.required) if exp.topology is not None else None
    )
    return Gang(key, exp.queue, exp.priority, submitted_at, tuple(members), exp.time_limit,
                topology)


def _amounts(quota: Quota | None) -> Resources:
    """A resource the quota leaves out is not limited by it."""
    if quota is None:
        return Resources(UNLIMITED, UNLIMITED, UNLIMITED)
    return Resources(
        UNLIMITED if quota.cpu is None else quota.cpu,
        UNLIMITED if quota.memory is None else quota.memory,
        UNLIMITED if quota.gpus is None else quota.gpus,
    )


def queue_for(spec: QueueSpec) -> Queue:
    return Queue(spec.name, spec.weight, _amounts(spec.nominal), _amounts(spec.borrowing_limit))
