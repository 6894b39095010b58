"""Several clusters: where to launch an experiment, from each cluster's capacity summary.

choose_cluster scores every cluster for a gang's demand and ranks them:

  tier 0  fits now, on free capacity the gangs queued ahead do not take first
  tier 1  fits once nodes come: room left on nodes on their way, or new nodes the pools
          may still add beyond what the queue ahead needs
  tier 2  must wait for running work to end
  tier 3  cannot run here (unknown machine type, or more than the cluster can ever hold)
  tier 4  unreachable (no summary)

Within a tier: the cluster whose `prefer` matches the work first (GPU work: any role
asks for GPUs), then the lowest cost (tier 1: of the new nodes), then the name, so the
order is deterministic. In tier 2 the shortest estimated wait comes before all of
these: a preference is worth little against hours more in a queue (in
bench/multicluster.py --days 3 --cloud-max-nodes 2, ranking preference first there made
the mean queueing delay about 9 times longer: 8,107 s against 901 s).

Fit is judged from the free-capacity buckets with each bucket's LOWER bound: a node at
level k has at least k/8 of every resource free, so a replica asking r fits
floor(k/8 * node / r) times on it, and what a role leaves on a node is again a lower
bound for the next role. The cluster's scheduler holds free nodes for the head of its
queue, so the demand queued ahead is taken out of the free capacity first. "Fits now"
is therefore never optimistic; it may be pessimistic about packing.

The summary (MachineCapacity, ClusterCapacity, summarize) is in cluster_summary.py and
re-exported here; the arithmetic of fitting replicas into its levels, shared with the
fleet's ledger, in summary_solver.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from shipyard.core import reasons
from shipyard.core.cluster_summary import LEVELS, ClusterCapacity, MachineCapacity, summarize
from shipyard.core.model import Resources
from shipyard.core.summary_solver import NOTHING, fill_levels, new_nodes, node_equivalents, room, share
from shipyard.spec import ClusterRef, Experiment

__all__ = [
    "ClusterCapacity",
    "ClusterOption",
    "ClusterScore",
    "MachineCapacity",
    "RoleDemand",
    "Tier",
    "choose_cluster",
    "demand_for",
    "summarize",
]

class Tier(IntEnum):
    """How well a cluster can take a gang; lower is better (choose_cluster's order)."""

    FITS_NOW = 0
    SCALE_UP = 1
    WAIT = 2
    CANNOT = 3
    UNREACHABLE = 4

    @property
    def text(self) -> str:
        return _TIER_TEXT[self]

    @property
    def runnable(self) -> bool:
        """It can start there: now, after a scale-up, or after a wait."""
        return self <= Tier.WAIT


_TIER_TEXT = ("fits now", "fits after scale-up", "must wait", "cannot run here", "unreachable")
FITS_NOW, SCALE_UP, WAIT, CANNOT, UNREACHABLE = Tier


@dataclass(frozen=True, slots=True)
class RoleDemand:
    machine_type: str  # the spec's name (mapped per cluster by ClusterOption.machine_types)
    replicas: int
    request: Resources  # per replica


@dataclass(frozen=True, slots=True)
class ClusterOption:
    name: str
    location: str  # "cloud" | "onprem"
    prefer: str  # "gpu" | "cpu" | "any"
    capacity: ClusterCapacity | None  # None: unreachable
    machine_types: Mapping[str, str] = field(default_factory=dict)  # spec name -> this cluster's
    cost_factor: float = 1.0

    @classmethod
    def from_ref(cls, ref: ClusterRef, capacity: ClusterCapacity | None) -> ClusterOption:
        """The option for a cluster of the user's clusters config."""
        return cls(ref.name, ref.location, ref.prefer, capacity, dict(ref.machine_types), ref.cost_factor)


def demand_for(exp: Experiment) -> list[RoleDemand]:
    """An experiment's roles as demand: the spec's machine type names, per-replica requests."""
    out: list[RoleDemand] = []
    for role in exp.roles:
        r = exp.request(role)
        out.append(RoleDemand(role.machine_type, role.replicas, Resources(r.cpu, r.memory, r.gpus)))
    return out


@dataclass(frozen=True, slots=True)
class ClusterScore:
    cluster: str
    tier: Tier
    cost_per_hour: float  # of the nodes used (tier 0), the new nodes (1), the nodes needed (2)
    wait_s: float  # 0 (tier 0), the provisioning delay (1), the estimate (2), inf (3, 4)
    preference: int  # 0: the cluster's `prefer` matches the work
    reason: str  # one line a person understands


@dataclass(frozen=True, slots=True)
class _TypeFit:
    tier: Tier
    text: str
    nodes: int = 0  # nodes it takes: free ones (tier 0), new ones (1), all it needs (2)
    wait_s: float = 0.0


def choose_cluster(demand: Sequence[RoleDemand], options: Sequence[ClusterOption],
                   provisioning_delay_s: float = 120.0, typical_runtime_s: float = 3600.0,
                   now: float | None = None) -> list[ClusterScore]:
    """Every option scored for `demand` (one gang's roles), best first.

    The tier-2 wait is an estimate from the summary alone: the gang starts once as many
    nodes have freed up as the demand queued ahead of it and its own missing nodes take
    (j, in whole nodes). When the cluster's `freeing` (nodes wholly free by when, from
    the running gangs' time limits and progress ETAs) reaches j, that time less `now`
    (default: when the summary was made) is the wait.
    Else it is a guess: a node with a fraction u of it in use is taken to free up after
    u * `typical_runtime_s`, so the wait is that of the j-th emptiest node; past the
    nodes there are, every further node takes one more runtime / (the most nodes the
    type can have).
    """
    if not any(d.replicas > 0 for d in demand):
        raise ValueError("demand: no replicas; a gang needs at least one")
    if any(d.replicas < 0 for d in demand):
        raise ValueError("demand: replicas must be >= 0")
    names = [o.name for o in options]
    if len(set(names)) != len(names):
        dup = ", ".join(sorted({n for n in names if names.count(n) > 1}))
        raise ValueError(f"options: duplicate cluster name(s) {dup}; cluster names must be unique")
    gpu_work = any(d.replicas > 0 and d.request.gpus > 0 for d in demand)
    scores = [_score(demand, o, gpu_work, provisioning_delay_s, typical_runtime_s, now) for o in options]
    return sorted(scores, key=lambda s: (s.tier, s.wait_s if s.tier == WAIT else 0.0, s.preference,
                                         s.cost_per_hour, s.cluster))


def _score(demand: Sequence[RoleDemand], opt: ClusterOption, gpu_work: bool, delay: float,
           runtime: float, now: float | None) -> ClusterScore:
    pref = 0 if opt.prefer in ("any", "gpu" if gpu_work else "cpu") else 1
    if opt.capacity is None:
        return ClusterScore(opt.name, UNREACHABLE, 0.0, math.inf, pref,
                            "unreachable: no capacity summary from this cluster (its API server or "
                            "controller did not answer); skipped")
    by_type: dict[str, list[RoleDemand]] = {}
    for d in demand:
        if d.replicas > 0:
            by_type.setdefault(d.machine_type, []).append(d)
    fits: list[tuple[_TypeFit, float]] = []
    for spec_name, roles in by_type.items():
        local = opt.machine_types.get(spec_name, spec_name)
        label = local if local == spec_name else f"{local} (for {spec_name})"
        mc = opt.capacity.machine(local)
        if mc is None:
            have = ", ".join(m.machine_type for m in opt.capacity.machines) or "none"
            fit = _TypeFit(CANNOT, f"no {label} nodes or node pools here (it has: {have})")
            fits.append((fit, 0.0))
            continue
        price = mc.cost_per_hour * opt.cost_factor
        at = opt.capacity.updated_at if now is None else now
        fits.append((_fit_type(roles, mc, label, price, delay, runtime, at), price))
    tier = max(f.tier for f, _ in fits)
    parts = [f.text for f, _ in fits if tier != CANNOT or f.tier == CANNOT]
    if tier == CANNOT:
        return ClusterScore(opt.name, CANNOT, 0.0, math.inf, pref, f"cannot run here: {'; '.join(parts)}")
    cost = sum(f.nodes * price for f, price in fits if tier != SCALE_UP or f.tier == SCALE_UP)
    wait = {FITS_NOW: 0.0, SCALE_UP: delay}.get(tier, max(f.wait_s for f, _ in fits))
    head = f"must wait about {reasons.duration(wait)}" if tier == WAIT else tier.text
    return ClusterScore(opt.name, tier, cost, wait, pref, f"{head}: {'; '.join(parts)}")


def _fit_type(roles: list[RoleDemand], mc: MachineCapacity, label: str, price: float, delay: float,
              runtime: float, now: float) -> _TypeFit:
    # Biggest replicas first: they need the emptiest nodes.
    roles = sorted(roles, key=lambda d: -share(d.request, mc.node))
    for d in roles:
        if room(LEVELS, NOTHING, mc.node, d.request) == 0:
            return _TypeFit(CANNOT, f"one replica asks for {d.request.describe()}, more than a whole {label} "
                                    f"node has ({mc.node.describe()})")
    demand = [(d.request, d.replicas) for d in roles]
    need = new_nodes(demand, mc.node)
    if need > mc.max_nodes:
        return _TypeFit(CANNOT, f"needs {need} x {label}, more than the cluster can ever have ({mc.nodes} "
                                f"nodes + {mc.provisioning_nodes} provisioning + {mc.headroom_nodes} more "
                                "allowed by its pools)")
    free, coming, backlog = _after_queue(mc)
    used, rest = fill_levels(demand, mc.node, free)
    missing = new_nodes(rest, mc.node)
    if missing == 0:
        return _TypeFit(FITS_NOW, f"{used} x {label} free of {mc.nodes}", used)
    on_way, rest = fill_levels(rest, mc.node, coming)
    missing = new_nodes(rest, mc.node)
    allowed = mc.headroom_nodes - backlog  # new nodes the pools may still add for us
    total = used + on_way + missing
    if missing <= allowed:
        text = f"needs {total} x {label}, {used} free"
        if on_way:
            text += f", room on {on_way} on their way"
        if missing:
            text += f"; {missing} new node(s) at ${price:.2f}/h"
        return _TypeFit(SCALE_UP, text, missing, delay)
    wait, how = _wait(mc, node_equivalents(mc.queued, mc.node) + total - used, runtime, now)
    queued = f", {mc.queued_gangs} gang(s) queued ahead ({mc.queued.describe()})" if mc.queued_gangs else ""
    return _TypeFit(WAIT, f"needs {total} x {label}, {used} free{queued}, pools allow "
                          f"{mc.headroom_nodes} more node(s); the wait {how}", total, wait)


def _wait(mc: MachineCapacity, nodes: int, runtime: float, now: float) -> tuple[float, str]:
    """(seconds until `nodes` nodes are free, what that rests on): the nodes freeing as
    the running gangs' expected ends come (`freeing`), when those cover the need; else
    the guess from how full the nodes are (see choose_cluster)."""
    need = nodes - mc.free_levels[LEVELS]
    if need <= 0:
        return 0.0, "is for the queue ahead"
    for at, n in mc.freeing:
        if n >= need:
            return max(at - now, 0.0), "as the running work there ends (time limits, progress ETAs)"
    return runtime * _turnover(mc, nodes), "is a guess: work there has no known end"


def _turnover(mc: MachineCapacity, nodes: int) -> float:
    """Runtimes until `nodes` nodes have freed up (see choose_cluster)."""
    emptiest = sorted((k for k, n in enumerate(mc.free_levels) for _ in range(min(n, nodes))),
                      reverse=True)[:nodes]  # levels, most free first
    if nodes <= 0:
        return 0.0
    if nodes <= len(emptiest):
        return (LEVELS - emptiest[nodes - 1]) / LEVELS
    return 1.0 + (nodes - len(emptiest)) / max(mc.max_nodes, 1)


def _after_queue(mc: MachineCapacity) -> tuple[list[int], list[int], int]:
    """(free nodes by level, nodes on their way by level, new nodes) left once the gangs
    queued ahead have taken theirs: the scheduler holds free nodes for the head of its
    queue, so they are not ours. The queue's requests are summed, so its share is taken
    from the emptiest nodes, free ones first, then those on their way, then new ones."""
    units = math.ceil(round(share(mc.queued, mc.node) * LEVELS, 9))  # in 1/8 nodes
    free = list(mc.free_levels)
    coming = [0] * LEVELS + [mc.provisioning_nodes]
    for levels in (free, coming):
        for k in range(LEVELS, 0, -1):
            if units == 0:
                break
            whole = min(levels[k], units // k)
            levels[k] -= whole
            levels[0] += whole
            units -= whole * k
            if units and levels[k]:  # less than a whole node of this level left to take
                levels[k] -= 1
                levels[k - units] += 1
                units = 0
    return free, coming, math.ceil(units / LEVELS)
