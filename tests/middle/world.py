"""The middle layer's harness: the real Controller over the in-memory API, stepped.

`World` starts the controller's informers against a FakeApi and then runs its cycles by
hand: `cycle()` steps the clock the controller was given, lets every watch event and
write finish (`settle`), runs one scheduling cycle and settles again. Nothing sleeps, so
a test is milliseconds and reads as the sequence of cycles it checks.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shipyard.controller import writer as writer_module
from shipyard.controller.controller import Controller
from shipyard.core.model import CycleResult
from shipyard.kube.install import SYSTEM_NAMESPACE
from shipyard.kube.objects import experiment_resource
from shipyard.kube.resources import EXPERIMENTS, NAMESPACES, NODES, PODS
from shipyard.render.objects import LABEL_EXPERIMENT
from shipyard.spec import Experiment
from shipyard.spec.machines import DEFAULT_MACHINE_TYPES
from tests.middle.fake_api import FakeApi

SETTLE_ROUNDS = 2000  # event-loop turns before a World that is still busy is a bug


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def node(name: str, machine_type: str = "cpu-small", **labels: str) -> dict[str, Any]:
    """A Ready node of a catalog machine type, as its kubelet registers it."""
    m = DEFAULT_MACHINE_TYPES[machine_type]
    allocatable = {"cpu": f"{m.allocatable_cpu}m", "memory": str(m.allocatable_memory), "pods": "110"}
    if m.gpus:
        allocatable["nvidia.com/gpu"] = str(m.gpus)
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {**m.node_labels(), **labels}},
            "spec": {"taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in m.taints]},
            "status": {"allocatable": allocatable, "capacity": allocatable,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


class World:
    def __init__(self, api: FakeApi, clock: Clock, **options: Any) -> None:
        self.api = api
        self.clock = clock
        self.controller = Controller(api, clock=clock, **options)
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> World:
        for ns in (SYSTEM_NAMESPACE, "default"):
            if not any(o["metadata"]["name"] == ns for o in self.api.objects(NAMESPACES)):
                await self.api.create(NAMESPACES, {"metadata": {"name": ns}})
        self.tasks = [asyncio.create_task(i.run()) for i in self.controller.informers]
        await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in self.controller.informers)), 5)
        self.controller.leading_since = self.clock()
        await self.settle()
        return self

    async def __aexit__(self, *exc: object) -> None:
        pending = [*self.tasks, *self.controller.inflight.values(), *self.controller.autoscaler.tasks]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def busy(self) -> bool:
        c = self.controller
        return bool(c.inflight) or bool(c.autoscaler.tasks) or not self.api.quiet(len(self.tasks))

    async def settle(self) -> None:
        """Until every write the controller started is done and every watch has delivered
        every change (the informers' caches are the API's)."""
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)
            if not self.busy():
                await asyncio.sleep(0)
                if not self.busy():
                    return
        raise AssertionError("the world did not settle: a write or a watch is stuck")

    async def cycle(self, step_s: float = 1.0) -> CycleResult:
        self.clock.t += step_s
        await self.settle()
        result = self.controller.run_cycle()
        await self.settle()
        return result

    # -- the cluster's other actors ---------------------------------------------------

    async def submit(self, exp: Experiment) -> dict[str, Any]:
        if not any(o["metadata"]["name"] == exp.namespace for o in self.api.objects(NAMESPACES)):
            await self.api.create(NAMESPACES, {"metadata": {"name": exp.namespace}})
        return await self.api.create(EXPERIMENTS, experiment_resource(exp))

    async def add_node(self, name: str, machine_type: str = "cpu-small") -> None:
        await self.api.create(NODES, node(name, machine_type))

    def pods(self, exp: str, namespace: str = "default") -> list[dict[str, Any]]:
        return [p for p in self.api.objects(PODS, namespace)
                if (p["metadata"].get("labels") or {}).get(LABEL_EXPERIMENT) == exp]

    def status(self, exp: str, namespace: str = "default") -> dict[str, Any]:
        objs = [o for o in self.api.objects(EXPERIMENTS, namespace) if o["metadata"]["name"] == exp]
        assert objs, f"no experiment {namespace}/{exp}"
        return objs[0].get("status") or {}

    async def kubelet_runs(self, exp: str, namespace: str = "default") -> None:
        """The kubelet starts every live pod of `exp` and stops the terminating ones."""
        self.api.finish_terminating()
        for pod in self.pods(exp, namespace):
            if (pod.get("status") or {}).get("phase") == "Pending":
                await self.api.set_pod_phase(namespace, pod["metadata"]["name"], "Running")


def no_stop_reason_wait(monkeypatch: Any) -> None:
    """The writer gives a terminating pod's kubelet a second to write the stop reason into
    its file; there is no kubelet here."""
    monkeypatch.setattr(writer_module, "STOP_REASON_SETTLE_S", 0.0)
