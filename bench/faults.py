"""The fault suite, long: each fault injected into shipyard's controller on a dev cluster
during a burst of mixed gangs, invariants sampled from the API server every 0.5 s.

    python bench/faults.py                      # every fault, the sizes of the issue
    python bench/faults.py --faults leader-pause --trials 5 --experiments 200
    python bench/faults.py --quick              # small sizes, a few minutes

Prints one row per fault: runs | experiments | lost | over-capacity samples | partial
gangs over the bound | wrong restart counts | orphans | longest partial window | time
to converge | failover time (median, max). --json FILE writes the rows too.
A dev cluster `faults-bench` is started (and stopped unless --keep).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict

from shipyard.cli.flags import arg
from shipyard.dev import build
from shipyard.dev import cluster as devcluster
from shipyard.dev.faults import FAULTS, POOLS, Lease, Row, Scenario, run_scenario
from shipyard.dev.pools import parse_pool_arg

# (experiments, injections, burst seconds) per fault: the sizes.
FULL = {"controller-kill": (1000, 20, 120.0), "apiserver-restart": (400, 4, 80.0),
        "watch-expiry": (400, 4, 80.0), "leader-pause": (300, 5, 150.0),
        "leader-kill": (300, 5, 150.0), "node-notready": (400, 6, 80.0),
        "node-delete": (400, 6, 80.0), "malformed": (300, 3, 60.0)}
QUICK = {f: (60, 3, 15.0) for f in FAULTS}


def table(rows: list[Row], bound_s: float) -> str:
    head = ("fault", "runs", "exps", "lost", "over-cap", f"partial>{bound_s:g}s", "wrong-restarts",
            "orphans", "longest-partial-s", "converge-s", "failover-s (med/max)")
    lines = [head]
    for r in rows:
        v = r.violations
        fo = (f"{statistics.median(r.failover_s):.1f}/{max(r.failover_s):.1f}"
              if r.failover_s else "-")
        lines.append((r.fault, str(r.runs), str(r.experiments), str(len(r.lost)),
                      str(v.over_capacity), str(v.partial_over(bound_s)), str(len(r.wrong_restarts)),
                      str(len(r.orphans)), f"{v.longest_partial():.1f}", f"{r.converge_s:.1f}", fo))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))
                     for line in lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faults", default=",".join(FAULTS),
                    help=f"comma-separated, of: {', '.join(FAULTS)}")
    ap.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    ap.add_argument("--experiments", type=arg(integer=True, low=1, high=100_000), help="override every fault's burst size")
    ap.add_argument("--trials", type=arg(integer=True, low=1, high=1000), help="override every fault's injection count")
    ap.add_argument("--lease", type=arg(low=2, high=3600), default=15.0,
                    help="lease duration s (renew deadline 2/3 of it, retry period 2/15)")
    ap.add_argument("--bound", type=arg(above=0, high=3600), default=5.0, help="partial-gang bound, s")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--keep", action="store_true", help="leave the dev cluster running")
    args = ap.parse_args()
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        ap.error(f"unknown fault(s) {unknown}; choose from {', '.join(FAULTS)}")
    sizes = QUICK if args.quick else FULL
    lease = Lease(args.lease, args.lease * 2 / 3, args.lease * 2 / 15)

    build.build(log=lambda m: print(m, file=sys.stderr))
    cluster = devcluster.up("faults-bench", merge_kubeconfig=False)
    rows: list[Row] = []
    try:
        missing = [s for s in map(parse_pool_arg, POOLS)
                   if cluster.pool_next_index.get(s.name, 0) < s.count]
        if missing:
            cluster.add_pools(missing, timeout=600)
        for fault in faults:
            n, k, spread = sizes[fault]
            t0 = time.monotonic()
            row = run_scenario(Scenario(
                cluster, fault, experiments=args.experiments or n, injections=args.trials or k,
                spread_s=spread, lease=lease, timeout_s=1800, bound_s=args.bound,
                progress=lambda m: print(m, file=sys.stderr, flush=True)))
            rows.append(row)
            print(f"{fault}: {time.monotonic() - t0:.0f}s; notes: {row.notes}; "
                  f"examples: {row.violations.examples[:3]}; lost: {row.lost[:3]}; "
                  f"restarts: {row.wrong_restarts[:3]}; orphans: {row.orphans[:3]}",
                  file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            devcluster.down("faults-bench")
    print(table(rows, args.bound))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    return 0 if all(r.clean(args.bound) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
