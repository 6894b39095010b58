"""Writing decisions: a gang's pods created already bound to their nodes, all or none.

Writes share one concurrency limit with two lanes: URGENT (a gang's pods and the
status changes that go with them) is always served before ROUTINE (queue positions,
waiting reasons, events), so a thousand status refreshes never hold up a gang's pods.
While the API server fails, writes go one at a time with backoff (kube/outage.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Coroutine, Mapping
from typing import Any

from shipyard.api.vocab import ANNOTATION_STOP_REASON, LABEL_ATTEMPT, LABEL_EXPERIMENT
from shipyard.controller.views import ExperimentView, format_time
from shipyard.kube.api import ApiClient
from shipyard.kube.errors import AlreadyExists, ApiError, NotFound, Transient
from shipyard.kube.leader import LostLeadership
from shipyard.kube.outage import Outage
from shipyard.kube.resources import EVENTS, EXPERIMENTS, PODS, SECRETS, SERVICES
from shipyard.render.objects import render_pod, render_service
from shipyard.render.runtime import render_progress_secret

log = logging.getLogger(__name__)
SCHEDULER_NAME = "shipyard"
STOP_REASON_SETTLE_S = 1.0


class LeftoverPod(Exception):
    """A pod of an earlier attempt holds a name this attempt needs: the admission is
    rolled back and made again once the pod is gone."""


class GangInDoubt(Exception):
    """Some of the gang's pods may exist (a create or delete got no answer: a lost
    connection, a 504): the admission must not be rolled back, or their nodes would
    look free while they hold them. The reservation stands and the next cycle creates
    what is missing."""


def owner_reference(exp: ExperimentView) -> dict[str, Any]:
    return {"apiVersion": EXPERIMENTS.api_version, "kind": "Experiment", "name": exp.name,
            "uid": exp.uid, "controller": True, "blockOwnerDeletion": True}


def bound_pods(exp: ExperimentView, placement: Mapping[str, str], attempt: int,
               progress_url: str | None = None) -> list[dict[str, Any]]:
    """The rendered pods with nodeName set: kube-scheduler never sees them. With
    `progress_url` (the controller's progress receiver), ranks report there."""
    spec = exp.spec
    if spec is None:
        return []
    pods = []
    for role in spec.roles:
        for i in range(role.replicas):
            member = f"{role.name}-{i}"
            pod = render_pod(spec, role, i)
            pod["metadata"]["labels"][LABEL_ATTEMPT] = str(attempt)
            # Attempts before this one: failures, preemptions, holds (0 the first time).
            pod["spec"]["containers"][0]["env"].append(
                {"name": "SHIPYARD_RESTART_COUNT", "value": str(max(attempt - 1, 0))})
            if progress_url:
                pod["spec"]["containers"][0]["env"].append({
                    "name": "SHIPYARD_PROGRESS_URL",
                    "value": f"{progress_url.rstrip('/')}/v1/progress/{exp.namespace}/{exp.name}"})
            pod["metadata"]["ownerReferences"] = [owner_reference(exp)]
            pod["spec"]["nodeName"] = placement[member]
            pod["spec"]["schedulerName"] = SCHEDULER_NAME
            pods.append(pod)
    return pods


URGENT, ROUTINE = 0, 1


def log_write_failure(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """One line per failed write, except where one line per outage is already said: an
    API server failing (Outage) or this replica no longer leading (LeaderElector)."""
    quiet = isinstance(exc, Transient | LostLeadership)
    logger.log(logging.DEBUG if quiet else logging.WARNING, "%s: write failed: %s", what, exc)


class Lanes:
    """A counting semaphore whose waiters are served URGENT first, FIFO within a lane."""

    def __init__(self, limit: int) -> None:
        self.free = limit
        self.waiting: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())

    async def acquire(self, lane: int) -> None:
        if self.free > 0 and not any(self.waiting):
            self.free -= 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting[lane].append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # handed a slot just as we were cancelled: pass it on
            elif granted in self.waiting[lane]:  # a release may have passed it by already
                self.waiting[lane].remove(granted)
            raise

    def release(self) -> None:
        for queue in self.waiting:
            while queue:
                granted = queue.popleft()
                if not granted.done():
                    granted.set_result(None)
                    return
        self.free += 1


class PodBudget:
    """How many pods the writer creates at once, lent to whole gangs in arrival order:
    a gang starts when its pods fit beside those being written (or alone, if it is
    bigger than the budget), so the write slots stay full of small gangs while each
    gang is written in as few rounds of creates as its size allows."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    def _fits(self, n: int) -> bool:
        return self.used == 0 or self.used + n <= self.limit

    async def acquire(self, n: int) -> None:
        if not self.waiting and self._fits(n):
            self.used += n
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, granted)
        self.waiting.append(entry)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(n)  # granted just as we were cancelled: give it back
            else:
                self.waiting.remove(entry)
                self._grant()
            raise

    def release(self, n: int) -> None:
        self.used -= n
        self._grant()

    def _grant(self) -> None:
        while self.waiting and self._fits(self.waiting[0][0]):
            n, granted = self.waiting.popleft()
            if not granted.done():
                self.used += n
                granted.set_result(None)


class Writer:
    def __init__(self, client: ApiClient, concurrency: int = 64, outage: Outage | None = None) -> None:
        self.client = client
        self.lanes = Lanes(concurrency)
        self.outage = outage or Outage("API server writes")
        self._probe = asyncio.Lock()  # during an outage: one request at a time
        # Gangs created whole, as many at a time as twice the write slots hold pods: under
        # load every gang is partial for a round or two of creates, not for the whole
        # burst, and a burst of small gangs still keeps every slot busy (a fixed four
        # gangs at a time left the slots mostly idle: 0.4x the raw create rate).
        self.pod_budget = PodBudget(2 * concurrency)
        self.progress_url: str | None = None  # set when the controller receives progress

    async def _call(self, coro: Coroutine[Any, Any, Any], lane: int = URGENT) -> Any:
        await self.lanes.acquire(lane)
        try:
            if self.outage.failing:
                async with self._probe:
                    if self.outage.failing:
                        await asyncio.sleep(self.outage.wait_s())
                        return await self._attempt(coro)
            return await self._attempt(coro)
        finally:
            self.lanes.release()

    async def _attempt(self, coro: Coroutine[Any, Any, Any]) -> Any:
        try:
            result = await coro
        except Transient as exc:
            self.outage.failed(exc)
            raise
        except ApiError:
            self.outage.succeeded()  # an answer, if not the one we wanted
            raise
        self.outage.succeeded()
        return result

    async def patch_status(self, exp: ExperimentView, status: Mapping[str, Any],
                           lane: int = URGENT) -> None:
        # status.progress is the receiver's (patch_progress): a status built from a
        # cached copy would put an older one back.
        body = {k: v for k, v in status.items() if k != "progress"}
        await self._call(self.client.patch(EXPERIMENTS, exp.name, {"status": body},
                                           exp.namespace, subresource="status"), lane)

    async def read_status(self, exp: ExperimentView) -> dict[str, Any]:
        # A read, not a write: outside the lanes and the outage's backoff (the informers'
        # lists are too), so it never waits behind the writes it is checking on.
        obj = await self.client.get(EXPERIMENTS, exp.name, exp.namespace)
        return dict(obj.get("status") or {})

    async def patch_progress(self, exp: ExperimentView, progress: Mapping[str, Any]) -> None:
        await self._call(self.client.patch(EXPERIMENTS, exp.name, {"status": {"progress": dict(progress)}},
                                           exp.namespace, subresource="status"), ROUTINE)

    async def create_gang(self, exp: ExperimentView, placement: Mapping[str, str], attempt: int,
                          existing: set[str]) -> None:
        """Create the Service and every missing pod; on any failure delete what this
        call created and raise, so no partial gang is left holding nodes."""
        size = max(1, len(placement) - len(existing))
        await self.pod_budget.acquire(size)
        try:
            await self._create_gang(exp, placement, attempt, existing)
        finally:
            self.pod_budget.release(size)

    async def _create_gang(self, exp: ExperimentView, placement: Mapping[str, str], attempt: int,
                           existing: set[str]) -> None:
        spec = exp.spec
        if spec is None:
            raise ValueError(f"{exp.key}: no valid spec")
        service = render_service(spec)
        service["metadata"]["ownerReferences"] = [owner_reference(exp)]
        # The progress token, made once per experiment: a restarted gang keeps its own.
        secret = render_progress_secret(spec, secrets.token_urlsafe(32))
        secret["metadata"]["ownerReferences"] = [owner_reference(exp)]
        # Both before the pods (ranks resolve the Service's names and mount the Secret),
        # side by side: one round trip, not two.
        await asyncio.gather(self._ensure_service(service), self._ensure_secret(exp, secret))
        pods = [p for p in bound_pods(exp, placement, attempt, self.progress_url)
                if p["metadata"]["name"] not in existing]
        results = await asyncio.gather(*(self._call(self.client.create(PODS, p)) for p in pods),
                                       return_exceptions=True)
        names = [p["metadata"]["name"] for p in pods]
        taken = [n for n, r in zip(names, results, strict=True) if isinstance(r, AlreadyExists)]
        errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, AlreadyExists)]
        if taken and not errors:
            errors = await self._leftovers(exp, taken, attempt)
        if not errors:
            return
        # A create without an answer may have made its pod; one answered with an error did not.
        maybe = [n for n, r in zip(names, results, strict=True)
                 if not isinstance(r, BaseException) or isinstance(r, Transient)]
        if all(isinstance(e, Transient) for e in errors):
            # The server, not the gang, failed: keep what was made, finish it next cycle.
            raise GangInDoubt(f"{len(maybe)} of {len(placement)} pod(s) may exist; "
                              f"keeping the placement ({errors[0]})")
        # Rolled back only once every pod that may exist is known gone (grace 0: at once).
        deleted = await asyncio.gather(
            *(self._call(self.client.delete(PODS, n, exp.namespace, grace_s=0)) for n in maybe),
            return_exceptions=True)
        unknown = [n for n, r in zip(maybe, deleted, strict=True)
                   if isinstance(r, BaseException) and not isinstance(r, NotFound)]
        if unknown:
            raise GangInDoubt(f"could not delete {', '.join(unknown[:3])} after {errors[0]}; "
                              "keeping the placement")
        raise errors[0]

    async def _leftovers(self, exp: ExperimentView, names: list[str], attempt: int) -> list[BaseException]:
        """A name already taken is this attempt's pod only if it says so and is not being
        deleted: one of an earlier attempt that the watch had not shown yet would otherwise
        be taken for a member of this gang, and its deletion, moments later, leave the gang
        a pod short until the pod-visibility timeout restarts it."""
        for name in names:
            try:
                pod = await self._call(self.client.get(PODS, name, exp.namespace))
            except ApiError as exc:
                return [exc]
            meta = pod["metadata"]
            theirs = (meta.get("labels") or {}).get(LABEL_ATTEMPT)
            if theirs != str(attempt) or meta.get("deletionTimestamp"):
                state = "being deleted" if meta.get("deletionTimestamp") else "still there"
                return [LeftoverPod(f"pod {name} of attempt {theirs} is {state}")]
        return []

    async def _ensure_service(self, service: dict[str, Any]) -> None:
        with contextlib.suppress(AlreadyExists):
            await self._call(self.client.create(SERVICES, service))

    async def _ensure_secret(self, exp: ExperimentView, secret: dict[str, Any]) -> None:
        try:
            try:
                await self._call(self.client.create(SECRETS, secret))
            except AlreadyExists:
                await self._own_secret(exp, secret)
        except ApiError as exc:  # no progress for this gang, but no reason to hold it back
            log_write_failure(log, f"{exp.key}: progress Secret", exc)

    async def _own_secret(self, exp: ExperimentView, secret: dict[str, Any]) -> None:
        """The Secret there is this experiment's, or an earlier one's of the same name the
        garbage collector has not deleted yet: that one is replaced (its token is not ours)."""
        meta = secret["metadata"]
        current = await self._call(self.client.get(SECRETS, meta["name"], exp.namespace))
        if any(o.get("uid") == exp.uid for o in current["metadata"].get("ownerReferences") or []):
            return
        await self._call(self.client.delete(SECRETS, meta["name"], exp.namespace, grace_s=0))
        await self._call(self.client.create(SECRETS, secret))

    async def delete_pods(self, exp: ExperimentView, names: list[str] | None = None,
                          grace_s: int | None = None, reason: str | None = None) -> None:
        """Delete the named pods, or every pod of the experiment; with a `reason`, written
        into each pod first (its stop-reason file), so that its job can read it on SIGTERM."""
        if reason and names:
            await self._write_stop_reason(exp, names, reason)
        if names is None:
            await self._call(self.client.delete_collection(
                PODS, exp.namespace, f"{LABEL_EXPERIMENT}={exp.name}"))
            return
        await asyncio.gather(*(self._call(self.client.delete(PODS, n, exp.namespace, grace_s=grace_s))
                               for n in names), return_exceptions=True)

    async def _write_stop_reason(self, exp: ExperimentView, names: list[str], reason: str) -> None:
        patch = {"metadata": {"annotations": {ANNOTATION_STOP_REASON: reason[:1000]}}}
        results = await asyncio.gather(*(self._call(self.client.patch(PODS, n, patch, exp.namespace))
                                         for n in names), return_exceptions=True)
        if any(not isinstance(r, BaseException) for r in results):
            # A terminating pod's files are no longer refreshed by its kubelet: give it the
            # time to write the annotation into the file before the deletion.
            await asyncio.sleep(STOP_REASON_SETTLE_S)

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
            await self._call(self.client.create(EVENTS, body), ROUTINE)
