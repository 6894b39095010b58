"""`shipyard move` in-process: the hold -> wait -> copy -> delete protocol between two
in-memory API servers, the source's real controller stepping forward each time the move
polls. tests/integration/test_multicluster.py runs the same moves on two real control
planes; here every step, and the order of the writes, is checked on a stepped clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shipyard.fleet.move import (
    ANNOTATION_HOLD,
    ANNOTATION_MOVED_FROM,
    ANNOTATION_MOVING_TO,
    MoveError,
    MoveResult,
    move,
)
from shipyard.kube.api import ApiClient, Object
from shipyard.kube.errors import Transient
from shipyard.kube.objects import experiment_resource
from shipyard.kube.resources import EVENTS, EXPERIMENTS, NAMESPACES, PODS, SERVICES, Kind
from shipyard.spec import Experiment, Role
from shipyard.spec.clusters import ClusterRef, ClustersConfig
from tests.middle.fake_api import FakeApi
from tests.middle.world import Clock, World, no_stop_reason_wait

CONFIG = ClustersConfig(clusters=[ClusterRef(name="east", context="east"), ClusterRef(name="west", context="west")])



def exp(name: str = "job", replicas: int = 2) -> Experiment:
    return Experiment(name=name, roles=[Role(name="w", replicas=replicas, machine_type="cpu-small",
                                             command=["true"])])


class Target(FakeApi):
    """The target cluster; notes how many pods the source still had when the copy was made."""

    def __init__(self, clock: Clock, source: FakeApi) -> None:
        super().__init__(clock)
        self.source = source
        self.source_pods_at_copy: list[int] = []

    async def create(self, kind: Kind, body: Object, namespace: str | None = None) -> Object:
        if kind == EXPERIMENTS:
            self.source_pods_at_copy.append(len(self.source.objects(PODS)))
        return await super().create(kind, body, namespace)


def connect_to(apis: dict[str, ApiClient]) -> Callable[[ClusterRef, float], ApiClient]:
    return lambda ref, timeout_s: apis[ref.name]


@pytest.fixture(autouse=True)
def _no_kubelet(monkeypatch: pytest.MonkeyPatch) -> None:
    no_stop_reason_wait(monkeypatch)


def test_a_running_experiment_is_copied_only_once_its_source_holds_no_pods() -> None:
    async def main() -> tuple[MoveResult, list[str], World, Target]:
        clock = Clock()
        async with World(FakeApi(clock), clock) as east:
            west = Target(clock, east.api)
            await east.add_node("n1")
            await east.add_node("n2")
            await east.submit(exp())
            await east.cycle()
            await east.cycle()
            await east.kubelet_runs("job")
            await east.cycle()
            assert east.status("job")["phase"] == "Running"

            async def poll_wait(s: float) -> None:  # the move waits: time passes in east
                await east.kubelet_runs("job")
                await east.cycle(s)

            lines: list[str] = []
            result = await move("job", "default", "west", CONFIG, progress=lines.append,
                                connect=connect_to({"east": east.api, "west": west}),
                                clock=clock, sleep=poll_wait)
            return result, lines, east, west

    result, lines, east, west = asyncio.run(main())
    assert (result.source, result.target, result.outcome) == ("east", "west", "moved")
    assert west.source_pods_at_copy == [0]  # never two copies running
    assert east.api.objects(EXPERIMENTS) == []
    assert east.api.objects(SERVICES) == []  # what the original owned went with it
    [copy] = west.objects(EXPERIMENTS)
    assert copy["metadata"]["annotations"] == {ANNOTATION_MOVED_FROM: "east"}
    assert copy["spec"] == experiment_resource(exp())["spec"]
    assert [n["metadata"]["name"] for n in west.objects(NAMESPACES)] == ["default"]
    assert [e["reason"] for e in west.objects(EVENTS, "default")] == ["Moved"]
    assert any("holding default/job in east" in line for line in lines)
    assert any("is held in east with no pods" in line for line in lines)
    # The hold was taken before any pod was stopped, and the copy made after the last went.
    hold = next(i for i, c in enumerate(east.api.calls) if c == ("patch", "experiments", "default/job"))
    stops = [i for i, c in enumerate(east.api.calls) if c[:2] == ("delete", "pods")]
    assert stops and min(stops) > hold


def run_move(source: FakeApi, target: FakeApi, clock: Clock, to: str = "west",
             **options: Any) -> Awaitable[MoveResult]:
    async def step(s: float) -> None:
        clock.t += s
        await asyncio.sleep(0)

    return move("job", "default", to, CONFIG, connect=connect_to({"east": source, "west": target}),
                clock=clock, sleep=step, **options)


async def seeded(clock: Clock, **annotations: str) -> FakeApi:
    api = FakeApi(clock)
    await api.create(NAMESPACES, {"metadata": {"name": "default"}})
    body = experiment_resource(exp())
    body["metadata"]["annotations"] = annotations
    await api.create(EXPERIMENTS, body)
    return api


def test_a_source_without_a_controller_times_out_on_the_stepped_clock_held_and_resumable() -> None:
    async def main() -> None:
        clock = Clock()
        east, west = await seeded(clock), FakeApi(clock)
        began = clock.t
        with pytest.raises(MoveError, match=r"still Queued after 30s: is the shipyard controller running") as err:
            await run_move(east, west, clock, hold_timeout_s=30)
        assert "stays held in east" in str(err.value)
        assert 30 < clock.t - began <= 30.5  # polled every 0.5 s of its clock, none of ours
        assert west.objects(EXPERIMENTS) == []
        annotations = (await east.get(EXPERIMENTS, "job", "default"))["metadata"]["annotations"]
        assert annotations == {ANNOTATION_HOLD: "true", ANNOTATION_MOVING_TO: "west"}
        released = await run_move(east, west, clock, to="east")
        assert released.outcome == "released"
        assert (await east.get(EXPERIMENTS, "job", "default"))["metadata"].get("annotations") in ({}, None)

    asyncio.run(main())


async def held_in_east(clock: Clock) -> FakeApi:
    east = await seeded(clock, **{ANNOTATION_HOLD: "true", ANNOTATION_MOVING_TO: "west"})
    await east.patch(EXPERIMENTS, "job", {"status": {"phase": "Held"}}, "default", subresource="status")
    return east


def test_a_move_stopped_after_the_copy_resumes_by_deleting_the_original_and_copies_nothing_twice() -> None:
    async def main() -> None:
        clock = Clock()
        east = await held_in_east(clock)
        west = await seeded(clock, **{ANNOTATION_MOVED_FROM: "east"})
        result = await run_move(east, west, clock)
        assert result.outcome == "moved"
        assert east.objects(EXPERIMENTS) == []
        assert [c for c in west.calls if c[0] == "create" and c[1] == "experiments"] == [
            ("create", "experiments", "default/job")]  # the seeded one: none made by the move
        again = await run_move(east, west, clock)  # and once more: nothing left to do
        assert again.outcome == "already-there"

    asyncio.run(main())


def test_a_different_experiment_of_the_same_name_in_the_target_is_never_overwritten() -> None:
    async def main() -> None:
        clock = Clock()
        east = await held_in_east(clock)
        west = await seeded(clock)  # not a copy: no moved-from
        before = west.objects(EXPERIMENTS)
        with pytest.raises(MoveError, match="a different experiment default/job already exists in west"):
            await run_move(east, west, clock)
        assert west.objects(EXPERIMENTS) == before
        assert len(east.objects(EXPERIMENTS)) == 1  # still held where it was

    asyncio.run(main())


def test_a_target_that_stops_answering_leaves_the_source_held_and_the_move_resumable() -> None:
    async def main() -> None:
        clock = Clock()
        east, west = await held_in_east(clock), FakeApi(clock)
        west.fail("create", NAMESPACES, Transient(503, "ServiceUnavailable", "etcd is down"))
        with pytest.raises(MoveError, match=r"could not create default/job in west.*stays held in east"):
            await run_move(east, west, clock)
        assert len(east.objects(EXPERIMENTS)) == 1
        result = await run_move(east, west, clock)  # the same command, once west is back
        assert result.outcome == "moved" and len(west.objects(EXPERIMENTS)) == 1
        assert east.objects(EXPERIMENTS) == []

    asyncio.run(main())
