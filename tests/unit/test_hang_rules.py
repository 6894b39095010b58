"""Hangs: a Running gang whose ranks stopped reporting turns Stalled and its on_hang
policy acts (pure lifecycle rules), and hangs.hung finding who is silent (no
progress report and no log line)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.controller.hangs import RECHECK_S, LogActivity, hung
from shipyard.controller.lifecycle import STALLED, reconcile
from shipyard.controller.progress import Receiver
from shipyard.controller.views import ExperimentView, PodView, format_time
from shipyard.core.model import Node, Resources
from shipyard.core.progress import Persistent, stalled
from shipyard.kube.errors import ApiError
from shipyard.spec import Experiment, RetryPolicy, Role

NOW = 1_800_000_000.0
NODES = {f"n-w-{i}": Node(f"n-w-{i}", Resources(1000, 2**30)) for i in range(2)}
HUNG = "no progress report or log line for 60s from any rank: job-w-0 on n-w-0, job-w-1 on n-w-1"


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


class _Logs:
    """Pods' log files as a kubelet serves them through the API server: `tailLines`,
    `sinceSeconds` (from NOW) and `timestamps`; a pod without a file is a 500 answer
    (a node that serves no logs, as kwok's)."""

    def __init__(self, lines: dict[str, list[float]] | None = None) -> None:
        self.lines = lines or {}  # pod -> times its lines were written
        self.asked: list[str] = []

    async def text(self, path: str, params: dict | None = None) -> str:
        pod = path.split("/")[-2]
        self.asked.append(pod)
        if pod not in self.lines:
            raise ApiError(500, "InternalError", "no logs on this node")
        params = params or {}
        assert params["timestamps"] is True and params["container"] == "w"
        kept = [t for t in self.lines[pod] if t >= NOW - params["sinceSeconds"]]
        return "".join(f"{format_nanos(t)} line\n" for t in kept[-params["tailLines"]:])


def format_nanos(t: float) -> str:
    return format_time(t).replace("Z", f".{int(t % 1 * 1e9):09d}Z")


class _Cycles:
    """hangs.hung as the controller's cycles call it: a log read it starts has ended
    before the next cycle (at the same NOW)."""

    def __init__(self, logs: _Logs | None = None) -> None:
        self.pending: list = []
        self.api = logs or _Logs()
        self.logs = LogActivity(self.api, self.pending.append)  # type: ignore[arg-type]

    def judge(self, exp: ExperimentView, members: list[PodView], status: dict,
              reports: dict[str, float]) -> str | None:
        verdict = hung(exp, members, status, NOW, reports, self.logs)
        while self.pending:
            asyncio.run(self.pending.pop())
            verdict = hung(exp, members, status, NOW, reports, self.logs)
        return verdict


def test_the_receiver_finds_a_gang_silent_past_its_timeout_and_names_pods_and_nodes():
    clock = _Clock()
    receiver = Receiver(client=None, writer=None, experiments=dict, clock=clock)  # type: ignore[arg-type]
    cycles = _Cycles()

    def judge(exp: ExperimentView, status: dict) -> str | None:
        return cycles.judge(exp, members, status, receiver.last_reports(exp, NOW))

    exp, members = view("restart"), pods()
    # Running 500 s; each pod last reported at receiver time 100.
    for i in range(2):
        receiver.hub.report("ns", "job", {"rank": str(i), "pod": f"job-w-{i}", "step": 5}, clock.t)
    clock.t += 30
    assert judge(exp, running()) is None
    assert cycles.api.asked == []  # reports within the timeout: no log is read
    clock.t += 31  # 61 s since the last report, past hang_timeout
    assert judge(exp, running()) == HUNG
    assert sorted(cycles.api.asked) == ["job-w-0", "job-w-1"]  # asked once each, no logs
    # One pod reporting is enough: not stalled.
    receiver.hub.report("ns", "job", {"rank": "1", "pod": "job-w-1", "step": 6}, clock.t)
    assert judge(exp, running()) is None
    # Just started: not stalled before hang_timeout has passed since startedAt.
    assert judge(replace(exp), running(30)) is None
    no_timeout = replace(exp, spec=exp.spec.model_copy(update={"hang_timeout": None}))
    assert judge(no_timeout, running()) is None


def test_a_log_line_from_any_rank_within_the_timeout_keeps_a_silent_gang_from_hung():
    exp, members = view(), pods()
    # No progress reports at all; rank 1 logs, rank 0 does not.
    cycles = _Cycles(_Logs({"job-w-0": [], "job-w-1": [NOW - 400, NOW - 20]}))
    assert cycles.judge(exp, members, running(), {}) is None
    # Its last line is older than the timeout: hung, and both are named.
    cycles = _Cycles(_Logs({"job-w-0": [NOW - 300], "job-w-1": [NOW - 400, NOW - 61]}))
    assert cycles.judge(exp, members, running(), {}) == HUNG
    # A line newer than the last report counts (the reports alone would say hung).
    cycles = _Cycles(_Logs({"job-w-0": [NOW - 5]}))
    assert cycles.judge(exp, members, running(), {"job-w-0": NOW - 100, "job-w-1": NOW - 90}) is None


def test_a_hung_gang_is_read_again_later_and_a_new_line_ends_it():
    exp, members = view(), pods()
    api = _Logs({"job-w-0": [NOW - 100], "job-w-1": []})
    pending: list = []
    logs = LogActivity(api, pending.append)  # type: ignore[arg-type]
    assert hung(exp, members, running(), NOW, {}, logs) is None  # not before the logs are read
    asyncio.run(pending.pop())
    assert hung(exp, members, running(), NOW, {}, logs) == HUNG
    assert not pending  # a fresh read: not read again at once
    assert hung(exp, members, running(), NOW + 10, {}, logs) is not None and not pending
    # RECHECK_S later it is read again, and stays hung until that read says otherwise.
    later = NOW + RECHECK_S
    api.lines["job-w-1"] = [later - 1]
    assert hung(exp, members, running(RECHECK_S + 500), later, {}, logs) is not None
    assert len(pending) == 1
    asyncio.run(pending.pop())
    assert hung(exp, members, running(RECHECK_S + 500), later, {}, logs) is None


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=4),
       st.none() | st.integers(min_value=0, max_value=200))
def test_hung_exactly_when_no_report_or_line_is_within_the_timeout(line_ages, report_age):
    exp, members = view(), pods()  # hang_timeout 60, running 500 s
    lines = {"job-w-0": sorted(NOW - a for a in line_ages)}
    reports = {} if report_age is None else {"job-w-1": NOW - report_age}
    verdict = _Cycles(_Logs(lines)).judge(exp, members, running(), reports)
    heard = [a for a in [*line_ages, report_age] if a is not None and a <= 60]
    assert (verdict is None) == bool(heard)
    assert verdict is None or verdict == HUNG


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
