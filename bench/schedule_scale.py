"""How fast does shipyard place gangs on a real control plane with thousands of nodes?

One dev cluster of N 8-GPU kwok nodes (gpu-a100) per size, and the same burst of
experiments (1 to 512 pods each, one whole node per pod, N pods in all) placed
four ways, one after the other, in the same run:

  (a) raw ceiling   the experiments' pods created already bound to a node by a plain
                    asyncio client (no scheduling at all);
  (b) kube-scheduler the same pods created unbound, placed one by one by
                    kube-scheduler (client QPS as --scheduler-qps, default 50/100:
                    upstream's default configuration);
  (n) native gang   the same pods, each gang a PodGroup (scheduling.k8s.io/v1alpha2,
                    gang minCount = its size) its pods name in spec.schedulingGroup,
                    placed by kube-scheduler's own gang scheduling (the cluster runs
                    with GenericWorkload and GangScheduling on, for every way;
                    --no-native leaves the gates and this way out);
  (c) shipyard      the Experiments created; the shipyard controller (one replica,
                    no leader election) admits and places each gang whole and
                    creates its pods bound.

For each: pods/s (pods / time from the first submission to the last pod bound), the
time from submission to all Running (kwok marks bound pods Running), the gangs seen
partial (the fault suite's rule, src/shipyard/dev/invariants.py: a live pod of the
gang holds a node while another member has none) in samples every 0.1 s of the
bench's own watch of the API server, with the longest such window; of those, the
gangs seen partial while every member's pod existed (waiting on the scheduler, not on
pods still being written); and shipyard's ratios of pods/s to each.

    python bench/schedule_scale.py --sizes 2500[,5000,7500] [--scheduler-qps 50]

Needs the binaries (`shipyard dev build`); takes a few minutes per size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.api.vocab import LABEL_EXPERIMENT
from shipyard.cli.flags import arg, counts
from shipyard.dev import cluster as devcluster
from shipyard.dev import nativegang, pools
from shipyard.dev.invariants import live
from shipyard.kube.client import KubeClient, load_connection
from shipyard.kube.informer import Informer, cancel_all
from shipyard.kube.objects import experiment_resource
from shipyard.kube.resources import EXPERIMENTS, NAMESPACES, NODES, PODS, SERVICES
from shipyard.render.objects import render_pod, render_service
from shipyard.spec import Experiment, Role

MACHINE = "gpu-a100"
CONCURRENCY = 64  # in-flight requests, for the raw client and shipyard's writer alike
SAMPLE_S = 0.1  # how often the watch's view is sampled (progress and partial gangs)


def burst(total: int, seed: int) -> list[int]:
    """Gang sizes from 1 to 512 (powers of two, big ones rarer), summing to `total`."""
    rng = random.Random(seed)
    sizes: list[int] = []
    left = total
    while left > 0:
        size = min(2 ** min(int(rng.expovariate(0.45)), 9), left)
        sizes.append(size)
        left -= size
    return sizes


def experiments(sizes: list[int], namespace: str) -> list[Experiment]:
    return [
        Experiment(name=f"job-{i:04d}", namespace=namespace,
                   roles=[Role(name="worker", replicas=n, machine_type=MACHINE,
                               command=["python", "train.py"])])
        for i, n in enumerate(sizes)
    ]


@dataclass
class Outcome:
    pods: int
    placed_s: float
    running_s: float
    partial: int = 0  # gangs seen partial in at least one sample
    longest_partial_s: float = 0.0
    waiting: int = 0  # of those, seen partial with a pod for every member: waiting on the rest
    longest_waiting_s: float = 0.0

    @property
    def pods_per_s(self) -> float:
        return self.pods / self.placed_s


Seen = tuple[str, bool, bool, bool]  # (experiment, live, live and holding a node, Running)


def _seen(pod: dict[str, Any]) -> Seen:
    return ((pod["metadata"].get("labels") or {}).get(LABEL_EXPERIMENT, ""), live(pod),
            bool(pod["spec"].get("nodeName")) and live(pod),
            (pod.get("status") or {}).get("phase") == "Running")


class Windows:
    """Per gang, the longest run of samples it was seen in a state."""

    def __init__(self) -> None:
        self.since: dict[str, float] = {}
        self.longest: dict[str, float] = {}

    def sample(self, now: float, gangs: set[str]) -> None:
        for g in gangs:
            self.since.setdefault(g, now)
        for g in [g for g in self.since if g not in gangs]:
            self.close(g, now)

    def close(self, gang: str, now: float) -> None:
        start = self.since.pop(gang)
        self.longest[gang] = max(self.longest.get(gang, 0.0), now - start)

    def finish(self, now: float) -> tuple[int, float]:
        """(gangs seen, longest window), windows still open closed at `now`."""
        for g in list(self.since):
            self.close(g, now)
        return len(self.longest), max(self.longest.values(), default=0.0)


class PartialGangs:
    """invariants.Sampler's partial-gang rule over the watch: an experiment with some
    but not all of its members live on a node; "waiting" when every member has a live
    pod (the rest exist and wait for nodes or binding, rather than not being written
    yet). Counts kept per event; a window runs from the first sample that saw a gang so
    to the first that did not."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes
        self.present: dict[str, int] = {}
        self.holding: dict[str, int] = {}
        self.partial, self.waiting = Windows(), Windows()

    def change(self, _key: str, old: Seen | None, new: Seen | None) -> None:
        for seen, step in ((old, -1), (new, 1)):
            if seen is not None:
                gang, alive, holding, _ = seen
                self.present[gang] = self.present.get(gang, 0) + step * alive
                self.holding[gang] = self.holding.get(gang, 0) + step * holding

    def sample(self, now: float) -> None:
        partial = {g for g, n in self.holding.items() if 0 < n < self.sizes.get(g, 0)}
        self.partial.sample(now, partial)
        self.waiting.sample(now, {g for g in partial if self.present[g] >= self.sizes[g]})

    def finish(self, now: float) -> tuple[int, float, int, float]:
        return (*self.partial.finish(now), *self.waiting.finish(now))


