"""Several clusters: does launching where the capacity is beat one cluster, or a fixed failover?

Replays a day of experiment arrivals over two simulated clusters on one virtual clock
(src/shipyard/sim/multi.py); each runs the same policy as the controller
(core.queueing.schedule, core.autoscale.plan):

  onprem   a static pool of 8-GPU a100-80g nodes (already paid for), sized below the
           peak so that it is contended; its name for the spec's gpu-a100 is a100-80g
  cloud    an autoscaling gpu-a100 pool (8 GPUs, $32.77/h, a provisioning delay, a
           quota of --cloud-max-nodes) and an autoscaling cpu-large pool

and routes every arrival four ways, side by side in one run:

  auto          at each arrival, each cluster's capacity summary (core.clusters.summarize,
                from the simulator's state, as a controller publishes it) and
                core.clusters.choose_cluster: fits now > fits after scale-up > shortest
                estimated wait; GPU work prefers onprem (prefer: gpu)
  onprem only   everything to onprem
  cloud only    everything to the cloud
  failover      onprem if it fits there now (by the same summary), else the cloud: a fixed
                order, as SkyPilot's failover tries one place after another

Default trace: the busiest 24 h of creation times in the Alibaba GPU trace 2023
(openb_pod_list_default.csv; Weng et al., "Beware of Fragmentation", USENIX ATC'23), as
bench/autoscale_trace.py uses, under $SHIPYARD_TRACES or --traces-dir. That day is light
(26 GPUs at its peak), so by default --days 2 overlays its 2 busiest distinct days, each
shifted to start at 0 (the output says so; --days 1 is the day alone; --days 3 adds a
day with a 634 h task that stretches every run). `--trace FILE` replays a CSV
`submit_s,gpus,duration_s` instead (not overlaid). An experiment of g GPUs becomes
ceil(g/8) members of min(g,8) GPUs. By default onprem and the cloud's GPU quota are each
half the peak (together, the peak): each alone is overloaded, together they are not.

    python bench/multicluster.py [--trace FILE] [--days K] [--speedup K] [--onprem-nodes N]
                                 [--cloud-max-nodes N] [--provisioning-delay S]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from shipyard.cli.flags import arg
from shipyard.core.clusters import ClusterOption, RoleDemand, choose_cluster, summarize
from shipyard.core.model import AutoscaleSettings
from shipyard.sim import (
    Arrival,
    MultiResult,
    SimCluster,
    SimConfig,
    SimPool,
    Simulation,
    TraceError,
    gang_of_arrival,
    load_alibaba,
    load_csv,
    simulate_clusters,
)
from shipyard.sim.trace import DAY_S, alibaba_path, busiest_window
from shipyard.spec import DEFAULT_MACHINE_TYPES
from shipyard.spec.nodepool import MAX_NODES
from shipyard.spec.quantity import MAX_SECONDS

A100 = DEFAULT_MACHINE_TYPES["gpu-a100"]
ONPREM_A100 = A100.model_copy(update={"name": "a100-80g", "cost_per_hour": 0.0})
CPU = DEFAULT_MACHINE_TYPES["cpu-large"]
ONPREM, CLOUD = "onprem", "cloud"


# -- the trace -------------------------------------------------------------------------


def busiest_days(path: Path, days: int) -> tuple[list[Arrival], list[int]]:
    """The `days` busiest distinct 24 h windows of the Alibaba trace, overlaid from 0."""
    left = load_alibaba(path, window_s=math.inf)
    out: list[Arrival] = []
    sizes: list[int] = []
    for d in range(days):
        if not left:
            break
        start = busiest_window([a.submit_s for a in left], DAY_S)
        chosen = [a for a in left if start <= a.submit_s < start + DAY_S]
        left = [a for a in left if not start <= a.submit_s < start + DAY_S]
        out += [Arrival(f"{a.name}@{d}", a.submit_s - start, a.gpus, a.duration_s) for a in chosen]
        sizes.append(len(chosen))
    out.sort(key=lambda a: (a.submit_s, a.name))
    return out, sizes


def peak_nodes(arrivals: list[Arrival]) -> tuple[int, int]:
    """(GPUs, 8-GPU nodes) held at the busiest instant if every experiment started on arrival."""
    events: list[tuple[float, int]] = []
    for a in arrivals:
        held = math.ceil(a.gpus / 8) * min(a.gpus, 8)
        events += [(a.submit_s, held), (a.submit_s + a.duration_s, -held)]
    now = peak = 0
    for _, d in sorted(events):
        now += d
        peak = max(peak, now)
    return peak, math.ceil(peak / 8)


# -- the clusters and the routers -------------------------------------------------------


def clusters(args: argparse.Namespace, k: float) -> list[SimCluster]:
    onprem = SimPool("rack", ONPREM_A100, max_nodes=args.onprem_nodes, static=True,
                     start_nodes=args.onprem_nodes)
    gpu = SimPool("gpu-a100", A100, max_nodes=args.cloud_max_nodes, warm_buffer=args.warm_buffer,
                  idle_timeout_s=args.idle_timeout / k)
    cpu = SimPool("cpu-large", CPU, max_nodes=10, idle_timeout_s=args.idle_timeout / k)
    cfg = SimConfig(provisioning_delay_s=args.provisioning_delay / k, seed=args.seed,
                    autoscale=AutoscaleSettings(confirm_s=30.0 / k, interval_s=10.0 / k,
                                                backoff_s=300.0 / k))
    return [SimCluster(ONPREM, (onprem,), replace(cfg, machine=ONPREM_A100)),
            SimCluster(CLOUD, (gpu, cpu), replace(cfg, machine=A100))]


def demand(a: Arrival) -> list[RoleDemand]:
    members = gang_of_arrival(a, A100).members
    return [RoleDemand(A100.name, len(members), members[0].request)]


def option(name: str, sim: Simulation) -> ClusterOption:
    snap, pools, waiting = sim.state()
    capacity = summarize(snap, pools, waiting, snap.now)
    if name == ONPREM:
        return ClusterOption(ONPREM, "onprem", "gpu", capacity, {A100.name: ONPREM_A100.name})
    return ClusterOption(CLOUD, "cloud", "cpu", capacity)


def routers(delay_s: float, runtime_s: float) -> dict[str, Callable[[Arrival, Mapping[str, Simulation]], str]]:
    def auto(a: Arrival, sims: Mapping[str, Simulation]) -> str:
        scores = choose_cluster(demand(a), [option(n, s) for n, s in sims.items()], delay_s, runtime_s)
        return scores[0].cluster

    def failover(a: Arrival, sims: Mapping[str, Simulation]) -> str:
        [score] = choose_cluster(demand(a), [option(ONPREM, sims[ONPREM])], delay_s, runtime_s)
        return ONPREM if score.tier == 0 else CLOUD

    return {"auto": auto, "onprem only": lambda a, s: ONPREM, "cloud only": lambda a, s: CLOUD,
            "failover": failover}


# -- the comparison ---------------------------------------------------------------------


def fmt_s(s: float) -> str:
    return f"{s:,.0f} s" if s < 600 else f"{s / 60:,.1f} min"


def utilisation(r: MultiResult, cluster: str, pool: str, gpus: int) -> str:
    res = r.clusters[cluster]
    available = res.node_s.get(pool, 0.0) * gpus
    return f"{res.busy_gpu_s / available:.0%}" if available else "-"


def compare(arrivals: list[Arrival], args: argparse.Namespace) -> None:
    k = args.speedup
    fast = [Arrival(a.name, a.submit_s / k, a.gpus, a.duration_s / k) for a in arrivals]
    runtime = sum(a.duration_s for a in fast) / len(fast)
    results: list[tuple[str, MultiResult, float]] = []
    for name, route in routers(args.provisioning_delay / k, runtime).items():
        t0 = time.perf_counter()
        r = simulate_clusters(fast, clusters(args, k), route)
        results.append((name, r, time.perf_counter() - t0))

    def cloud_cost(r: MultiResult) -> float:
        return r.clusters[CLOUD].cost * k

    rows: list[tuple[str, Callable[[MultiResult], str]]] = [
        ("sent to onprem / cloud", lambda r: f"{sum(v == ONPREM for v in r.routed.values())} / "
                                             f"{sum(v == CLOUD for v in r.routed.values())}"),
        ("queueing delay mean", lambda r: fmt_s(r.mean_wait_s * k)),
        ("queueing delay p95", lambda r: fmt_s(r.p95_wait_s * k)),
        ("queueing delay max", lambda r: fmt_s((r.waits[-1] if r.waits else 0) * k)),
        ("not started", lambda r: str(r.not_started)),
        ("onprem GPU utilisation (a)", lambda r: utilisation(r, ONPREM, "rack", ONPREM_A100.gpus)),
        ("cloud GPU utilisation (a)", lambda r: utilisation(r, CLOUD, "gpu-a100", A100.gpus)),
        ("cloud GPU node-hours", lambda r: f"{r.clusters[CLOUD].node_s['gpu-a100'] * k / 3600:,.1f}"),
        ("cloud CPU node-hours", lambda r: f"{r.clusters[CLOUD].node_s['cpu-large'] * k / 3600:,.1f}"),
        ("cloud cost", lambda r: f"${cloud_cost(r):,.0f}"),
        ("run ends", lambda r: f"{r.end_s * k / 3600:.1f} h"),
    ]
    width = max(len(n) for n, _ in rows) + 2
    col = max(16, *(len(n) + 2 for n, _, _ in results))
    print(" " * width + "".join(f"{n:>{col}}" for n, _, _ in results))
    for label, cell in rows:
        print(f"{label:<{width}}" + "".join(f"{cell(r):>{col}}" for _, r, _ in results))
    print(f"{'simulated in':<{width}}" + "".join(f"{f'{w:.1f} s wall':>{col}}" for _, _, w in results))
    print("\n(a) busy GPU-hours (GPUs requested by running experiments) / available GPU-hours: onprem, its"
          " nodes over the whole run; cloud, the GPU nodes paid for (from request to removal)")
    print("queueing delay: from submission to start, over every experiment that started; a run ends when"
          " nothing is left to happen (the cloud's last idle node removed)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, help="CSV with columns submit_s,gpus,duration_s")
    ap.add_argument("--traces-dir", type=Path, help="where alibaba-gpu-2023/ is (default: $SHIPYARD_TRACES "
                                                    "or ../shared/traces beside the repository)")
    ap.add_argument("--days", type=arg(integer=True, low=1, high=365), default=2, help="overlay the K busiest days of the Alibaba trace")
    ap.add_argument("--speedup", type=arg(above=0, high=1e9), default=1.0, help="divide every time by K")
    ap.add_argument("--onprem-nodes", type=arg(integer=True, low=0, high=MAX_NODES), help="static 8-GPU nodes (default: half the peak)")
    ap.add_argument("--cloud-max-nodes", type=arg(integer=True, low=0, high=MAX_NODES), help="the cloud's GPU quota in nodes (default: half the peak)")
    ap.add_argument("--provisioning-delay", type=arg(low=0, high=MAX_SECONDS), default=120.0)
    ap.add_argument("--idle-timeout", type=arg(low=0, high=MAX_SECONDS), default=600.0)
    ap.add_argument("--warm-buffer", type=arg(integer=True, low=0, high=MAX_NODES), default=0)
    ap.add_argument("--seed", type=arg(integer=True, low=0, high=2**63 - 1), default=0)
    args = ap.parse_args()
    try:
        if args.trace is not None:
            arrivals, source = load_csv(args.trace), str(args.trace)
        else:
            path = alibaba_path(args.traces_dir)
            arrivals, sizes = busiest_days(path, args.days)
            days = " + ".join(str(n) for n in sizes)
            source = (f"{path}: the {len(sizes)} busiest distinct 24 h windows of creation_time "
                      f"({days} experiments), overlaid from 0" if len(sizes) > 1 else
                      f"{path} (busiest 24 h of creation_time)")
    except TraceError as e:
        sys.exit(f"error: {e}")
    if not arrivals:
        sys.exit("error: the trace has no experiments")
    gpus, nodes = peak_nodes(arrivals)
    half = max(nodes // 2, 1)
    args.onprem_nodes = half if args.onprem_nodes is None else args.onprem_nodes
    args.cloud_max_nodes = half if args.cloud_max_nodes is None else args.cloud_max_nodes
    total = sum(a.gpus for a in arrivals)
    print(f"trace: {source}: {len(arrivals)} experiments, {total} GPUs requested in all")
    print(f"peak demand: {gpus} GPUs at once if every experiment started on arrival = {nodes} x 8-GPU nodes")
    print(f"onprem: {args.onprem_nodes} static x {ONPREM_A100.name} (8 GPUs; spec gpu-a100 maps to it), "
          f"prefer gpu | cloud: gpu-a100 0..{args.cloud_max_nodes} nodes at ${A100.cost_per_hour}/h, "
          f"cpu-large 0..10, prefer cpu")
    print(f"provisioning delay {args.provisioning_delay:g} s, idle timeout {args.idle_timeout:g} s + 30 s "
          f"confirmation, warm buffer {args.warm_buffer}, time compressed x{args.speedup:g} "
          f"(figures in trace time)\n")
    compare(arrivals, args)


if __name__ == "__main__":
    main()
