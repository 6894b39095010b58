"""Move an Experiment from one cluster to another without ever running it twice.

The protocol, every step idempotent so that re-running it resumes wherever it stopped:

1. hold: annotate the source `shipyard.dev/hold: "true"` and `shipyard.dev/moving-to`;
   its controller deletes the pods and keeps it out of scheduling;
2. wait until the source says `Held` and no pod of it is left (a finished experiment
   has nothing to move: refused, and the hold taken back);
3. create it on the target from the source's spec, annotated `shipyard.dev/moved-from`
   (already there with that annotation: this step was done before);
4. delete the held original.

The copy on the target is created only after the source holds no pods, so the two
never run at once; until step 4 the source keeps the experiment, held, so a target
that goes away loses nothing. `move NAME --to SOURCE` releases a held experiment.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from shipyard.api.vocab import ANNOTATION_HOLD, ANNOTATION_MOVED_FROM, ANNOTATION_MOVING_TO, TERMINAL, Phase
from shipyard.fleet.connect import DEFAULT_TIMEOUT_S, Clusters, Connect, Unreachable
from shipyard.fleet.events import record_event
from shipyard.fleet.machines import between
from shipyard.kube import experiments as kexp
from shipyard.kube import workdir
from shipyard.kube.api import ApiClient
from shipyard.kube.errors import AlreadyExists, ApiError, NotFound
from shipyard.kube.objects import experiment_from_resource, experiment_resource
from shipyard.kube.resources import CONFIG_MAPS, EXPERIMENTS, NAMESPACES
from shipyard.spec import SpecError
from shipyard.spec.clusters import ClusterRef, ClustersConfig

POLL_S = 0.5

Progress = Callable[[str], None]


class MoveError(Exception):
    """The move stopped; the message says what state things are in and how to go on."""


@dataclass(frozen=True, slots=True)
class MoveResult:
    name: str
    namespace: str
    source: str
    target: str
    outcome: str  # "moved", "already-moved", "released", "already-there"
    note: str = ""


def quiet(_: str) -> None:
    pass


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return obj["metadata"].get("annotations") or {}


def _phase(obj: dict[str, Any]) -> str:
    return (obj.get("status") or {}).get("phase") or Phase.QUEUED.value


@dataclass
class _Move:
    """One move's settings, shared by its steps."""

    name: str
    namespace: str
    refs: dict[str, ClusterRef]
    clusters: Clusters
    progress: Progress
    warn: Progress
    hold_timeout_s: float
    why: str = ""  # said in the Event on the moved experiment
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @property
    def full(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def get(self, cluster: str) -> dict[str, Any] | None:
        return await self.clusters.ask(cluster, lambda c: _get(c, self.name, self.namespace))

    async def annotate(self, cluster: str, annotations: dict[str, str | None]) -> dict[str, Any]:
        body = {"metadata": {"annotations": annotations}}
        return await self.clusters.ask(
            cluster, lambda c: c.patch(EXPERIMENTS, self.name, body, self.namespace))

    def resume_hint(self, source: str, target: str) -> str:
        return (f"{self.full} stays held in {source}. Re-run `shipyard move {self.name} -n "
                f"{self.namespace} --to {target}` to finish the move, or release it where it is with "
                f"`shipyard move {self.name} -n {self.namespace} --to {source}`.")


async def _get(c: ApiClient, name: str, namespace: str) -> dict[str, Any] | None:
    try:
        return await c.get(EXPERIMENTS, name, namespace)
    except NotFound:
        return None


async def locate(name: str, namespace: str, clusters: Clusters
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Where the experiment is: (cluster -> object, unreachable cluster -> why)."""
    found: dict[str, dict[str, Any]] = {}
    unreachable: dict[str, str] = {}
    for cluster, result in (await clusters.ask_all(lambda c: _get(c, name, namespace))).items():
        if isinstance(result, Unreachable):
            unreachable[cluster] = result.why
        elif isinstance(result, Exception):
            unreachable[cluster] = str(result)
        elif result is not None:
            found[cluster] = result
    return found, unreachable


async def move(name: str, namespace: str, target: str, config: ClustersConfig, *,
               source: str | None = None, progress: Progress = quiet, warn: Progress | None = None,
               timeout_s: float = DEFAULT_TIMEOUT_S, hold_timeout_s: float = 300.0,
               why: str = "", connect: Connect | None = None,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> MoveResult:
    """Move (or resume moving, or release) experiment `namespace/name` to `target`.
    `progress` gets each step, `warn` (default: `progress`) what went wrong on the way;
    `why` goes into the Event on the moved experiment. `connect`, `clock` and `sleep`
    are for tests: clients of their own, and time they step."""
    refs = {r.name: r for r in config.clusters}
    for cluster in (target, source):
        if cluster is not None and cluster not in refs:
            raise MoveError(f"no cluster named {cluster!r} in the clusters config; "
                            f"configured: {', '.join(refs) or 'none'}")
    async with Clusters(config.clusters, timeout_s, connect) as clusters:
        m = _Move(name, namespace, refs, clusters, progress, warn or progress, hold_timeout_s, why,
                  clock, sleep)
        try:
            if source is None:
                source, unreachable = await _find_source(m, target)
                if source is None:
                    return await _already_there(m, target, unreachable)
            if source == target:
                return await _release(m, target)
            return await _move(m, source, target)
        except (Unreachable, ApiError) as exc:  # the steps with their own advice raise MoveError
            raise MoveError(f"{exc}; re-run the same command to go on (every step is safe to "
                            "repeat)") from None


async def _find_source(m: _Move, target: str) -> tuple[str | None, dict[str, str]]:
    """The one cluster other than `target` that has the experiment (None when only the
    target has it), and the clusters that could not be asked."""
    found, unreachable = await locate(m.name, m.namespace, m.clusters)
    for cluster, why in unreachable.items():
        m.warn(f"could not look in {cluster}: {why}")
    half = half_done(found)
    if half is not None:
        source, copied_to = half
        if target == copied_to:
            return source, unreachable  # resume it
        raise MoveError(f"{m.full} was already copied from {source} to {copied_to} by a move that did "
                        f"not finish; finish it first: `shipyard move {m.name} -n {m.namespace} "
                        f"--to {copied_to}`")
    elsewhere = sorted(c for c in found if c != target)
    if len(elsewhere) > 1:
        raise MoveError(f"{m.full} is in several clusters ({', '.join(elsewhere)}); "
                        "say which one with --from")
    if elsewhere:
        return elsewhere[0], unreachable
    if target in found:
        return None, unreachable
    where = f" (could not look in {', '.join(unreachable)})" if unreachable else ""
    raise MoveError(f"no experiment {m.full} in any configured cluster{where}")


def half_done(found: dict[str, dict[str, Any]]) -> tuple[str, str] | None:
    """(source, target) of a move stopped between creating the copy and deleting the
    held original: both exist, and point at each other."""
    for cluster, obj in found.items():
        ann = _annotations(obj)
        to = ann.get(ANNOTATION_MOVING_TO)
        if ann.get(ANNOTATION_HOLD) == "true" and to in found and to != cluster \
                and _annotations(found[to]).get(ANNOTATION_MOVED_FROM) == cluster:
            return cluster, to
    return None


async def _already_there(m: _Move, target: str, unreachable: dict[str, str]) -> MoveResult:
    obj = await m.get(target)
    if obj is None:
        raise MoveError(f"{m.full} vanished from {target} while looking for it")
    if _annotations(obj).get(ANNOTATION_HOLD) == "true":
        return await _release(m, target)
    origin = _annotations(obj).get(ANNOTATION_MOVED_FROM)
    note = f"moved there from {origin}" if origin else ""
    if origin in unreachable:
        # A crash between steps 3 and 4 leaves the held original there; it never runs.
        note += (f"; {origin} could not be checked for a held original: re-run with "
                 f"--from {origin} when it is back to delete it")
    return MoveResult(m.name, m.namespace, target, target, "already-there", note)


async def _release(m: _Move, cluster: str) -> MoveResult:
    """Take back the hold of an unfinished move, unless its copy already exists elsewhere."""
    obj = await m.get(cluster)
    if obj is None:
        raise MoveError(f"no experiment {m.full} in {cluster}")
    ann = _annotations(obj)
    if ann.get(ANNOTATION_HOLD) != "true":
        return MoveResult(m.name, m.namespace, cluster, cluster, "already-there")
    other = ann.get(ANNOTATION_MOVING_TO)
    if other and other != cluster and other in m.refs:
        try:
            copy = await m.get(other)
        except Unreachable as exc:
            raise MoveError(
                f"cannot release {m.full} in {cluster}: the move was going to {other}, which is "
                f"unreachable ({exc.why}), so it is unknown whether a copy already runs there. "
                f"Re-run when {other} is back, or remove the {ANNOTATION_HOLD} annotation by hand "
                f"if {other} is gone for good.") from None
        if copy is not None and _annotations(copy).get(ANNOTATION_MOVED_FROM) == cluster:
            raise MoveError(f"{m.full} was already copied to {other}; finish the move with "
                            f"`shipyard move {m.name} -n {m.namespace} --to {other}`")
    await m.annotate(cluster, {ANNOTATION_HOLD: None, ANNOTATION_MOVING_TO: None})
    m.progress(f"released {m.full} in {cluster}: back in its queue")
    return MoveResult(m.name, m.namespace, cluster, cluster, "released")


async def _move(m: _Move, source: str, target: str) -> MoveResult:
    obj = await m.get(source)
    if obj is None:
        return await _done_before(m, source, target)
    await _hold(m, obj, source, target)
    held = await _wait_held(m, source, target)
    await _create_copy(m, held, source, target)
    try:
        await m.clusters.ask(source, lambda c: c.delete(EXPERIMENTS, m.name, m.namespace))
    except (Unreachable, ApiError) as exc:
        raise MoveError(f"{m.full} now lives in {target}, but deleting the held original in {source} "
                        f"failed ({exc}); it stays held there and never runs. Re-run `shipyard move "
                        f"{m.name} -n {m.namespace} --to {target}` to delete it.") from None
    m.progress(f"deleted the held original in {source}")
    return MoveResult(m.name, m.namespace, source, target, "moved")


async def _done_before(m: _Move, source: str, target: str) -> MoveResult:
    """The source has no such experiment: a move that already finished, or a wrong name."""
    copy = await m.get(target)
    if copy is not None and _annotations(copy).get(ANNOTATION_MOVED_FROM) == source:
        return MoveResult(m.name, m.namespace, source, target, "already-moved")
    raise MoveError(f"no experiment {m.full} in {source}")


async def _hold(m: _Move, obj: dict[str, Any], source: str, target: str) -> None:
    ann = _annotations(obj)
    going = ann.get(ANNOTATION_MOVING_TO)
    if going and going != target:
        raise MoveError(f"{m.full} in {source} is being moved to {going}; finish that move "
                        f"(`shipyard move {m.name} -n {m.namespace} --to {going}`) or release it "
                        f"(`shipyard move {m.name} -n {m.namespace} --to {source}`) first")
    if _phase(obj) in TERMINAL:
        raise MoveError(f"nothing to move: {m.full} in {source} has finished ({_phase(obj)})")
    if ann.get(ANNOTATION_HOLD) == "true" and going == target:
        m.progress(f"{m.full} already held in {source} for this move")
        return
    await m.annotate(source, {ANNOTATION_HOLD: "true", ANNOTATION_MOVING_TO: target})
    m.progress(f"holding {m.full} in {source}: its pods are being stopped")


async def _wait_held(m: _Move, source: str, target: str) -> dict[str, Any]:
    """Poll until the source is Held with no pod left; returns the held object."""
    deadline = m.clock() + m.hold_timeout_s
    last = ""
    while True:
        obj = await m.get(source)
        if obj is None:
            raise MoveError(f"{m.full} was deleted from {source} while it was being held")
        phase = _phase(obj)
        if phase in TERMINAL:
            # It finished before the hold took effect: nothing to move, nothing held.
            with contextlib.suppress(Unreachable, ApiError):
                await m.annotate(source, {ANNOTATION_HOLD: None, ANNOTATION_MOVING_TO: None})
            raise MoveError(f"nothing to move: {m.full} in {source} finished ({phase})")
        pods = await m.clusters.ask(source, lambda c: kexp.pods_of(c, m.name, m.namespace))
        if phase == Phase.HELD and not pods:
            m.progress(f"{m.full} is held in {source} with no pods")
            return obj
        message = (obj.get("status") or {}).get("message")
        text = phase + (f": {message}" if message else "") + f" ({len(pods)} pod(s) left)"
        if text != last:
            m.progress(f"waiting for {source} to hold {m.full}: {text}")
            last = text
        if m.clock() > deadline:
            raise MoveError(f"{m.full} in {source} is still {phase} after {m.hold_timeout_s:g}s: is the "
                            f"shipyard controller running there? " + m.resume_hint(source, target))
        await m.sleep(POLL_S)


def copy_of(obj: dict[str, Any], source: ClusterRef, target: ClusterRef) -> dict[str, Any]:
    """The Experiment to create on the target: the same spec (machine types renamed when
    the clusters name them differently) and labels, a new identity."""
    meta = obj["metadata"]
    spec = obj["spec"]
    if source.machine_types or target.machine_types:
        spec = experiment_resource(between(experiment_from_resource(obj), source, target))["spec"]
    return {
        "apiVersion": EXPERIMENTS.api_version,
        "kind": EXPERIMENTS.kind,
        "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                     "labels": dict(meta.get("labels") or {}),
                     "annotations": {ANNOTATION_MOVED_FROM: source.name}},
        "spec": spec,
    }


async def _shipped_code(m: _Move, held: dict[str, Any], source: str,
                        target: str) -> dict[str, Any] | None:
    """The source's workdir ConfigMap, to be created beside the copy (None: none shipped)."""
    if not isinstance((held.get("spec") or {}).get("workdir"), str):
        return None
    name = f"{m.name}-workdir"
    try:
        cm = await m.clusters.ask(source, lambda c: c.get(CONFIG_MAPS, name, m.namespace))
    except (Unreachable, ApiError) as exc:
        raise MoveError(f"could not read the shipped workdir {m.namespace}/{name} in {source}: "
                        f"{exc}. " + m.resume_hint(source, target)) from None
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": m.namespace,
                         "labels": dict(cm["metadata"].get("labels") or {})},
            "binaryData": cm.get("binaryData") or {}}


