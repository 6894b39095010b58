"""The API client under a burst larger than its connection pool: requests queue for a
free connection and succeed; only a server that does not accept the connection (or
does not answer within the total timeout) is an error. aiohttp's `connect` timeout
also counts the queueing, which once failed a 200-experiment launch against a healthy
but busy API server with "Connection timeout to host"."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from shipyard.kube.client import Connection, KubeClient
from shipyard.kube.errors import Transient


async def _slow_server(delay_s: float) -> tuple[web.AppRunner, str]:
    async def answer(request: web.Request) -> web.Response:
        await asyncio.sleep(delay_s)
        return web.json_response({"kind": "Status", "path": request.path})

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def test_a_burst_beyond_the_pool_waits_for_connections_instead_of_failing() -> None:
    async def burst() -> list[object]:
        runner, host = await _slow_server(delay_s=0.3)
        try:
            # One connection, 4 requests of 0.3 s each: the last waits ~0.9 s for the
            # connection, far past the 0.2 s allowed to open one, well inside the total.
            async with KubeClient(Connection(host, ssl_context=False), max_connections=1,
                                  timeout_s=10, connect_timeout_s=0.2) as client:
                return await asyncio.gather(*(client.request("GET", f"/r{i}") for i in range(4)))
        finally:
            await runner.cleanup()

    answers = asyncio.run(burst())
    assert [a["path"] for a in answers] == ["/r0", "/r1", "/r2", "/r3"]  # type: ignore[index]


def test_a_server_that_never_answers_still_fails_within_the_total_timeout() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never reads or answers
    host = f"http://127.0.0.1:{listener.getsockname()[1]}"

    async def ask() -> None:
        async with KubeClient(Connection(host, ssl_context=False), max_connections=1,
                              timeout_s=0.5, connect_timeout_s=0.2) as client:
            await client.request("GET", "/api/v1/namespaces")

    try:
        with pytest.raises(Transient):
            asyncio.run(ask())
    finally:
        listener.close()
