"""The controller's writes, in-process: its overlay, the rollback of a failed admission,
and preemption, each over the in-memory API (tests/middle/fake_api.py), a cycle at a time
on a stepped clock. The same paths run against a real API server in
tests/integration/test_scheduler_controller.py; these check each write step by step."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shipyard.api.vocab import LABEL_ATTEMPT
from shipyard.controller.recoveries import NODE_SETTLE_S
from shipyard.kube.errors import Forbidden, Invalid, Transient
from shipyard.kube.resources import EVENTS, EXPERIMENTS, NODES, PODS, SECRETS, SERVICES
from shipyard.render.runtime import ANNOTATION_STOP_REASON
from shipyard.spec import Experiment, Role
from tests.middle.fake_api import FakeApi
from tests.middle.world import Clock, World, no_stop_reason_wait, node

DYING = Forbidden(403, "Forbidden", "this controller is going away")


def exp(name: str, replicas: int = 2, priority: int = 0) -> Experiment:
    # No resources given: each replica takes a whole cpu-small node.
    return Experiment(name=name, priority=priority,
                      roles=[Role(name="w", replicas=replicas, machine_type="cpu-small", command=["true"])])


def run(scenario: Callable[[World], Awaitable[None]], **options: Any) -> None:
    async def main() -> None:
        clock = Clock()
        async with World(FakeApi(clock), clock, **options) as world:
            await scenario(world)

    asyncio.run(main())


@pytest.fixture(autouse=True)
def _no_kubelet(monkeypatch: pytest.MonkeyPatch) -> None:
    no_stop_reason_wait(monkeypatch)


async def a_queued_on_two_nodes(w: World) -> None:
    """Nodes n1 and n2, and experiment a (two replicas, a node each) seen as Queued."""
    for n in ("n1", "n2"):
        await w.add_node(n)
    await w.submit(exp("a", replicas=2))
    await w.cycle()


def test_admission_writes_the_gang_bound_and_owned_then_the_watch_retires_the_overlay() -> None:
    async def scenario(w: World) -> None:
        await w.add_node("n1")
        await w.add_node("n2")
        created = await w.submit(exp("a"))
        await w.cycle()
        assert w.status("a")["phase"] == "Queued"  # the lifecycle's first word
        result = await w.cycle()
        assert [a.gang for a in result.admitted] == ["default/a"]
        pods = w.pods("a")
        assert sorted(p["metadata"]["name"] for p in pods) == ["a-w-0", "a-w-1"]
        assert sorted(p["spec"]["nodeName"] for p in pods) == ["n1", "n2"]
        assert all(p["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"] for p in pods)
        assert w.api.objects(SERVICES, "default") and w.api.objects(SECRETS, "default")
        status = w.status("a")
        assert (status["phase"], status["attempt"], status["pods"]) == ("Starting", 1, "0/2")
        # member (role-index) -> node, as the pods were bound
        assert status["placement"] == {p["metadata"]["name"].removeprefix("a-"): p["spec"]["nodeName"]
                                       for p in pods}
        # The watch delivered every status written: nothing of ours is newer than the cache.
        assert w.controller.overlay == {}
        assert any(e["reason"] == "Admitted" for e in w.api.objects(EVENTS, "default"))
        await w.kubelet_runs("a")
        await w.cycle()
        assert w.status("a")["phase"] == "Running"

    run(scenario)


def test_the_overlay_keeps_a_node_booked_before_the_watch_shows_the_admission() -> None:
    async def scenario(w: World) -> None:
        await w.submit(exp("a", replicas=1))
        await w.submit(exp("b", replicas=1))
        await w.cycle()  # both Queued
        await w.cycle()  # both waiting for a node, their positions written
        await w.add_node("n1")
        await w.settle()
        first = w.controller.run_cycle()  # its writes have not even started
        assert len(first.admitted) == 1
        admitted = first.admitted[0].gang
        other = "default/b" if admitted == "default/a" else "default/a"
        assert other not in w.controller.inflight  # its position was written moments ago
        w.clock.t += 1
        # The caches still say both are Queued and n1 is free: only the overlay knows better.
        second = w.controller.run_cycle()
        assert second.admitted == ()
        assert [x.gang for x in second.waiting] == [other]
        await w.settle()
        for _ in range(3):
            await w.cycle()
        pods = w.api.objects(PODS, "default")
        assert [p["metadata"]["name"] for p in pods] == [f"{admitted.split('/')[1]}-w-0"]
        assert w.status(other.split("/")[1])["phase"] == "Queued"

    run(scenario)


def test_a_failed_pod_create_rolls_the_gang_back_whole_and_the_next_cycle_admits_it_again() -> None:
    async def scenario(w: World) -> None:
        for n in ("n1", "n2", "n3"):
            await w.add_node(n)
        await w.submit(exp("a", replicas=3))
        await w.cycle()
        w.api.fail("create", PODS, Invalid(422, "Invalid", "spec.containers: bad"), name="a-w-1")
        await w.cycle()
        status = w.status("a")
        assert status["phase"] == "Queued"
        assert "admission rolled back" in status["message"] and "spec.containers: bad" in status["message"]
        assert "placement" not in status  # the merge patch's null removed it
        assert w.pods("a") == []  # the two that were created are gone again
        created = [c for c in w.api.calls if c[:2] == ("create", "pods")]
        deleted = [c for c in w.api.calls if c[:2] == ("delete", "pods")]
        assert len(created) == 2 and sorted(c[2] for c in deleted) == sorted(c[2] for c in created)
        assert w.controller.overlay == {}
        await w.cycle()
        again = w.status("a")
        assert (again["phase"], again["attempt"]) == ("Starting", 2)
        assert len(w.pods("a")) == 3

    run(scenario)


def test_a_status_write_lost_in_an_outage_is_retried_from_what_the_cluster_says() -> None:
    async def scenario(w: World) -> None:
        await w.add_node("n1")
        await w.submit(exp("a", replicas=1))
        await w.cycle()
        # The Admitted status never lands: no pods may be created for an admission the
        # cluster does not know of, and the overlay must not outlive the failed write.
        w.api.fail("patch", EXPERIMENTS, Transient(503, "ServiceUnavailable", "etcd"), name="a")
        await w.cycle()
        assert w.pods("a") == []
        assert w.controller.overlay == {}
        assert w.status("a").get("phase") in (None, "Queued")
        w.controller.outage.succeeded()
        await w.cycle()
        assert w.status("a")["phase"] == "Starting" and len(w.pods("a")) == 1

    run(scenario)


def test_preemption_stops_the_low_priority_gang_with_its_reason_before_the_high_one_takes_the_nodes() -> None:
    async def scenario(w: World) -> None:
        await w.add_node("n1")
        await w.add_node("n2")
        await w.submit(exp("low", replicas=2, priority=0))
        await w.cycle()
        await w.cycle()
        await w.kubelet_runs("low")
        await w.cycle()
        assert w.status("low")["phase"] == "Running"
        await w.submit(exp("high", replicas=2, priority=10))
        await w.cycle()
        result = await w.cycle()
        assert [p.gang for p in result.preempted] == ["default/low"]
        low = w.status("low")
        assert low["phase"] == "Preempted" and "preempted for default/high" in low["message"]
        pods = w.pods("low")
        # Told why (the stop-reason annotation, which its ranks read on SIGTERM), then
        # deleted with a grace period: still there, terminating, holding their nodes.
        assert len(pods) == 2 and all(p["metadata"].get("deletionTimestamp") for p in pods)
        assert all(p["metadata"]["annotations"][ANNOTATION_STOP_REASON].startswith("preempted: for default/high")
                   for p in pods)
        await w.cycle()
        assert w.pods("high") == []  # not while the victim's pods hold the nodes
        w.api.finish_terminating()
        for _ in range(3):
            await w.cycle()
        assert sorted(p["spec"]["nodeName"] for p in w.pods("high")) == ["n1", "n2"]
        assert w.status("high")["phase"] == "Starting"
        assert w.status("low")["phase"] == "Queued"  # back in its queue, to resume later

    run(scenario)


def test_a_controller_restarted_mid_admission_completes_the_gang_without_a_second_copy_of_any_pod() -> None:
    async def main() -> None:
        clock = Clock()
        api = FakeApi(clock)
        async with World(api, clock) as first:
            for n in ("n1", "n2", "n3"):
                await first.add_node(n)
            await first.submit(exp("a", replicas=3))
            await first.cycle()
            # The first controller writes Admitted and one pod, then dies: the other two
            # creates fail, and so does all of its rollback (refused: no outage backoff).
            api.fail("create", PODS, DYING, name="a-w-1")
            api.fail("create", PODS, DYING, name="a-w-2")
            api.fail("delete", PODS, DYING, name="a-w-0")
            api.fail("patch", EXPERIMENTS, DYING, name="a", after=1)
            first.controller.run_cycle()
            await first.settle()
        # What it left: Admitted with a placement, one pod of three.
        [survivor] = first.pods("a")
        assert first.status("a")["phase"] == "Admitted"
        api.faults.clear()
        async with World(api, clock) as second:
            await second.cycle()
            pods = second.pods("a")
            assert sorted(p["metadata"]["name"] for p in pods) == ["a-w-0", "a-w-1", "a-w-2"]
            again = next(p for p in pods if p["metadata"]["name"] == "a-w-0")
            assert again["metadata"]["uid"] == survivor["metadata"]["uid"]  # kept, not made again
            placement = second.status("a")["placement"]
            assert {p["metadata"]["name"].removeprefix("a-"): p["spec"]["nodeName"] for p in pods} == placement
            assert second.status("a")["phase"] == "Starting"
            assert [c for c in api.calls if c[0] == "delete" and c[1] == "pods"] == []

    asyncio.run(main())


def test_a_pod_of_an_earlier_attempt_holding_a_members_name_is_never_taken_into_the_new_gang() -> None:
    async def main() -> None:
        clock = Clock()
        api = FakeApi(clock)
        async with World(api, clock) as first:
            for n in ("n1", "n2"):
                await first.add_node(n)
            await first.submit(exp("a", replicas=2))
            await first.cycle()
            await first.cycle()
            assert first.status("a")["attempt"] == 1 and len(first.pods("a")) == 2
        # What a controller that died mid-restart can leave: the next attempt admitted,
        # one pod of the last one gone, the other (a-w-0) still there and not deleting.
        status = first.status("a")
        await api.patch(EXPERIMENTS, "a", {"status": {**status, "phase": "Admitted", "attempt": 2,
                                                      "revision": status["revision"] + 1}},
                        "default", subresource="status")
        await api.delete(PODS, "a-w-1", "default")
        api.finish_terminating()
        async with World(api, clock) as second:
            await second.cycle()
            rolled = second.status("a")
            assert rolled["phase"] == "Queued"
            assert "pod a-w-0 of attempt 1 is still there" in rolled["message"]
            assert [p["metadata"]["name"] for p in second.pods("a")] == ["a-w-0"]  # nothing new made
            for _ in range(4):  # the leftover is deleted, goes, and the gang is made whole
                api.finish_terminating()
                await second.cycle()
            pods = second.pods("a")
            assert sorted(p["metadata"]["name"] for p in pods) == ["a-w-0", "a-w-1"]
            assert {p["metadata"]["labels"][LABEL_ATTEMPT] for p in pods} == {"3"}
            assert second.status("a")["phase"] == "Starting"

    asyncio.run(main())


def test_after_a_failed_status_write_a_lagging_watch_never_undoes_the_gang_just_created() -> None:
    async def scenario(w: World) -> None:
        await a_queued_on_two_nodes(w)
        assert w.status("a")["phase"] == "Queued"
        # The Experiment watch falls behind; Admitted lands, the pods are made, and the
        # write of Starting is refused.
        w.api.hold(EXPERIMENTS)
        w.api.fail("patch", EXPERIMENTS, Invalid(422, "Invalid", "status: refused"), name="a", after=1)
        await w.cycle()
        assert w.status("a")["phase"] == "Admitted" and len(w.pods("a")) == 2
        # The cache still says Queued; a Queued experiment's pods are leftovers to delete,
        # so the controller must go by what it read back from the server instead.
        for _ in range(2):
            await w.cycle()
        assert [c for c in w.api.calls if c[:2] == ("delete", "pods")] == []
        assert w.status("a")["phase"] == "Starting"
        w.api.release(EXPERIMENTS)
        await w.cycle()
        pods = w.pods("a")
        assert len(pods) == 2 and {p["metadata"]["labels"][LABEL_ATTEMPT] for p in pods} == {"1"}
        assert w.controller.overlay == {}

    run(scenario)


def test_a_pod_create_whose_answer_was_lost_keeps_its_node_held_until_the_gang_is_whole() -> None:
    async def scenario(w: World) -> None:
        await a_queued_on_two_nodes(w)
        # The pod watch falls behind (a relist after the API server restarted), and the
        # create of a-w-1 is carried out but its answer is lost (the connection dropped).
        w.api.hold(PODS)
        w.api.fail("create", PODS, Transient(0, "ServerDisconnectedError", "Server disconnected"),
                   name="a-w-1", lands=True)
        await w.cycle()
        assert sorted(p["metadata"]["name"] for p in w.pods("a")) == ["a-w-0", "a-w-1"]
        # Rolling back now would leave a-w-1 unseen on its node while the nodes looked
        # free: b would be placed on top of it. The placement stands instead...
        assert w.status("a")["phase"] == "Admitted"
        await w.submit(exp("b", replicas=2))
        for _ in range(3):
            await w.cycle()
        # ...and the next cycle makes the gang whole from what is there.
        assert w.status("a")["phase"] == "Starting"
        assert w.status("b")["phase"] == "Queued" and w.pods("b") == []
        pods = w.pods("a")
        assert {p["metadata"]["labels"][LABEL_ATTEMPT] for p in pods} == {"1"}
        assert sorted(p["spec"]["nodeName"] for p in pods) == ["n1", "n2"]
        assert [c for c in w.api.calls if c[:2] == ("delete", "pods")] == []
        w.api.release(PODS)
        await w.cycle()
        assert w.status("a")["phase"] == "Starting" and len(w.pods("a")) == 2

    run(scenario)


def test_a_definite_create_failure_rolls_back_only_once_every_pod_is_known_gone() -> None:
    async def scenario(w: World) -> None:
        await a_queued_on_two_nodes(w)
        w.api.hold(PODS)
        w.api.fail("create", PODS, Invalid(422, "Invalid", "refused"), name="a-w-1")
        w.api.fail("delete", PODS, Transient(503, "ServiceUnavailable", "etcd is slow"), name="a-w-0")
        await w.cycle()
        # a-w-0 was made and could not be deleted: still Admitted, its node held.
        assert w.status("a")["phase"] == "Admitted"
        assert [p["metadata"]["name"] for p in w.pods("a")] == ["a-w-0"]
        await w.submit(exp("b", replicas=2))
        for _ in range(2):
            await w.cycle()
        assert w.pods("b") == [] and w.status("a")["phase"] == "Starting"

    run(scenario)


def test_a_gangs_end_whose_write_and_read_back_both_failed_is_written_again() -> None:
    async def scenario(w: World) -> None:
        await a_queued_on_two_nodes(w)
        await w.cycle()
        await w.kubelet_runs("a")
        await w.cycle()
        assert w.status("a")["phase"] == "Running"
        for pod in w.pods("a"):
            await w.api.set_pod_phase("default", pod["metadata"]["name"], "Succeeded")
        # The API server goes away as the end is written: the write and the read back fail.
        down = Transient(0, "ServerDisconnectedError", "Server disconnected")
        w.api.fail("patch", EXPERIMENTS, down, name="a")
        w.api.fail("get", EXPERIMENTS, down, name="a")
        await w.cycle()
        assert w.status("a")["phase"] == "Running"
        w.controller.outage.succeeded()  # the server is back
        # Taking the unwritten end for done would leave it Running on the server for good.
        for _ in range(2):
            await w.cycle()
        assert w.status("a")["phase"] == "Succeeded"

    run(scenario)


async def _set_ready(w: World, node: str, ready: bool) -> None:
    await w.api.patch(NODES, node, {"status": {"conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}}, subresource="status")


def test_a_node_back_from_not_ready_takes_no_new_gang_until_it_has_settled() -> None:
    async def scenario(w: World) -> None:
        await w.add_node("n1")
        await w.add_node("n2")  # Ready from the start: used at once (a new node, too)
        await _set_ready(w, "n2", False)
        await w.submit(exp("a", replicas=2))
        await w.cycle()
        await _set_ready(w, "n2", True)
        # The node-lifecycle controller's NoExecute taint may still be coming: a gang
        # placed now could be evicted whole. a needs both nodes, so it waits.
        for _ in range(int(NODE_SETTLE_S) - 1):
            result = await w.cycle()
            assert result.admitted == (), w.clock.t
        await w.cycle()
        await w.cycle()
        assert sorted(p["spec"]["nodeName"] for p in w.pods("a")) == ["n1", "n2"]

    run(scenario)


def test_a_new_nodes_first_ready_is_not_a_recovery() -> None:
    async def scenario(w: World) -> None:
        await w.add_node("n1")
        fresh = node("n2")  # registers NotReady, as a kubelet does, then turns Ready
        fresh["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
        await w.api.create(NODES, fresh)
        await w.submit(exp("a", replicas=2))
        await w.cycle()
        await _set_ready(w, "n2", True)
        await w.cycle()
        await w.cycle()
        assert sorted(p["spec"]["nodeName"] for p in w.pods("a")) == ["n1", "n2"]

    run(scenario)
