"""Progress reports under load: N simulated ranks report to the controller's receiver
every R seconds, over HTTP and over gRPC in the same run, against a real dev cluster.

The controller runs as `shipyard controller run --progress-port P --progress-grpc-port G`
(the real process, its real API server). The experiments are held (annotation
shipyard.dev/hold), so none is admitted and no pod runs; the bench creates each
one's progress Secret as the controller does for a gang. Phases, one after the other:
idle (the controller's own cost), HTTP, gRPC. Each phase prints reports/s handled,
client-side p50/p99 latency, the controller's CPU (share of one core, from its
process times) and RSS, and the status.progress writes per experiment per minute, as
counted by a watch on the API server (not by the controller).

    python bench/progress_load.py                          # 5,000 ranks every 10 s
    python bench/progress_load.py --ranks 500 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from shipyard.controller.progress import GRPC_SERVICE
from shipyard.dev import cluster as devcluster
from shipyard.kube.client import KubeClient, load_connection
from shipyard.kube.objects import experiment_resource
from shipyard.kube.resources import EXPERIMENTS, NAMESPACES, SECRETS
from shipyard.render.runtime import render_progress_secret
from shipyard.spec import Experiment, Resources, Role

sys.path.insert(0, str(Path(__file__).parent))
from schedule_scale import start_controller

NAMESPACE = "bench-progress"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the simulated ranks (a separate process, so they do not share the bench's GIL) ----

@dataclass
class Rank:
    experiment: str
    rank: int
    token: str


async def _http_load(port: int, ranks: list[Rank], every: float, duration: float,
                     connections: int) -> dict[str, Any]:
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    codes: dict[int, int] = {}

    async def send(r: Rank, step: int) -> None:
        body = json.dumps({"rank": str(r.rank), "pod": f"{r.experiment}-worker-{r.rank}", "step": step,
                           "total_steps": 100_000, "metrics": {"loss": 1 / (step + 1)}}).encode()
        request = (f"POST /v1/progress/{NAMESPACE}/{r.experiment} HTTP/1.1\r\nHost: x\r\n"
                   f"Content-Type: application/json\r\nAuthorization: Bearer {r.token}\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        reader, writer = await pool.get()
        began = time.perf_counter()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            latencies.append(time.perf_counter() - began)
            code = int(head.split(b" ", 2)[1])
            codes[code] = codes.get(code, 0) + 1
        finally:
            pool.put_nowait((reader, writer))

    return await _drive(ranks, every, duration, send, latencies, codes)


async def _grpc_load(port: int, ranks: list[Rank], every: float, duration: float,
                     connections: int) -> dict[str, Any]:
    import grpc

    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(connections)]
    calls = [c.unary_unary(f"/{GRPC_SERVICE}/Report") for c in channels]
    latencies: list[float] = []
    codes: dict[int, int] = {}

    async def send(r: Rank, step: int) -> None:
        body = json.dumps({"namespace": NAMESPACE, "experiment": r.experiment, "rank": str(r.rank),
                           "pod": f"{r.experiment}-worker-{r.rank}", "step": step,
                           "total_steps": 100_000, "metrics": {"loss": 1 / (step + 1)}}).encode()
        began = time.perf_counter()
        try:
            await calls[r.rank % len(calls)](body, metadata=(("authorization", f"Bearer {r.token}"),))
            code = 204
        except grpc.aio.AioRpcError as exc:
            code = 403 if exc.code() == grpc.StatusCode.PERMISSION_DENIED else 500
        latencies.append(time.perf_counter() - began)
        codes[code] = codes.get(code, 0) + 1

    try:
        return await _drive(ranks, every, duration, send, latencies, codes)
    finally:
        for c in channels:
            await c.close()


async def _drive(ranks: list[Rank], every: float, duration: float, send: Any,
                 latencies: list[float], codes: dict[int, int]) -> dict[str, Any]:
    """Each rank reports every `every` s, the ranks spread evenly over the interval."""
    began = time.monotonic()
    end = began + duration

    async def rank_loop(i: int, r: Rank) -> None:
        step = 0
        at = began + every * i / len(ranks)
        while at < end:
            await asyncio.sleep(max(at - time.monotonic(), 0))
            step += random.randint(8, 12)  # about one step a second, some faster
            await send(r, step)
            at += every

    await asyncio.gather(*(rank_loop(i, r) for i, r in enumerate(ranks)))
    wall = time.monotonic() - began
    latencies.sort()
    n = len(latencies)
    return {"reports": n, "per_s": n / wall, "codes": codes,
            "p50_ms": 1000 * latencies[n // 2] if n else None,
            "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))] if n else None}


def _load_process(kind: str, port: int, ranks: list[Rank], every: float, duration: float,
                  connections: int, out: Any) -> None:
    runner = _http_load if kind == "http" else _grpc_load
    out.put(asyncio.run(runner(port, ranks, every, duration, connections)))


# -- the bench ----------------------------------------------------------------------------


async def setup(client: KubeClient, experiments: int, per_experiment: int) -> list[Rank]:
    from shipyard.kube.errors import AlreadyExists

    with contextlib.suppress(AlreadyExists):
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": NAMESPACE}})
    ranks: list[Rank] = []
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        exp = Experiment(name=f"load-{i}", namespace=NAMESPACE, roles=[Role(
            name="worker", replicas=per_experiment, machine_type="cpu-small", command=["python", "t.py"],
            resources=Resources(cpu="100m", memory="64Mi"))])
        body = experiment_resource(exp)
        body["metadata"].setdefault("annotations", {})["shipyard.dev/hold"] = "true"
        async with sem:
            obj = await client.create(EXPERIMENTS, body)
            token = secrets.token_urlsafe(32)
            secret = render_progress_secret(exp, token)
            secret["metadata"]["ownerReferences"] = [{
                "apiVersion": EXPERIMENTS.api_version, "kind": "Experiment", "name": exp.name,
                "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
            await client.create(SECRETS, secret)
        ranks.extend(Rank(exp.name, r, token) for r in range(per_experiment))

    await asyncio.gather(*(one(i) for i in range(experiments)))
    return sorted(ranks, key=lambda r: (r.rank, r.experiment))  # interleave experiments


class WriteCounter:
    """status.progress writes per experiment, as the API server's watch shows them."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}
        self.writes: dict[str, int] = {}

    async def run(self, client: KubeClient) -> None:
        items, rv = await client.list(EXPERIMENTS, NAMESPACE)
        for o in items:
            self.seen[o["metadata"]["name"]] = (o.get("status") or {}).get("progress")
        while True:
            async for kind, obj in client.watch(EXPERIMENTS, rv, NAMESPACE):
                rv = obj["metadata"].get("resourceVersion", rv)
                if kind not in ("ADDED", "MODIFIED"):
                    continue
                name = obj["metadata"]["name"]
                progress = (obj.get("status") or {}).get("progress")
                if progress != self.seen.get(name):
                    self.writes[name] = self.writes.get(name, 0) + 1
                self.seen[name] = progress

    def take(self) -> dict[str, int]:
        out, self.writes = self.writes, {}
        return out


