"""Kubernetes client helpers for dev clusters (dev/ may import the client; policy may not)."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def api_client(kubeconfig: Path, context: str, pool_size: int = 32) -> Any:
    """A `kubernetes.client.ApiClient` for one context, with a connection pool sized
    for concurrent use from `pool_size` threads."""
    from kubernetes import client, config

    conf = client.Configuration()
    config.load_kube_config(
        config_file=str(kubeconfig), context=context, client_configuration=conf,
        persist_config=False,
    )
    conf.connection_pool_maxsize = pool_size
    return client.ApiClient(conf)


def tls_context(certs: Path, client: str = "admin") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    ctx.load_cert_chain(str(certs / f"{client}.crt"), str(certs / f"{client}.key"))
    return ctx


def insecure_context() -> ssl.SSLContext:
    # kube-controller-manager and kube-scheduler serve /healthz with a self-signed
    # certificate they generate at start; only liveness is read from it.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def http_get(url: str, ctx: ssl.SSLContext | None = None, timeout: float = 2.0) -> tuple[int, str]:
    """(status, body) of a GET, or (0, error text) when nothing answered."""
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (OSError, ValueError) as e:
        return 0, str(e)


class RawClient:
    """A minimal JSON-over-HTTPS client with one keep-alive connection per thread.

    Bulk node creation and readiness polling go through it rather than the
    `kubernetes` package: no model (de)serialization, and no dependence on that
    package's internal call API, which changes between its major versions.
    """

    def __init__(self, server: str, ctx: ssl.SSLContext, timeout: float = 30.0) -> None:
        u = urllib.parse.urlsplit(server)
        self._host, self._port = u.hostname or "127.0.0.1", u.port or 443
        self._ctx, self._timeout = ctx, timeout
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPSConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(
                self._host, self._port, context=self._ctx, timeout=self._timeout)
            self._local.conn = conn
        return conn

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def stream(self, path: str) -> Iterator[bytes]:
        """The lines of a streaming GET (a watch), on a connection of its own."""
        conn = http.client.HTTPSConnection(self._host, self._port, context=self._ctx,
                                           timeout=self._timeout)
        try:
            conn.request("GET", path, headers={"Accept": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise OSError(f"GET {path}: HTTP {resp.status}: {resp.read()[:300]!r}")
            while line := resp.readline():
                yield line
        except http.client.HTTPException as e:
            raise OSError(f"GET {path}: {e}") from e
        finally:
            conn.close()

    def get_json(self, path: str) -> Any:
        status, data = self.request("GET", path)
        if status != 200:
            raise OSError(f"GET {path}: HTTP {status}: {data[:300]!r}")
        return json.loads(data)
