"""CPU time of one scheduling cycle of the pure policy, beside the naive reference.

The snapshot: 7,500 nodes of 8 GPUs (96 CPU, 1.1 TiB) in racks of 16 and blocks of
256 nodes, about 70% of GPUs held by running gangs; 10,000 queued experiments over 8
queues (weights 1-4, nominal quotas summing to the cluster) and 3 priorities. Pod
shapes (GPUs, CPU, memory per pod) and priorities (from QoS) are drawn from the
Alibaba GPU trace 2023 (openb_pod_list_default.csv, Weng et al., ATC'23); gang sizes
1..512 pods from a heavy-tailed mix in which multi-pod experiments mostly use whole
8-GPU nodes, as distributed training does. Seeded, so every run sees the same cluster.

The naive reference (core/reference.py: every gang tried in order, best fit over every
node for every pod) is too slow for the whole queue; it is timed on the first
--naive-gangs gangs of the same snapshot and scaled linearly to the full queue.

Also timed: the start estimates of every waiting gang over the same snapshot
(core/start_estimate.py; a controller makes them every 30 s).

    python bench/policy_cycle.py [--repeat 5] [--nodes 7500] [--gangs 10000]
"""

from __future__ import annotations

import argparse
import csv
import gc
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path

from shipyard.cli.flags import arg
from shipyard.core.model import (
    Gang,
    Member,
    Node,
    Queue,
    Resources,
    Running,
    Snapshot,
    Taint,
    Toleration,
)
from shipyard.core.queueing import schedule
from shipyard.core.reference import schedule_naive
from shipyard.core.start_estimate import estimate_starts

TRACE = Path("/work/shared/traces/alibaba-gpu-2023/openb_pod_list_default.csv")
TARGET_S = 1.0
GIB = 2**30
NODE = Resources(96_000, 1152 * GIB, 8)
RACK, BLOCK = "topology.shipyard.dev/rack", "topology.shipyard.dev/block"
MACHINE = {"node.kubernetes.io/instance-type": "gpu-a100"}
GPU_TAINT = Taint("nvidia.com/gpu", "present", "NoSchedule")
TOLERATE = (Toleration("nvidia.com/gpu", "present", "NoSchedule"),)
PRIORITY = {"LS": 100, "Guaranteed": 1000, "Burstable": 0, "BE": 0}
SIZES = [(1, 0.50), (2, 0.12), (4, 0.12), (8, 0.10), (16, 0.07), (32, 0.04), (64, 0.025),
         (128, 0.01), (256, 0.004), (512, 0.001)]