async def phase(kind: str, args: argparse.Namespace, ranks: list[Rank], port: int,
                proc: psutil.Process, counter: WriteCounter, experiments: int) -> dict[str, Any]:
    counter.take()
    cpu0, t0 = proc.cpu_times(), time.monotonic()
    if kind == "idle":
        await asyncio.sleep(args.duration)
        load: dict[str, Any] = {"reports": 0, "per_s": 0.0, "p50_ms": None, "p99_ms": None, "codes": {}}
    else:
        out: Any = multiprocessing.get_context("spawn").Queue()
        p = multiprocessing.get_context("spawn").Process(
            target=_load_process, args=(kind, port, ranks, args.every, args.duration, args.connections, out))
        p.start()
        while p.is_alive() and out.empty():
            await asyncio.sleep(0.5)
        load = out.get(timeout=30)
        p.join(30)
    await asyncio.sleep(args.interval + 1)  # the last interval's writes land
    cpu1, t1 = proc.cpu_times(), time.monotonic()
    busy = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    writes = counter.take()
    minutes = (t1 - t0) / 60
    per_exp = [writes.get(f"load-{i}", 0) / minutes for i in range(experiments)]
    return {"phase": kind, **load, "cpu_core": busy / (t1 - t0), "rss_mib": proc.memory_info().rss / 2**20,
            "writes_per_exp_min": statistics.mean(per_exp), "writes_max_per_exp_min": max(per_exp),
            "wall_s": t1 - t0}


