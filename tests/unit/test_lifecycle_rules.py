"""The controller's lifecycle rules (pure: an experiment, its status and pods in, a decision out)."""

from __future__ import annotations

from shipyard.controller.lifecycle import POD_VISIBLE_S, reconcile
from shipyard.controller.views import ExperimentView, PodView, format_time
from shipyard.core.model import Node, Resources
from shipyard.spec import Experiment, RetryPolicy, Role

NOW = 1_800_000_000.0


def view(replicas: int = 2) -> ExperimentView:
    spec = Experiment(name="job", namespace="ns", retry=RetryPolicy(max_restarts=0),
                      roles=[Role(name="w", replicas=replicas, machine_type="cpu-small", command=["x"])])
    return ExperimentView(key="ns/job", namespace="ns", name="job", uid="u", spec=spec, error=None,
                          status={}, created_at=NOW - 100, cancel_requested=False, deleting=False)


def pod(member: str, phase: str = "Running") -> PodView:
    return PodView(namespace="ns", name=f"job-{member}", node=f"n-{member}", request=Resources(),
                   phase=phase, experiment="ns/job", member=member, attempt=1, exit_code=None,
                   terminating=False)


def status(phase: str, admitted_ago: float) -> dict:
    return {"phase": phase, "placement": {"w-0": "n-w-0", "w-1": "n-w-1"}, "attempt": 1,
            "restarts": 0, "admittedAt": format_time(NOW - admitted_ago)}


NODES = {f"n-w-{i}": Node(f"n-w-{i}", Resources(1000, 2**30)) for i in range(2)}


def test_a_created_pod_not_yet_in_the_cache_is_waited_for():
    decision = reconcile(view(), status("Starting", 5), [pod("w-0")], NODES, NOW)
    assert decision.status is None and decision.delete is None


def test_a_pod_still_missing_after_the_grace_counts_as_deleted():
    decision = reconcile(view(), status("Starting", POD_VISIBLE_S + 5), [pod("w-0")], NODES, NOW)
    assert decision.status["phase"] == "Failed"
    assert "job-w-1 was deleted" in decision.status["message"]


def test_a_running_gang_that_loses_a_pod_stops_at_once():
    decision = reconcile(view(), status("Running", 5), [pod("w-0")], NODES, NOW)
    assert decision.status["phase"] == "Failed"


def test_starting_becomes_running_when_every_pod_runs():
    decision = reconcile(view(), status("Starting", 5), [pod("w-0"), pod("w-1")], NODES, NOW)
    assert decision.status["phase"] == "Running" and decision.status["pods"] == "2/2"


def held(v: ExperimentView, on: bool = True) -> ExperimentView:
    from dataclasses import replace

    return replace(v, held=on)


def test_hold_stops_a_running_gang_then_reports_held_then_release_requeues():
    v = held(view())
    stopping = reconcile(v, status("Running", 5), [pod("w-0"), pod("w-1")], NODES, NOW)
    assert stopping.status["phase"] == "Holding" and stopping.delete == "all"
    going = replace_pods_terminating([pod("w-0"), pod("w-1")])
    assert reconcile(v, stopping.status, going, NODES, NOW).delete is None  # already going
    done = reconcile(v, stopping.status, [], NODES, NOW)
    assert done.status["phase"] == "Held" and done.status["placement"] is None
    assert reconcile(v, done.status, [], NODES, NOW).status is None  # stays Held
    released = reconcile(held(view(), False), done.status, [], NODES, NOW)
    assert released.status["phase"] == "Queued"


def test_a_queued_experiment_on_hold_is_held_at_once():
    decision = reconcile(held(view()), {"phase": "Queued", "revision": 3}, [], NODES, NOW)
    assert decision.status["phase"] == "Held"


def replace_pods_terminating(pods: list[PodView]) -> list[PodView]:
    from dataclasses import replace

    return [replace(p, terminating=True) for p in pods]


def test_a_finished_rank_whose_node_is_gone_is_no_problem():
    # Found by the fault suite (node-delete): the controller crashed on the gone node.
    only_w1 = {"n-w-1": NODES["n-w-1"]}
    pods = [pod("w-0", "Succeeded"), pod("w-1")]
    decision = reconcile(view(), status("Running", 5), pods, only_w1, NOW)
    assert decision.status is None or decision.status["phase"] not in ("Failed", "Restarting")
    # ... while a running rank whose node is gone stops the gang, naming the node.
    decision = reconcile(view(), status("Running", 5), pods, {"n-w-0": NODES["n-w-0"]}, NOW)
    assert decision.status["phase"] == "Failed"
    assert "node n-w-1 of pod job-w-1 is gone" in decision.status["message"]
