"""Which HTTP client should the API client use? CPU per write against a real API server.

Under a burst the controller's own CPU goes mostly to writing (py-spy: about half of
it in the HTTP client creating pods), on a machine whose cores the API server and
etcd need too. This creates the same objects (ConfigMaps the size of a rendered pod,
so no controller or kwok reacts to them) through httpx (what kube/client.py uses)
and aiohttp, both with a pool of `--concurrency` TLS connections and the same client
certificate, in interleaved rounds, and prints for each the median over rounds of
the client process's CPU time per request and requests/s, and the ratio to httpx.

Runs against a dev cluster: `--cluster NAME` (one `shipyard dev up` started), or
else it starts one with no nodes and removes it after.

    python bench/http_client.py [--cluster NAME] [--requests 2000] [--rounds 5] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson

from shipyard.cli.flags import arg
from shipyard.dev import cluster as devcluster
from shipyard.kube.client import Connection, load_connection

PAYLOAD = "x" * 2400  # about a rendered pod's size
Create = Callable[[str, bytes], Awaitable[Any]]


def headers(conn: Connection) -> dict[str, str]:
    out = {"Accept": "application/json", "Content-Type": "application/json"}
    if conn.token:
        out["Authorization"] = f"Bearer {conn.token}"
    return out


async def with_httpx(conn: Connection, concurrency: int, work: Callable[[Create], Awaitable[None]]) -> None:
    async with httpx.AsyncClient(base_url=conn.host, verify=conn.ssl_context, headers=headers(conn),
                                 limits=httpx.Limits(max_connections=concurrency,
                                                     max_keepalive_connections=concurrency)) as http:
        async def create(path: str, body: bytes) -> Any:
            r = await http.post(path, content=body)
            r.raise_for_status()
            return orjson.loads(r.content)
        await work(create)


async def with_aiohttp(conn: Connection, concurrency: int, work: Callable[[Create], Awaitable[None]]) -> None:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency, ssl=conn.ssl_context)
    async with aiohttp.ClientSession(base_url=conn.host, connector=connector,
                                     headers=headers(conn)) as http:
        async def create(path: str, body: bytes) -> Any:
            async with http.post(path, data=body) as r:
                r.raise_for_status()
                return orjson.loads(await r.read())
        await work(create)


CLIENTS = {"httpx": with_httpx, "aiohttp": with_aiohttp}


async def one_round(client: str, conn: Connection, namespace: str, n: int,
                    concurrency: int) -> tuple[float, float]:
    """(client CPU seconds per request, requests/s) for n creates."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    tag = uuid.uuid4().hex[:6]
    timing: dict[str, float] = {}

    async def work(create: Create) -> None:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            body = orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": f"{client}-{tag}-{i}", "namespace": namespace,
                                              "labels": {"bench": "http-client"}},
                                 "data": {"payload": PAYLOAD}})
            async with sem:
                await create(path, body)

        await create(path, orjson.dumps({"metadata": {"name": f"{client}-{tag}-warm"}}))
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        timing["cpu"], timing["wall"] = time.process_time() - cpu, time.perf_counter() - wall

    await CLIENTS[client](conn, concurrency, work)
    return timing["cpu"] / n, n / timing["wall"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cluster", help="a running dev cluster (else one is started and removed)")
    ap.add_argument("--requests", type=arg(integer=True, low=10, high=10**6), default=2000)
    ap.add_argument("--rounds", type=arg(integer=True, low=1, high=100), default=5)
    ap.add_argument("--concurrency", type=arg(integer=True, low=1, high=1024), default=64)
    a = ap.parse_args()
    name = a.cluster or "bench-http"
    started = a.cluster is None
    if started:
        print(f"starting dev cluster {name} (no nodes)", file=sys.stderr, flush=True)
        c = devcluster.up(name, pool_specs=[], merge_kubeconfig=False)
    else:
        c = next((c for c in devcluster.list_clusters() if c.name == name), None)
        if c is None:
            sys.exit(f"no dev cluster named {name!r}; `shipyard dev list` shows them")
    namespace = f"bench-http-{uuid.uuid4().hex[:6]}"
    raw = c.raw_client()
    raw.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    try:
        conn = load_connection(str(c.kubeconfig), c.context)
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in CLIENTS}
        for r in range(a.rounds):
            for client in CLIENTS:  # interleaved: a noisy moment hits both
                runs[client].append(asyncio.run(one_round(client, conn, namespace, a.requests,
                                                          a.concurrency)))
            print(f"round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
    finally:
        raw.request("DELETE", f"/api/v1/namespaces/{namespace}")
        if started:
            devcluster.down(name)
    base = statistics.median(cpu for cpu, _ in runs["httpx"])
    print(f"{a.requests} ConfigMap creates x {a.rounds} rounds, {a.concurrency} connections; medians")
    print(f"{'client':10} {'CPU us/request':>15} {'requests/s':>11} {'CPU vs httpx':>13}")
    for client, rows in runs.items():
        cpu = statistics.median(c for c, _ in rows)
        rate = statistics.median(r for _, r in rows)
        print(f"{client:10} {cpu * 1e6:15.0f} {rate:11.0f} {cpu / base:12.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
