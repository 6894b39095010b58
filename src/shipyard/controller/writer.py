"""Writing decisions: a gang's pods created already bound to their nodes, all or none."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from shipyard.controller.views import LABEL_ATTEMPT, ExperimentView, format_time
from shipyard.kube.client import KubeClient
from shipyard.kube.errors import AlreadyExists, ApiError
from shipyard.kube.resources import EVENTS, EXPERIMENTS, PODS, SERVICES
from shipyard.render.objects import LABEL_EXPERIMENT, render_pod, render_service

SCHEDULER_NAME = "shipyard"


def owner_reference(exp: ExperimentView) -> dict[str, Any]:
    return {"apiVersion": EXPERIMENTS.api_version, "kind": "Experiment", "name": exp.name,
            "uid": exp.uid, "controller": True, "blockOwnerDeletion": True}


def bound_pods(exp: ExperimentView, placement: Mapping[str, str], attempt: int) -> list[dict[str, Any]]:
    """The rendered pods with nodeName set: kube-scheduler never sees them."""
    spec = exp.spec
    if spec is None:
        return []
    pods = []
    for role in spec.roles:
        for i in range(role.replicas):
            member = f"{role.name}-{i}"
            pod = render_pod(spec, role, i)
            pod["metadata"]["labels"][LABEL_ATTEMPT] = str(attempt)
            pod["metadata"]["ownerReferences"] = [owner_reference(exp)]
            pod["spec"]["nodeName"] = placement[member]
            pod["spec"]["schedulerName"] = SCHEDULER_NAME
            pods.append(pod)
    return pods


class Writer:
    def __init__(self, client: KubeClient, concurrency: int = 64) -> None:
        self.client = client
        self.limit = asyncio.Semaphore(concurrency)

    async def _call(self, coro: Any) -> Any:
        async with self.limit:
            return await coro

    async def patch_status(self, exp: ExperimentView, status: Mapping[str, Any]) -> None:
        await self._call(self.client.patch(EXPERIMENTS, exp.name, {"status": dict(status)},
                                           exp.namespace, subresource="status"))

    async def create_gang(self, exp: ExperimentView, placement: Mapping[str, str], attempt: int,
                          existing: set[str]) -> None:
        """Create the Service and every missing pod; on any failure delete what this
        call created and raise, so no partial gang is left holding nodes."""
        spec = exp.spec
        if spec is None:
            raise ValueError(f"{exp.key}: no valid spec")
        service = render_service(spec)
        service["metadata"]["ownerReferences"] = [owner_reference(exp)]
        with contextlib.suppress(AlreadyExists):
            await self._call(self.client.create(SERVICES, service))
        pods = [p for p in bound_pods(exp, placement, attempt) if p["metadata"]["name"] not in existing]
        results = await asyncio.gather(*(self._call(self.client.create(PODS, p)) for p in pods),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, AlreadyExists)]
        if errors:
            created = [p["metadata"]["name"] for p, r in zip(pods, results, strict=True)
                       if not isinstance(r, BaseException)]
            await asyncio.gather(*(self._call(self.client.delete(PODS, n, exp.namespace, grace_s=0))
                                   for n in created), return_exceptions=True)
            raise errors[0]

    async def delete_pods(self, exp: ExperimentView, names: list[str] | None = None) -> None:
        """Delete the named pods, or every pod of the experiment."""
        if names is None:
            await self._call(self.client.delete_collection(
                PODS, exp.namespace, f"{LABEL_EXPERIMENT}={exp.name}"))
            return
        await asyncio.gather(*(self._call(self.client.delete(PODS, n, exp.namespace))
                               for n in names), return_exceptions=True)

    async def event(self, exp: ExperimentView, reason: str, message: str, now: float,
                    kind: str = "Normal") -> None:
        ref = {"apiVersion": EXPERIMENTS.api_version, "kind": "Experiment",
               "name": exp.name, "namespace": exp.namespace, "uid": exp.uid}
        await self.event_on(ref, reason, message, now, kind)

    async def event_on(self, ref: Mapping[str, str], reason: str, message: str, now: float,
                       kind: str = "Normal") -> None:
        """An Event about any object (`ref` is its involvedObject); cluster-scoped
        objects get theirs in the default namespace, as kubectl describe expects."""
        namespace = ref.get("namespace") or "default"
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{ref['name']}.", "namespace": namespace},
            "involvedObject": dict(ref),
            "reason": reason, "message": message[:1000], "type": kind,
            "firstTimestamp": format_time(now), "lastTimestamp": format_time(now), "count": 1,
            "source": {"component": "shipyard-controller"},
        }
        with contextlib.suppress(ApiError):  # events are best effort
            await self._call(self.client.create(EVENTS, body))
