"""Quarantine over the in-memory API: the nodes of failed gangs are tainted once K
different experiments failed there; one experiment failing again and again is not enough."""

from __future__ import annotations

import asyncio
import json

import pytest

from shipyard.api.vocab import (
    ANNOTATION_QUARANTINE_EVIDENCE,
    ANNOTATION_QUARANTINE_STRIKES,
    TAINT_QUARANTINE,
)
from shipyard.controller.settings import ControllerSettings, QuarantineSettings
from shipyard.kube.resources import NODES
from shipyard.spec import Experiment, RetryPolicy, Role
from tests.middle.fake_api import FakeApi
from tests.middle.world import Clock, World, no_stop_reason_wait


@pytest.fixture(autouse=True)
def _no_kubelet(monkeypatch: pytest.MonkeyPatch) -> None:
    no_stop_reason_wait(monkeypatch)


def exp(name: str, restarts: int) -> Experiment:
    # Each replica takes a whole cpu-small node: the gang is on both nodes.
    return Experiment(name=name, retry=RetryPolicy(max_restarts=restarts, backoff_seconds=0),
                      roles=[Role(name="w", replicas=2, machine_type="cpu-small", command=["true"])])


def quarantined(w: World) -> list[str]:
    return sorted(n["metadata"]["name"] for n in w.api.objects(NODES)
                  if any(t["key"] == TAINT_QUARANTINE for t in n["spec"].get("taints") or []))


async def fail_each_attempt(w: World, name: str) -> None:
    """Run the experiment's attempts to the end, its pod w-1 failing in each."""
    for _ in range(40):
        phase = w.status(name).get("phase")
        if phase == "Failed":
            return
        pods = [p for p in w.pods(name) if not p["metadata"].get("deletionTimestamp")]
        if phase == "Running" and pods:
            await w.api.set_pod_phase("default", f"{name}-w-1", "Failed", exit_code=1)
        else:
            await w.kubelet_runs(name)
        await w.cycle()
    raise AssertionError(f"{name} never failed: {w.status(name)}")


SETTINGS = ControllerSettings(quarantine=QuarantineSettings(after=2, window_s=3600))


def node_annotations(w: World, node: str) -> dict[str, str]:
    obj = next(n for n in w.api.objects(NODES) if n["metadata"]["name"] == node)
    return obj["metadata"].get("annotations") or {}


def test_one_experiment_failing_repeatedly_quarantines_nothing_a_second_one_does() -> None:
    settings = SETTINGS

    async def scenario(w: World) -> None:
        await w.add_node("n1")
        await w.add_node("n2")
        await w.submit(exp("buggy", restarts=3))
        await fail_each_attempt(w, "buggy")
        assert w.status("buggy")["restarts"] == 3  # four failures on n1 and n2
        assert quarantined(w) == []
        # Its strike is stored once per node: the restarts wrote nothing more.
        assert sorted(c[2] for c in w.api.calls if c[:2] == ("patch", "nodes")) == ["/n1", "/n2"]
        stored = json.loads(node_annotations(w, "n1")[ANNOTATION_QUARANTINE_STRIKES])
        assert [s["experiment"] for s in stored] == ["default/buggy"]
        await w.submit(exp("other", restarts=0))
        await fail_each_attempt(w, "other")
        await w.cycle()
        assert quarantined(w) == ["n1", "n2"]
        node = next(n for n in w.api.objects(NODES) if n["metadata"]["name"] == "n1")
        evidence = json.loads(node["metadata"]["annotations"][ANNOTATION_QUARANTINE_EVIDENCE])
        assert sorted(e["experiment"] for e in evidence) == ["default/buggy", "default/other"]
        assert ANNOTATION_QUARANTINE_STRIKES not in node_annotations(w, "n1")  # they became the evidence

    async def main() -> None:
        clock = Clock()
        async with World(FakeApi(clock), clock, settings=settings) as world:
            await scenario(world)

    asyncio.run(main())


def test_a_new_leader_goes_on_counting_from_the_strikes_stored_on_the_nodes() -> None:
    async def main() -> None:
        clock = Clock()
        api = FakeApi(clock)
        async with World(api, clock, settings=SETTINGS) as first:
            await first.add_node("n1")
            await first.add_node("n2")
            await first.submit(exp("buggy", restarts=0))
            await fail_each_attempt(first, "buggy")
            assert quarantined(first) == []
        async with World(api, clock, settings=SETTINGS) as second:  # a restarted controller
            await second.submit(exp("other", restarts=0))
            await fail_each_attempt(second, "other")
            await second.cycle()
            assert quarantined(second) == ["n1", "n2"]

    asyncio.run(main())
