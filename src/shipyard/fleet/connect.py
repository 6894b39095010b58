"""Reaching the configured clusters: clients with short timeouts, and one error class
for "this cluster cannot be asked" whatever the cause (kubeconfig, network, server)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from shipyard.kube.api import ApiClient
from shipyard.kube.client import KubeClient, load_connection
from shipyard.kube.errors import Transient
from shipyard.spec.clusters import ClusterRef

T = TypeVar("T")
# A reachable API server answers a GET in milliseconds; a dead or hung one must not
# hold up a launch that could go elsewhere.
DEFAULT_TIMEOUT_S = 5.0

Work = Callable[[ApiClient], Awaitable[T]]
# How a cluster's client is made (the default: from its kubeconfig context); tests give
# clients of their own (tests/middle/fake_api.py).
Connect = Callable[[ClusterRef, float], ApiClient]


class Unreachable(Exception):
    """The cluster could not be asked: no such context, no connection, no answer."""

    def __init__(self, cluster: str, why: str) -> None:
        super().__init__(f"cluster {cluster} is unreachable: {why}")
        self.cluster = cluster
        self.why = why


class Clusters:
    """Clients to the configured clusters, each opened on first use and kept for the
    whole operation (a move polls its source until it is held), closed together."""

    def __init__(self, refs: Iterable[ClusterRef], timeout_s: float = DEFAULT_TIMEOUT_S,
                 connect: Connect | None = None) -> None:
        self.refs = {r.name: r for r in refs}
        self.timeout_s = timeout_s
        self.connect = connect or from_kubeconfig
        self.clients: dict[str, ApiClient] = {}

    async def __aenter__(self) -> Clusters:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(c.close() for c in self.clients.values()))
        self.clients.clear()

    def client(self, name: str) -> ApiClient:
        if name not in self.clients:
            self.clients[name] = self.connect(self.refs[name], self.timeout_s)
        return self.clients[name]

    async def ask(self, name: str, work: Work[T], timeout_s: float | None = None) -> T:
        """`work` against cluster `name` within the timeout; no answer (a lost
        connection, a timeout, a 5xx) becomes Unreachable. Other API errors pass."""
        timeout = timeout_s or self.timeout_s
        try:
            return await asyncio.wait_for(work(self.client(name)), timeout)
        except TimeoutError:
            raise Unreachable(name, f"no answer within {timeout:g}s") from None
        except Transient as exc:
            raise Unreachable(name, exc.message or exc.reason) from None

    async def ask_all(self, work: Work[Any], names: Sequence[str] | None = None,
                      timeout_s: float | None = None) -> dict[str, Any]:
        """`work` on every cluster at once: name -> its result, or the exception
        (Unreachable, an ApiError) it raised."""
        names = list(self.refs) if names is None else list(names)
        results = await asyncio.gather(*(self.ask(n, work, timeout_s) for n in names),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # KeyboardInterrupt, cancellation: not a cluster's fault
        return dict(zip(names, results, strict=True))


def from_kubeconfig(ref: ClusterRef, timeout_s: float) -> ApiClient:
    try:
        # $KUBECONFIG as it is now (the kubernetes package reads it once, at import).
        conn = load_connection(os.environ.get("KUBECONFIG"), ref.context)
    except Exception as exc:  # kubernetes' loader raises ConfigException, OSError...
        raise Unreachable(ref.name, f"kubeconfig context {ref.context!r}: {exc}") from None
    return KubeClient(conn, max_connections=16, timeout_s=timeout_s)


async def ask(ref: ClusterRef, work: Work[T], timeout_s: float = DEFAULT_TIMEOUT_S) -> T:
    """One question to one cluster, on a client of its own."""
    async with Clusters([ref], timeout_s) as clusters:
        return await clusters.ask(ref.name, work)


async def ask_all(refs: Sequence[ClusterRef], work: Work[Any],
                  timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """One question to every cluster at once, each on a client of its own."""
    async with Clusters(refs, timeout_s) as clusters:
        return await clusters.ask_all(work)
