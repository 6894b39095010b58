"""What the simulator is given (pools, settings, arrivals as gangs) and what it reports."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

from shipyard.core.model import (
    AutoscaleSettings,
    Gang,
    Member,
    Node,
    Policy,
    Queue,
    Resources,
    Taint,
    Toleration,
)
from shipyard.sim.trace import Arrival
from shipyard.spec import DEFAULT_MACHINE_TYPES, MachineType, NodePool


@dataclass(frozen=True, slots=True)
class SimPool:
    """A node pool as the simulator runs it. `start_nodes` exist from time 0 (for a
    static pool: all it will ever have)."""

    name: str
    machine: MachineType
    min_nodes: int = 0
    max_nodes: int = 100
    warm_buffer: int = 0
    idle_timeout_s: float = 600.0
    static: bool = False
    start_nodes: int = 0
    cost_per_hour: float | None = None  # None: the machine type's price
    failure_rate: float | None = None  # None: SimConfig.failure_rate

    @property
    def cost(self) -> float:
        return self.machine.cost_per_hour if self.cost_per_hour is None else self.cost_per_hour

    def template(self) -> Node:
        m = self.machine
        taints = tuple(Taint(t.key, t.value, t.effect) for t in m.taints)
        return Node(f"{self.name}-template", Resources(m.allocatable_cpu, m.allocatable_memory, m.gpus),
                    m.node_labels(), taints)

    @classmethod
    def from_spec(cls, spec: NodePool, machines: Mapping[str, MachineType] = DEFAULT_MACHINE_TYPES,
                  start_nodes: int | None = None) -> SimPool:
        machine = machines.get(spec.machine_type)
        if machine is None:
            known = ", ".join(sorted(machines))
            raise ValueError(f"pool {spec.name}: machine_type {spec.machine_type!r} is unknown; "
                             f"use one of {known}")
        static = spec.provider == "static"
        start = start_nodes if start_nodes is not None else (spec.max_nodes if static else spec.min_nodes)
        return cls(spec.name, machine, spec.min_nodes, spec.max_nodes, spec.warm_buffer,
                   spec.idle_timeout, static, start, spec.cost_per_hour)


# The simulator's autoscaler settings (the controller's are AutoscaleSettings()): a pool
# that failed to provision is skipped 5 min, and the next look after a step that removed
# less than it could (half a pool) comes 10 s later. earmark_ttl_s does not apply: a
# simulated earmark ends when its gang starts.
SIM_AUTOSCALE = AutoscaleSettings(interval_s=10.0, backoff_s=300.0)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """The simulated cluster's settings. `policy` and `autoscale` are the trees the
    controller takes (ControllerSettings.policy, .autoscale): the same policy runs."""

    provisioning_delay_s: float = 120.0
    failure_rate: float = 0.0  # chance that a requested node never registers
    seed: int = 0
    policy: Policy = field(default_factory=Policy)
    # confirm_s (scale-down: decide, wait, re-check), backoff_s (after a failure),
    # interval_s (the next look after a partial scale-down), look_ahead.
    autoscale: AutoscaleSettings = SIM_AUTOSCALE
    # Experiments' machine type; None: the first pool's.
    machine: MachineType | None = None
    # True: each experiment declares its duration as its time limit (enables backfill).
    time_limits: bool = False
    horizon_s: float | None = None  # None: 30 days after the last arrival
    # The queues (weights, quotas); empty: every queue an experiment names, weight 1.
    queues: tuple[Queue, ...] = ()
    # A reference only (an SJF oracle): every estimate is the true duration, confident.
    oracle: bool = False


def gang_of_arrival(arrival: Arrival, machine: MachineType, time_limit: bool = False) -> Gang:
    """An experiment of g GPUs on nodes of n GPUs: ceil(g / n) members of min(g, n) GPUs,
    each with its GPUs' share of the node's CPU and memory (whole nodes for n GPUs)."""
    per = machine.gpus or 1
    size = math.ceil(arrival.gpus / per)
    gpus = min(arrival.gpus, per)
    request = Resources(machine.allocatable_cpu * gpus // per, machine.allocatable_memory * gpus // per,
                        gpus if machine.gpus else 0)
    selector = machine.node_labels()
    tolerations = tuple(Toleration(t.key, t.value, t.effect) for t in machine.taints)
    members = tuple(Member("worker", i, request, selector, tolerations) for i in range(size))
    limit = arrival.duration_s if time_limit else None
    return Gang(arrival.name, arrival.queue, 0, arrival.submit_s, members, limit)


@dataclass(frozen=True, slots=True)
class SimResult:
    """Times in seconds of the simulated clock; node_s per pool."""

    submit: Mapping[str, float]
    started: Mapping[str, float]
    ended: Mapping[str, float]
    end_s: float  # when nothing was left to happen
    node_s: Mapping[str, float]  # paid: from request to removal, failure or the end
    idle_node_s: float  # registered without a member of any gang
    provisioning_node_s: float
    cost: float
    requested_nodes: int  # by scale-up (not the nodes there from the start)
    never_used: int  # nodes (any) that no gang used before their removal or the end
    failures: int
    peak_nodes: int  # registered + provisioning
    peak_busy_nodes: int  # with at least one member of a gang
    cycles: int
    busy_gpu_s: float = 0.0  # GPUs requested by running members, over time
    waits: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        waits = tuple(sorted(self.started[k] - self.submit[k] for k in self.started))
        object.__setattr__(self, "waits", waits)

    @property
    def node_hours(self) -> float:
        return sum(self.node_s.values()) / 3600

    @property
    def idle_node_hours(self) -> float:
        return self.idle_node_s / 3600

    @property
    def last_end_s(self) -> float:
        """When the last experiment finished."""
        return max(self.ended.values(), default=0.0)

    @property
    def not_started(self) -> int:
        return len(self.submit) - len(self.started)

    @property
    def mean_wait_s(self) -> float:
        return statistics.fmean(self.waits) if self.waits else 0.0

    @property
    def p95_wait_s(self) -> float:
        """Nearest-rank 95th percentile."""
        if not self.waits:
            return 0.0
        return self.waits[max(math.ceil(0.95 * len(self.waits)) - 1, 0)]
