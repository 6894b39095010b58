"""How many simulated nodes does the local control plane hold on this machine?

For each size: a fresh dev cluster, N kwok nodes created concurrently, time until
all are Ready, then steady-state RSS and CPU of etcd, kube-apiserver, kwok (and
the controller-manager and scheduler) averaged over a window.

    python bench/devcluster_scale.py --sizes 1000,2500,5000,7500 [--window 100]

Needs the binaries (`shipyard dev build`). Prints a table; --json writes the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import psutil

from shipyard.cli.flags import arg, counts
from shipyard.dev import cluster as devcluster
from shipyard.dev import pools
from shipyard.dev.client import http_get

SHORT = {"etcd": "etcd", "kube-apiserver": "apiserver", "kwok": "kwok",
         "kube-controller-manager": "kcm", "kube-scheduler": "sched"}


def sample(c: devcluster.DevCluster, window: float) -> dict[str, dict[str, float]]:
    """RSS (MiB, at the end) and CPU (% of one core, averaged) per component."""
    procs = {r.name: r.process() for r in c.procs}
    start = {n: p.cpu_times() for n, p in procs.items() if p}
    t0 = time.monotonic()
    time.sleep(window)
    dt = time.monotonic() - t0
    out: dict[str, dict[str, float]] = {}
    for n, p in procs.items():
        if p is None or n not in start:
            continue
        end = p.cpu_times()
        cpu = (end.user + end.system) - (start[n].user + start[n].system)
        out[n] = {"rss_mib": p.memory_info().rss / 2**20, "cpu_pct": 100 * cpu / dt}
    return out


def etcd_db_mib(c: devcluster.DevCluster) -> float:
    status, body = http_get(f"http://127.0.0.1:{c.ports['etcd']}/metrics")
    for line in body.splitlines() if status == 200 else []:
        if line.startswith("etcd_mvcc_db_total_size_in_bytes "):
            return float(line.split()[1]) / 2**20
    return float("nan")


def run_size(n: int, machine: str, window: float, warmup: float, name: str) -> dict:
    devcluster.down(name)
    t_up = time.monotonic()
    c = devcluster.up(name, merge_kubeconfig=False)
    up_s = time.monotonic() - t_up
    spec = pools.parse_pool_arg(f"{machine}:{n}")
    api = c.raw_client()
    t0 = time.monotonic()
    pools.create_nodes(api, list(pools.nodes_for([spec])), workers=24)
    created_s = time.monotonic() - t0
    c.wait_nodes_ready(n, timeout=3600, api=api)
    ready_s = time.monotonic() - t0
    time.sleep(warmup)
    usage = sample(c, window)
    row = {"nodes": n, "up_s": up_s, "create_s": created_s, "ready_s": ready_s,
           "etcd_db_mib": etcd_db_mib(c), "usage": usage,
           "machine_mem_used_gib": (psutil.virtual_memory().total
                                    - psutil.virtual_memory().available) / 2**30}
    devcluster.down(name)
    return row


def table(rows: list[dict]) -> str:
    comps = list(SHORT)
    head = ["nodes", "ready s", "create s", "etcd db MiB"] + [
        f"{SHORT[k]} {m}" for k in comps for m in ("RSS MiB", "CPU%")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["nodes"]), f"{r['ready_s']:.1f}", f"{r['create_s']:.1f}",
                 f"{r['etcd_db_mib']:.0f}"]
        for k in comps:
            u = r["usage"].get(k, {})
            cells += [f"{u.get('rss_mib', float('nan')):.0f}", f"{u.get('cpu_pct', 0):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example: python bench/devcluster_scale.py "
                                       "--sizes 1000,2500,5000,7500")
    p.add_argument("--sizes", type=counts(high=100_000), default="1000,2500,5000,7500")
    p.add_argument("--machine", default="cpu", help="machine type of the nodes")
    p.add_argument("--window", type=arg(above=0, high=86400), default=100,
                   help="steady-state seconds sampled (>= one kwok lease renew interval)")
    p.add_argument("--warmup", type=arg(low=0, high=86400), default=30, help="seconds after Ready first")
    p.add_argument("--name", default="bench")
    p.add_argument("--json", type=Path, help="also write the rows here")
    a = p.parse_args(argv)
    rows = []
    try:
        for n in (int(s) for s in a.sizes.split(",")):
            print(f"== {n} nodes", file=sys.stderr, flush=True)
            row = run_size(n, a.machine, a.window, a.warmup, a.name)
            rows.append(row)
            print(f"   Ready in {row['ready_s']:.1f}s (created in {row['create_s']:.1f}s)",
                  file=sys.stderr, flush=True)
    finally:
        devcluster.down(a.name)
        if rows:
            print(table(rows))
            if a.json:
                a.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
