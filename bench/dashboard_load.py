"""The dashboard on a big dev cluster: first paint of the experiments page, the time
from a status change to the browser's table, and the server's RSS.

A fresh dev cluster with --nodes kwok nodes and --experiments Experiment objects in
10 namespaces and 5 queues (no controller: their statuses are written here, the way
the controller writes them: queued ones with a position and a reason, running ones
with progress). Then `shipyard dashboard -c CTX --no-local` is started and, once it
holds every experiment, measured --repeat times (medians):

  first paint      Chromium (Debian's, through Playwright): first-contentful-paint of /
                   in a fresh tab; beside it, the server's time for the whole page (GET /)
  update           a status patch to the API server -> the row changed in the open page
                   (server-sent event, no reload); beside it, the same through the raw
                   event stream (no browser)
  RSS              of the dashboard process after the runs
  reference        `shipyard list -c CTX -o json` (the CLI reading the same experiments)

    python bench/dashboard_load.py --nodes 2500 --experiments 5000   # the issue's size
    python bench/dashboard_load.py --nodes 250 --experiments 500     # a quick run

Needs the binaries (`shipyard dev build`) and, for the browser figures, /usr/bin/chromium
(scripts/browser-deps.sh); without it those cells say so. Aims: first paint < 1 s, RSS < 300 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil

from shipyard.cli.flags import arg
from shipyard.dev import cluster as devcluster
from shipyard.dev import pools
from shipyard.kube.client import KubeClient
from shipyard.kube.errors import AlreadyExists
from shipyard.kube.objects import experiment_resource
from shipyard.kube.resources import EXPERIMENTS, NAMESPACES
from shipyard.spec import Experiment, Role

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.dashboard_harness import CHROMIUM, CHROMIUM_ARGS, dashboard  # noqa: E402

NAMESPACES_N, QUEUES = 10, ("nlp", "vision", "speech", "rl", "infra")
FIRST_PAINT_AIM_S, RSS_AIM_MIB = 1.0, 300.0
# The paint entry can land after `load`: wait for it (buffered), at most 5 s.
FCP_JS = """new Promise((done) => {
  new PerformanceObserver((list) => {
    const e = list.getEntriesByName("first-contentful-paint")[0];
    if (e) done(e.startTime);
  }).observe({type: "paint", buffered: true});
  setTimeout(() => done(null), 5000);
})"""


def _exp(i: int) -> dict[str, Any]:
    exp = Experiment(name=f"e{i:05d}", namespace=f"team-{i % NAMESPACES_N}", queue=QUEUES[i % len(QUEUES)],
                     priority=i % 7, roles=[Role(name="w", replicas=1 + i % 4, machine_type="gpu-a100",
                                                 command=["python", "train.py"])])
    return experiment_resource(exp)


def _status(i: int, n: int) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if i % 3 == 0:  # a third waiting, in order
        return {"phase": "Queued", "position": i // 3 + 1,
                "message": f"needs {1 + i % 4} x gpu-a100; 0 such nodes free; position {i // 3 + 1} in queue "
                           f"{QUEUES[i % len(QUEUES)]}"}
    if i % 3 == 1:
        return {"phase": "Running", "message": f"{1 + i % 4} pod(s) running", "startedAt": now,
                "progress": {"step": i % 1000, "totalSteps": 1000, "percent": (i % 1000) / 10,
                             "stepsPerSecond": 2.5, "eta": now, "updatedAt": now, "metrics": {"loss": 0.5}}}
    return {"phase": "Succeeded", "message": "every rank of w exited 0", "finishedAt": now}


async def populate(c: devcluster.DevCluster, n: int) -> None:
    async with KubeClient.from_kubeconfig(str(c.kubeconfig), c.context, max_connections=32) as k:
        for ns in range(NAMESPACES_N):
            with contextlib.suppress(AlreadyExists):
                await k.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": f"team-{ns}"}})
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                obj = _exp(i)
                await k.create(EXPERIMENTS, obj)
                await k.patch(EXPERIMENTS, obj["metadata"]["name"], {"status": _status(i, n)},
                              obj["metadata"]["namespace"], subresource="status")

        await asyncio.gather(*(one(i) for i in range(n)))


async def patch_message(c: devcluster.DevCluster, i: int, text: str) -> float:
    """Patch experiment i's reason; the time it was sent."""
    async with KubeClient.from_kubeconfig(str(c.kubeconfig), c.context) as k:
        obj = _exp(i)
        t = time.perf_counter()
        await k.patch(EXPERIMENTS, obj["metadata"]["name"], {"status": {"message": text}},
                      obj["metadata"]["namespace"], subresource="status")
        return t


def patch_now(c: devcluster.DevCluster, i: int, text: str) -> float:
    """patch_message from any thread (Playwright's sync API holds this one's event loop)."""
    with ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, patch_message(c, i, text)).result()


def stream_latency(c: devcluster.DevCluster, url: str, marker: str) -> float:
    """Through the raw event stream: patch, then read until the marker arrives."""
    with httpx.Client(timeout=60) as h, h.stream("GET", f"{url}/stream/experiments") as r:
        lines = r.iter_lines()
        next(line for line in lines if line.startswith("data:"))  # the first full table
        sent = patch_now(c, 0, marker)
        for line in lines:
            if line.startswith("data:") and marker in line:
                return time.perf_counter() - sent
    raise AssertionError("the stream ended without the change")


