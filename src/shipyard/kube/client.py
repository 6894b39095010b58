"""A small async client for the Kubernetes REST API: JSON in, plain dicts out.

Kubeconfig handling (contexts, certificates, tokens, exec plugins) is the official
`kubernetes` package's loader; the transport is one pooled aiohttp session. Plain
dicts rather than generated models keep watch caches cheap at tens of thousands of
objects. Every error answer becomes one of the classes in kube/errors.py. JSON is
orjson's: 2.2x faster than the standard library's on the API server's pods and nodes
(bench/json_decode.py), and every watch event and response goes through it.
"""

from __future__ import annotations

import asyncio
import copy
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from shipyard.kube.api import ApiClient, Objects
from shipyard.kube.errors import ApiError, Transient, error_for
from shipyard.kube.resources import Kind

FIELD_MANAGER = "shipyard"
PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}


@dataclass(frozen=True, slots=True)
class Connection:
    host: str
    ssl_context: ssl.SSLContext | bool
    token: str | None = None
    context: str = ""


def load_connection(kubeconfig: str | None = None, context: str | None = None, *,
                    in_cluster: bool = False) -> Connection:
    """Resolve a kubeconfig context (or the pod's service account) to an address and
    credentials."""
    from kubernetes import client, config

    conf = client.Configuration()
    if in_cluster:
        config.load_incluster_config(client_configuration=conf)
    else:
        config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=conf, persist_config=False
        )
    if conf.verify_ssl:
        ctx = ssl.create_default_context(cafile=conf.ssl_ca_cert)
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if conf.cert_file:
        ctx.load_cert_chain(conf.cert_file, conf.key_file)
    # A kubeconfig token lands in api_key["authorization"]; the in-cluster loader puts the
    # service account's in api_key["BearerToken"] as "bearer <token>".
    keys = conf.api_key or {}
    token = keys.get("authorization") or keys.get("BearerToken")
    if token and token[:7].lower() == "bearer ":
        token = token[7:]
    return Connection(conf.host, ctx, token, context or "")


class _Transport:
    """One pooled aiohttp session, opened on first use (aiohttp wants a running loop)
    and shared by a client and its fenced copies."""

    def __init__(self, conn: Connection, max_connections: int, timeout_s: float,
                 connect_timeout_s: float) -> None:
        self.headers = {"Accept": "application/json", "User-Agent": "shipyard"}
        if conn.token:
            self.headers["Authorization"] = f"Bearer {conn.token}"
        self.base = conn.host.rstrip("/")
        self.ssl = conn.ssl_context
        self.max_connections = max_connections
        # sock_connect, not connect: aiohttp's `connect` also counts the wait for a free
        # pooled connection, so a burst larger than the pool failed as "Connection
        # timeout" against a healthy server. The wait is bounded by `total`.
        self.connect_timeout_s = connect_timeout_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self.session: aiohttp.ClientSession | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        # A session belongs to the loop it was opened in: a client used again under a new
        # asyncio.run (the CLI does) opens another.
        if self.session is None or self.session.closed or self.loop is not loop:
            self.loop = loop
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections, ssl=self.ssl),
                headers=self.headers, timeout=self.timeout, raise_for_status=False)
        return self.session

    async def close(self) -> None:
        session, self.session = self.session, None
        if session is not None and not session.closed and self.loop is asyncio.get_running_loop():
            await session.close()