async def _create_copy(m: _Move, held: dict[str, Any], source: str, target: str) -> None:
    try:
        body = copy_of(held, m.refs[source], m.refs[target])
    except SpecError as exc:
        raise MoveError(f"{m.full} in {source} has an invalid spec: {exc}. "
                        + m.resume_hint(source, target)) from None

    code = await _shipped_code(m, held, source, target)

    async def work(c: ApiClient) -> str:
        with contextlib.suppress(AlreadyExists):
            await c.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                        "metadata": {"name": m.namespace}})
        if code is not None:  # the shipped workdir goes first: the pods mount it
            await c.apply(CONFIG_MAPS, code)
        try:
            created = await c.create(EXPERIMENTS, body)
        except AlreadyExists:
            existing = await c.get(EXPERIMENTS, m.name, m.namespace)
            if _annotations(existing).get(ANNOTATION_MOVED_FROM) == source:
                return "exists"
            raise MoveError(f"a different experiment {m.full} already exists in {target}; delete or "
                            f"rename it there first. " + m.resume_hint(source, target)) from None
        if code is not None:
            await c.patch(CONFIG_MAPS, code["metadata"]["name"], workdir.owner_patch(created),
                          m.namespace)
        await record_event(c, created, "Moved", f"moved here from cluster {source}"
                           + (f": {m.why}" if m.why else ""))
        return "created"

    try:
        done = await m.clusters.ask(target, work)
    except (Unreachable, ApiError) as exc:
        raise MoveError(f"could not create {m.full} in {target}: {exc}. "
                        + m.resume_hint(source, target)) from None
    m.progress(f"created {m.full} in {target}" if done == "created"
               else f"{m.full} was already created in {target}")
