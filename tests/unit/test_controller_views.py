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
