"""The snapshot the policy decides over: plain, immutable data, no I/O.

Every adapter (a live cluster's watch caches, the local machine, the simulator)
builds one of these; every policy function takes one and returns decisions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shipyard.api.vocab import LABEL_BLOCK, LABEL_RACK
from shipyard.core.estimate import Estimate, EstimateSettings


@dataclass(frozen=True, slots=True)
class Resources:
    """Integers only (millicores, bytes, whole GPUs) so arithmetic is exact."""

    cpu_milli: int = 0
    memory: int = 0
    gpus: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.cpu_milli + other.cpu_milli, self.memory + other.memory, self.gpus + other.gpus
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            self.cpu_milli - other.cpu_milli, self.memory - other.memory, self.gpus - other.gpus
        )

    def scaled(self, k: int) -> Resources:
        return Resources(self.cpu_milli * k, self.memory * k, self.gpus * k)

    def fits_in(self, free: Resources) -> bool:
        return (
            self.cpu_milli <= free.cpu_milli
            and self.memory <= free.memory
            and self.gpus <= free.gpus
        )

    def exceeds(self, limit: Resources) -> bool:
        """True if any resource is over `limit` (the opposite of fits_in)."""
        return (
            self.cpu_milli > limit.cpu_milli
            or self.memory > limit.memory
            or self.gpus > limit.gpus
        )

    def describe(self) -> str:
        cpu = "unlimited" if self.cpu_milli >= UNLIMITED else f"{self.cpu_milli / 1000:g}"
        text = f"{cpu} CPU, {_memory(self.memory)}"
        if self.gpus >= UNLIMITED:
            return text + ", unlimited GPU"
        return text + (f", {self.gpus} GPU" if self.gpus else "")


# A quota amount that limits nothing; big enough that sums of it never matter.
UNLIMITED = 1 << 62


def _memory(n: int) -> str:
    if n >= UNLIMITED:
        return "unlimited memory"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n / 2**20:.3g} MiB"


UNLIMITED_RESOURCES = Resources(UNLIMITED, UNLIMITED, UNLIMITED)


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str
    value: str = ""
    effect: str = ""  # empty: tolerates every effect
    operator: str = "Equal"  # or "Exists"

    def tolerates(self, taint: Taint) -> bool:
        if self.key and self.key != taint.key:
            return False
        if self.effect and self.effect != taint.effect:
            return False
        return self.operator == "Exists" or self.value == taint.value


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    allocatable: Resources
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    # Requests of pods already bound here (ours and anyone else's).
    used: Resources = Resources()
    ready: bool = True
    schedulable: bool = True

    @property
    def free(self) -> Resources:
        return self.allocatable - self.used


@dataclass(frozen=True, slots=True)
class Member:
    """One pod of a gang: a replica of a role."""

    role: str
    index: int
    request: Resources
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"


@dataclass(frozen=True, slots=True)
class Topology:
    """Keep a gang in one domain of nodes sharing the label `key` (a rack, a block)."""

    key: str
    required: bool = False  # False: prefer one domain, spread over few if need be


@dataclass(frozen=True, slots=True)
class Gang:
    """An experiment waiting to run: all members start together or none does."""

    key: str  # unique: namespace/name on a cluster, the run id locally
    queue: str
    priority: int
    submitted_at: float
    members: tuple[Member, ...]
    time_limit_s: float | None = None
    topology: Topology | None = None

    @property
    def total(self) -> Resources:
        total = Resources()
        for m in self.members:
            total = total + m.request
        return total


@dataclass(frozen=True, slots=True)
class Running:
    """A gang that holds its nodes now. Its pods' requests are already in `Node.used`."""

    gang: Gang
    placement: Mapping[str, str]  # member name -> node name
    started_at: float

    @property
    def ends_at(self) -> float | None:
        """When its time limit stops it (None: no limit, no known end)."""
        limit = self.gang.time_limit_s
        return None if limit is None else self.started_at + limit


@dataclass(frozen=True, slots=True)
class Queue:
    """A team's share: fair-share weight, guaranteed (nominal) quota, borrowing limit."""

    name: str
    weight: float = 1.0
    nominal: Resources = UNLIMITED_RESOURCES
    # How far beyond nominal the queue may go on idle capacity.
    borrowing_limit: Resources = UNLIMITED_RESOURCES

    @property
    def limit(self) -> Resources:
        return Resources(
            *(min(a + b, UNLIMITED) for a, b in zip(_tuple(self.nominal),
                                                     _tuple(self.borrowing_limit), strict=True))
        )


