"""The pure parts of surviving faults: the leader's fence, write lanes, outage backoff,
reading hand-written pods, and a scheduling loop that always stops when cancelled."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.controller.controller import Controller
from shipyard.controller.lifecycle import Decision, reconcile
from shipyard.controller.views import ExperimentView, PodView, pod_view
from shipyard.controller.writer import ROUTINE, URGENT, Lanes
from shipyard.core.model import Resources
from shipyard.kube.leader import LeaderElector, LostLeadership
from shipyard.kube.outage import Outage
from shipyard.spec import Experiment, Role


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# -- the fence -------------------------------------------------------------------------


def elector(clock: Clock) -> LeaderElector:
    return LeaderElector(None, "ns", "lease", "me", lease_s=15, renew_deadline_s=10, retry_s=2,  # type: ignore[arg-type]
                         monotonic=clock)


def test_fence_is_closed_until_a_renewal_and_after_the_deadline() -> None:
    clock = Clock()
    e = elector(clock)
    with pytest.raises(LostLeadership):
        e.check()
    e.renewed_at = clock.t
    clock.t += 9.9
    e.check()  # within the renew deadline: may write
    clock.t += 0.2  # a pause past the deadline, as after SIGSTOP
    with pytest.raises(LostLeadership, match="renew deadline"):
        e.check()
    assert e.lost.is_set()
    e.renewed_at = clock.t  # a late renewal never reopens a fence once lost
    with pytest.raises(LostLeadership):
        e.check()


def test_timings_must_leave_a_margin() -> None:
    with pytest.raises(ValueError, match="retry_s < renew_deadline_s < lease_s"):
        LeaderElector(None, "ns", "l", "me", lease_s=10, renew_deadline_s=10)  # type: ignore[arg-type]


def test_standby_waits_a_whole_lease_on_its_own_clock() -> None:
    clock = Clock()
    e = elector(clock)
    spec = {"holderIdentity": "other", "renewTime": "2020-01-01T00:00:00.000000Z",
            "leaseDurationSeconds": 15, "leaseTransitions": 0}
    # An old renewTime alone proves nothing (clocks differ): the record must stay unchanged.
    assert e._others_lease_live(spec, clock.t)
    assert e._others_lease_live(spec, clock.t + 14.9)
    renewed = {**spec, "renewTime": "2020-01-01T00:00:10.000000Z"}
    assert e._others_lease_live(renewed, clock.t + 20)  # renewed: the wait starts again
    assert e._others_lease_live(renewed, clock.t + 34.9)
    assert not e._others_lease_live(renewed, clock.t + 35.1)


# -- lanes ---------------------------------------------------------------------------------


@given(st.lists(st.sampled_from([URGENT, ROUTINE]), min_size=1, max_size=40),
       st.integers(min_value=1, max_value=4))
def test_lanes_serve_urgent_first_and_never_exceed_the_limit(lanes_of: list[int], limit: int) -> None:
    async def scenario() -> list[int]:
        lanes = Lanes(limit)
        served: list[int] = []
        running = 0
        gate = asyncio.Event()
        for _ in range(limit):  # hold every slot so the rest queue up
            await lanes.acquire(URGENT)

        async def one(lane: int) -> None:
            nonlocal running
            await lanes.acquire(lane)
            running += 1
            assert running <= limit
            served.append(lane)
            await gate.wait()
            running -= 1
            lanes.release()

        tasks = [asyncio.create_task(one(lane)) for lane in lanes_of]
        await asyncio.sleep(0)
        for _ in range(limit):
            lanes.release()
        gate.set()
        await asyncio.gather(*tasks)
        assert lanes.free == limit
        return served

    served = asyncio.run(scenario())
    assert served == sorted(lanes_of)  # every urgent waiter before any routine one


def test_a_cancelled_waiter_gives_its_slot_on() -> None:
    async def scenario() -> int:
        lanes = Lanes(1)
        await lanes.acquire(URGENT)
        waiter = asyncio.create_task(lanes.acquire(ROUTINE))
        await asyncio.sleep(0)
        lanes.release()  # handed to the waiter...
        waiter.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return lanes.free

    assert asyncio.run(scenario()) == 1


# -- outage ---------------------------------------------------------------------------------


def test_outage_backs_off_per_window_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outage = Outage("API server", base_s=0.2, cap_s=10, clock=clock, jitter=lambda: 1.0)
    with caplog.at_level(logging.INFO, logger="shipyard.kube.outage"):
        waits = [outage.failed(OSError("refused")) for _ in range(100)]  # one burst of failures
        assert waits[0] == pytest.approx(0.2) and waits[-1] == pytest.approx(0.2)
        steps = []
        for _ in range(12):
            clock.t += outage.wait_s()
            steps.append(outage.failed(OSError("refused")))
        assert steps[:5] == pytest.approx([0.4, 0.8, 1.6, 3.2, 6.4])
        assert max(steps) == pytest.approx(10.0)
        clock.t += 3
        outage.succeeded()
        outage.succeeded()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "failing" in messages[0] and "recovered after" in messages[1]
    assert "112 failed attempts" in messages[1]
    assert outage.wait_s() == 0 and outage.outages == 1


# -- hand-written pods --------------------------------------------------------------------------


def _pod(labels: dict[str, str]) -> dict:
    return {"metadata": {"name": "p", "namespace": "ns", "labels": labels},
            "spec": {"nodeName": "n1", "containers": [{"resources": {"requests": {"cpu": "1"}}}]},
            "status": {"phase": "Running"}}


@pytest.mark.parametrize("labels", [
    {"shipyard.dev/experiment": "e", "shipyard.dev/attempt": "x"},
    {"shipyard.dev/experiment": "e", "shipyard.dev/role": "w"},
    {"shipyard.dev/experiment": "e", "shipyard.dev/role": "w", "shipyard.dev/replica-index": "²"},
    {"shipyard.dev/experiment": "e", "shipyard.dev/replica-index": "0"},
])
def test_malformed_pod_is_seen_holding_its_node_but_is_no_member(labels: dict[str, str]) -> None:
    view = pod_view(_pod(labels))
    assert view.member is None
    assert view.holds_resources and view.request == Resources(1000, 0, 0)


def _queued(pods: list[PodView]) -> Decision:
    spec = Experiment(name="e", roles=[Role(name="w", replicas=1, machine_type="cpu-small",
                                            command=["true"])])
    exp = ExperimentView("ns/e", "ns", "e", "u", spec, None, {"phase": "Queued"}, 0.0, False, False)
    return reconcile(exp, exp.status, pods, {}, 0.0)


def test_a_queued_experiment_deletes_leftover_pods() -> None:
    pod = pod_view(_pod({"shipyard.dev/experiment": "e", "shipyard.dev/role": "w",
                         "shipyard.dev/replica-index": "0"}))
    assert _queued([pod]).delete == "all"
    assert _queued([]) == Decision()


# -- the loop stops when cancelled ---------------------------------------------------------------


def test_scheduling_loop_always_stops_when_cancelled() -> None:
    """On Python 3.11, `wait_for(event.wait())` swallows a cancel that lands as the event
    fires (171 of 200 trials in the study); the loop must stop every time."""

    async def trial(rng: random.Random) -> bool:
        controller = Controller(client=None, coalesce_s=0)  # type: ignore[arg-type]  # no I/O
        for informer in controller.informers:
            informer.synced.set()
        cancelled = False

        def cycle() -> None:  # always dirty; a cycle after the cancel means it was swallowed
            if cancelled:
                raise RuntimeError("cycle after cancel")
            controller.dirty.set()

        controller.run_cycle = cycle  # type: ignore[method-assign, assignment]
        task = asyncio.create_task(controller._loop())
        for _ in range(rng.randint(0, 30)):
            await asyncio.sleep(0)
        controller.dirty.set()
        task.cancel()
        cancelled = True
        try:
            await task
        except asyncio.CancelledError:
            return True
        except RuntimeError:
            return False
        return False

    async def trials() -> list[bool]:
        rng = random.Random(0)
        return [await trial(rng) for _ in range(200)]

    assert all(asyncio.run(trials()))


def test_a_relapse_soon_after_recovery_is_the_same_outage(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outage = Outage("API server", clock=clock, jitter=lambda: 1.0)
    with caplog.at_level(logging.INFO, logger="shipyard.kube.outage"):
        for _ in range(3):  # a server starting up: refuses, answers, refuses...
            outage.failed(OSError("429 storage is (re)initializing"))
            clock.t += 1
            outage.succeeded()
        clock.t += 60
        outage.failed(OSError("refused"))  # a new outage, long after
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO", "WARNING"]
    assert outage.outages == 2


def test_an_admitted_gang_waits_for_its_terminating_pods_before_creating() -> None:
    spec = Experiment(name="e", roles=[Role(name="w", replicas=2, machine_type="cpu-small",
                                            command=["true"])])
    exp = ExperimentView("ns/e", "ns", "e", "u", spec, None, {"phase": "Admitted"}, 0.0, False, False)
    going = replace(pod_view(_pod({"shipyard.dev/experiment": "e", "shipyard.dev/role": "w",
                                   "shipyard.dev/replica-index": "0"})), terminating=True)
    assert reconcile(exp, exp.status, [going], {}, 0.0) == Decision(force=("p",))  # node n1 gone
    assert reconcile(exp, exp.status, [], {}, 0.0) == Decision(create=True)


def test_a_waiter_cancelled_just_before_a_release_leaves_as_cancelled_and_the_slot_free() -> None:
    # Seen under the fault suite: "write failed: <Future cancelled> is not in deque".
    async def main() -> None:
        lanes = Lanes(1)
        await lanes.acquire(URGENT)
        waiter = asyncio.create_task(lanes.acquire(ROUTINE))
        await asyncio.sleep(0)
        waiter.cancel()  # its future is cancelled at once; the task resumes later
        lanes.release()  # passes the cancelled waiter by: the slot is free again
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert lanes.free == 1 and not any(lanes.waiting)
        await asyncio.wait_for(lanes.acquire(URGENT), 1)

    asyncio.run(main())
