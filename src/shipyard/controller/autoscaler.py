"""The autoscaler: NodePools and their nodes -> core.autoscale.plan -> providers.

It runs inside the scheduling controller's loop, on the same snapshot and the same
scheduling result, so it scales for exactly the gangs the scheduler could not place
and counts exactly the capacity the scheduler sees. What it must remember across a
restart lives on the nodes: the gang a new node is earmarked for (an annotation the
provider writes at creation) and when a node became a scale-down candidate (a
PreferNoSchedule taint, as Cluster Autoscaler does, with the time as its value).
What it keeps in memory (nodes requested but not registered, a pool's back-off after
a failure) is re-learnt within one provisioning delay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shipyard.api.vocab import ANNOTATION_EARMARK, LABEL_NODEPOOL, TAINT_CANDIDATE
from shipyard.controller.views import format_time
from shipyard.controller.writer import Writer, log_write_failure
from shipyard.core.adapter import autoscale_input
from shipyard.core.autoscale import AutoscalePlan, PoolState, plan
from shipyard.core.model import (
    AutoscaleSettings,
    CycleResult,
    Node,
    Policy,
    Resources,
    Snapshot,
    Taint,
)
from shipyard.kube.api import ApiClient
from shipyard.kube.errors import ApiError
from shipyard.kube.informer import Informer
from shipyard.kube.resources import EXPERIMENTS, NODEPOOLS, NODES
from shipyard.monitor.metrics import AutoscalerMetrics
from shipyard.providers.base import Provider, provider_for
from shipyard.spec import NodePool
from shipyard.spec.errors import spec_error
from shipyard.spec.machines import DEFAULT_MACHINE_TYPES, MachineType

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PoolNode:
    """A node some pool owns, as the autoscaler sees it."""

    name: str
    pool: str
    ready: bool
    earmark: str | None
    marked_at: float | None


def pool_node_view(obj: dict[str, Any]) -> PoolNode | None:
    meta, spec = obj["metadata"], obj.get("spec") or {}
    pool = (meta.get("labels") or {}).get(LABEL_NODEPOOL)
    if not pool:
        return None
    marked = next((t.get("value") for t in spec.get("taints") or [] if t.get("key") == TAINT_CANDIDATE),
                  None)
    conditions = (obj.get("status") or {}).get("conditions") or []
    return PoolNode(
        name=meta["name"], pool=pool,
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
        earmark=(meta.get("annotations") or {}).get(ANNOTATION_EARMARK) or None,
        marked_at=_float(marked),
    )


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


@dataclass(frozen=True)
class PoolView:
    name: str
    uid: str
    spec: NodePool | None
    error: str | None
    status: Mapping[str, Any]


def pool_view(obj: dict[str, Any]) -> PoolView:
    meta = obj["metadata"]
    try:
        spec, error = NodePool.model_validate({**(obj.get("spec") or {}), "name": meta["name"]}), None
    except ValidationError as exc:
        problems = spec_error(f"NodePool {meta['name']}", exc, NodePool, "the NodePool").problems
        spec, error = None, "; ".join(problems)
    return PoolView(meta["name"], meta.get("uid", ""), spec, error, obj.get("status") or {})


def template_node(pool: NodePool, machine: MachineType) -> Node:
    """What one new node of the pool will look like to the scheduler."""
    return Node(
        name=f"{pool.name}-new",
        allocatable=Resources(machine.allocatable_cpu, machine.allocatable_memory, machine.gpus),
        labels={**machine.node_labels(), LABEL_NODEPOOL: pool.name},
        taints=tuple(Taint(t.key, t.value, t.effect) for t in machine.taints),
    )


class Autoscaler:
    def __init__(
        self,
        client: ApiClient,
        writer: Writer,
        wake: Callable[[], None],
        settings: AutoscaleSettings = AutoscaleSettings(),
        policy: Policy = Policy(),
        *,
        catalog: Mapping[str, MachineType] = DEFAULT_MACHINE_TYPES,
        providers: Callable[[NodePool, ApiClient], Provider] = provider_for,
        metrics: AutoscalerMetrics | None = None,
    ) -> None:
        """`settings`: how often and how cautiously it acts (ControllerSettings.autoscale);
        `policy`: the scheduler's, which the planner places gangs with."""
        self.client, self.writer, self.wake = client, writer, wake
        self.settings, self.policy = settings, policy
        self.catalog, self.provider_for = catalog, providers
        self.metrics = metrics or AutoscalerMetrics()
        changed = lambda *_: wake()  # noqa: E731
        self.pools: Informer[PoolView] = Informer(client, NODEPOOLS, pool_view, changed,
                                                  outage=writer.outage)
        self.nodes: Informer[PoolNode] = Informer(client, NODES, pool_node_view, changed,
                                                  label_selector=LABEL_NODEPOOL,
                                                  outage=writer.outage)
        self.requested: dict[tuple[str, str], int] = {}  # (gang, pool) -> requested, unregistered
        self.unavailable_until: dict[str, float] = {}
        self.idle_since: dict[str, float] = {}
        self.earmark_seen: dict[str, float] = {}  # node -> when first seen registered, earmarked
        self.counted: set[str] = set()  # earmarked nodes already taken off `requested`
        self.told_cannot_fit: set[str] = set()
        self.status_written: dict[str, dict[str, Any]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.last_run = float("-inf")
        self.last_plan: AutoscalePlan | None = None
        self.last_states: list[PoolState] = []
        # Provisioning delay, learnt: when each node not yet Ready was asked for (per pool,
        # oldest first), the nodes already seen Ready, and the fastest request-to-Ready seen.
        # The planner counts work ending (by time limit) sooner than that before buying.
        self.asked_at: dict[str, list[float]] = {}
        self.seen_ready: set[str] | None = None
        self.fastest: dict[str, float] = {}

    @property
    def informers(self) -> list[Informer[Any]]:
        return [self.pools, self.nodes]

    def _provider(self, pool: NodePool) -> Provider:
        return self.provider_for(pool, self.client)

    # -- earmarks the scheduler must respect --------------------------------------

    def active_earmarks(self, pending: Iterable[str], known: Mapping[str, Any],
                        now: float) -> dict[str, str]:
        """node -> gang, for registered nodes held for a gang that still waits.

        Only nodes in `known` (the scheduler's node cache) count: this informer and
        that one lag differently, and a node counted as registered here but missing
        from the snapshot would look like a node to ask for again."""
        waiting = set(pending)
        held: dict[str, str] = {}
        for node in self.nodes.items.values():
            if node.earmark is None or node.name not in known:
                continue
            first = self.earmark_seen.setdefault(node.name, now)
            if node.earmark in waiting and now - first < self.settings.earmark_ttl_s:
                held[node.name] = node.earmark
        return held

    # -- one step ---------------------------------------------------------------------

    def step(self, snapshot: Snapshot, result: CycleResult, busy: set[str],
             earmarks: Mapping[str, str], now: float,
             releasing: Mapping[str, Resources] | None = None) -> AutoscalePlan | None:
        """Plan and start acting; `busy`: nodes where a shipyard pod holds resources;
        `releasing`: node -> what deleted pods of stopped gangs still hold there."""
        if now - self.last_run < self.settings.interval_s or not self.pools.items:
            return None
        self.last_run = now
        for admission in result.admitted:  # it has its nodes: nothing more is owed to it
            for key in [k for k in self.requested if k[0] == admission.gang]:
                del self.requested[key]
        self._registered(earmarks)
        self._learn_delays(now)
        states, specs = self._pool_states(now, busy, earmarks)
        self.last_states = states
        if not states:
            return None
        pool_of = {n.name: n.pool for n in self.nodes.items.values()}
        inp = autoscale_input(
            snapshot, states, result.waiting, earmarks=earmarks, pool_of=pool_of,
            requested=self.requested,
            idle_since={n: t for n, t in self.idle_since.items() if n in pool_of},
            marked={n.name: n.marked_at for n in self.nodes.items.values() if n.marked_at is not None},
            confirm_s=self.settings.confirm_s, admitted=result.admitted, releasing=releasing,
            share_coming=self.settings.share_coming, look_ahead_gangs=self.settings.look_ahead_gangs,
        )
        with self.metrics.plan_seconds.time():
            decided = plan(inp, self.policy)
        self.last_plan = decided
        for up in decided.scale_up:
            log.info("scale-up: %s", up.reason)
        for later in (*decided.ending_work, *decided.on_the_way):
            log.debug("no scale-up for %s: %s", later.gang, later.reason)
        for re in decided.reuse:  # nothing to hold: the node registers free, first come
            log.debug("no scale-up for %s: %s", re.gang, re.reason)
        for down in decided.scale_down:
            log.info("scale-down: %s", down.reason)
        self._act(decided, specs, now)
        self._publish(states, specs, snapshot, inp.waiting, now)
        return decided

    def _registered(self, earmarks: Mapping[str, str]) -> None:
        """Nodes requested for a gang that the scheduler now sees are no longer 'requested'."""
        for node in self.nodes.items.values():
            if node.earmark and node.name not in self.counted and node.name in earmarks:
                self.counted.add(node.name)
                key = (node.earmark, node.pool)
                if self.requested.get(key, 0) > 0:
                    self.requested[key] -= 1
        for name in [n for n in self.counted if n not in self.nodes.items]:
            self.counted.discard(name)
            self.earmark_seen.pop(name, None)

    def _learn_delays(self, now: float) -> None:
        """A pool node newly Ready answers its pool's oldest request: that took this long."""
        ready = {n.name: n.pool for n in self.nodes.items.values() if n.ready}
        if self.seen_ready is None:  # nodes there before this controller: no request to answer
            self.seen_ready = set(ready)
            return
        for name, pool in ready.items():
            if name not in self.seen_ready:
                self.seen_ready.add(name)
                asked = self.asked_at.get(pool)
                if asked:
                    took = now - asked.pop(0)
                    self.fastest[pool] = min(self.fastest.get(pool, took), took)
        self.seen_ready &= {n.name for n in self.nodes.items.values()}

    def _pool_states(self, now: float, busy: set[str], earmarks: Mapping[str, str]
                     ) -> tuple[list[PoolState], dict[str, NodePool]]:
        members: dict[str, list[PoolNode]] = {}
        for node in self.nodes.items.values():
            members.setdefault(node.pool, []).append(node)
        states: list[PoolState] = []
        specs: dict[str, NodePool] = {}
        for view in self.pools.items.values():
            pool = view.spec
            machine = self.catalog.get(pool.machine_type) if pool else None
            if pool is None or machine is None:
                continue
            specs[pool.name] = pool
            provider = self._provider(pool)
            for failure in provider.take_failures(pool):
                self._failed(pool, failure, now)
            nodes = sorted(n.name for n in members.get(pool.name, ()))
            for name in nodes:
                if name in busy or name in earmarks:
                    self.idle_since.pop(name, None)
                else:
                    self.idle_since.setdefault(name, now)
            states.append(PoolState(
                name=pool.name, template=template_node(pool, machine),
                cost_per_hour=pool.cost_per_hour if pool.cost_per_hour is not None
                else machine.cost_per_hour,
                min_nodes=pool.min_nodes, max_nodes=pool.max_nodes, warm_buffer=pool.warm_buffer,
                idle_timeout_s=pool.idle_timeout, static=pool.provider == "static",
                nodes=tuple(nodes), provisioning=provider.provisioning(pool),
                unavailable_until=self.unavailable_until.get(pool.name, 0.0),
                provisioning_delay_s=self.fastest.get(pool.name, 0.0)
                if self.settings.look_ahead else 0.0,
            ))
        return states, specs

    def _failed(self, pool: NodePool, message: str, now: float) -> None:
        """A pool that failed to provision is skipped for a while; the gangs it was
        for are planned again (on another pool) at the next step."""
        self.unavailable_until[pool.name] = now + self.settings.backoff_s
        self.asked_at.pop(pool.name, None)  # those requests will not be answered
        for key in [k for k in self.requested if k[1] == pool.name]:
            del self.requested[key]
        self.metrics.decisions.labels(pool.name, "failed").inc()
        self.spawn(self.writer.event_on(
            _pool_ref(pool.name), "ScaleUpFailed",
            f"{message}; trying other pools for {self.settings.backoff_s:.0f}s", now, "Warning"))

    # -- acting -------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception as exc:  # the next step sees the world as it is
                log_write_failure(log, "autoscaler", exc)
            finally:
                self.wake()

        task = asyncio.create_task(guarded())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _act(self, decided: AutoscalePlan, specs: Mapping[str, NodePool], now: float) -> None:
        for up in decided.scale_up:
            pool = specs[up.pool]
            if up.gang is not None:
                key = (up.gang, up.pool)
                self.requested[key] = self.requested.get(key, 0) + up.count
            self.asked_at.setdefault(up.pool, []).extend([now] * up.count)
            self.metrics.decisions.labels(up.pool, "scale_up").inc(up.count)
            self.spawn(self._scale_up(pool, up.count, up.gang, up.reason, now))
        for name in decided.mark:
            self.spawn(self._set_candidate(name, now))
        for name in decided.unmark:
            self.spawn(self._set_candidate(name, None))
        for down in decided.scale_down:
            self.metrics.decisions.labels(down.pool, "scale_down").inc(len(down.nodes))
            self.spawn(self._scale_down(specs[down.pool], down.nodes, down.reason, now))
        for miss in decided.cannot_fit:
            if miss.gang not in self.told_cannot_fit:
                self.told_cannot_fit.add(miss.gang)
                self.spawn(self._experiment_event(miss.gang, "NoScaleUp", miss.reason, now, "Warning"))

    async def _scale_up(self, pool: NodePool, count: int, gang: str | None, reason: str,
                        now: float) -> None:
        result = await self._provider(pool).create(pool, count, earmark=gang)
        if not result.ok:
            if gang is not None:
                key = (gang, pool.name)
                self.requested[key] = max(0, self.requested.get(key, 0) - count)
            self._failed(pool, result.error or "provider refused", now)
            return
        await self.writer.event_on(_pool_ref(pool.name), "ScaleUp", reason, now)
        if gang is not None:
            await self._experiment_event(gang, "TriggeredScaleUp", reason, now)

    async def _scale_down(self, pool: NodePool, nodes: tuple[str, ...], reason: str,
                          now: float) -> None:
        result = await self._provider(pool).delete(pool, nodes)
        if not result.ok:
            await self.writer.event_on(_pool_ref(pool.name), "ScaleDownFailed",
                                       result.error or "provider refused", now, "Warning")
            return
        for name in nodes:
            self.idle_since.pop(name, None)
        await self.writer.event_on(_pool_ref(pool.name), "ScaleDown", reason, now)

    async def _set_candidate(self, name: str, marked_at: float | None) -> None:
        """Add or remove the candidate taint, keeping the node's other taints."""
        obj = await self.client.get(NODES, name)
        taints = [t for t in (obj.get("spec") or {}).get("taints") or [] if t.get("key") != TAINT_CANDIDATE]
        if marked_at is not None:
            taints.append({"key": TAINT_CANDIDATE, "value": f"{marked_at:.0f}",
                           "effect": "PreferNoSchedule"})
        patch = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                 "spec": {"taints": taints}}
        await self.client.patch(NODES, name, patch)

    async def _experiment_event(self, gang: str, reason: str, message: str, now: float,
                                kind: str = "Normal") -> None:
        namespace, _, name = gang.partition("/")
        try:
            obj = await self.client.get(EXPERIMENTS, name, namespace)
        except ApiError:
            return
        ref = {"apiVersion": EXPERIMENTS.api_version, "kind": "Experiment", "name": name,
               "namespace": namespace, "uid": obj["metadata"].get("uid", "")}
        await self.writer.event_on(ref, reason, message, now, kind)

    # -- status and metrics ---------------------------------------------------------------

    def _publish(self, states: list[PoolState], specs: Mapping[str, NodePool], snapshot: Snapshot,
                 waiting: tuple[Any, ...], now: float) -> None:
        ready = {n.name for n in self.nodes.items.values() if n.ready}
        waiting_keys = {w.gang for w in waiting}
        demand = Resources()
        for gang in snapshot.pending:
            if gang.key in waiting_keys:
                demand = demand + gang.total
        self.metrics.pending_demand(demand)
        for state in states:
            n_ready = sum(1 for n in state.nodes if n in ready)
            idle = sum(1 for n in state.nodes if n in self.idle_since)
            nodes = len(state.nodes) + state.provisioning
            cost = round(nodes * state.cost_per_hour, 2)
            status = {
                "desired": nodes, "ready": n_ready, "idle": idle, "provisioning": state.provisioning,
                "costPerHour": cost,
                "unavailableUntil": format_time(state.unavailable_until)
                if state.unavailable_until > now else None,
            }
            self.metrics.pool(state.name, ready=n_ready, not_ready=len(state.nodes) - n_ready,
                              provisioning=state.provisioning, idle=idle,
                              cost_per_hour=cost, now=now)
            if self.status_written.get(state.name) != status:
                self.status_written[state.name] = status
                self.spawn(self.client.patch(NODEPOOLS, state.name, {"status": status},
                                              subresource="status"))

    async def aclose(self) -> None:
        for task in list(self.tasks):
            task.cancel()


def _pool_ref(name: str) -> dict[str, str]:
    return {"apiVersion": NODEPOOLS.api_version, "kind": "NodePool", "name": name}
