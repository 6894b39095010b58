"""What the scheduler metrics cost: one scrape, and the usage accounting, at scale.

Builds the state a controller holds for N experiments (half running on whole GPU
nodes, half waiting, over Q queues), then measures, median of --runs:
- a scrape of the scheduler collector (experiments by phase, pending gangs and demand,
  queue usage, quota, shares, nodes, usage counters) beside a scrape of what the
  controller exported before it (autoscaler metrics and cache counters);
- one usage step (rates from the Running pods; at most every 5 s) beside one cycle
  (core.queueing.schedule) over the same snapshot, the work it rides along with.
Prints series counts and exposition sizes too: the label sets are bounded by queues,
phases and reason kinds, not by N.

    python bench/metrics_scrape.py [--experiments 5000] [--queues 8] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest

from shipyard.core.model import (
    WAIT_CAPACITY,
    CycleResult,
    Gang,
    Member,
    Node,
    Queue,
    Resources,
    Running,
    Snapshot,
    Waiting,
)
from shipyard.core.queueing import schedule
from shipyard.monitor.metrics import AutoscalerMetrics, CacheCollector
from shipyard.monitor.scheduler import SchedulerCollector, SchedulerMetrics
from shipyard.monitor.usage import Accountant, rates, running_uses
from shipyard.spec.machines import DEFAULT_MACHINE_TYPES, LABEL_INSTANCE_TYPE

A100 = DEFAULT_MACHINE_TYPES["gpu-a100"]
NODE = Resources(A100.allocatable_cpu, A100.allocatable_memory, 8)


def world(n: int, queues: int) -> SimpleNamespace:
    nodes = {f"n{i}": Node(f"n{i}", NODE, {LABEL_INSTANCE_TYPE: "gpu-a100"}, used=NODE)
             for i in range(n // 2)}
    experiments, statuses, pods_of = {}, {}, {}
    pending, running, waiting = [], [], []
    for i in range(n):
        key, queue = f"ns{i % 20}/e{i}", f"q{i % queues}"
        gang = Gang(key, queue, 0, float(i), (Member("trainer", 0, NODE),))
        experiments[key] = SimpleNamespace(spec=SimpleNamespace(queue=queue))
        if i % 2 == 0:
            node = f"n{i // 2}"
            statuses[key] = {"phase": "Running"}
            running.append(Running(gang, {"trainer-0": node}, 0.0))
            pods_of[key] = {f"e{i}-trainer-0": SimpleNamespace(
                phase="Running", node=node, namespace=key.split("/")[0], request=NODE)}
        else:
            statuses[key] = {"phase": "Queued"}
            pending.append(gang)
            waiting.append(Waiting(key, len(waiting) + 1, "no room", kind=WAIT_CAPACITY))
    snapshot = Snapshot(tuple(nodes.values()), tuple(pending), 1000.0, tuple(running),
                        tuple(Queue(f"q{q}") for q in range(queues)))
    return SimpleNamespace(
        experiments=SimpleNamespace(items=experiments), status=lambda k: statuses[k],
        nodes=SimpleNamespace(items=nodes), last_snapshot=snapshot,
        last_result=CycleResult((), tuple(waiting)), usage=SimpleNamespace(ledger=None),
        pods_of=pods_of, queue_of={k: e.spec.queue for k, e in experiments.items()})


def median_s(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", type=int, default=5000)
    p.add_argument("--queues", type=int, default=8)
    p.add_argument("--runs", type=int, default=7)
    a = p.parse_args()
    w = world(a.experiments, a.queues)
    acct = Accountant()
    w.usage.ledger = acct.ledger

    def usage_step() -> None:
        acct.step(time.time(), rates(running_uses(w.pods_of, w.queue_of, w.nodes.items)))

    usage_step()
    usage_step()  # the ledger now has every key, as a running controller's does

    before = CollectorRegistry()
    auto = AutoscalerMetrics(before)
    auto.pending_demand(Resources(0, 0, 8))
    outage = SimpleNamespace(outages=0)
    informers = [SimpleNamespace(kind=SimpleNamespace(plural=k), relists=0, malformed=0)
                 for k in ("nodes", "pods", "experiments", "queues", "nodepools", "nodes")]
    before.register(CacheCollector(lambda: informers, outage))
    after = CollectorRegistry()
    SchedulerMetrics(after)
    after.register(SchedulerCollector(w))

    old = generate_latest(before)
    new = generate_latest(after)
    series = lambda text: sum(1 for line in text.decode().splitlines() if not line.startswith("#"))  # noqa: E731
    t_old = median_s(lambda: generate_latest(before), a.runs)
    t_new = median_s(lambda: generate_latest(after), a.runs)
    t_usage = median_s(usage_step, a.runs)
    t_cycle = median_s(lambda: schedule(w.last_snapshot), max(3, a.runs // 2))
    print(f"{a.experiments} experiments ({a.experiments // 2} running), {a.queues} queues, "
          f"median of {a.runs}")
    print(f"{'':34}{'ms':>10}{'series':>9}{'bytes':>9}")
    print(f"{'scrape, before (autoscaler+cache)':34}{t_old * 1e3:10.2f}{series(old):9}{len(old):9}")
    print(f"{'scrape, scheduler metrics':34}{t_new * 1e3:10.2f}{series(new):9}{len(new):9}")
    print(f"{'usage step (at most every 5 s)':34}{t_usage * 1e3:10.2f}")
    print(f"{'scheduling cycle (reference)':34}{t_cycle * 1e3:10.2f}")
    print(f"usage step / cycle: {t_usage / t_cycle:.3f}; scrape / cycle: {t_new / t_cycle:.3f}")


if __name__ == "__main__":
    main()
