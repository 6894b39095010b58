"""Why a gang's pods are stopped, in the controller's decisions (pure), and the attempt
count every pod is told."""

from __future__ import annotations

from dataclasses import replace

from shipyard.controller.lifecycle import reconcile
from shipyard.controller.writer import bound_pods
from shipyard.core.lifecycle import STOP_CAUSES
from shipyard.spec import RetryPolicy
from tests.unit.test_lifecycle_rules import NODES, NOW, pod, status, view


def test_cancel_says_cancelled():
    decision = reconcile(replace(view(), cancel_requested=True), status("Running", 5),
                         [pod("w-0"), pod("w-1")], NODES, NOW)
    assert decision.delete == "active" and decision.stop_reason == "cancelled: shipyard cancel"


def test_a_failed_rank_tells_the_others_which_and_how():
    failed = replace(pod("w-1", "Failed"), exit_code=3)
    decision = reconcile(view(), status("Running", 5), [pod("w-0"), failed], NODES, NOW)
    assert decision.stop_reason == "failure: pod job-w-1 failed with exit code 3"


def test_the_time_limit_says_time_limit_restarting_or_not():
    for restarts in (0, 2):
        v = view()
        spec = v.spec.model_copy(update={"time_limit": 10.0,
                                         "retry": RetryPolicy(max_restarts=restarts)})
        s = {**status("Running", 100), "startedAt": status("Running", 60)["admittedAt"]}
        decision = reconcile(replace(v, spec=spec), s, [pod("w-0"), pod("w-1")], NODES, NOW)
        assert decision.stop_reason == "time-limit: time limit of 10s exceeded"
        assert decision.status["phase"] == ("Restarting" if restarts else "Failed")


def test_every_stop_reason_starts_with_a_known_cause():
    v = view()
    for decision in (
        reconcile(replace(v, held=True), status("Running", 5), [pod("w-0")], NODES, NOW),
        reconcile(v, status("Running", 5), [pod("w-0"), pod("w-1", "Failed")], NODES, NOW),
    ):
        assert decision.stop_reason and decision.stop_reason.split(":")[0] in STOP_CAUSES


def test_every_pod_is_told_how_many_attempts_came_before():
    v = view()
    placement = {"w-0": "n-w-0", "w-1": "n-w-1"}
    for attempt, restarts in ((1, "0"), (3, "2")):
        for p in bound_pods(v, placement, attempt):
            env = {e["name"]: e.get("value") for e in p["spec"]["containers"][0]["env"]}
            assert env["SHIPYARD_RESTART_COUNT"] == restarts