class KubeClient:
    """The transport is aiohttp: under a burst of writes it spends 0.08x the CPU per
    request httpx did (bench/http_client.py), CPU the API server shares on one machine."""

    def __init__(self, conn: Connection, max_connections: int = 64, timeout_s: float = 30.0,
                 connect_timeout_s: float = 10.0) -> None:
        self.conn = conn
        self.write_fence: Callable[[], None] | None = None
        self._transport = _Transport(conn, max_connections, timeout_s, connect_timeout_s)

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None, context: str | None = None,
                        **kwargs: Any) -> KubeClient:
        return cls(load_connection(kubeconfig, context), **kwargs)

    def fenced(self, check: Callable[[], None]) -> KubeClient:
        """The same connection, with `check()` called before every request that writes
        (it raises to refuse): how a controller stops writing the moment it cannot
        prove it still leads. Reads and watches are never fenced."""
        clone = copy.copy(self)
        clone.write_fence = check
        return clone

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                      body: Any = None, content_type: str = "application/json") -> Any:
        if self.write_fence is not None and method != "GET":
            self.write_fence()
        content = None
        headers = {}
        if body is not None:
            content = body if isinstance(body, bytes | str) else _dumps(body)
            headers["Content-Type"] = content_type
        t = self._transport
        try:
            async with t.get().request(method, t.base + path, params=_query(params), data=content,
                                       headers=headers) as response:
                data = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transient(exc) from exc
        if response.status >= 400:
            try:
                error = orjson.loads(data)
            except ValueError:
                error = {"message": data[:500].decode(errors="replace")}
            raise error_for(response.status, error)
        return orjson.loads(data) if data else None

    async def text(self, path: str, params: dict[str, Any] | None = None) -> str:
        """A GET whose answer is text (a pod's log)."""
        t = self._transport
        try:
            async with t.get().get(t.base + path, params=_query(params)) as response:
                data = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transient(exc) from exc
        if response.status >= 400:
            raise error_for(response.status, _json_or_none(data.decode(errors="replace")))
        return data.decode(errors="replace")

    async def lines(self, path: str, params: dict[str, Any] | None = None, *,
                    read_timeout_s: float | None = None) -> AsyncIterator[bytes]:
        """A streamed GET's lines (a watch, a followed log), without their newlines, until
        the server ends it; no total timeout, and `read_timeout_s` between bytes (None:
        wait for ever, as a quiet rank's log may)."""
        t = self._transport
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=t.connect_timeout_s,
                                        sock_read=read_timeout_s)
        try:
            async with t.get().get(t.base + path, params=_query(params),
                                   timeout=timeout) as response:
                if response.status >= 400:
                    body = (await response.read()).decode(errors="replace")
                    raise error_for(response.status, _json_or_none(body))
                # Split by hand: aiohttp's own line reader refuses a line over its buffer,
                # and one object in a watch can be larger than that.
                pending = bytearray()
                async for chunk in response.content.iter_any():
                    start = 0
                    while (end := chunk.find(b"\n", start)) >= 0:
                        pending += chunk[start:end]
                        start = end + 1
                        if pending:
                            yield bytes(pending)
                            pending.clear()
                    pending += chunk[start:]
                if pending:
                    yield bytes(pending)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transient(exc) from exc

    # -- verbs ----------------------------------------------------------------

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any]:
        return await self.request("GET", kind.path(namespace, name))

    async def list(self, kind: Kind, namespace: str | None = None, *, label_selector: str | None = None,
                   field_selector: str | None = None, page_size: int = 5000) -> tuple[Objects, str]:
        """Every object (following `continue`), and the list's resourceVersion to watch from."""
        items: Objects = []
        params: dict[str, Any] = {"limit": page_size}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        while True:
            page = await self.request("GET", kind.path(namespace), params=params)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return items, meta.get("resourceVersion", "")
            params["continue"] = meta["continue"]

    async def watch(self, kind: Kind, resource_version: str, namespace: str | None = None, *,
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_s: int = 300) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(event type, object) from `resource_version` on, bookmarks included, until the
        server closes the watch. A too-old version raises Gone: list again."""
        params: dict[str, Any] = {
            "watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_s,
        }
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        async for line in self.lines(kind.path(namespace), params, read_timeout_s=timeout_s + 30):
            event = orjson.loads(line)
            if event.get("type") == "ERROR":
                status = event.get("object") or {}
                raise error_for(int(status.get("code", 500)), status)
            yield event["type"], event["object"]

    async def create(self, kind: Kind, body: dict[str, Any],
                     namespace: str | None = None) -> dict[str, Any]:
        ns = namespace or (body.get("metadata") or {}).get("namespace")
        return await self.request("POST", kind.path(ns), body=body)

    async def bind(self, pod: str, namespace: str, node: str) -> None:
        """Place an existing pod on a node through the binding subresource."""
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": pod, "namespace": namespace},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        await self.request("POST", f"/api/v1/namespaces/{namespace}/pods/{pod}/binding", body=body)

    async def patch(self, kind: Kind, name: str, body: Any, namespace: str | None = None, *,
                    subresource: str | None = None, patch_type: str = "merge") -> dict[str, Any]:
        return await self.request("PATCH", kind.path(namespace, name, subresource), body=body,
                                  content_type=PATCH_TYPES[patch_type])

    async def replace(self, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
        """PUT: fails with Conflict if body's resourceVersion is no longer current."""
        meta = body["metadata"]
        return await self.request("PUT", kind.path(meta.get("namespace"), meta["name"]), body=body)

    async def apply(self, kind: Kind, body: dict[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Server-side apply: create or update to exactly `body`'s fields."""
        meta = body["metadata"]
        params = {"fieldManager": FIELD_MANAGER, "force": "true" if force else "false"}
        return await self.request("PATCH", kind.path(meta.get("namespace"), meta["name"]),
                                  params=params, body=_dumps(body),
                                  content_type=PATCH_TYPES["apply"])

    async def delete(self, kind: Kind, name: str, namespace: str | None = None, *,
                     propagation: str = "Background", grace_s: int | None = None,
                     missing_ok: bool = True) -> None:
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1",
                                "propagationPolicy": propagation}
        if grace_s is not None:
            body["gracePeriodSeconds"] = grace_s
        try:
            await self.request("DELETE", kind.path(namespace, name), body=body)
        except ApiError as exc:
            if not (missing_ok and exc.status == 404):
                raise

    async def delete_collection(self, kind: Kind, namespace: str, label_selector: str) -> None:
        await self.request("DELETE", kind.path(namespace),
                           params={"labelSelector": label_selector},
                           body={"kind": "DeleteOptions", "apiVersion": "v1",
                                 "propagationPolicy": "Background"})


def _satisfies_protocol(client: KubeClient) -> ApiClient:
    return client  # never called: mypy checks here that KubeClient is an ApiClient


def _query(params: dict[str, Any] | None) -> dict[str, str] | None:
    # aiohttp takes strings (and refuses booleans): say each value as the API server reads it.
    if not params:
        return None
    return {k: ("true" if v else "false") if isinstance(v, bool) else str(v) for k, v in params.items()}


def _transient(exc: BaseException) -> Transient:
    return Transient(0, type(exc).__name__, str(exc) or repr(exc))


def _dumps(body: Any) -> bytes:
    # Keys as json.dumps writes them (an int key becomes its digits), not a TypeError.
    return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)


def _json_or_none(text: str) -> dict | None:
    try:
        return orjson.loads(text)
    except ValueError:
        return None
