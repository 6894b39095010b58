"""Record or compare the simulator's decisions (per-experiment start times) on a trace.

The simulator's speed-ups must not change a single decision. Record the start times
of every experiment once (`--record FILE`, before a change), then compare after it
(`--compare FILE`): the same trace, cluster and policy must start every experiment at
the same instant.

The trace: `--jobs` experiments over `--days`, resampled from the whole Alibaba GPU
trace 2023 (sim.trace.resample; Weng et al., ATC'23), on a fixed cluster of
`--fixed-nodes` 8-GPU nodes; `--time-limits` makes each experiment declare its
duration as its time limit (backfill and reservations with known starts).

    python bench/sim_decisions.py --record /tmp/before.json [--jobs 10000 --days 7 --fixed-nodes 64]
    python bench/sim_decisions.py --compare /tmp/before.json [same flags]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from shipyard.cli.flags import arg
from shipyard.sim import SimConfig, SimPool, load_alibaba, simulate
from shipyard.sim.trace import alibaba_path, resample
from shipyard.spec import DEFAULT_MACHINE_TYPES

A100 = DEFAULT_MACHINE_TYPES["gpu-a100"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--record", type=Path, help="write the start times here (JSON)")
    what.add_argument("--compare", type=Path, help="compare with start times written before")
    ap.add_argument("--traces-dir", type=Path)
    ap.add_argument("--jobs", type=arg(integer=True, low=1, high=10**7), default=10_000)
    ap.add_argument("--days", type=arg(above=0, high=3650), default=7.0)
    ap.add_argument("--fixed-nodes", type=arg(integer=True, low=1, high=100_000), default=64)
    ap.add_argument("--seed", type=arg(integer=True, low=0, high=2**32), default=1)
    ap.add_argument("--time-limits", action="store_true")
    ap.add_argument("--keep-unended", action="store_true",
                    help="keep the tasks that ran until the trace's end (as resample did at first)")
    args = ap.parse_args()
    arrivals = resample(load_alibaba(alibaba_path(args.traces_dir), window_s=1e12), args.jobs,
                        args.days * 86400, seed=args.seed, keep_unended=args.keep_unended)
    pool = SimPool("fixed", A100, max_nodes=args.fixed_nodes, static=True, start_nodes=args.fixed_nodes)
    t0 = time.perf_counter()
    r = simulate(arrivals, [pool], SimConfig(time_limits=args.time_limits))
    wall = time.perf_counter() - t0
    print(f"{len(arrivals)} experiments on {args.fixed_nodes} nodes: {len(r.started)} started, "
          f"{r.cycles} cycles, mean wait {r.mean_wait_s:,.0f} s, {wall:.1f} s wall")
    if args.record:
        args.record.write_text(json.dumps(r.started, sort_keys=True))
        return
    before = json.loads(args.compare.read_text())
    differ = sorted(k for k in before.keys() | r.started.keys() if before.get(k) != r.started.get(k))
    if differ:
        print(f"DIFFERENT: {len(differ)} of {len(before)} start times, e.g. "
              + ", ".join(f"{k}: {before.get(k)} -> {r.started.get(k)}" for k in differ[:5]))
        sys.exit(1)
    print(f"same: all {len(before)} start times equal")


if __name__ == "__main__":
    main()