def browser_figures(c: devcluster.DevCluster, url: str, repeat: int) -> dict[str, Any]:
    if not os.access(CHROMIUM, os.X_OK):
        return {"note": f"{CHROMIUM} missing (scripts/browser-deps.sh)"}
    from playwright.sync_api import sync_playwright

    paints, updates = [], []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                   args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 900})
        for _ in range(repeat):
            page = ctx.new_page()
            page.goto(f"{url}/", wait_until="load")
            fcp = page.evaluate(FCP_JS)
            paints.append(fcp / 1000 if fcp is not None else float("nan"))
            page.close()
        page = ctx.new_page()
        page.goto(f"{url}/")
        page.wait_for_function("document.getElementById('live').classList.contains('on')")
        for k in range(repeat):
            marker = f"bench-browser-{k}-{time.time_ns()}"
            sent = patch_now(c, 0, marker)
            page.wait_for_function(f"document.body.innerText.includes('{marker}')", timeout=60_000)
            updates.append(time.perf_counter() - sent)
        ctx.close()
    return {"first_paint_s": statistics.median(paints), "update_s": statistics.median(updates)}


def server_page_s(url: str, repeat: int, path: str = "/") -> float:
    times = []
    with httpx.Client(timeout=60) as h:
        for _ in range(repeat):
            t = time.perf_counter()
            h.get(f"{url}{path}").raise_for_status()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def cli_list_s(c: devcluster.DevCluster, repeat: int) -> float:
    env = {**os.environ, "KUBECONFIG": str(c.kubeconfig)}
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "shipyard.cli", "list", "-c", c.context, "-o", "json"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def server_pid(port: int) -> int:
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            return conn.pid
    raise LookupError(f"nothing listens on {port}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example: python bench/dashboard_load.py --nodes 2500 --experiments 5000")
    p.add_argument("--nodes", type=arg(above=0, high=100_000, integer=True), default=2500)
    p.add_argument("--experiments", type=arg(above=0, high=100_000, integer=True), default=5000)
    p.add_argument("--repeat", type=arg(above=0, high=100, integer=True), default=5)
    p.add_argument("--name", default="dashbench")
    p.add_argument("--json", type=Path, help="also write the figures here")
    a = p.parse_args(argv)
    devcluster.down(a.name)
    c = devcluster.up(a.name, merge_kubeconfig=False)
    try:
        t0 = time.monotonic()
        c.add_pools([pools.parse_pool_arg(f"gpu-a100:{a.nodes}")], timeout=3600)
        subprocess.run([sys.executable, "-m", "shipyard.cli", "install", "--cluster", c.context,
                        "--replicas", "0"], env={**os.environ, "KUBECONFIG": str(c.kubeconfig)},
                       check=True, stdout=subprocess.DEVNULL)
        asyncio.run(populate(c, a.experiments))
        print(f"== {a.nodes} nodes, {a.experiments} experiments in {time.monotonic() - t0:.0f}s",
              file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as home:
            env = {"KUBECONFIG": str(c.kubeconfig), "SHIPYARD_HOME": home,
                   "SHIPYARD_CLUSTERS": str(Path(home) / "none.yaml")}
            t = time.perf_counter()
            with dashboard(env, "-c", c.context, "--no-local", timeout=600) as url:
                while httpx.get(f"{url}/healthz").json()["rows"] < a.experiments:
                    time.sleep(0.2)
                synced_s = time.perf_counter() - t
                pid = server_pid(int(url.rsplit(":", 1)[1]))
                page_s = server_page_s(url, a.repeat)
                others = {path: server_page_s(url, a.repeat, path) for path in ("/queues", "/clusters")}
                stream_s = statistics.median(stream_latency(c, url, f"bench-stream-{k}-{time.time_ns()}")
                                             for k in range(a.repeat))
                browser = browser_figures(c, url, a.repeat)
                rss = psutil.Process(pid).memory_info().rss / 2**20
        reference = cli_list_s(c, a.repeat)
    finally:
        devcluster.down(a.name)
    fig = {"nodes": a.nodes, "experiments": a.experiments, "repeat": a.repeat, "synced_s": synced_s,
           "server_page_s": page_s, "stream_update_s": stream_s, "rss_mib": rss,
           "queues_page_s": others["/queues"], "clusters_page_s": others["/clusters"],
           "cli_list_s": reference, **browser}
    fp = browser.get("first_paint_s")
    rows = [
        ("first paint of / (Chromium, median)", f"{fp:.3f} s" if fp is not None else browser.get("note"),
         f"aim < {FIRST_PAINT_AIM_S:g} s"),
        ("whole page GET / (server, median)", f"{page_s:.3f} s",
         f"shipyard list -c -o json: {reference:.3f} s ({page_s / reference:.2f}x)"),
        ("GET /queues, GET /clusters (every pod and node read, median)",
         f"{others['/queues']:.3f} s, {others['/clusters']:.3f} s", ""),
        ("status patch -> row in the page (median)",
         f"{browser['update_s']:.3f} s" if "update_s" in browser else browser.get("note"), ""),
        ("status patch -> event on the stream (median)", f"{stream_s:.3f} s", ""),
        ("dashboard RSS", f"{rss:.0f} MiB", f"aim < {RSS_AIM_MIB:g} MiB"),
        ("start -> every experiment held", f"{synced_s:.2f} s", ""),
    ]
    print(f"| {a.nodes} nodes, {a.experiments} experiments | measured | reference |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    if a.json:
        a.json.write_text(json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
