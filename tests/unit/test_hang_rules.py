"""Hangs: a Running gang whose ranks stopped reporting turns Stalled and its on_hang
policy acts (pure lifecycle rules), and the receiver's finding of who is silent."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.controller.lifecycle import STALLED, reconcile
from shipyard.controller.progress import Receiver
from shipyard.controller.views import ExperimentView, PodView, format_time
from shipyard.core.model import Node, Resources
from shipyard.core.progress import Persistent, stalled
from shipyard.spec import Experiment, RetryPolicy, Role

NOW = 1_800_000_000.0
NODES = {f"n-w-{i}": Node(f"n-w-{i}", Resources(1000, 2**30)) for i in range(2)}
HUNG = "no progress report for 60s from any rank: job-w-0 on n-w-0, job-w-1 on n-w-1"


def view(on_hang: str = "notify", max_restarts: int = 2) -> ExperimentView:
    spec = Experiment(name="job", namespace="ns", retry=RetryPolicy(max_restarts=max_restarts),
                      hang_timeout=60, on_hang=on_hang,
                      roles=[Role(name="w", replicas=2, machine_type="cpu-small", command=["x"])])
    return ExperimentView(key="ns/job", namespace="ns", name="job", uid="u", spec=spec, error=None,
                          status={}, created_at=NOW - 1000, cancel_requested=False, deleting=False)


def pods() -> list[PodView]:
    return [PodView(namespace="ns", name=f"job-w-{i}", node=f"n-w-{i}", request=Resources(),
                    phase="Running", experiment="ns/job", member=f"w-{i}", attempt=1, exit_code=None,
                    terminating=False) for i in range(2)]


def running(started_ago: float = 500) -> dict:
    return {"phase": "Running", "placement": {"w-0": "n-w-0", "w-1": "n-w-1"}, "attempt": 1,
            "restarts": 0, "pods": "2/2", "admittedAt": format_time(NOW - started_ago - 5),
            "startedAt": format_time(NOW - started_ago)}


def stalled_condition(status: dict) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == STALLED), None)


def test_notify_marks_the_gang_stalled_once_and_names_the_silent_ranks():
    decision = reconcile(view("notify"), running(), pods(), NODES, NOW, HUNG)
    assert decision.delete is None and decision.status["phase"] == "Running"
    condition = stalled_condition(decision.status)
    assert (condition["status"], condition["reason"]) == ("True", "NoProgress")
    assert decision.event == (STALLED, HUNG)
    # Still stalled next cycle: nothing new to say.
    again = reconcile(view("notify"), decision.status, pods(), NODES, NOW + 1, HUNG)
    assert again.status is None and again.event is None
    # Reports again: the condition goes False, with an Event.
    resumed = reconcile(view("notify"), decision.status, pods(), NODES, NOW + 2, None)
    assert stalled_condition(resumed.status)["status"] == "False"
    assert resumed.event[0] == "ProgressResumed"


def test_restart_stops_the_whole_gang_and_requeues_it_as_after_a_failure():
    decision = reconcile(view("restart"), running(), pods(), NODES, NOW, HUNG)
    assert decision.delete == "all"
    assert decision.status["phase"] == "Restarting" and decision.status["restarts"] == 1
    assert decision.status["failedPod"] == f"stalled: {HUNG}"
    assert stalled_condition(decision.status)["status"] == "True"
    assert decision.event == (STALLED, f"{HUNG}; restart")
    assert decision.stop_reason.startswith("failure: stalled: ")


def test_restart_with_no_restarts_left_fails_and_fail_fails_at_once():
    spent = reconcile(view("restart", max_restarts=0), running(), pods(), NODES, NOW, HUNG)
    assert spent.status["phase"] == "Failed"
    failed = reconcile(view("fail", max_restarts=5), running(), pods(), NODES, NOW, HUNG)
    assert failed.status["phase"] == "Failed" and failed.delete == "active"
    assert failed.status["restarts"] == 0


def test_a_gang_not_stalled_is_left_alone_and_a_restarted_one_clears_quietly():
    assert reconcile(view("restart"), running(), pods(), NODES, NOW, None).status is None
    old = {"type": STALLED, "status": "True", "reason": "NoProgress", "message": HUNG,
           "lastTransitionTime": format_time(NOW - 600)}
    after_restart = reconcile(view("restart"), {**running(100), "conditions": [old]}, pods(), NODES,
                              NOW, None)
    assert stalled_condition(after_restart.status)["reason"] == "Restarted"
    assert after_restart.event is None


@given(st.dictionaries(st.text(min_size=1, max_size=4), st.one_of(st.none(), st.floats(0, 1e5)),
                       min_size=1, max_size=10), st.floats(0, 1e5), st.floats(1, 1e4))
def test_stalled_only_when_every_member_is_silent_past_the_timeout(ages, running_for, timeout):
    result = stalled(ages, running_for, timeout)
    if result:
        assert running_for > timeout
        assert all(a is None or a > timeout for a in ages.values())
    else:
        assert running_for <= timeout or any(a is not None and a <= timeout for a in ages.values())


@given(st.lists(st.sets(st.sampled_from("abcd")), max_size=30), st.integers(1, 4))
def test_persistent_names_a_rank_once_after_enough_checks_in_a_row(rounds, times):
    p, streak, told = Persistent(times), {}, set()
    for flagged in rounds:
        streak = {k: streak.get(k, 0) + 1 for k in flagged}
        told &= flagged
        new = p.check(flagged)
        assert set(new) == {k for k, n in streak.items() if n >= times} - told
        told |= set(new)


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_receiver_finds_a_gang_silent_past_its_timeout_and_names_pods_and_nodes():
    clock = _Clock()
    receiver = Receiver(client=None, writer=None, experiments=dict, clock=clock)  # type: ignore[arg-type]
    exp, members = view("restart"), pods()
    # Running 500 s; each pod last reported at receiver time 100.
    for i in range(2):
        receiver.hub.report("ns", "job", {"rank": str(i), "pod": f"job-w-{i}", "step": 5}, clock.t)
    clock.t += 30
    assert receiver.stalled(exp, members, running(), NOW) is None
    clock.t += 31  # 61 s since the last report, past hang_timeout
    message = receiver.stalled(exp, members, running(), NOW)
    assert message == HUNG
    # One pod reporting is enough: not stalled.
    receiver.hub.report("ns", "job", {"rank": "1", "pod": "job-w-1", "step": 6}, clock.t)
    assert receiver.stalled(exp, members, running(), NOW) is None
    # Just started: not stalled before hang_timeout has passed since startedAt.
    assert receiver.stalled(replace(exp), members, running(30), NOW) is None
    no_timeout = replace(exp, spec=exp.spec.model_copy(update={"hang_timeout": None}))
    assert receiver.stalled(no_timeout, members, running(), NOW) is None


def test_reports_need_an_integer_step():
    receiver = Receiver(client=None, writer=None, experiments=dict)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        receiver.hub.report("ns", "job", {"step": "3"}, 0.0)


def test_a_standby_refuses_reports_without_reading_any_token():
    import asyncio

    receiver = Receiver(client=None, writer=None, experiments=dict)  # type: ignore[arg-type]
    receiver.leading = False
    assert asyncio.run(receiver.accept("ns", "job", "tok", {"step": 1})) == 503
    assert receiver.tokens.reads == 0 and receiver.hub.experiments == {}