class PodWatch:
    """Counts pods of one namespace that are bound and Running, from a watch."""

    def __init__(self, client: KubeClient, namespace: str, sizes: dict[str, int]) -> None:
        self.gangs = PartialGangs(sizes)
        self.informer: Informer[Seen] = Informer(client, PODS, _seen, self.gangs.change,
                                                 namespace=namespace)
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> PodWatch:
        self.tasks.append(asyncio.create_task(self.informer.run()))
        await self.informer.synced.wait()
        self.tasks.append(asyncio.create_task(self._sample()))  # from before the first submission
        return self

    async def __aexit__(self, *exc: object) -> None:
        await cancel_all(self.tasks)

    async def _sample(self) -> None:
        while True:
            self.gangs.sample(time.monotonic())
            await asyncio.sleep(SAMPLE_S)

    def counts(self) -> tuple[int, int, int]:
        items = self.informer.items.values()
        return len(items), sum(b for _, _, b, _ in items), sum(r for *_, r in items)

    async def until(self, total: int, start: float, label: str, timeout: float) -> Outcome:
        placed = 0.0
        while True:
            seen, bound, running = self.counts()
            now = time.monotonic()
            if bound >= total and not placed:
                placed = now - start
            if running >= total:
                return Outcome(total, placed, now - start, *self.gangs.finish(now))
            if now - start > timeout:
                raise TimeoutError(f"{label}: {bound}/{total} bound, {running} Running "
                                   f"after {timeout:.0f}s")
            print(f"\r   {label}: {seen} pods, {bound} bound, {running} Running ",
                  end="", file=sys.stderr, flush=True)
            await asyncio.sleep(SAMPLE_S)


