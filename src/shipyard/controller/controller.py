"""The scheduling controller: watch caches -> snapshot -> core decisions -> writes.

One asyncio loop. Informers mark the world dirty; a cycle runs after a short
coalescing window (or when a timer is due: a backoff ending, a time limit). Each
cycle (1) moves every experiment along its lifecycle, (2) asks core/ to schedule
the queued ones over a snapshot, (3) starts the writes. Writes run as background
tasks, one per experiment at a time; until the watch shows what was written, the
controller's own last status for an experiment (the overlay) is the one it uses,
so the next cycle never double-books a node.

A gang's pods go through the writer's URGENT lane; queue positions and reasons through
the ROUTINE one, so status refreshes never delay a gang's pods (after a restart, the
first cycle completes half-created gangs before anything else). A Queued experiment
holds no pods: leftovers of a rolled-back admission are deleted, and the gang is not
placed again until they are gone. If an informer dies, the controller stops loudly
rather than go on blind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from shipyard.api.status import next_status, revision
from shipyard.api.vocab import HOLDING, TAINT_QUARANTINE, TERMINAL, Phase
from shipyard.controller.autoscaler import Autoscaler
from shipyard.controller.capacity_publisher import CapacityPublisher
from shipyard.controller.hangs import LogActivity
from shipyard.controller.hangs import hung as hung_for
from shipyard.controller.lifecycle import STALLED, Decision, reconcile
from shipyard.controller.preflight import Preflight
from shipyard.controller.progress import INTERVAL_S as PROGRESS_INTERVAL_S
from shipyard.controller.progress import Receiver, only_progress_changed
from shipyard.controller.quarantine import Quarantine, keeping_strikes
from shipyard.controller.recoveries import Recoveries
from shipyard.controller.run_history import RunHistory
from shipyard.controller.settings import ControllerSettings
from shipyard.controller.views import (
    ExperimentView,
    PodView,
    experiment_view,
    format_time,
    node_view,
    parse_rfc3339,
    parse_time,
    pod_view,
    queue_view,
)
from shipyard.controller.writer import ROUTINE, URGENT, GangInDoubt, Writer, log_write_failure
from shipyard.core.adapter import NodeViews
from shipyard.core.estimate import Estimate
from shipyard.core.from_spec import gang_for, queue_for
from shipyard.core.model import CycleResult, Gang, Node, Resources, Running, Snapshot
from shipyard.core.queueing import schedule
from shipyard.core.start_estimate import StartEstimate, estimate_starts
from shipyard.kube.api import ApiClient
from shipyard.kube.informer import Informer, cancel_all
from shipyard.kube.install import SYSTEM_NAMESPACE
from shipyard.kube.outage import Outage
from shipyard.kube.resources import EXPERIMENTS, NODES, PODS, QUEUES
from shipyard.monitor.metrics import CacheCollector
from shipyard.monitor.progress import ProgressMetrics
from shipyard.monitor.scheduler import SchedulerCollector, SchedulerMetrics, restart_cause
from shipyard.monitor.usage import rates, running_uses
from shipyard.monitor.usage_store import UsageRecorder

log = logging.getLogger(__name__)
MAX_COALESCE_S = 2.0  # the longest a cycle waits for events to coalesce after a slow one
WAITING_REFRESH_S = 5.0  # at most one position/reason update per experiment this often
# Start estimates of waiting experiments are recomputed this often (a play-forward of the
# whole queue), or after ESTIMATE_SOON_S when the waiting set changed, and written with
# the position, to the minute, only when they move.
ESTIMATE_REFRESH_S = 30.0
ESTIMATE_SOON_S = 2.0


class InformerStopped(RuntimeError):
    """A watch cache died: the controller must not go on scheduling from it."""


class Controller:
    def __init__(self, client: ApiClient, *, clock: Callable[[], float] = time.time,
                 coalesce_s: float = 0.05, write_concurrency: int = 64,
                 settings: ControllerSettings | None = None,
                 usage_namespace: str = SYSTEM_NAMESPACE) -> None:
        """`settings`: the tree `shipyard controller run` fills (None: the defaults):
        the scheduling policy with its estimator settings and the autoscaler's settings,
        the ones the simulator takes too (SimConfig.policy, SimConfig.autoscale), and the
        quarantine's. The autoscaler acts only on NodePools, so a cluster without any is
        left alone."""
        self.settings = settings = ControllerSettings() if settings is None else settings
        self.client = client
        self.clock = clock
        self.coalesce_s = coalesce_s
        # One outage for every request of this controller: logged once, backed off together.
        self.outage = Outage("API server")
        self.writer = Writer(client, write_concurrency, self.outage)
        self.dirty = asyncio.Event()
        self.node_strikes: dict[str, str] = {}  # node -> its stored quarantine strikes
        self.recoveries = Recoveries(clock)  # nodes back from NotReady, not placed on yet
        self.nodes: Informer[Node] = Informer(
            client, NODES, self.recoveries.noting(keeping_strikes(node_view, self.node_strikes)),
            self._changed, outage=self.outage)
        self.pods: Informer[PodView] = Informer(client, PODS, pod_view, self._pod_changed,
                                                outage=self.outage)
        self.experiments: Informer[ExperimentView] = Informer(
            client, EXPERIMENTS, experiment_view, self._exp_changed, outage=self.outage)
        self.queues: Informer[Any] = Informer(client, QUEUES, queue_view, self._changed,
                                              outage=self.outage)
        self.pods_of: dict[str, dict[str, PodView]] = {}  # experiment -> pod name -> pod
        self.pod_used: dict[str, Resources] = {}  # node -> requests of pods holding it
        self.overlay: dict[str, dict[str, Any]] = {}  # experiment -> status we wrote
        self.inflight: dict[str, asyncio.Task[None]] = {}
        self.waiting_written: dict[str, float] = {}
        self.leading_since = 0.0  # when this controller's first cycle could run
        self.views = NodeViews()  # the snapshot's nodes, rebuilt only when they change
        self.start_estimates: dict[str, StartEstimate] = {}
        self.estimated_at = float("-inf")
        self.estimated_for: set[str] = set()  # the waiting gangs of that estimate
        self.gangs: dict[tuple[str, str], Gang] = {}  # (key, uid) -> gang
        self.policy = settings.policy
        # Run times of the experiments that succeeded, for estimates (policy.estimates).
        self.history = RunHistory(self.policy.estimate)
        self.cycles = 0
        self.last_result: CycleResult | None = None
        self.autoscaler = Autoscaler(client, self.writer, self.dirty.set, settings.autoscale,
                                     self.policy)
        self.earmarks: dict[str, str] = {}  # node -> gang it was provisioned for
        self.capacity = CapacityPublisher(client)
        self.autoscaler.metrics.registry.register(
            CacheCollector(lambda: self.informers, self.outage))
        self.last_snapshot: Snapshot | None = None
        # GPU-hours per queue, kept in a ConfigMap so the count survives a restart.
        self.usage = UsageRecorder(client, usage_namespace)
        self.metrics = SchedulerMetrics(self.autoscaler.metrics.registry)
        self.autoscaler.metrics.registry.register(SchedulerCollector(self))
        self.quarantine = Quarantine(client, self.writer, self.autoscaler.spawn, self._quarantined,
                                     settings.quarantine.after, settings.quarantine.window_s,
                                     self.node_strikes.get)
        self.progress: Receiver | None = None  # set by enable_progress
        # Stalls are counted with or without the receiver (log lines are evidence too).
        self.progress_metrics = ProgressMetrics(self.autoscaler.metrics.registry)
        self.logs = LogActivity(client, self.autoscaler.spawn,  # log lines: hang evidence
                                self.progress_metrics.log_reads.inc)
        self.preflight = Preflight(client, self.writer, self.autoscaler.spawn)  # off: no image

    def enable_progress(self, url: str | None, interval_s: float = PROGRESS_INTERVAL_S) -> Receiver:
        """Receive ranks' progress reports; `url`: where pods reach the receiver (given to
        them as SHIPYARD_PROGRESS_URL; None: they are not told, so they do not report)."""
        def node_of(key: str, pod: str) -> str | None:
            view = self.pods_of.get(key, {}).get(pod)
            return view.node if view else None

        self.progress = Receiver(self.client, self.writer, lambda: self.experiments.items, interval_s,
                                 node_of=node_of,
                                 metrics=self.progress_metrics)
        self.writer.progress_url = url
        return self.progress

    # -- cache bookkeeping ------------------------------------------------------

    def _changed(self, key: str, old: Any, new: Any) -> None:
        self.dirty.set()

    def _exp_changed(self, key: str, old: ExperimentView | None, new: ExperimentView | None) -> None:
        if new is None:
            self.overlay.pop(key, None)
            self.waiting_written.pop(key, None)
            self.logs.forget(key)
            if old is not None:
                self.gangs.pop((key, old.uid), None)
                self.history.forget(key, old.uid)
        elif key in self.overlay and new.revision >= revision(self.overlay[key]):
            del self.overlay[key]  # the watch caught up with what we wrote
        if new is None and self.progress is not None:
            namespace, _, name = key.partition("/")
            self.progress.forget((namespace, name))
        if only_progress_changed(old, new):
            return  # the receiver's own write: nothing to schedule
        self.dirty.set()

    def _pod_changed(self, key: str, old: PodView | None, new: PodView | None) -> None:
        for pod, sign in ((old, -1), (new, 1)):
            if pod is None:
                continue
            if pod.holds_resources and pod.node:
                used = self.pod_used.get(pod.node, Resources())
                delta = pod.request if sign > 0 else Resources() - pod.request
                self.pod_used[pod.node] = used + delta
            if pod.experiment:
                bucket = self.pods_of.setdefault(pod.experiment, {})
                if sign > 0:
                    bucket[pod.name] = pod
                else:
                    bucket.pop(pod.name, None)
                    if not bucket:
                        self.pods_of.pop(pod.experiment, None)
        self.dirty.set()

    def status(self, key: str) -> dict[str, Any]:
        """The newest status we know of: ours while the watch has not caught up."""
        if key in self.overlay:
            return self.overlay[key]
        exp = self.experiments.items.get(key)
        return exp.status if exp else {}

    # -- the loop ---------------------------------------------------------------

    @property
    def informers(self) -> list[Informer[Any]]:
        return [self.nodes, self.pods, self.experiments, self.queues, *self.autoscaler.informers]

    async def run(self, leading: asyncio.Event | None = None) -> None:
        """Run until cancelled; raise InformerStopped if a watch cache dies. With
        `leading`, the caches fill at once but no cycle runs before it is set: a warm
        standby takes over in the time of one cycle, not of a full list."""
        tasks = [asyncio.create_task(i.run(), name=f"informer-{i.kind.plural}")
                 for i in self.informers]
        loop = asyncio.create_task(self._loop(leading), name="scheduling-loop")
        try:
            done, _ = await asyncio.wait([loop, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is loop:
                    task.result()
                    continue
                exc = None if task.cancelled() else task.exception()
                log.critical("%s stopped (%r): stopping the controller rather than "
                             "scheduling from a cache that no longer follows the cluster",
                             task.get_name(), exc)
                raise InformerStopped(f"{task.get_name()} stopped: {exc!r}") from exc
        finally:
            await cancel_all([loop, *tasks, *self.inflight.values(), *self.autoscaler.tasks])
            await self.usage.final_flush(self.clock())

    async def _loop(self, leading: asyncio.Event | None = None) -> None:
        began = time.monotonic()
        await asyncio.gather(*(i.synced.wait() for i in self.informers))
        log.info("caches synced in %.2fs: %d nodes, %d pods, %d experiments",
                 time.monotonic() - began, len(self.nodes.items), len(self.pods.items),
                 len(self.experiments.items))
        if leading is not None:
            await leading.wait()
        self.leading_since = self.clock()
        first = True
        cycle_s = 0.0
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that
            # lands as the event fires, and a deposed leader would go on scheduling.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.dirty.wait()
            # Coalesce for at least as long as the last cycle took: under a stream of
            # events cycles then take at most half the loop, and the writes they started
            # get the rest (py-spy, 2,500-node burst: back-to-back cycles were half the
            # controller's CPU while its gangs' pods waited to be written).
            await asyncio.sleep(min(max(self.coalesce_s, cycle_s), MAX_COALESCE_S))
            self.dirty.clear()
            cycle_began = time.monotonic()
            result = self.run_cycle()
            cycle_s = time.monotonic() - cycle_began
            if first:  # with the lists above: how long a restarted controller is blind
                first = False
                log.info("first cycle in %.2fs: %d admitted, %d experiments being written",
                         time.monotonic() - cycle_began, len(result.admitted), len(self.inflight))

    def run_cycle(self) -> CycleResult:
        with self.metrics.cycle.time():
            return self._cycle()

    def _cycle(self) -> CycleResult:
        now = self.clock()
        self.cycles += 1
        for key, exp in list(self.experiments.items.items()):
            if key not in self.inflight:
                pods, status = list(self.pods_of.get(key, {}).values()), self.status(key)
                hung = (hung_for(exp, pods, status, now, self.progress.last_reports(exp, now)
                                 if self.progress is not None else {}, self.logs)
                        if status.get("phase") == Phase.RUNNING else None)
                decision = reconcile(exp, status, pods, self.nodes.items, now, hung)
                if decision.event and decision.event[0] == STALLED and exp.spec:
                    self.progress_metrics.stalls.labels(exp.spec.queue, exp.spec.on_hang).inc()
                self._apply_lifecycle(exp, decision, now)
        snapshot = self.snapshot(now)
        result = schedule(snapshot, self.policy)
        self.last_snapshot, self.last_result = snapshot, result
        self.usage.step(now, lambda: rates(running_uses(self.pods_of, self._queue_of(),
                                                        self.nodes.items)))
        if self.usage.load_due(now):  # once leading: continue the stored counts
            self.autoscaler.spawn(self.usage.load(now))
        elif self.usage.due(now):
            self.autoscaler.spawn(self.usage.flush(now))
        for victim in result.preempted:
            self._preempt(victim.gang, victim.for_gang, victim.reason, now)
        for admission in result.admitted:
            self._admit(admission.gang, admission.placement, now)
        since = now - self.estimated_at
        if since >= ESTIMATE_REFRESH_S or (since >= ESTIMATE_SOON_S and any(
                w.gang not in self.estimated_for for w in result.waiting)):
            self.estimated_at = now
            self.estimated_for = {w.gang for w in result.waiting}
            self.start_estimates = estimate_starts(snapshot, result.waiting, self.policy,
                                                   self._etas(snapshot))
        for waiting in result.waiting:
            self._waiting(waiting.gang, waiting.position, waiting.reason, now,
                          self.start_estimates.get(waiting.gang))
        if self.preflight.enabled:
            self.preflight.step(self.nodes.items.values(), self.pods.items.values(), now)
        self.autoscaler.step(snapshot, result, self._busy_nodes(snapshot), self.earmarks, now,
                             self._releasing(snapshot))
        if self.capacity.due(now):
            summary = self.capacity.status_for(snapshot, self.autoscaler.last_states, result.waiting, now,
                                               self._etas(snapshot))
            if summary is not None:
                self.autoscaler.spawn(self.capacity.write(summary))
        return result

    def _quarantined(self, node: str) -> bool:
        n = self.nodes.items.get(node)
        return n is not None and any(t.key == TAINT_QUARANTINE for t in n.taints)

    def _charge_failure(self, key: str, old: Mapping[str, Any], new: Mapping[str, Any],
                        now: float) -> None:
        """A running gang that failed (a pod, or a node) counts against its nodes."""
        problem = str(new.get("failedPod") or "")
        if old.get("phase") in HOLDING and new.get("phase") in (Phase.RESTARTING, Phase.FAILED) \
                and restart_cause(problem) in ("PodFailed", "NodeLost"):
            self.quarantine.gang_failed(key, (old.get("placement") or {}).values(), problem, now)

    def _etas(self, snapshot: Snapshot) -> dict[str, float]:
        """Running experiment -> the ETA its ranks' progress reports give (status.progress)."""
        out: dict[str, float] = {}
        for run in snapshot.running:
            progress = self.status(run.gang.key).get("progress")
            eta = parse_rfc3339(progress.get("eta")) if isinstance(progress, Mapping) else None
            if eta is not None:
                out[run.gang.key] = eta
        return out

    def _queue_of(self) -> dict[str, str]:
        return {k: e.spec.queue for k, e in self.experiments.items.items() if e.spec is not None}

    def _releasing(self, snapshot: Snapshot) -> dict[str, Resources]:
        """node -> what pods of gangs no longer running still hold there: stopped (a time
        limit, a cancel, a restart), they are deleted and go within their grace period."""
        running = {r.gang.key for r in snapshot.running}
        out: dict[str, Resources] = {}
        for key, pods in self.pods_of.items():
            if key in running:
                continue
            for p in pods.values():
                if p.node and p.holds_resources:
                    out[p.node] = out.get(p.node, Resources()) + p.request
        return out

    def _busy_nodes(self, snapshot: Snapshot) -> set[str]:
        """Nodes holding any part of a shipyard gang: never idle, never removed."""
        busy = {p.node for pods in self.pods_of.values() for p in pods.values()
                if p.node and p.holds_resources}
        for run in snapshot.running:
            busy.update(run.placement.values())
        return busy

    # -- snapshot -----------------------------------------------------------------

    def _gang(self, exp: ExperimentView, submitted_at: float) -> Gang | None:
        if exp.spec is None:
            return None
        cache_key = (exp.key, exp.uid)
        gang = self.gangs.get(cache_key)
        if gang is None or gang.submitted_at != submitted_at:
            gang = self.gangs[cache_key] = gang_for(exp.spec, exp.key, submitted_at)
        return gang

    def snapshot(self, now: float) -> Snapshot:
        used = dict(self.pod_used)
        pending: list[Gang] = []
        running: list[Running] = []
        learn = self.policy.estimates
        alive: list[ExperimentView] = []  # estimated after every succeeded run is learnt
        for key, exp in self.experiments.items.items():
            status = self.status(key)
            phase = status.get("phase") or Phase.QUEUED
            submitted = parse_time(status.get("submittedAt")) or exp.created_at
            if phase == Phase.SUCCEEDED and learn:
                self.history.finished(exp, status)
                continue
            if learn and (phase in HOLDING or phase == Phase.QUEUED):
                alive.append(exp)
            if phase in HOLDING:
                gang = self._gang(exp, submitted)
                placement: Mapping[str, str] = status.get("placement") or {}
                if gang is None or not placement:
                    continue
                present = {p.member for p in self.pods_of.get(key, {}).values()}
                for member in gang.members if len(present) < len(gang.members) else ():
                    # Pods not in the cache yet (being created) still hold their node.
                    node = placement.get(member.name)
                    if node and member.name not in present:
                        used[node] = used.get(node, Resources()) + member.request
                started = parse_time(status.get("startedAt") or status.get("admittedAt")) or now
                running.append(Running(gang, placement, started))
            elif phase == Phase.QUEUED and key not in self.inflight and not exp.deleting \
                    and not exp.cancel_requested and not exp.held and key not in self.pods_of:
                due = parse_time(status.get("nextAttemptAt"))
                gang = self._gang(exp, submitted)
                if gang is not None and (due is None or due <= now):
                    pending.append(gang)
        # Nodes provisioned for a waiting gang are that gang's alone: a taint only it tolerates.
        self.earmarks = self.autoscaler.active_earmarks((g.key for g in pending),
                                                       self.nodes.items, now)
        queues = (queue_for(q) for q in self.queues.items.values())
        estimates: dict[str, Estimate] = {}
        for exp in alive:
            if (est := self.history.estimate(exp, now)) is not None:
                estimates[exp.key] = est
        return self.views.snapshot(self.recoveries.hold_back(self.nodes.items.values(), now), used,
                                   self.earmarks, pending, now, running, queues, estimates)

    # -- applying decisions ---------------------------------------------------------

    def _spawn(self, key: str, coro: Coroutine[Any, Any, None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception as exc:  # the next cycle sees the world as it is
                log_write_failure(log, key, exc)
                await self._read_back(key)
            finally:
                self.inflight.pop(key, None)
                self.dirty.set()

        self.inflight[key] = asyncio.create_task(guarded(), name=f"write-{key}")

    async def _read_back(self, key: str) -> None:
        """After a failed write the server's status is unknown, and the watch may not have
        shown even the writes that worked: a cycle acting on that older status could undo
        them (a gang just created, read as still Queued, has its pods deleted as leftovers).
        So the status is read back from the server; failing that, only a placement stays."""
        exp = self.experiments.items.get(key)
        if exp is None:
            self.overlay.pop(key, None)
            return
        try:
            status = await self.writer.read_status(exp)
        except Exception as exc:
            # An outage. A placement we wrote or meant to stays: the cache may be older
            # than the writes that worked, and acting on it could book those nodes a
            # second time (a later write carries it to the server). Anything else is
            # decided again from the cache, so that a write that never landed (a gang's
            # end, say) is made again rather than taken as done.
            log_write_failure(log, f"{key}: reading the status back", exc)
            if self.overlay.get(key, {}).get("phase") not in HOLDING:
                self.overlay.pop(key, None)
            return
        self.overlay.pop(key, None)
        current = self.experiments.items.get(key)
        if current is not None and revision(status) > current.revision:
            self.overlay[key] = status

    def _set_status(self, key: str, status: dict[str, Any]) -> None:
        self.overlay[key] = status

    def _apply_lifecycle(self, exp: ExperimentView, decision: Decision, now: float) -> None:
        if decision == Decision():
            return
        if decision.status is not None and exp.spec is not None:
            old = self.status(exp.key)
            self.metrics.transition(exp.spec.queue, old, decision.status,
                                    parse_time(old.get("admittedAt")), now)
            self._charge_failure(exp.key, old, decision.status, now)
        if decision.status is not None:
            self._set_status(exp.key, decision.status)
        pods = list(self.pods_of.get(exp.key, {}).values())

        # Only what frees or takes nodes is urgent; a lone status change can wait its turn.
        lane = URGENT if decision.create or decision.delete or decision.force else ROUTINE

        async def act() -> None:
            if decision.status is not None:
                await self.writer.patch_status(exp, decision.status, lane)
            if decision.force:
                await self.writer.delete_pods(exp, list(decision.force), grace_s=0)
            if decision.delete == "all":
                await self.writer.delete_pods(exp, [p.name for p in pods if not p.terminating],
                                              reason=decision.stop_reason)
            elif decision.delete == "active":
                await self.writer.delete_pods(exp, [p.name for p in pods if not p.terminating
                                                    and p.phase not in ("Succeeded", "Failed")],
                                              reason=decision.stop_reason)
            if decision.create:
                await self._create(exp)
            if decision.event:
                kind = "Warning" if decision.event[0] in ("Failed", "Restarting", STALLED) else "Normal"
                await self.writer.event(exp, *decision.event, now, kind)

        self._spawn(exp.key, act())

    async def _create(self, exp: ExperimentView) -> None:
        status = self.status(exp.key)
        attempt = int(status.get("attempt", 0))
        # Pods this attempt already made (a restarted controller completing a gang); any
        # other pod holding a member's name is a leftover the writer refuses to adopt.
        existing = {name for name, p in self.pods_of.get(exp.key, {}).items()
                    if p.attempt == attempt and not p.terminating}
        try:
            await self.writer.create_gang(exp, status.get("placement") or {}, attempt, existing)
        except GangInDoubt:
            raise  # still Admitted: its nodes stay held, and the next cycle completes it
        except Exception as exc:
            rollback = next_status(status, phase=Phase.QUEUED, placement=None,
                                   message=f"admission rolled back: {exc}")
            self._set_status(exp.key, rollback)
            await self.writer.patch_status(exp, rollback)
            return
        started = next_status(self.status(exp.key), phase=Phase.STARTING,
                              message="pods created; waiting for them to run")
        self._set_status(exp.key, started)
        await self.writer.patch_status(exp, started)

    def _admit(self, key: str, placement: Mapping[str, str], now: float) -> None:
        exp = self.experiments.items.get(key)
        if exp is None:
            return
        status = self.status(key)
        if exp.spec is not None:
            self.metrics.admitted(exp.spec.queue, int(status.get("attempt", 0)),
                                  parse_time(status.get("submittedAt")) or exp.created_at, now)
        new = next_status(status, phase=Phase.ADMITTED, placement=dict(placement), position=None,
                          startEstimate=None,
                          attempt=int(status.get("attempt", 0)) + 1, admittedAt=format_time(now),
                          nextAttemptAt=None, pods=f"0/{len(placement)}",
                          message=f"admitted: creating {len(placement)} pod(s)")
        self._set_status(key, new)

        async def act() -> None:
            await self.writer.patch_status(exp, new)
            await self._create(exp)
            await self.writer.event(exp, "Admitted", f"placed {len(placement)} pod(s)", now)

        self._spawn(key, act())

    def _preempt(self, key: str, for_gang: str, reason: str, now: float) -> None:
        exp = self.experiments.items.get(key)
        if exp is None or key in self.inflight:
            return
        status = self.status(key)
        if exp.spec is not None:
            self.metrics.preempted(exp.spec.queue)
        new = next_status(status, phase=Phase.PREEMPTED, message=f"preempted for {for_gang}: {reason}")
        self._set_status(key, new)
        pods = [p.name for p in self.pods_of.get(key, {}).values() if not p.terminating]

        async def act() -> None:
            await self.writer.patch_status(exp, new)
            await self.writer.delete_pods(exp, pods, reason=f"preempted: for {for_gang}: {reason}")
            await self.writer.event(exp, "Preempted", new["message"], now, "Warning")

        self._spawn(key, act())

    def _waiting(self, key: str, position: int, reason: str, now: float,
                 estimate: StartEstimate | None = None) -> None:
        exp = self.experiments.items.get(key)
        if exp is None or key in self.inflight:
            return
        status = self.status(key)
        start = start_status(estimate)
        unchanged = (status.get("position"), status.get("message"), status.get("startEstimate")) \
            == (position, reason, start)
        if status.get("phase") in TERMINAL or unchanged:
            return
        written = self.waiting_written.get(key)
        if written is None and status.get("position"):
            # Most likely stored by the last leader moments ago: count it as written when
            # this controller began to lead, so a restart's first cycle creates the gangs
            # it admits instead of a thousand position updates (each keeps its experiment
            # out of the next cycles until it is written).
            written = self.waiting_written[key] = self.leading_since
        if now - (written or 0.0) < WAITING_REFRESH_S and status.get("position"):
            return
        self.waiting_written[key] = now
        new = next_status(status, phase=Phase.QUEUED, position=position, message=reason,
                          startEstimate=start)
        self._set_status(key, new)
        self._spawn(key, self.writer.patch_status(exp, new, ROUTINE))


def start_status(estimate: StartEstimate | None) -> dict[str, Any] | None:
    """status.startEstimate: `at` to the minute (RFC3339; absent: unknown, as a merge
    patch stores a null), so a recomputed estimate that has not moved is not written again."""
    if estimate is None:
        return None
    out: dict[str, Any] = {"after": list(estimate.after), "basis": estimate.basis,
                           "reason": estimate.reason}
    if estimate.at is not None:
        out["at"] = format_time(round(estimate.at / 60.0) * 60.0)
    return out
