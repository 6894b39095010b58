"""Fixtures for tests against a real local control plane (see src/shipyard/dev).

- `dev_cluster` (session): a running DevCluster with a small base pool
  (`BASE_POOLS`); it has `.kubeconfig`, `.context`, `.api_client()`,
  `.add_pools()`, `.set_node_not_ready()`, `.delete_node()`.
- `dev_cluster_factory` (session): `factory(name, pools)` starts more clusters
  (multi-cluster tests); all are stopped at session end.
- `kube` (session): a `kubernetes.client.ApiClient` for `dev_cluster`.
- `core_v1` (session): `CoreV1Api` on it.
- `namespace` (per test): a fresh namespace whose default ServiceAccount exists,
  deleted afterwards.

Environment: SHIPYARD_TEST_REUSE=1 keeps and reuses a cluster named
`pytest-reuse` across sessions (fast local iteration).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator

import psutil
import pytest

from shipyard.dev import build
from shipyard.dev import cluster as devcluster
from shipyard.dev.pools import PoolSpec, parse_pool_arg

BASE_POOLS = ("cpu-small:4", "gpu-a100:4")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything here that uses a cluster is an integration test.
    for item in items:
        if {"dev_cluster", "dev_cluster_factory"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def _reap_stale() -> None:
    """Stop clusters left by pytest sessions that died without teardown."""
    for c in devcluster.list_clusters():
        parts = c.name.split("-")
        if (c.name.startswith("pytest-") and len(parts) >= 2 and parts[1].isdigit()
                and not psutil.pid_exists(int(parts[1]))):
            devcluster.down(c.name)


@pytest.fixture(scope="session")
def dev_cluster_factory() -> Iterator[Callable[..., devcluster.DevCluster]]:
    build.build(log=lambda m: None)  # no-op when cached; `shipyard dev build` runs first
    _reap_stale()
    reuse = os.environ.get("SHIPYARD_TEST_REUSE") == "1"
    started: list[str] = []

    def factory(name: str, pools: tuple[str, ...] | list[str] = ()) -> devcluster.DevCluster:
        full = f"pytest-{os.getpid()}-{name}" if not reuse else f"pytest-reuse-{name}"
        specs: list[PoolSpec] = [parse_pool_arg(p) for p in pools]
        c = devcluster.up(full, pool_specs=None, merge_kubeconfig=False)
        if full not in started:
            started.append(full)
        missing = [s for s in specs if c.pool_next_index.get(s.name, 0) < s.count]
        if missing:
            c.add_pools(missing, timeout=600)
        return c

    yield factory
    if not reuse:
        for name in reversed(started):
            devcluster.down(name)


@pytest.fixture(scope="session")
def dev_cluster(dev_cluster_factory: Callable[..., devcluster.DevCluster]
                ) -> devcluster.DevCluster:
    return dev_cluster_factory("main", BASE_POOLS)


@pytest.fixture(scope="session")
def kube(dev_cluster: devcluster.DevCluster) -> Iterator[object]:
    api = dev_cluster.api_client(pool_size=8)
    yield api
    api.close()


@pytest.fixture(scope="session")
def core_v1(kube: object) -> object:
    from kubernetes import client

    return client.CoreV1Api(kube)


@pytest.fixture
def namespace(core_v1, request: pytest.FixtureRequest) -> Iterator[str]:
    from kubernetes.client import ApiException

    base = request.node.name.lower().replace("_", "-")
    name = f"t-{''.join(ch for ch in base if ch.isalnum() or ch == '-')[:40]}-" \
           f"{uuid.uuid4().hex[:6]}"
    core_v1.create_namespace({"metadata": {"name": name, "labels": {"shipyard.dev/test": "1"}}})
    # Pods are refused until the service-account controller made `default`.
    deadline = time.monotonic() + 60
    while True:
        try:
            core_v1.read_namespaced_service_account("default", name)
            break
        except ApiException as e:
            if e.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    yield name
    with contextlib.suppress(ApiException):
        core_v1.delete_namespace(name)
