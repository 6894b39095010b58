"""Discrete-event simulation of shipyard on node pools, over a virtual clock.

Experiments arrive from a trace; at every instant something happens (an arrival, a
node registering or failing to, a gang finishing, a timer of the autoscaler), the
simulator runs the SAME policy as a cluster does: core.queueing.schedule for admissions
and preemptions, then core.autoscale.plan for scaling. New nodes register after a
provisioning delay (or fail to, at a given rate, which makes their pool unavailable for
a while). Nodes requested for a gang carry a taint only that gang tolerates until it
starts: the controller's earmark, applied by the same code (core/adapter.py, which also
builds the planner's input for both). Between events nothing changes, so costs and
idle time are integrated exactly.

Accounting: a node is paid for from its request until its removal (or its failure, or
the end of the run); it is idle while registered without a member of any gang. The run
ends when nothing is left to happen (the last experiment has finished and the
autoscaler has removed what it will), or at the horizon.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shipyard.core.adapter import NodeViews, autoscale_input, earmarked_pending
from shipyard.core.autoscale import AutoscaleInput, AutoscalePlan, PoolState, plan
from shipyard.core.estimate import Estimate, History
from shipyard.core.model import Gang, Node, Policy, Resources, Running, Snapshot, Waiting
from shipyard.core.queueing import schedule
from shipyard.sim.model import SimConfig, SimPool, SimResult, gang_of_arrival
from shipyard.sim.trace import Arrival


@dataclass(slots=True)
class _Node:
    name: str
    pool: str
    requested_at: float
    base: Node  # the pool's template under this name, as the node registers
    ready: bool = False
    gang_for: str | None = None  # earmark: requested for this gang, not yet used by it
    used: Resources = field(default_factory=Resources)
    members: int = 0
    idle_since: float | None = None
    ever_used: bool = False


@dataclass(slots=True)
class _Run:
    gang: Gang
    placement: dict[str, str]
    started_at: float
    ends_at: float
    token: int
    view: Running


@dataclass(slots=True)
class _Pool:
    spec: SimPool
    template: Node
    unavailable_until: float = 0.0
    node_s: float = 0.0
    nodes: dict[str, _Node] = field(default_factory=dict)


class Simulation:
    """`fast` (the default): on a fixed cluster (every pool static, so the autoscaler has
    nothing to do), skip the autoscaler, skip an instant at which no pending gang could fit
    and none could preempt, and stop a cycle once nothing left can start (cycle
    `decisions_only`). The decisions are exactly those of a cycle at every instant;
    `self.waiting` then holds only what the last cycle looked at, so a driver that reads
    `state()` (several clusters) passes fast=False."""

    def __init__(self, arrivals: Sequence[Arrival], pools: Sequence[SimPool],
                 config: SimConfig = SimConfig(), fast: bool = True) -> None:
        if not pools:
            raise ValueError("pools: at least one pool is needed")
        self.fast = fast and all(p.static for p in pools)
        self.cfg = config
        self.policy: Policy = config.policy
        self.views = NodeViews()  # the snapshot's nodes, rebuilt only when they change
        self.rng = random.Random(config.seed)
        self.pools = {p.name: _Pool(p, p.template()) for p in pools}
        self.machine = config.machine or pools[0].machine
        self.gangs = {a.name: gang_of_arrival(a, self.machine, config.time_limits) for a in arrivals}
        if len(self.gangs) != len(arrivals):
            raise ValueError("arrivals: experiment names must be unique")
        self.duration = {a.name: a.duration_s for a in arrivals}
        self.arrivals = {a.name: a for a in arrivals}
        # Run-time estimates from the runs finished so far (the trace's past), as the
        # controller makes them from finished experiments.
        self.history = History(self.policy.estimate)
        self.estimates: dict[str, Estimate] = {}
        self.submit = {a.name: a.submit_s for a in arrivals}
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.pending: dict[str, Gang] = {}
        # Pending gangs by (GPUs per member, members), for "could any of them fit now".
        self.shapes: dict[tuple[int, int], int] = {}
        self.running: dict[str, _Run] = {}
        self.marked: dict[str, float] = {}
        self.events: list[tuple[float, int, str, str]] = []
        self.seq = 0
        self.ticks: set[float] = set()
        self.index: dict[str, _Node] = {}
        self.now = 0.0
        self.requested = self.never_used = self.failures = self.cycles = 0
        self.idle_s = self.prov_s = self.busy_gpu_s = 0.0
        self.waiting: tuple[Waiting, ...] = ()  # the last cycle's, for a capacity summary
        self.peak_nodes = self.peak_busy = 0
        self.horizon: float = (config.horizon_s if config.horizon_s is not None
                               else max((a.submit_s for a in arrivals), default=0.0) + 30 * 86400.0)
        for a in arrivals:
            self.push(a.submit_s, "arrive", a.name)
        for p in self.pools.values():
            for _ in range(p.spec.start_nodes):
                n = self.new_node(p, None)
                n.ready, n.idle_since = True, 0.0
        self.requested = 0  # nodes there from the start were not requested by scaling

    # -- events ----------------------------------------------------------------

    def push(self, t: float, kind: str, what: str = "") -> None:
        heapq.heappush(self.events, (t, self.seq, kind, what))
        self.seq += 1

    def run(self) -> SimResult:
        # Until nothing is left to happen: after the last experiment, the autoscaler's
        # timers still run (the idle nodes it removes are paid for until then).
        while self.events and self.events[0][0] <= self.horizon:
            self.step()
        return self.result()

    def next_time(self) -> float | None:
        """When the next event happens (None: nothing is left to happen)."""
        return self.events[0][0] if self.events else None

    def step(self) -> None:
        """Handle every event of the next instant, then run one cycle of the policy."""
        t = self.events[0][0]
        self.advance(t)
        while self.events and self.events[0][0] == t:
            _, _, kind, what = heapq.heappop(self.events)
            self.handle(kind, what)
        self.cycle()

    def arrive(self, arrival: Arrival) -> None:
        """An experiment submitted now, not in the trace given at the start (a driver of
        several clusters routes it here); decided at once."""
        if arrival.name in self.gangs:
            raise ValueError(f"arrivals: experiment names must be unique ({arrival.name} twice)")
        if arrival.submit_s < self.now:
            raise ValueError(f"{arrival.name}: submitted at {arrival.submit_s:g}, before the clock "
                             f"({self.now:g})")
        self.advance(arrival.submit_s)
        self.gangs[arrival.name] = gang_of_arrival(arrival, self.machine, self.cfg.time_limits)
        self.arrivals[arrival.name] = arrival
        self.duration[arrival.name] = arrival.duration_s
        self.submit[arrival.name] = arrival.submit_s
        self.queue_up(arrival.name)
        self.cycle()

    def state(self) -> tuple[Snapshot, tuple[PoolState, ...], tuple[Waiting, ...]]:
        """What a cluster's controller sees now: snapshot, pool states and waiting gangs."""
        snap = self.snapshot()
        return snap, self.autoscale_input(snap, self.waiting).pools, self.waiting

    def handle(self, kind: str, what: str) -> None:
        if kind == "arrive":
            self.queue_up(what)
        elif kind == "finish":
            key, _, token = what.rpartition("#")
            run = self.running.get(key)
            if run is not None and run.token == int(token):
                self.stop(run)
                self.ended[key] = self.now
                a = self.arrivals[key]
                self.history.add(a.kind, a.queue, a.gpus, a.duration_s, self.now)
        elif kind == "ready":
            n = self.find(what)
            if n is not None:
                n.ready, n.idle_since = True, self.now
                if n.gang_for is not None and n.gang_for not in self.pending:
                    n.gang_for = None  # its gang started elsewhere meanwhile
        elif kind == "fail":
            n = self.find(what)
            if n is not None:
                pool = self.pools[n.pool]
                del pool.nodes[n.name], self.index[n.name]
                pool.unavailable_until = self.now + self.cfg.autoscale.backoff_s
                self.failures += 1
        else:
            self.ticks.discard(self.now)

    def queue_up(self, key: str) -> None:
        g = self.pending[key] = self.gangs[key]
        if self.policy.estimates and key not in self.estimates:
            a = self.arrivals[key]
            est = (Estimate(a.duration_s, a.duration_s, True, 0) if self.cfg.oracle
                   else self.history.estimate(a.kind, a.queue, a.gpus, self.now))
            if est is not None:
                self.estimates[key] = est
        shape = _shape(g)
        self.shapes[shape] = self.shapes.get(shape, 0) + 1

    def dequeue(self, key: str) -> Gang:
        g = self.pending.pop(key)
        shape = _shape(g)
        left = self.shapes[shape] - 1
        if left:
            self.shapes[shape] = left
        else:
            del self.shapes[shape]
        return g

    def find(self, name: str) -> _Node | None:
        return self.index.get(name)

    def new_node(self, pool: _Pool, gang: str | None) -> _Node:
        self.seq += 1
        name, t = f"{pool.spec.name}-{self.seq}", pool.template
        n = _Node(name, pool.spec.name, self.now, Node(name, t.allocatable, t.labels, t.taints),
                  gang_for=gang)
        pool.nodes[n.name] = self.index[n.name] = n
        self.requested += 1
        return n

    # -- accounting ------------------------------------------------------------

    def advance(self, t: float) -> None:
        """Integrate costs and idle time up to `t` (nothing changes between events)."""
        dt = t - self.now
        for p in self.pools.values():
            p.node_s += len(p.nodes) * dt
            for n in p.nodes.values():
                if not n.ready:
                    self.prov_s += dt
                elif n.members == 0:
                    self.idle_s += dt
                else:
                    self.busy_gpu_s += n.used.gpus * dt
        self.now = t

    # -- one cycle of the policy -----------------------------------------------

    def snapshot(self) -> Snapshot:
        # NodeViews.snapshot's work, in one pass over the simulator's own nodes.
        view, earmarks, nodes = self.views.node, {}, []
        for p in self.pools.values():
            for n in p.nodes.values():
                if n.ready:
                    if n.gang_for is not None:
                        earmarks[n.name] = n.gang_for
                    nodes.append(view(n.base, n.used, n.gang_for))
        self.views.forget_gone(len(nodes))
        running = tuple(r.view for r in self.running.values())
        return Snapshot(tuple(nodes), earmarked_pending(self.pending.values(), earmarks), self.now,
                        running, self.cfg.queues, self.estimates)

    def earmarks(self) -> dict[str, str]:
        """Registered node -> the gang it was requested for, which has not started yet."""
        return {n.name: n.gang_for for p in self.pools.values() for n in p.nodes.values()
                if n.ready and n.gang_for is not None}

    def may_change(self) -> bool:
        """Could a cycle now admit or preempt anything? False only when it certainly
        cannot: no pending gang fits the free GPUs even on an empty queue, and none
        outranks a running gang (the simulator has no quotas to reclaim)."""
        if not self.pending:
            return False
        if self.policy.preemption and self.running:
            low = min(r.gang.priority for r in self.running.values())
            if any(g.priority > low for g in self.pending.values()):
                return True
        free: dict[int, int] = {}
        for p in self.pools.values():
            per = p.template.allocatable.gpus
            for n in p.nodes.values():
                if n.ready:
                    f = per - n.used.gpus
                    free[f] = free.get(f, 0) + 1
        for gpus, members in self.shapes:
            if gpus == 0 or sum(c * (f // gpus) for f, c in free.items()) >= members:
                return True
        return False

    def cycle(self) -> None:
        if self.fast and not self.may_change():
            return  # the cycle would decide nothing: no admission, no preemption
        self.cycles += 1
        result = schedule(self.snapshot(), self.policy, decisions_only=self.fast)
        for pre in result.preempted:
            run = self.running.get(pre.gang)
            if run is not None:
                self.stop(run)
                self.duration[pre.gang] = run.ends_at - self.now  # resumes from its checkpoint
                self.queue_up(pre.gang)
        if result.preempted:
            self.push(self.now, "tick")  # the requeued gangs are decided next cycle
        for adm in result.admitted:
            self.start(adm.gang, adm.placement)
        waiting = tuple(w for w in result.waiting if w.gang in self.pending)
        self.waiting = waiting
        if not self.fast:  # a fixed cluster: the autoscaler has nothing to do
            self.apply(plan(self.autoscale_input(self.snapshot(), waiting), self.policy))
        self.peaks()
        self.wake()

    def autoscale_input(self, snap: Snapshot, waiting: tuple[Waiting, ...]) -> AutoscaleInput:
        requested: dict[tuple[str, str], int] = {}  # earmarked nodes not registered yet
        pool_of: dict[str, str] = {}
        idle: dict[str, float] = {}
        states = []
        settings = self.cfg.autoscale
        for p in self.pools.values():
            s = p.spec
            for n in p.nodes.values():
                pool_of[n.name] = s.name
                if n.gang_for is not None and not n.ready:
                    requested[n.gang_for, s.name] = requested.get((n.gang_for, s.name), 0) + 1
                if n.ready and n.idle_since is not None:
                    idle[n.name] = n.idle_since
            states.append(PoolState(
                s.name, p.template, s.cost, s.min_nodes, s.max_nodes, s.warm_buffer, s.idle_timeout_s,
                s.static, tuple(n.name for n in p.nodes.values() if n.ready),
                sum(1 for n in p.nodes.values() if not n.ready), p.unavailable_until,
                self.cfg.provisioning_delay_s if settings.look_ahead else 0.0))
        return autoscale_input(snap, states, waiting, earmarks=self.earmarks(), pool_of=pool_of,
                               requested=requested, idle_since=idle, marked=self.marked,
                               confirm_s=settings.confirm_s, share_coming=settings.share_coming,
                               look_ahead_gangs=settings.look_ahead_gangs)

    def apply(self, decided: AutoscalePlan) -> None:
        for up in decided.scale_up:
            pool = self.pools[up.pool]
            for _ in range(up.count):
                n = self.new_node(pool, up.gang)
                rate = self.cfg.failure_rate if pool.spec.failure_rate is None else pool.spec.failure_rate
                fails = rate > 0 and self.rng.random() < rate
                self.push(self.now + self.cfg.provisioning_delay_s, "fail" if fails else "ready", n.name)
        for name in decided.unmark:
            self.marked.pop(name, None)
        for name in decided.mark:
            self.marked[name] = self.now
        for down in decided.scale_down:
            pool = self.pools[down.pool]
            for name in down.nodes:
                n = pool.nodes.pop(name)
                del self.index[name]
                self.marked.pop(name, None)
                self.never_used += not n.ever_used

    def start(self, key: str, placement: Mapping[str, str]) -> None:
        gang = self.dequeue(key)
        self.seq += 1
        at = dict(placement)
        run = _Run(gang, at, self.now, self.now + self.duration[key], self.seq, Running(gang, at, self.now))
        self.running[key] = run
        self.started.setdefault(key, self.now)
        for m in gang.members:
            n = self.find(placement[m.name])
            if n is None:
                raise RuntimeError(f"{key}: placed on unknown node {placement[m.name]}")
            n.used = n.used + m.request
            n.members += 1
            n.idle_since = None
            n.ever_used = True
        freed = False
        for p in self.pools.values():
            for n in p.nodes.values():
                if n.gang_for == key:
                    n.gang_for = None  # started: what is left of its earmark is free
                    freed = freed or n.ready
        if freed and self.pending:
            # A controller's next cycle follows the gang's pods at once; so does this one,
            # for the gangs that may start on the room it left on its earmarked nodes.
            self.push(self.now, "tick")
        self.push(run.ends_at, "finish", f"{key}#{run.token}")

    def stop(self, run: _Run) -> None:
        del self.running[run.gang.key]
        for m in run.gang.members:
            n = self.find(run.placement[m.name])
            if n is None:
                continue
            n.used = n.used - m.request
            n.members -= 1
            if n.members == 0:
                n.idle_since = self.now

    def peaks(self) -> None:
        nodes = sum(len(p.nodes) for p in self.pools.values())
        busy = sum(1 for p in self.pools.values() for n in p.nodes.values() if n.members)
        self.peak_nodes = max(self.peak_nodes, nodes)
        self.peak_busy = max(self.peak_busy, busy)

    def wake(self) -> None:
        """A tick at the next instant a timer of the autoscaler may change its mind."""
        due = math.inf
        for p in self.pools.values():
            if p.unavailable_until > self.now:
                due = min(due, p.unavailable_until)
            if p.spec.static:
                continue
            for n in p.nodes.values():
                if n.idle_since is not None and n.ready:
                    t = n.idle_since + p.spec.idle_timeout_s
                    if t > self.now:
                        due = min(due, t)
        confirm_s = self.cfg.autoscale.confirm_s
        for t in self.marked.values():
            if t + confirm_s > self.now:
                due = min(due, t + confirm_s)
            else:  # confirmed but held back (half a pool per step): the next step
                due = min(due, self.now + self.cfg.autoscale.interval_s)
        if due < math.inf and due not in self.ticks:
            self.ticks.add(due)
            self.push(due, "tick")

    def result(self) -> SimResult:
        leftover = sum(1 for p in self.pools.values() for n in p.nodes.values() if not n.ever_used)
        paid = {p.spec.name: p.node_s for p in self.pools.values()}
        cost = sum(p.node_s / 3600 * p.spec.cost for p in self.pools.values())
        return SimResult(
            submit=dict(self.submit), started=dict(self.started), ended=dict(self.ended),
            end_s=self.now, node_s=paid, idle_node_s=self.idle_s, provisioning_node_s=self.prov_s,
            cost=cost, requested_nodes=self.requested, never_used=self.never_used + leftover,
            failures=self.failures, peak_nodes=self.peak_nodes, peak_busy_nodes=self.peak_busy,
            cycles=self.cycles, busy_gpu_s=self.busy_gpu_s)


def _shape(g: Gang) -> tuple[int, int]:
    # The simulator's gangs (gang_of_arrival) have identical members.
    return (g.members[0].request.gpus if g.members else 0, len(g.members))


def simulate(arrivals: Sequence[Arrival], pools: Sequence[SimPool],
             config: SimConfig = SimConfig()) -> SimResult:
    return Simulation(arrivals, pools, config).run()
