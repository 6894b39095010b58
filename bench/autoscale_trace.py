"""What does autoscaling save, and what does it cost in waiting? A day of real arrivals.

Replays a day of experiment arrivals through the simulator (src/shipyard/sim), which
runs the same policy as the controller (core.queueing.schedule, core.autoscale.plan)
on a virtual clock, five ways in one run:

  shipyard, warm buffer   autoscaled gpu-a100 pool keeping --warm-buffer idle nodes
  fixed cluster           a static pool sized for the peak demand, paid all the time
  shipyard, no buffer     autoscaled, nothing kept idle

each autoscaled one also with today's plan (AutoscaleSettings(look_ahead=False,
share_coming=False)): the planner before it counted capacity that running work frees
before a new node could be Ready and before it shared nodes on their way. Shipyard's plan
puts a waiting gang on the room an earlier gang leaves on the nodes requested for it, and
on nodes requested for a gang that no longer waits, before buying; its warm buffer is not
topped up for a node that running work (time limit, or a confident estimate from history)
leaves idle soon. The summary lines give each beside today's, with ratios, and the same
day without a buffer with look_ahead_gangs (opt-in: a waiting gang is given no nodes when
running work frees room for it first), which buys fewer nodes again but waits longer: a
node bought and not needed by its gang often served the next arrival.

Default trace: the busiest 24 h of creation times in the Alibaba GPU trace 2023
(openb_pod_list_default.csv; Weng et al., "Beware of Fragmentation", USENIX ATC'23),
found under $SHIPYARD_TRACES or --traces-dir (default ../shared/traces beside the repo).
An experiment of g GPUs becomes ceil(g/8) members of min(g,8) GPUs on 8-GPU nodes.
`--trace FILE` replays a CSV `submit_s,gpus,duration_s` instead.

`--fixed-nodes N` instead replays the trace on a fixed cluster of N 8-GPU nodes (no
autoscaling) twice in one run: shipyard's default policy beside a plain FIFO (strict
arrival order, no backfill), with mean/p95/p99 queueing delay, mean JCT, GPU
utilisation and each simulation's own wall time and peak RSS. `--window-days 7` takes
the busiest week; `--resample JOBS --days D` draws JOBS experiments over D days from the
whole trace (sim.trace.resample: the sizes and durations of real tasks, some made
multi-node gangs) — e.g. `--resample 10000 --days 7 --fixed-nodes 64`, or
`--resample 70000 --days 60 --fixed-nodes 352`.

Then the planner's decision latency: wall time of plan() (and of schedule() + plan(),
the whole path from a gang turning pending to its scale-up decision) on a 5,000-node
snapshot with running gangs and a few dozen pending ones, beside Cluster Autoscaler's
documented SLO (kubernetes/autoscaler, cluster-autoscaler/FAQ.md, "What are the Service
Level Objectives"): at most 30 s on clusters under 100 nodes, 60 s on 100-1,000 nodes.

    python bench/autoscale_trace.py [--trace FILE] [--speedup K] [--provisioning-delay S]
    python bench/autoscale_trace.py --fixed-nodes 64 --resample 10000 --days 7 [--time-limits]
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path

from shipyard.cli.flags import arg
from shipyard.core.autoscale import AutoscaleInput, PoolState, plan
from shipyard.core.model import Gang, Node, Policy, Running, Snapshot
from shipyard.core.queueing import schedule
from shipyard.sim import (
    Arrival,
    SimConfig,
    SimPool,
    SimResult,
    gang_of_arrival,
    simulate,
)
from shipyard.sim.measure import measure_all
from shipyard.sim.metrics import Summary, summarize
from shipyard.sim.trace import bench_trace
from shipyard.spec import DEFAULT_MACHINE_TYPES
from shipyard.spec.nodepool import MAX_NODES
from shipyard.spec.quantity import MAX_SECONDS

A100 = DEFAULT_MACHINE_TYPES["gpu-a100"]
POOL = "gpu-a100"
RACK = "topology.shipyard.dev/rack"
CA_SLO = "30 s (< 100 nodes), 60 s (100-1,000 nodes)"


# -- the day ------------------------------------------------------------------------


def peak_demand(arrivals: list[Arrival]) -> tuple[int, int]:
    """(GPUs, nodes) held at the busiest instant if every experiment started on arrival."""
    events: list[tuple[float, int]] = []
    for a in arrivals:
        held = math.ceil(a.gpus / A100.gpus) * min(a.gpus, A100.gpus)
        events += [(a.submit_s, held), (a.submit_s + a.duration_s, -held)]
    events.sort()  # at a tie the end (negative) comes first: a node is reused at once
    now = peak = 0
    for _, d in events:
        now += d
        peak = max(peak, now)
    return peak, math.ceil(peak / A100.gpus)


def run(arrivals: list[Arrival], pool: SimPool, cfg: SimConfig, k: float) -> tuple[SimResult, float]:
    """Simulate with every time divided by k; returns the result and the wall time."""
    # replace: each keeps its queue and kind (what run-time estimates learn from).
    fast = [replace(a, submit_s=a.submit_s / k, duration_s=a.duration_s / k) for a in arrivals]
    pool = replace(pool, idle_timeout_s=pool.idle_timeout_s / k)
    a = cfg.autoscale
    cfg = replace(cfg, provisioning_delay_s=cfg.provisioning_delay_s / k,
                  autoscale=replace(a, confirm_s=a.confirm_s / k, interval_s=a.interval_s / k,
                                    backoff_s=a.backoff_s / k))
    t0 = time.perf_counter()
    result = simulate(fast, [pool], cfg)
    return result, time.perf_counter() - t0


def fmt_s(s: float) -> str:
    return f"{s:,.0f} s" if s < 600 else f"{s / 60:,.1f} min"


def _fratio(new: float, old: float) -> str:
    if old:
        return f"{new / old:.2f} x"
    return "equal" if new == old else "from none"


def compare(arrivals: list[Arrival], args: argparse.Namespace) -> None:
    k = args.speedup
    gpus, nodes = peak_demand(arrivals)
    cap = max(4 * nodes, nodes + args.warm_buffer + 16)
    cfg = SimConfig(provisioning_delay_s=args.provisioning_delay, failure_rate=args.failure_rate,
                    seed=args.seed, time_limits=not args.no_time_limits)
    # Today's policy: the planner before it counted ending work or shared nodes on their way.
    today = replace(cfg, autoscale=replace(cfg.autoscale, look_ahead=False, share_coming=False))
    gangs_ahead = replace(cfg, autoscale=replace(cfg.autoscale, look_ahead_gangs=True))
    base = SimPool(POOL, A100, max_nodes=cap, idle_timeout_s=args.idle_timeout)
    warm = replace(base, warm_buffer=args.warm_buffer)
    runs = [
        (f"shipyard, warm {args.warm_buffer}", warm, cfg),
        (f"warm {args.warm_buffer}, today's plan", warm, today),
        (f"fixed {nodes} nodes", replace(base, static=True, start_nodes=nodes, max_nodes=nodes), cfg),
        ("shipyard, no buffer", base, cfg),
        ("no buffer, today's plan", base, today),
    ]
    print(f"peak demand: {gpus} GPUs at once if every experiment started on arrival = {nodes} x 8-GPU "
          f"nodes; autoscaled pool max_nodes {cap}; {A100.name} at ${A100.cost_per_hour}/h per node")
    print(f"provisioning delay {args.provisioning_delay:g} s, idle timeout {args.idle_timeout:g} s + 30 s "
          f"confirmation, failure rate {args.failure_rate:g}, time compressed x{k:g} "
          f"(all figures below in trace time)")
    print("time limits: " + ("none declared" if args.no_time_limits else
                             "each experiment declares its trace duration (backfill, and the look-ahead)")
          + "; today's plan: the planner before it counted capacity that running work frees or "
            "shared nodes on their way\n")
    results = []
    for name, pool, conf in runs:
        r, wall = run(arrivals, pool, conf, k)
        results.append((name, r, wall))
    rows = [
        ("node-hours paid", lambda r: f"{r.node_hours * k:,.1f}"),
        ("idle node-hours", lambda r: f"{r.idle_node_hours * k:,.1f}"),
        ("cost", lambda r: f"${r.cost * k:,.0f}"),
        ("queueing delay mean", lambda r: fmt_s(r.mean_wait_s * k)),
        ("queueing delay p95", lambda r: fmt_s(r.p95_wait_s * k)),
        ("queueing delay max", lambda r: fmt_s((r.waits[-1] if r.waits else 0) * k)),
        ("not started", lambda r: f"{r.not_started}"),
        ("nodes requested", lambda r: f"{r.requested_nodes}"),
        ("nodes never used (a)", lambda r: f"{r.never_used}"),
        ("peak nodes - peak busy (b)", lambda r: f"{r.peak_nodes} - {r.peak_busy_nodes} = "
                                                 f"{r.peak_nodes - r.peak_busy_nodes}"),
        ("provisioning failures", lambda r: f"{r.failures}"),
        ("run ends (last experiment)", lambda r: f"{r.end_s * k / 3600:.1f} h ({r.last_end_s * k / 3600:.1f} h)"),
        ("simulated in", None),
    ]
    width = max(len(n) for n, _ in rows) + 2
    col = max(26, *(len(n) + 2 for n, _, _ in results))
    print(" " * width + "".join(f"{n:>{col}}" for n, _, _ in results))
    for label, cell in rows:
        if cell is None:
            cells = [f"{wall:.1f} s wall, {r.cycles} cycles" for _, r, wall in results]
        else:
            cells = [cell(r) for _, r, _ in results]
        print(f"{label:<{width}}" + "".join(f"{c:>{col}}" for c in cells))
    extra, _ = run(arrivals, base, gangs_ahead, k)
    pairs = [(results[0][0], results[0][1], results[1][1]), (results[3][0], results[3][1], results[4][1]),
             ("no buffer, look_ahead_gangs", extra, results[4][1])]
    print("\nbeside today's plan (new vs today, new / today):")
    for name, new, old in pairs:
        print(f"  {name}: " + "; ".join(f"{label} {fmt(a)} vs {fmt(b)} ({_fratio(a, b)})" for label, a, b, fmt in (
            ("nodes requested", new.requested_nodes, old.requested_nodes, str),
            ("never used", new.never_used, old.never_used, str),
            ("node-hours", new.node_hours * k, old.node_hours * k, lambda v: f"{v:,.1f}"),
            ("queueing delay mean", new.mean_wait_s * k, old.mean_wait_s * k, lambda v: f"{v:.2f} s"),
            ("p95", new.p95_wait_s * k, old.p95_wait_s * k, lambda v: f"{v:.1f} s"))))
    print("\n(a) nodes that never ran a member of any experiment before their removal or the end of the run"
          "\n(b) most nodes paid for at one instant (registered or provisioning) minus most nodes running"
          " work at one instant")
    print("paid: from the request to the removal (a fixed node: the whole run); a run ends when nothing is"
          " left to happen (autoscaled: its last idle node removed)")


# -- a fixed cluster: shipyard beside FIFO ------------------------------------------------

FIFO = Policy(backfill=False, preemption=False)  # strict arrival order, nothing starts ahead


def simulate_fixed(arrivals: list[Arrival], nodes: int, policy: Policy, time_limits: bool) -> tuple[Summary, int]:
    pool = SimPool(POOL, A100, max_nodes=nodes, static=True, start_nodes=nodes)
    r = simulate(arrivals, [pool], SimConfig(policy=policy, time_limits=time_limits))
    gpus = {a.name: a.gpus for a in arrivals}
    return summarize(r, gpus, nodes * A100.gpus), r.cycles


def fixed_compare(arrivals: list[Arrival], args: argparse.Namespace) -> None:
    n = args.fixed_nodes
    limits = args.time_limits
    print(f"fixed cluster: {n} x {A100.name} ({n * A100.gpus} GPUs), no autoscaling; time limits: "
          f"{'each experiment declares its duration' if limits else 'none given'}\n")
    runs = [("shipyard", Policy()), ("FIFO", FIFO)]
    measured = measure_all([(simulate_fixed, (arrivals, n, p, limits)) for _, p in runs], args.parallel)
    rows = [
        ("queueing delay mean", lambda s: s.mean_wait_s, fmt_s),
        ("queueing delay p95", lambda s: s.p95_wait_s, fmt_s),
        ("queueing delay p99", lambda s: s.p99_wait_s, fmt_s),
        ("queueing delay max", lambda s: s.max_wait_s, fmt_s),
        ("JCT mean", lambda s: s.mean_jct_s, fmt_s),
        ("GPU utilisation", lambda s: s.utilisation, lambda v: f"{v:.1%}"),
        ("not started", lambda s: s.experiments - s.started, lambda v: f"{v:,}"),
    ]
    width, col = 24, 18
    print(" " * width + "".join(f"{name:>{col}}" for name, _ in runs) + f"{'shipyard / FIFO':>{col}}")
    for label, get, fmt in rows:
        vals = [get(m.value[0]) for m in measured]
        ratio = f"{vals[0] / vals[1]:.2f} x" if vals[1] else "-"
        print(f"{label:<{width}}" + "".join(f"{fmt(v):>{col}}" for v in vals) + f"{ratio:>{col}}")
    print(f"{'simulated in (wall)':<{width}}" + "".join(f"{m.wall_s:>{col - 2}.1f} s" for m in measured))
    print(f"{'  (its own CPU time)':<{width}}" + "".join(f"{m.cpu_s:>{col - 2}.1f} s" for m in measured))
    print(f"{'peak RSS':<{width}}" + "".join(f"{m.rss_mib:>{col - 4}.0f} MiB" for m in measured))
    print(f"{'policy cycles run':<{width}}" + "".join(f"{m.value[1]:>{col},}" for m in measured))
    print(f"\n(each simulation in its own process, {args.parallel} at a time; wall and RSS are its own)")


# -- decision latency at 5,000 nodes ---------------------------------------------------


def latency_snapshot(n_nodes: int, n_pending: int, seed: int = 7) -> tuple[Snapshot, PoolState]:
    """n_nodes 8-GPU nodes nearly full of running gangs (whole-node and partial pods), and
    n_pending gangs of 1..128 pods that mostly need new nodes."""
    rng = random.Random(seed)
    template = SimPool(POOL, A100).template()
    alloc = template.allocatable
    used = [alloc.scaled(0)] * n_nodes
    names = [f"node-{i:05d}" for i in range(n_nodes)]
    runs: list[Running] = []
    cursor = 0
    while cursor < n_nodes - 8:
        size = rng.choice([1, 1, 1, 2, 4, 8, 16, 32, 64])
        g = gang_of_arrival(Arrival(f"run-{len(runs)}", -1.0, rng.choice([1, 2, 4, 8]) if size == 1 else 8 * size,
                             3600.0), A100)
        placement = {}
        for m in g.members:
            while cursor < n_nodes and not m.request.fits_in(alloc - used[cursor]):
                cursor += 1
            if cursor == n_nodes:
                break
            used[cursor] = used[cursor] + m.request
            placement[m.name] = names[cursor]
        if len(placement) < len(g.members):
            break
        runs.append(Running(g, placement, -rng.uniform(0, 3600)))
    nodes = tuple(Node(names[i], alloc, {**template.labels, RACK: f"r{i // 16}"}, template.taints, used[i])
                  for i in range(n_nodes))
    pending: list[Gang] = []
    for j in range(n_pending):
        size = rng.choice([1, 2, 4, 8, 16, 32, 64, 128])
        gpus = rng.choice([1, 2, 4, 8]) if size == 1 else 8 * size
        pending.append(gang_of_arrival(Arrival(f"exp-{j}", float(j), gpus, 3600.0), A100))
    pool = PoolState(POOL, template, A100.cost_per_hour, 0, n_nodes * 2, 2, 600.0, nodes=tuple(names))
    return Snapshot(nodes, tuple(pending), 0.0, tuple(runs)), pool


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[max(math.ceil(q * len(xs)) - 1, 0)]


def latency(args: argparse.Namespace) -> None:
    snap, pool = latency_snapshot(args.nodes, args.pending)
    gc.freeze()  # long-lived input, as a controller's caches are
    members = sum(len(g.members) for g in snap.pending)
    result = schedule(snap)
    inp = AutoscaleInput(snap, (pool,), result.waiting, admitted=result.admitted)
    p = plan(inp)
    print(f"\ndecision latency: {len(snap.nodes)} nodes, {len(snap.running)} running gangs, "
          f"{len(snap.pending)} pending ({members} pods), {len(result.waiting)} waiting for capacity; "
          f"plan: {sum(u.count for u in p.scale_up)} nodes in {len(p.scale_up)} scale-up(s), "
          f"{len(p.cannot_fit)} cannot fit")
    plan_t, both_t = [], []
    for _ in range(args.latency_runs):
        t0 = time.perf_counter()
        plan(inp)
        plan_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        r = schedule(snap)
        plan(AutoscaleInput(snap, (pool,), r.waiting, admitted=r.admitted))
        both_t.append(time.perf_counter() - t0)
    for name, xs in (("plan()", plan_t), ("schedule() + plan()", both_t)):
        print(f"  {name:<22} median {statistics.median(xs) * 1000:7.0f} ms   p95 {pct(xs, 0.95) * 1000:7.0f} ms"
              f"   ({args.latency_runs} runs, wall time)")
    print(f"  Cluster Autoscaler SLO (pod unschedulable -> scale-up request): {CA_SLO}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, help="CSV with columns submit_s,gpus,duration_s")
    ap.add_argument("--traces-dir", type=Path, help="where alibaba-gpu-2023/ is (default: $SHIPYARD_TRACES "
                                                    "or ../shared/traces beside the repository)")
    ap.add_argument("--speedup", type=arg(above=0, high=1e9), default=1.0, help="divide every time by K")
    ap.add_argument("--provisioning-delay", type=arg(low=0, high=MAX_SECONDS), default=120.0)
    ap.add_argument("--idle-timeout", type=arg(low=0, high=MAX_SECONDS), default=600.0)
    ap.add_argument("--warm-buffer", type=arg(integer=True, low=0, high=MAX_NODES), default=2)
    ap.add_argument("--failure-rate", type=arg(low=0, high=1), default=0.0,
                    help="chance (0 to 1) that a requested node never registers")
    ap.add_argument("--seed", type=arg(integer=True, low=0, high=2**63 - 1), default=0)
    ap.add_argument("--no-time-limits", action="store_true",
                    help="experiments declare no time limit (no backfill; the planner cannot see work end)")
    ap.add_argument("--nodes", type=arg(integer=True, low=1, high=MAX_NODES), default=5000, help="nodes of the latency snapshot")
    ap.add_argument("--pending", type=arg(integer=True, low=0, high=10_000), default=40, help="pending gangs of the latency snapshot")
    ap.add_argument("--latency-runs", type=arg(integer=True, low=1, high=10_000), default=20)
    ap.add_argument("--fixed-nodes", type=arg(integer=True, low=1, high=MAX_NODES),
                    help="a fixed cluster of N nodes, no autoscaling: shipyard beside FIFO")
    ap.add_argument("--time-limits", action="store_true",
                    help="with --fixed-nodes: each experiment declares its duration as its time limit")
    ap.add_argument("--window-days", type=arg(above=0, high=3650), default=1.0,
                    help="the busiest window of the Alibaba trace, in days (default 1)")
    ap.add_argument("--resample", type=arg(integer=True, low=1, high=10**7),
                    help="draw this many experiments from the whole Alibaba trace (over --days)")
    ap.add_argument("--days", type=arg(above=0, high=3650), default=7.0, help="span of --resample")
    ap.add_argument("--parallel", type=arg(integer=True, low=1, high=64), default=1,
                    help="simulations run at once (each in its own process)")
    args = ap.parse_args()
    arrivals, source = bench_trace(args)
    total = sum(a.gpus for a in arrivals)
    print(f"trace: {source}: {len(arrivals)} experiments, {total} GPUs requested in all, "
          f"arrivals over {(arrivals[-1].submit_s - arrivals[0].submit_s) / 3600:.1f} h\n")
    if args.fixed_nodes is not None:
        fixed_compare(arrivals, args)
        return
    compare(arrivals, args)
    latency(args)


if __name__ == "__main__":
    main()
