"""Readable hand-built snapshots: a node is 8 GPUs / 64 CPU / 512 GiB unless told."""

from __future__ import annotations

from shipyard.core.model import Gang, Member, Node, Resources, Running, Topology

GIB = 2**30
RACK = "topology.shipyard.dev/rack"
BLOCK = "topology.shipyard.dev/block"
NODE = Resources(64_000, 512 * GIB, 8)


def res(gpus: int = 0, cpu: float | None = None, mem_gib: int | None = None) -> Resources:
    """A pod's request; CPU and memory default to the GPU's share of a node."""
    cpu = 8 * gpus if cpu is None else cpu
    mem = 64 * gpus if mem_gib is None else mem_gib
    return Resources(int(cpu * 1000), mem * GIB, gpus)


def node(name: str, rack: str = "r1", block: str = "b1", used: Resources = Resources(),
         labels: dict[str, str] | None = None, **kw) -> Node:
    return Node(name, kw.pop("allocatable", NODE),
                {RACK: rack, BLOCK: block, **(labels or {})}, used=used, **kw)


def gang(key: str, pods: int = 1, gpus: int = 8, *, queue: str = "default", priority: int = 0,
         at: float = 0.0, limit: float | None = None, topology: Topology | None = None,
         request: Resources | None = None, selector: dict[str, str] | None = None) -> Gang:
    r = request or res(gpus)
    members = tuple(Member("worker", i, r, selector or {}) for i in range(pods))
    return Gang(key, queue, priority, at, members, limit, topology)


def running(g: Gang, nodes: list[str], started: float = 0.0) -> Running:
    """`g` running with member i on nodes[i]."""
    return Running(g, {m.name: n for m, n in zip(g.members, nodes, strict=True)}, started)


def with_used(nodes: list[Node], runs: list[Running]) -> tuple[Node, ...]:
    """Nodes with the requests of `runs` added to `used`, as a cluster reports them."""
    extra: dict[str, Resources] = {}
    for run in runs:
        for m in run.gang.members:
            name = run.placement[m.name]
            extra[name] = extra.get(name, Resources()) + m.request
    return tuple(
        Node(n.name, n.allocatable, n.labels, n.taints, n.used + extra.get(n.name, Resources()),
             n.ready, n.schedulable)
        for n in nodes
    )
