"""Kubernetes client helpers for dev clusters (dev/ may import the client; policy may not)."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
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