def _tuple(r: Resources) -> tuple[int, int, int]:
    return (r.cpu_milli, r.memory, r.gpus)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The world at one instant, as the policy sees it.

    `nodes[i].used` holds the requests of every pod bound there, ours (the members of
    `running`) and anyone else's. With no `queues`, every queue a gang names is an
    implicit queue of weight 1 and no quota; with queues, a gang naming an unknown
    queue waits.
    """

    nodes: tuple[Node, ...]
    pending: tuple[Gang, ...] = ()
    now: float = 0.0
    running: tuple[Running, ...] = ()
    queues: tuple[Queue, ...] = ()
    # Gang key -> its run time as predicted from history (core/estimate.py), pending
    # and running; only a confident one is ever taken as an end.
    estimates: Mapping[str, Estimate] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Policy:
    """Settings of the scheduling cycle; the defaults suit a cluster."""

    # Node labels naming topology domains, narrowest first: a gang is kept in one
    # rack if it can be, else in one block, else in as few as possible.
    topology_keys: tuple[str, ...] = (LABEL_RACK, LABEL_BLOCK)
    preemption: bool = True
    # Gangs per cycle that may search for victims (each search is costly; the rest
    # try again next cycle, as Kueue tries one head per queue).
    preemption_attempts: int = 16
    backfill: bool = True
    # How many blocked gangs (in order) get nodes reserved for their earliest start.
    reservations: int = 4
    # Starvation bound: a gang waiting longer than this goes first among its priority
    # (oldest first, whatever the estimates) and, if it is one of the first 4 such that
    # do not fit, keeps what is free on the nodes of its earliest start however many
    # gangs hold reservations and whatever the time limits (core/starvation.py). None: no bound.
    starvation_bound_s: float | None = 6 * 3600.0
    # Use `Snapshot.estimates` (run times predicted from history, core/estimate.py):
    # shorter first within a backed-up queue and priority, and across the queues below
    # their fair share; a confident one as the end of a gang without a time limit, for backfill and
    # reservations; any to guess which nodes drain first. Never to stop anything; the
    # starvation bound caps what a wrong one costs. Gangs without one are ordered as
    # before (docs/scheduling.md has the figures).
    estimates: bool = True
    # Estimates order a queue only while it is backed up: its oldest waiting gang has
    # waited at least this long (None: always). A queue that clears fast gains little
    # from a shortest-first order, and the order still moves where work lands: on a
    # barely loaded cluster it spread long 1-GPU runs over every node, and an 8-GPU
    # gang waited 29 h for one to drain where FIFO's waited 3.4 h (docs/scheduling.md).
    estimate_order_after_s: float | None = 3600.0
    # How estimates are made (the controller and the simulator read the same).
    estimate: EstimateSettings = field(default_factory=EstimateSettings)


@dataclass(frozen=True, slots=True)
class AutoscaleSettings:
    """How an adapter runs the autoscale planner (core/autoscale.py decides what to do;
    these say how often and how cautiously). The controller takes them from
    `shipyard controller run` (ControllerSettings.autoscale), the simulator from
    SimConfig.autoscale, where they apply; the defaults suit a cluster."""

    # The autoscaler plans at most this often (the simulator: its next look after a
    # step that removed less than it could, half a pool at a time).
    interval_s: float = 1.0
    # Scale-down: a candidate still idle this long after it was marked is removed.
    confirm_s: float = 30.0
    # A pool that failed to provision is skipped this long; its gangs go to other pools.
    backoff_s: float = 60.0
    # A registered node earmarked for a gang is held for it at most this long (the
    # controller; a simulated earmark ends when its gang starts).
    earmark_ttl_s: float = 600.0
    # Count capacity that running work frees (by time limit, or a confident estimate
    # when Policy.estimates) before a new node could be Ready: a warm-buffer node is not
    # topped up for a node that will be idle by then; False: the planner before that
    # look-ahead, to compare.
    look_ahead: bool = True
    # With look_ahead, also give a waiting gang no nodes when such work frees room for it
    # first. Fewer nodes bought, but a node it no longer buys often served the next
    # arrival instead (bench/autoscale_trace.py: more waiting without a warm buffer).
    look_ahead_gangs: bool = False
    # Plan waiting gangs onto nodes already on their way (the room an earlier gang leaves
    # on its new nodes; nodes asked for a gang that no longer waits) before buying more;
    # False: each requested node is only its own gang's (the plan before, to compare).
    share_coming: bool = True


@dataclass(frozen=True, slots=True)
class Admission:
    """Decision: start this gang with each member on the named node."""

    gang: str
    placement: Mapping[str, str]  # member name -> node name
    borrowing: bool = False  # uses capacity beyond its queue's nominal quota
    backfill: bool = False  # starts ahead of a blocked gang, ending before its reservation


@dataclass(frozen=True, slots=True)
class Preemption:
    """Decision: stop this running gang (all of it) and requeue it, to make room."""

    gang: str
    for_gang: str
    reason: str


# Why a gang waits, for conditions and metrics; `Waiting.reason` says it in words.
WAIT_CAPACITY = "Capacity"  # not enough free nodes now
WAIT_RESERVED = "Reserved"  # fits, but only on nodes held for a gang ahead of it
WAIT_PREEMPTING = "Preempting"  # room is being made for it
WAIT_QUOTA = "Quota"  # its queue is at its limit
WAIT_TOPOLOGY = "Topology"  # no single required domain has room
WAIT_NEVER = "Unschedulable"  # can never fit on this cluster as it is
WAIT_NO_QUEUE = "NoQueue"  # names a queue that does not exist


@dataclass(frozen=True, slots=True)
class Waiting:
    """Decision: keep this gang queued; `reason` is for a person to act on."""

    gang: str
    position: int  # 1-based, among all waiting gangs in scheduling order
    reason: str
    queue_position: int = 1  # 1-based, among the waiting gangs of its queue
    kind: str = WAIT_CAPACITY
    starts_at: float | None = None  # the reserved start, when one is known


@dataclass(frozen=True, slots=True)
class CycleResult:
    admitted: tuple[Admission, ...]
    waiting: tuple[Waiting, ...]
    preempted: tuple[Preemption, ...] = ()
