"""Scheduling quality on a production trace: FIFO, shipyard's policies and an SJF oracle.

The same trace on the same fixed cluster (no autoscaling) through, side by side:

  FIFO              strict arrival order over one queue, no backfill
  today             no starvation bound, no estimates (as before issue #17, but for the
                    nodes a blocked gang holds: backfill.drain_guesses)
  bound only        the starvation bound, no estimates (Policy(estimates=False))
  +estimates        run-time estimates from history (core/estimate.py), no bound; they
                    order a queue once it is backed up (Policy.estimate_order_after_s)
  shipyard          the default, Policy(): the starvation bound and estimates
  SJF oracle        shortest first with the true durations, always (a reference, not a policy)

Each prints mean / p50 / p95 / p99 / max queueing delay, mean JCT (submit to end), GPU
utilisation, the longest wait per size class (1, 2-8, 9-31, >=32 GPUs; a job that never
started counts its wait to the end), and each queue's share of the GPU-seconds beside
its weight's share.

Default trace: the busiest week of the Alibaba GPU trace 2023 (openb_pod_list_default.csv;
Weng et al., ATC'23); queues are its QoS classes (LS, BE, Burstable, Guaranteed; weight
1 each); estimates learn from each task's kind (QoS and shape: CPU, memory, GPU share),
the trace having no user names. `--resample JOBS --days D` draws JOBS tasks over D days
from the whole trace (some made multi-node gangs: sim.trace.resample) instead — a second
trace shape, e.g. `--resample 10000 --days 7 --fixed-nodes 64`. `--trace FILE`: a CSV
`submit_s,gpus,duration_s` (one queue).

`--columns shipyard,today` runs only those beside FIFO (always first: the reference of
the ratios and of the `!` marks), for a shape where all six take too long.

    python bench/trace_policies.py [--trace FILE] --fixed-nodes N [--window-days 7] [--columns A,B]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from shipyard.cli.flags import arg
from shipyard.core.model import Policy, Queue
from shipyard.sim import Arrival, SimConfig, SimPool, simulate
from shipyard.sim.measure import measure_all
from shipyard.sim.metrics import SIZE_CLASSES, Summary, size_class, summarize
from shipyard.sim.trace import bench_trace
from shipyard.spec import DEFAULT_MACHINE_TYPES

A100 = DEFAULT_MACHINE_TYPES["gpu-a100"]
TODAY = Policy(starvation_bound_s=None, estimates=False)
COLUMNS: list[tuple[str, Policy, bool, bool]] = [  # name, policy, one queue, oracle
    ("FIFO", Policy(backfill=False, preemption=False, starvation_bound_s=None, estimates=False), True, False),
    ("today", TODAY, False, False),
    ("bound only", replace(Policy(), estimates=False), False, False),
    ("+estimates", replace(TODAY, estimates=True), False, False),
    ("shipyard", Policy(), False, False),
    ("SJF oracle", replace(TODAY, estimates=True, estimate_order_after_s=None), False, True),
]


def run_one(arrivals: list[Arrival], nodes: int, policy: Policy, one_queue: bool, oracle: bool,
            limits: bool) -> Summary:
    queues = tuple(Queue(q) for q in sorted({a.queue for a in arrivals}))
    if one_queue:
        arrivals = [replace(a, queue="all") for a in arrivals]
    cfg = SimConfig(policy=policy, time_limits=limits, oracle=oracle,
                    queues=(Queue("all"),) if one_queue else queues)
    pool = SimPool("fixed", A100, max_nodes=nodes, static=True, start_nodes=nodes)
    r = simulate(arrivals, [pool], cfg)
    return summarize(r, {a.name: a.gpus for a in arrivals}, nodes * A100.gpus,
                     {a.name: a.queue for a in arrivals} if not one_queue else None)


def fmt_s(s: float) -> str:
    if s < 600:
        return f"{s:,.0f} s"
    return f"{s / 60:,.0f} min" if s < 36000 else f"{s / 3600:,.1f} h"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, help="CSV with columns submit_s,gpus,duration_s")
    ap.add_argument("--traces-dir", type=Path, help="where alibaba-gpu-2023/ is (default: $SHIPYARD_TRACES "
                                                    "or ../shared/traces beside the repository)")
    ap.add_argument("--fixed-nodes", type=arg(integer=True, low=1, high=100_000), default=2,
                    help="8-GPU nodes of the fixed cluster (default 2: FIFO queues for days on the "
                         "busiest week; on 3 it barely queues)")
    ap.add_argument("--window-days", type=arg(above=0, high=3650), default=7.0)
    ap.add_argument("--resample", type=arg(integer=True, low=1, high=10**7))
    ap.add_argument("--days", type=arg(above=0, high=3650), default=7.0)
    ap.add_argument("--seed", type=arg(integer=True, low=0, high=2**32), default=1)
    ap.add_argument("--time-limits", action="store_true", help="each experiment declares its duration")
    ap.add_argument("--parallel", type=arg(integer=True, low=1, high=64), default=2)
    ap.add_argument("--columns", help="comma-separated column names to run beside FIFO "
                                      f"(default all: {', '.join(c[0] for c in COLUMNS)})")
    args = ap.parse_args()
    columns = COLUMNS
    if args.columns:
        wanted = {c.strip() for c in args.columns.split(",") if c.strip()}
        unknown = wanted - {c[0] for c in COLUMNS}
        if unknown:
            ap.error(f"--columns: unknown {', '.join(sorted(unknown))}")
        columns = [c for c in COLUMNS if c[0] == "FIFO" or c[0] in wanted]
    arrivals, source = bench_trace(args)
    # Queues: the QoS class the kind starts with (one queue for a plain CSV).
    arrivals = [replace(a, queue=a.kind.split("/")[0] or a.queue) for a in arrivals]
    n = args.fixed_nodes
    print(f"trace: {source}: {len(arrivals)} experiments, "
          f"{sum(a.gpus * a.duration_s for a in arrivals) / 3600:,.0f} GPU-hours of work; "
          f"fixed cluster {n} x 8 GPUs; starvation bound {fmt_s(Policy().starvation_bound_s or 0)}; "
          f"estimates order a queue backed up {fmt_s(Policy().estimate_order_after_s or 0)}; "
          f"time limits {'= durations' if args.time_limits else 'none'}\n")
    jobs = [(run_one, (arrivals, n, p, one, oracle, args.time_limits)) for _, p, one, oracle in columns]
    measured = measure_all(jobs, args.parallel)
    sums: list[Summary] = [m.value for m in measured]
    fifo = sums[0]
    col = 13
    head = f"{'':<26}" + "".join(f"{name:>{col}}" for name, *_ in columns)
    print(head)

    def row(label: str, vals: list[str]) -> None:
        print(f"{label:<26}" + "".join(f"{v:>{col}}" for v in vals))

    for label, get in (("queueing delay mean", lambda s: s.mean_wait_s), ("  p50", lambda s: s.p50_wait_s),
                       ("  p95", lambda s: s.p95_wait_s), ("  p99", lambda s: s.p99_wait_s),
                       ("  max", lambda s: s.max_wait_s)):
        row(label, [fmt_s(get(s)) for s in sums])
    row("mean delay / FIFO", [f"{s.mean_wait_s / fifo.mean_wait_s:.3f} x" if fifo.mean_wait_s else "-"
                              for s in sums])
    row("JCT mean", [fmt_s(s.mean_jct_s) for s in sums])
    row("GPU utilisation", [f"{s.utilisation:.1%}" for s in sums])
    row("not started", [f"{s.experiments - s.started:,}" for s in sums])
    counts = {}
    for a in arrivals:
        counts[size_class(a.gpus)] = counts.get(size_class(a.gpus), 0) + 1
    for low, _ in SIZE_CLASSES:
        name = size_class(low)
        if name not in counts:
            continue
        waits = [s.max_wait_by_size.get(name, 0.0) for s in sums]
        marks = [fmt_s(w) + ("!" if w > waits[0] else "") for w in waits]
        row(f"max wait {name} GPUs ({counts[name]})", marks)
    queues = sorted({a.queue for a in arrivals})
    if len(queues) > 1:
        weight = 1 / len(queues)
        for q in queues:
            row(f"share {q} (weight {weight:.0%})",
                ["-" if not s.gpu_share else f"{s.gpu_share.get(q, 0.0):.0%}" for s in sums])
    print(f"{'simulated in (wall)':<26}" + "".join(f"{m.wall_s:>{col - 2}.1f} s" for m in measured))
    print(f"{'  (its own CPU time)':<26}" + "".join(f"{m.cpu_s:>{col - 2}.1f} s" for m in measured))
    print("\n!: longer than FIFO's longest wait of that size class. FIFO runs one queue in arrival order "
          "(no share to report).")


if __name__ == "__main__":
    main()