def trace_shapes() -> list[tuple[Resources, int]]:
    """(per-pod request, priority) for each trace task; whole GPUs, clipped to a node."""
    shapes = []
    with TRACE.open() as f:
        for row in csv.DictReader(f):
            gpus = min(int(row["num_gpu"]), 8)
            cpu = min(int(row["cpu_milli"]), NODE.cpu_milli * max(gpus, 1) // 8)
            mem = min(int(row["memory_mib"]) * 2**20, NODE.memory * max(gpus, 1) // 8)
            shapes.append((Resources(cpu, mem, gpus), PRIORITY.get(row["qos"], 0)))
    return shapes


def make_gang(rng: random.Random, shapes, key: str, queue: str, t: float) -> Gang:
    size = rng.choices([s for s, _ in SIZES], [w for _, w in SIZES])[0]
    request, priority = rng.choice(shapes)
    if size > 1 and rng.random() < 0.8:
        request = NODE  # distributed training: one pod per 8-GPU node
    members = tuple(Member("worker", i, request, MACHINE, TOLERATE) for i in range(size))
    limit = rng.choice([None, 3600.0, 4 * 3600.0, 24 * 3600.0])
    return Gang(key, queue, priority, t, members, limit)


def build(n_nodes: int, n_gangs: int, seed: int = 7) -> Snapshot:
    rng = random.Random(seed)
    shapes = trace_shapes()
    names = [f"node-{i:05d}" for i in range(n_nodes)]
    used = [Resources()] * n_nodes
    queues = [f"team-{c}" for c in "abcdefgh"]
    running: list[Running] = []
    cursor, target = 0, int(n_nodes * 8 * 0.7)
    gpus_used = 0
    while gpus_used < target:
        gang = make_gang(rng, shapes, f"run-{len(running)}", rng.choice(queues), -1.0)
        placement = {}
        for m in gang.members:
            # Fill nodes in order, so running work is packed as a real scheduler leaves it.
            while not m.request.fits_in(NODE - used[cursor % n_nodes]):
                cursor += 1
            i = cursor % n_nodes
            used[i] = used[i] + m.request
            placement[m.name] = names[i]
        gpus_used += gang.total.gpus
        running.append(Running(gang, placement, -rng.uniform(0, 20 * 3600)))
    nodes = tuple(
        Node(names[i], NODE, {**MACHINE, RACK: f"r{i // 16}", BLOCK: f"b{i // 256}"},
             (GPU_TAINT,), used[i])
        for i in range(n_nodes)
    )
    pending = tuple(
        make_gang(rng, shapes, f"exp-{k}", rng.choice(queues), rng.uniform(0, 86400))
        for k in range(n_gangs)
    )
    share = Resources(NODE.cpu_milli * n_nodes // 8, NODE.memory * n_nodes // 8,
                      NODE.gpus * n_nodes // 8)
    qs = tuple(Queue(q, weight=float(1 + i % 4), nominal=share) for i, q in enumerate(queues))
    return Snapshot(nodes, pending, 0.0, tuple(running), qs)


def cpu_times(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        gc.collect()  # each run starts from the same heap, not the last run's garbage
        t0 = time.process_time()
        fn()
        out.append(time.process_time() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=arg(integer=True, low=1, high=1000), default=5)
    ap.add_argument("--nodes", type=arg(integer=True, low=1, high=1_000_000), default=7500)
    ap.add_argument("--gangs", type=arg(integer=True, low=1, high=1_000_000), default=10_000)
    ap.add_argument("--naive-gangs", type=arg(integer=True, low=0, high=1_000_000), default=40)
    ap.add_argument("--profile", choices=["cumulative", "tottime"],
                    help="print a cProfile of one cycle, sorted so")
    args = ap.parse_args()
    snap = build(args.nodes, args.gangs)
    # The snapshot is long-lived input (a controller's caches): keep the collector
    # from walking its ~100k objects on every collection, as a controller would.
    gc.freeze()
    pods = sum(len(g.members) for g in snap.pending)
    print(f"snapshot: {len(snap.nodes)} nodes, {len(snap.running)} running gangs, "
          f"{len(snap.pending)} queued experiments ({pods} pods), {len(snap.queues)} queues")
    if args.profile:
        import cProfile
        import pstats
        cProfile.runctx("schedule(snap)", globals(), {"snap": snap}, "/tmp/policy.prof")
        pstats.Stats("/tmp/policy.prof").sort_stats(args.profile).print_stats(30)
        return
    result = schedule(snap)
    print(f"decisions: {len(result.admitted)} admitted, {len(result.preempted)} preempted, "
          f"{len(result.waiting)} waiting")
    times = cpu_times(lambda: schedule(snap), args.repeat)
    median = statistics.median(times)
    print(f"policy cycle   median {median:.3f} s CPU  (min {min(times):.3f}, "
          f"{args.repeat} runs)   target < {TARGET_S:.1f} s   "
          f"{'OK' if median < TARGET_S else 'OVER TARGET'}")
    # What the controller adds every ESTIMATE_REFRESH_S: a start estimate for every waiting gang.
    est_times = cpu_times(lambda: estimate_starts(snap, result.waiting), max(1, args.repeat // 2))
    known = sum(e.at is not None for e in estimate_starts(snap, result.waiting).values())
    print(f"start estimates median {statistics.median(est_times):.3f} s CPU for {len(result.waiting)} "
          f"waiting ({known} with a time), {statistics.median(est_times) / median:.2f}x a cycle")
    part = replace(snap, pending=snap.pending[: args.naive_gangs])
    naive = cpu_times(lambda: schedule_naive(part, strict=False), max(1, args.repeat // 2))
    scaled = statistics.median(naive) * len(snap.pending) / len(part.pending)
    print(f"naive first-fit median {scaled:.1f} s CPU  (measured {statistics.median(naive):.2f} s "
          f"on {len(part.pending)} gangs, scaled x{len(snap.pending) / len(part.pending):g})   "
          f"ratio {scaled / median:.0f}x slower")


if __name__ == "__main__":
    main()
