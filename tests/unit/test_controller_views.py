"""What the controller keeps of a Node: the fields the policy needs, the truth about readiness."""

from __future__ import annotations

from shipyard.controller.views import node_view
from shipyard.core.model import Resources, Taint


def node(ready: str, taints: list[dict]) -> dict:
    return {"metadata": {"name": "n1", "labels": {"zone": "a"}},
            "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": ready}],
                       "allocatable": {"cpu": "8", "memory": "16Gi", "nvidia.com/gpu": "2"}}}


TAINTS = [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
          {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]


def test_a_ready_node_drops_the_lagging_not_ready_taint_only():
    view = node_view(node("True", TAINTS))
    assert view.ready and view.taints == (Taint("nvidia.com/gpu", "present"),)
    assert view.allocatable == Resources(8000, 16 * 2**30, 2)


def test_a_node_that_is_not_ready_keeps_its_taints_and_is_not_ready():
    view = node_view(node("False", TAINTS))
    assert not view.ready and len(view.taints) == 2


def test_a_pod_whose_unpack_failed_carries_that_exit_code_for_the_failure_message():
    from shipyard.controller.views import pod_view

    def pod(init_code: int, main: dict) -> dict:
        return {"metadata": {"name": "p", "namespace": "n"}, "spec": {},
                "status": {"phase": "Failed",
                           "initContainerStatuses": [{"name": "shipyard-unpack", "state": {
                               "terminated": {"exitCode": init_code}}}],
                           "containerStatuses": [{"name": "main", "state": main}]}}

    waiting = {"waiting": {"reason": "PodInitializing"}}
    assert pod_view(pod(2, waiting)).exit_code == 2
    assert pod_view(pod(0, waiting)).exit_code is None
    assert pod_view(pod(0, {"terminated": {"exitCode": 3}})).exit_code == 3
