"""Preflight: a node carrying the taint `shipyard.dev/preflight` takes no work until a
check pod has succeeded on it; then the controller removes the taint.

New nodes get the taint where they are made (the kubelet's `--register-with-taints
shipyard.dev/preflight=:NoSchedule`, a Cluster API template's `nodeRegistration.taints`).
With `shipyard controller run --preflight-image IMAGE [--preflight-command CMD]` the
controller runs one check pod per such node in shipyard-system (bound to the node,
tolerating every taint, told the node's name in SHIPYARD_NODE_NAME): exit 0 removes the
taint (Event `PreflightPassed`) and the pod; anything else leaves the taint and the pod,
whose log says why (Warning Event `PreflightFailed` with the exit code); delete the pod
to check again. Off unless --preflight-image is given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shipyard.api.vocab import TAINT_PREFLIGHT
from shipyard.controller.views import PodView
from shipyard.controller.writer import Writer
from shipyard.core.model import Node
from shipyard.kube.api import ApiClient
from shipyard.kube.errors import AlreadyExists
from shipyard.kube.install import SYSTEM_NAMESPACE
from shipyard.kube.resources import NODES, PODS

log = logging.getLogger(__name__)
POD_PREFIX = "shipyard-preflight-"
CHECK_LABELS = {"app.kubernetes.io/name": "shipyard-preflight"}


def check_pod_name(node: str) -> str:
    return (POD_PREFIX + node)[:253]


@dataclass(frozen=True, slots=True)
class Plan:
    create: tuple[str, ...] = ()  # tainted nodes without a check pod
    passed: tuple[str, ...] = ()  # tainted nodes whose check succeeded: untaint
    failed: tuple[tuple[str, int | None], ...] = ()  # (node, exit code) of failed checks
    collect: tuple[str, ...] = ()  # check pods of nodes no longer tainted


def plan(nodes: Iterable[Node], checks: Mapping[str, PodView]) -> Plan:
    """What to do for each node in preflight. `checks`: node -> its check pod. Pure."""
    create, passed, failed = [], [], []
    tainted = set()
    for node in nodes:
        if not any(t.key == TAINT_PREFLIGHT for t in node.taints):
            continue
        tainted.add(node.name)
        pod = checks.get(node.name)
        if pod is None:
            create.append(node.name)
        elif pod.phase == "Succeeded" and not pod.terminating:
            passed.append(node.name)
        elif pod.phase == "Failed":
            failed.append((node.name, pod.exit_code))
    collect = [pod.name for name, pod in checks.items() if name not in tainted
               and pod.phase == "Succeeded" and not pod.terminating]
    return Plan(tuple(sorted(create)), tuple(sorted(passed)), tuple(sorted(failed)),
                tuple(sorted(collect)))


def check_pod(node: str, image: str, command: list[str] | None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "check", "image": image,
        "env": [{"name": "SHIPYARD_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}
    if command:
        container["command"] = command
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": check_pod_name(node), "namespace": SYSTEM_NAMESPACE,
                         "labels": dict(CHECK_LABELS)},
            "spec": {"nodeName": node, "restartPolicy": "Never",
                     "tolerations": [{"operator": "Exists"}], "containers": [container]}}


@dataclass
class Preflight:
    client: ApiClient
    writer: Writer
    spawn: Callable[[Coroutine[Any, Any, None]], None]
    image: str | None = None
    command: list[str] | None = None
    busy: set[str] = field(default_factory=set)  # nodes with a write under way
    told: set[str] = field(default_factory=set)  # nodes whose failure has its Event

    @property
    def enabled(self) -> bool:
        return self.image is not None

    def step(self, nodes: Iterable[Node], pods: Iterable[PodView], now: float) -> None:
        checks = {pod.node: pod for pod in pods if pod.namespace == SYSTEM_NAMESPACE
                  and pod.name.startswith(POD_PREFIX) and pod.node}
        todo = plan(nodes, checks)
        for node in todo.create:
            self._once(node, self._create(node))
        for node in todo.passed:
            self._once(node, self._pass(node, now))
        for node, code in todo.failed:
            if node not in self.told:
                self.told.add(node)
                self._once(node, self._fail(node, code, now))
        for name in todo.collect:
            self._once(name, self._delete(name))
        self.told &= {node for node, _ in todo.failed}  # a pod deleted by hand: told again

    def _once(self, key: str, work: Coroutine[Any, Any, None]) -> None:
        if key in self.busy:
            work.close()
            return
        self.busy.add(key)

        async def run() -> None:
            try:
                await work
            finally:
                self.busy.discard(key)

        self.spawn(run())

    async def _create(self, node: str) -> None:
        assert self.image is not None
        try:
            await self.client.create(PODS, check_pod(node, self.image, self.command), SYSTEM_NAMESPACE)
        except AlreadyExists:  # the cache had not seen it yet
            return
        log.info("node %s: preflight check pod started", node)

    async def _pass(self, node: str, now: float) -> None:
        obj = await self.client.get(NODES, node)
        taints = (obj.get("spec") or {}).get("taints") or []
        kept = [t for t in taints if t.get("key") != TAINT_PREFLIGHT]
        if len(kept) != len(taints):
            await self.client.patch(NODES, node, {
                "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                "spec": {"taints": kept or None}})
            await self.writer.event_on({"apiVersion": "v1", "kind": "Node", "name": node},
                                       "PreflightPassed", f"check pod succeeded; {TAINT_PREFLIGHT} "
                                       "removed", now, "Normal")
        await self._delete(check_pod_name(node))

    async def _fail(self, node: str, code: int | None, now: float) -> None:
        pod = check_pod_name(node)
        message = (f"check pod {SYSTEM_NAMESPACE}/{pod} failed (exit code {code}); the node keeps "
                   f"{TAINT_PREFLIGHT}: see its log, delete the pod to check again")
        log.warning("node %s: %s", node, message)
        await self.writer.event_on({"apiVersion": "v1", "kind": "Node", "name": node},
                                   "PreflightFailed", message, now, "Warning")

    async def _delete(self, pod: str) -> None:
        await self.client.delete(PODS, pod, SYSTEM_NAMESPACE)  # gone already: fine
