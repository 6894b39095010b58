"""Experiment spec -> the gang the policy schedules."""

from __future__ import annotations

from shipyard.core.model import Gang, Member, Resources, Toleration
from shipyard.spec import Experiment


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
    return Gang(key, exp.queue, exp.priority, submitted_at, tuple(members), exp.time_limit)