async def bounded(calls: list[Any]) -> None:
    """Await every coroutine, at most CONCURRENCY at a time."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(call: Any) -> None:
        async with limit:
            await call

    await asyncio.gather(*(one(c) for c in calls))


async def create_all(client: KubeClient, kind: Any, bodies: list[dict[str, Any]]) -> None:
    await bounded([client.create(kind, b) for b in bodies])


async def fresh_namespace(client: KubeClient, name: str) -> None:
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                     "metadata": {"name": name}})


async def clear_pods(client: KubeClient, namespace: str, watch: PodWatch) -> None:
    """Free the nodes for the next way: every pod force-deleted (one call each: a
    collection delete of thousands outlasts any sane request timeout), and gone."""
    names = [key.split("/", 1)[1] for key in watch.informer.items]
    await bounded([client.delete(PODS, n, namespace, grace_s=0) for n in names])
    while watch.counts()[0]:
        await asyncio.sleep(0.2)


def gang_sizes(exps: list[Experiment]) -> dict[str, int]:
    return {e.name: sum(r.replicas for r in e.roles) for e in exps}


async def pods_way(client: KubeClient, exps: list[Experiment], nodes: list[str] | None,
                   label: str, timeout: float, native: bool = False) -> Outcome:
    """(a) with `nodes` (pods created bound, in order), (b) without (kube-scheduler),
    (n) `native`: each experiment's pods one PodGroup (kube-scheduler's gang)."""
    namespace = exps[0].namespace
    await fresh_namespace(client, namespace)
    bodies = [render_pod(e, role, i) for e in exps for role in e.roles for i in range(role.replicas)]
    if nodes is not None:
        for body, node in zip(bodies, nodes, strict=False):
            body["spec"]["nodeName"] = node
    groups = [nativegang.pod_group(e.name, namespace, n) for e, n in
              zip(exps, gang_sizes(exps).values(), strict=True)] if native else []
    if native:
        bodies = [nativegang.join(b, b["metadata"]["labels"][LABEL_EXPERIMENT]) for b in bodies]
    async with PodWatch(client, namespace, gang_sizes(exps)) as watch:
        start = time.monotonic()
        await create_all(client, SERVICES, [render_service(e) for e in exps])
        await create_all(client, nativegang.PODGROUPS, groups)
        await create_all(client, PODS, bodies)
        outcome = await watch.until(len(bodies), start, label, timeout)
        print(file=sys.stderr)
        await clear_pods(client, namespace, watch)
    return outcome


async def shipyard_way(client: KubeClient, exps: list[Experiment], timeout: float) -> Outcome:
    namespace = exps[0].namespace
    await fresh_namespace(client, namespace)
    total = sum(r.replicas for e in exps for r in e.roles)
    async with PodWatch(client, namespace, gang_sizes(exps)) as watch:
        start = time.monotonic()
        await create_all(client, EXPERIMENTS, [experiment_resource(e) for e in exps])
        outcome = await watch.until(total, start, "shipyard", timeout)
        print(file=sys.stderr)
    return outcome


def start_controller(c: devcluster.DevCluster, profile: Path | None = None,
                     extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """The controller as a subprocess; with `profile`, under py-spy (sampling, so the
    burst runs at nearly full speed), its collapsed stacks written there on stop.
    `extra`: more `controller run` options (bench/progress_load.py's receivers)."""
    env = {**os.environ, "KUBECONFIG": str(c.kubeconfig)}
    cli = [sys.executable, "-m", "shipyard.cli"]
    subprocess.run([*cli, "install", "--cluster", c.context, "--replicas", "0"], env=env,
                   check=True, timeout=300, stdout=subprocess.DEVNULL)
    log_path = c.state_dir / "logs" / "shipyard-controller.log"
    log_path.write_bytes(b"")
    # py-spy is a binary that pip puts beside this interpreter.
    spy = ([str(Path(sys.executable).with_name("py-spy")), "record", "--rate", "100", "--format", "raw",
            "--nonblocking", "--output", str(profile), "--"] if profile else [])
    # One replica: no lease, whose renewal a loaded machine can starve past its deadline,
    # stopping the controller mid-burst.
    proc = subprocess.Popen([*spy, *cli, "controller", "run", "--cluster", c.context,
                             "--no-leader-elect", *extra],
                            env=env, stdout=log_path.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while b"caches synced" not in log_path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"controller did not start; see {log_path}")
        time.sleep(0.2)
    return proc


def stop_controller(proc: subprocess.Popen[bytes], profiled: bool) -> None:
    # py-spy writes its profile on SIGINT (to the group, so the controller stops too).
    os.killpg(proc.pid, signal.SIGINT if profiled else signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def top_frames(collapsed: Path, limit: int = 25) -> str:
    """The functions where the controller spent its samples, from py-spy's collapsed
    stacks: inclusive (anywhere on the stack) and self (the frame running)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " " + f[f.rfind("/") + 1:].rstrip(")")
                  if "/" in f else f for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n
    lines = [f"{total} samples"]
    for title, table_ in (("inclusive", inclusive), ("self", own)):
        lines.append(f"-- {title}")
        for frame, n in sorted(table_.items(), key=lambda kv: -kv[1])[:limit]:
            lines.append(f"{100 * n / max(total, 1):5.1f}%  {frame}")
    return "\n".join(lines)


def report(label: str, o: Outcome) -> Outcome:
    """Each way's figures as soon as they are known: a later failure loses nothing."""
    print(f"   {label}: {o.pods} pods, {o.pods_per_s:.0f} pods/s, all bound {o.placed_s:.1f}s, "
          f"all Running {o.running_s:.1f}s, {o.partial} gangs seen partial (longest "
          f"{o.longest_partial_s:.1f}s), {o.waiting} with every pod created (longest "
          f"{o.longest_waiting_s:.1f}s)", file=sys.stderr, flush=True)
    return o


async def run_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    devcluster.down(args.name)
    tuning = devcluster.Tuning(scheduler_qps=args.scheduler_qps)
    print(f"== {n} x {MACHINE}: starting the cluster", file=sys.stderr, flush=True)
    c = devcluster.up(args.name, pool_specs=[pools.parse_pool_arg(f"{MACHINE}:{n}")],
                      tuning=tuning, merge_kubeconfig=False, nodes_timeout=3600,
                      feature_gates=nativegang.GATES if args.native else None)
    controller = None
    profile = args.profile / f"controller-{n}.txt" if args.profile else None
    try:
        sizes = burst(n, args.seed)
        async with KubeClient(load_connection(str(c.kubeconfig), c.context),
                              max_connections=CONCURRENCY) as client:
            nodes = sorted(o["metadata"]["name"] for o in (await client.list(
                NODES, label_selector=f"node.kubernetes.io/instance-type={MACHINE}"))[0])
            raw = report("raw", await pods_way(
                client, experiments(sizes, "bench-raw"), nodes, "raw",
                args.timeout)) if "raw" in args.ways else None
            kube = report("kube-scheduler", await pods_way(
                client, experiments(sizes, "bench-kube"), None, "kube-scheduler",
                args.timeout)) if "kube" in args.ways else None
            native = report("native gang", await pods_way(
                client, experiments(sizes, "bench-native"), None, "native gang", args.timeout,
                native=True)) if args.native and "native" in args.ways else None
            controller = start_controller(c, profile)
            ours = report("shipyard", await shipyard_way(
                client, experiments(sizes, "bench-shipyard"), args.timeout))
        return {"nodes": n, "experiments": len(sizes), "largest": max(sizes),
                "shipyard": vars(ours), **({"raw": vars(raw)} if raw else {}),
                **({"kube": vars(kube)} if kube else {}),
                **({"native": vars(native)} if native else {})}
    finally:
        if controller is not None:
            stop_controller(controller, profile is not None)
            if profile is not None and profile.exists():
                summary = top_frames(profile)
                profile.with_suffix(".top.txt").write_text(summary + "\n")
                print(f"controller profile ({profile}):\n{summary}", file=sys.stderr)
        devcluster.down(args.name)


WAYS = ("raw", "kube", "native", "shipyard")


def ways(text: str) -> set[str]:
    chosen = {w.strip() for w in text.split(",") if w.strip()}
    if unknown := chosen - set(WAYS):
        raise argparse.ArgumentTypeError(f"unknown ways {sorted(unknown)}; choose from {WAYS}")
    return chosen | {"shipyard"}


def table(rows: list[dict[str, Any]], qps: int) -> str:
    head = ["nodes = pods", "gangs", "way", "pods/s", "all bound s", "all Running s",
            "gangs seen partial", "longest partial s", "of them waiting (all pods created)",
            "longest waiting s", "shipyard / this (pods/s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ours = Outcome(**r["shipyard"])
        for key, label in (("raw", "(a) raw asyncio, pre-bound"),
                           ("kube", f"(b) kube-scheduler (QPS {qps})"),
                           ("native", f"(n) kube-scheduler native gang (QPS {qps})"),
                           ("shipyard", "(c) shipyard gangs")):
            if key not in r:
                continue
            o = Outcome(**r[key])
            lines.append(f"| {r['nodes']} | {r['experiments']} (max {r['largest']}) | {label} | "
                         f"{o.pods_per_s:.0f} | {o.placed_s:.1f} | {o.running_s:.1f} | "
                         f"{o.partial} | {o.longest_partial_s:.1f} | "
                         f"{o.waiting} | {o.longest_waiting_s:.1f} | "
                         f"{ours.pods_per_s / max(o.pods_per_s, 1e-9):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example: python bench/schedule_scale.py --sizes 2500,5000")
    p.add_argument("--sizes", type=counts(high=100_000), default="2500", help="comma-separated node counts")
    p.add_argument("--scheduler-qps", type=arg(integer=True, low=1, high=100_000), default=50,
                   help="kube-scheduler client QPS (burst 2x); 50 is upstream's default")
    p.add_argument("--native", action=argparse.BooleanOptionalAction, default=True,
                   help="also (n), kube-scheduler's native gang (its feature gates on)")
    p.add_argument("--seed", type=arg(integer=True, low=0, high=2**63 - 1), default=1)
    p.add_argument("--timeout", type=arg(above=0, high=86400), default=1800, help="seconds per way")
    p.add_argument("--name", default="bench-sched")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--ways", type=ways, default=",".join(WAYS),
                   help="which ways to run, comma-separated from " + ",".join(WAYS)
                   + " (shipyard always runs; ratios need raw)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="run the controller under py-spy; write its collapsed stacks and the "
                        "top functions to DIR/controller-N.txt and .top.txt")
    a = p.parse_args(argv)
    if a.profile:
        a.profile.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n in (int(s) for s in a.sizes.split(",")):
            rows.append(asyncio.run(run_size(n, a)))
    finally:
        if rows:
            print(table(rows, a.scheduler_qps))
            if a.json:
                a.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