def _fmt(v: Any, spec: str) -> str:
    return format("-", f">{spec.split('.')[0]}") if v is None else format(v, spec)


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    experiments = max(1, args.ranks // args.per_experiment)
    print(f"== dev cluster {args.name}; {experiments} experiments x {args.per_experiment} ranks, "
          f"each reporting every {args.every:g}s; {args.duration:g}s per phase", file=sys.stderr)
    c = devcluster.up(args.name, pool_specs=[], merge_kubeconfig=False)
    subprocess.run([sys.executable, "-m", "shipyard.cli", "install", "--cluster", c.context, "--replicas", "0"],
                   env={**os.environ, "KUBECONFIG": str(c.kubeconfig)}, check=True, timeout=300,
                   stdout=subprocess.DEVNULL)
    http_port, grpc_port = _free_port(), _free_port()
    controller = None
    try:
        async with KubeClient(load_connection(str(c.kubeconfig), c.context)) as client:
            ranks = await setup(client, experiments, args.per_experiment)
            # bench/schedule_scale.py's: install, start, wait for the caches.
            controller = start_controller(c, extra=(
                "--progress-port", str(http_port), "--progress-grpc-port", str(grpc_port),
                "--progress-interval", str(args.interval)))
            proc = psutil.Process(controller.pid)
            counter = WriteCounter()
            watch = asyncio.create_task(counter.run(client))
            await asyncio.sleep(3)  # the watch is listening
            results = []
            for kind in ("idle", "http", "grpc"):
                print(f"== {kind}", file=sys.stderr, flush=True)
                port = http_port if kind == "http" else grpc_port
                results.append(await phase(kind, args, ranks, port, proc, counter, experiments))
            watch.cancel()
        return results
    finally:
        if controller is not None:
            controller.terminate()
            controller.wait(30)
        if not args.keep:
            devcluster.down(args.name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, default=5000)
    p.add_argument("--per-experiment", type=int, default=100, help="ranks per experiment")
    p.add_argument("--every", type=float, default=10.0, help="seconds between a rank's reports")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of each phase")
    p.add_argument("--interval", type=float, default=10.0,
                   help="the controller's --progress-interval (status writes)")
    p.add_argument("--connections", type=int, default=1000,
                   help="client connections (HTTP) / channels (gRPC) the ranks share")
    p.add_argument("--name", default="bench-progress", help="dev cluster name")
    p.add_argument("--keep", action="store_true", help="leave the dev cluster running")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    results = asyncio.run(bench(args))
    print(f"{args.ranks} ranks, every {args.every:g}s, {args.connections} connections; "
          f"status writes at most 1 per {args.interval:g}s per experiment "
          f"(= {60 / args.interval:g}/min)")
    print(f"{'phase':6} {'reports/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU core':>9} {'RSS MiB':>8} "
          f"{'writes/exp/min':>15} {'max':>5}  codes")
    for r in results:
        print(f"{r['phase']:6} {r['per_s']:10.1f} {_fmt(r['p50_ms'], '8.2f')} {_fmt(r['p99_ms'], '8.2f')} "
              f"{r['cpu_core']:9.3f} {r['rss_mib']:8.1f} {r['writes_per_exp_min']:15.2f} "
              f"{r['writes_max_per_exp_min']:5.1f}  {r['codes']}")
    idle = results[0]["cpu_core"]
    for r in results[1:]:
        print(f"{r['phase']}: {r['cpu_core'] - idle:.3f} of a core above idle")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
