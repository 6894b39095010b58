"""Node providers against the real local control plane (the shared `dev_cluster`).

kwok nodes made here use `gpu-t4` (tainted), so no other test's pods land on them,
and every test deletes the nodes it made. The Cluster API CRDs are the real ones of
the pinned release (fetched from the Go module proxy); no CAPI controller runs, so
the Machines a MachineSet would make are written by the test, and the assertions
are on what the provider writes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from shipyard.dev.capi import capi_crd_objects
from shipyard.dev.pools import machine_node
from shipyard.kube.client import KubeClient
from shipyard.kube.install import install
from shipyard.kube.resources import MACHINE_DEPLOYMENTS, MACHINES, NODES
from shipyard.providers import (
    ANNOTATION_EARMARK,
    LABEL_NODEPOOL,
    ClusterApiProvider,
    KwokProvider,
    StaticProvider,
    config_error,
    provider_for,
)
from shipyard.providers.base import parse_selector
from shipyard.providers.clusterapi import DELETE_MACHINE, LABEL_DEPLOYMENT
from shipyard.spec.machines import DEFAULT_MACHINE_TYPES
from shipyard.spec.nodepool import NodePool

T = TypeVar("T")


def uid() -> str:
    return uuid.uuid4().hex[:6]


def run(cluster: Any, body: Callable[[KubeClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async with KubeClient.from_kubeconfig(str(cluster.kubeconfig), cluster.context) as client:
            return await body(client)

    return asyncio.run(main())


async def eventually(check: Callable[[], Awaitable[T]], what: str, timeout: float = 30.0) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {value!r}")
        await asyncio.sleep(0.1)


def is_ready(node: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


# -- pure parts ------------------------------------------------------------------


def test_config_errors_name_the_field() -> None:
    def pool(provider: str, **cfg: str) -> NodePool:
        return NodePool(name="p", machine_type="gpu-t4", provider=provider, provider_config=cfg)

    assert config_error(pool("kwok", provisioningDelay="5", failureRate="0.5")) == ""
    assert "failureRate" in config_error(pool("kwok", failureRate="2"))
    assert "nodesPerSecond" in config_error(pool("kwok", nodesPerSecond="fast"))
    assert "unknown kwok provider_config" in config_error(pool("kwok", provisioningdelay="1"))
    assert "machine_type" in config_error(NodePool(name="p", machine_type="nosuch"))
    assert "machineDeployment" in config_error(pool("clusterapi", namespace="capi"))
    assert config_error(pool("static", nodeSelector="rack=r1, zone=a")) == ""
    assert "nodeSelector" in config_error(pool("static", nodeSelector="rack"))
    assert parse_selector("a=1, b = 2,") == {"a": "1", "b": "2"}


# -- kwok ------------------------------------------------------------------------


def test_kwok_nodes_register_after_delay_with_pool_shape(dev_cluster) -> None:
    pool = NodePool(name=f"kw-{uid()}", machine_type="gpu-t4", provider="kwok",
                    provider_config={"provisioningDelay": "1", "zones": "zone-a,zone-b"})
    slow = NodePool(name=f"kw-slow-{uid()}", machine_type="gpu-t4", provider="kwok",
                    provider_config={"provisioningDelay": "3600"})
    t4 = DEFAULT_MACHINE_TYPES["gpu-t4"]

    async def body(client: KubeClient) -> None:
        p = KwokProvider(client)
        try:
            made = await p.create(pool, 3, earmark="team-a/exp-1")
            assert made.ok and len(set(made.nodes)) == 3, made
            assert all(n.startswith(pool.name + "-") and len(n) <= 63 for n in made.nodes)
            assert p.provisioning(pool) == 3  # requested, none registered yet

            # An hour-long delay: nothing can have appeared; deleting cancels the requests.
            waiting = await p.create(slow, 2)
            assert p.provisioning(slow) == 2 and await p.list(slow) == []
            cancelled = await p.delete(slow, waiting.nodes)
            assert cancelled.ok and set(cancelled.nodes) == set(waiting.nodes)
            assert p.provisioning(slow) == 0 and await p.list(slow) == []

            async def registered() -> list[str]:
                return [n for n in await p.list(pool) if n in made.nodes]

            assert sorted(await eventually(lambda: _all(registered, 3), "3 nodes")) == sorted(made.nodes)
            assert p.provisioning(pool) == 0 and p.take_failures(pool) == []

            async def ready() -> list[dict]:
                nodes = [await client.get(NODES, n) for n in made.nodes]
                return nodes if all(is_ready(n) for n in nodes) else []

            nodes = await eventually(ready, "nodes Ready")
            zones = set()
            for n in nodes:
                labels, status = n["metadata"]["labels"], n["status"]
                assert labels[LABEL_NODEPOOL] == pool.name
                assert labels["node.kubernetes.io/instance-type"] == "gpu-t4"
                assert labels["nvidia.com/gpu.product"] == t4.gpu_model
                assert n["metadata"]["annotations"][ANNOTATION_EARMARK] == "team-a/exp-1"
                assert n["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
                assert status["capacity"]["nvidia.com/gpu"] == "1"
                assert status["capacity"]["cpu"] == "8" and status["capacity"]["memory"] == "32Gi"
                assert status["allocatable"]["cpu"] == f"{t4.allocatable_cpu}m"
                assert n["spec"]["taints"][0]["key"] == "nvidia.com/gpu"
                zones.add(labels["topology.kubernetes.io/zone"])
            assert zones == {"zone-a", "zone-b"}  # round-robin over the configured zones

            # A node of another pool is never deleted through this one.
            base, _ = await client.list(NODES, label_selector="shipyard.dev/pool=cpu-small")
            foreign = base[0]["metadata"]["name"]
            refused = await p.delete(pool, [foreign])
            assert not refused.ok and refused.nodes == () and "not a node of pool" in refused.error
            await client.get(NODES, foreign)  # still there

            gone = await p.delete(pool, [made.nodes[0]])
            assert gone.ok and gone.nodes == (made.nodes[0],)
            assert sorted(await p.list(pool)) == sorted(made.nodes[1:])
            gone = await p.delete(pool, made.nodes[1:])
            assert gone.ok and await p.list(pool) == []
        finally:
            await _cleanup(client, p, pool, slow)

    run(dev_cluster, body)


def test_kwok_creation_rate_is_bounded(dev_cluster) -> None:
    # One node per 1000 s: the first goes at once, the second must wait its turn.
    pool = NodePool(name=f"kw-paced-{uid()}", machine_type="gpu-t4", provider="kwok",
                    provider_config={"nodesPerSecond": "0.001"})

    async def body(client: KubeClient) -> None:
        p = KwokProvider(client)
        try:
            made = await p.create(pool, 2)
            async def first_landed() -> list[str]:
                # The node shows in the API a moment before its request is booked as done.
                nodes = await p.list(pool)
                return nodes if nodes and p.provisioning(pool) == 1 else []

            first = await eventually(first_landed, "the first node")
            assert len(first) == 1 and p.provisioning(pool) == 1
            gone = await p.delete(pool, made.nodes)  # one deleted, one request cancelled
            assert gone.ok and set(gone.nodes) == set(made.nodes)
            assert p.provisioning(pool) == 0 and await p.list(pool) == []
        finally:
            await _cleanup(client, p, pool)

    run(dev_cluster, body)


def test_kwok_failures_are_data(dev_cluster) -> None:
    stockout = NodePool(name=f"kw-out-{uid()}", machine_type="gpu-t4", provider="kwok",
                        provider_config={"fail": "true", "provisioningDelay": "0.2"})
    flaky = NodePool(name=f"kw-flaky-{uid()}", machine_type="gpu-t4", provider="kwok",
                     provider_config={"failureRate": "1.0"})
    quota = NodePool(name=f"kw-quota-{uid()}", machine_type="gpu-t4", provider="kwok",
                     provider_config={"fail": "reject"})
    bad = NodePool(name=f"kw-bad-{uid()}", machine_type="gpu-t4", provider="kwok",
                   provider_config={"failureRate": "2"})

    async def body(client: KubeClient) -> None:
        p = KwokProvider(client)
        try:
            # Accepted, then the cloud cannot deliver: reported by take_failures, once.
            for pool in (stockout, flaky):
                made = await p.create(pool, 2)
                assert made.ok and len(made.nodes) == 2
                assert p.provisioning(pool) == 2

                async def settled(pool: NodePool = pool) -> bool:
                    return p.provisioning(pool) == 0

                await eventually(settled, f"{pool.name} settled")
                failures = p.take_failures(pool)
                assert len(failures) == 2, failures
                assert all("insufficient capacity for gpu-t4" in f and pool.name in f for f in failures)
                assert p.take_failures(pool) == [] and await p.list(pool) == []

            # Refused outright: the answer says so, nothing is pending or reported later.
            refused = await p.create(quota, 3)
            assert not refused.ok and "quota" in refused.error and refused.nodes == ()
            assert p.provisioning(quota) == 0 and p.take_failures(quota) == []

            invalid = await p.create(bad, 1)
            assert not invalid.ok and "failureRate" in invalid.error
        finally:
            await _cleanup(client, p, stockout, flaky)

    run(dev_cluster, body)


# -- static ----------------------------------------------------------------------


def test_static_pool_lists_and_refuses_changes(dev_cluster) -> None:
    pool = NodePool(name=f"onprem-{uid()}", machine_type="cpu-small", provider="static",
                    provider_config={"nodeSelector": "shipyard.dev/pool=cpu-small"})
    labelled = f"{pool.name}-rack1"

    async def body(client: KubeClient) -> None:
        base, _ = await client.list(NODES, label_selector="shipyard.dev/pool=cpu-small")
        # One on-prem machine joins by the pool label, not the selector.
        await client.create(NODES, machine_node(DEFAULT_MACHINE_TYPES["gpu-t4"], labelled,
                                                labels={LABEL_NODEPOOL: pool.name}))
        try:
            p = provider_for(pool, client)
            assert isinstance(p, StaticProvider) and provider_for(pool, client) is p  # shared
            expect = sorted([labelled, *(n["metadata"]["name"] for n in base)])
            assert len(expect) >= 2 and await p.list(pool) == expect
            made = await p.create(pool, 1)
            gone = await p.delete(pool, [labelled])
            for r in (made, gone):
                assert not r.ok and r.nodes == ()
                assert "static pool: on-prem nodes are never created or deleted" in r.error
            assert await p.list(pool) == expect
            assert p.provisioning(pool) == 0 and p.take_failures(pool) == []
        finally:
            await client.delete(NODES, labelled)

    run(dev_cluster, body)


# -- Cluster API -----------------------------------------------------------------


def _machine(ns: str, name: str, md: str) -> dict:
    return {
        "apiVersion": MACHINES.api_version, "kind": "Machine",
        "metadata": {"name": name, "namespace": ns, "labels": {LABEL_DEPLOYMENT: md}},
        "spec": {
            "clusterName": "c1",
            "bootstrap": {"dataSecretName": f"{name}-bootstrap"},
            "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io",
                                  "kind": "DockerMachine", "name": name},
        },
    }


def _machine_deployment(ns: str, md: str, replicas: int) -> dict:
    return {
        "apiVersion": MACHINE_DEPLOYMENTS.api_version, "kind": "MachineDeployment",
        "metadata": {"name": md, "namespace": ns},
        "spec": {
            "clusterName": "c1", "replicas": replicas,
            "selector": {"matchLabels": {LABEL_DEPLOYMENT: md}},
            "template": {
                "metadata": {"labels": {LABEL_DEPLOYMENT: md}},
                "spec": {
                    "clusterName": "c1",
                    "bootstrap": {"dataSecretName": f"{md}-bootstrap"},
                    "infrastructureRef": {"apiGroup": "infrastructure.cluster.x-k8s.io",
                                          "kind": "DockerMachineTemplate", "name": md},
                },
            },
        },
    }


@pytest.fixture(scope="module")
def capi_crds(dev_cluster) -> None:
    objects = capi_crd_objects()
    assert {o["spec"]["names"]["kind"] for o in objects} >= {"MachineDeployment", "Machine"}
    run(dev_cluster, lambda client: install(client, objects, timeout_s=120))


def test_clusterapi_scales_machine_deployment(dev_cluster, capi_crds, namespace) -> None:
    ns, md, tag = namespace, "md-t4", uid()
    pool = NodePool(name=f"capi-{tag}", machine_type="gpu-t4", provider="clusterapi",
                    provider_config={"machineDeployment": md, "namespace": ns})
    node = [f"capi-{tag}-node-{i}" for i in range(3)]
    t4 = DEFAULT_MACHINE_TYPES["gpu-t4"]

    async def add_machine(client: KubeClient, name: str, status: dict) -> None:
        await client.create(MACHINES, _machine(ns, name, md))
        await client.patch(MACHINES, name, {"status": status}, ns, subresource="status")

    async def replicas(client: KubeClient) -> int:
        return (await client.get(MACHINE_DEPLOYMENTS, md, ns))["spec"]["replicas"]

    async def body(client: KubeClient) -> None:
        p = ClusterApiProvider(client)
        try:
            await client.create(MACHINE_DEPLOYMENTS, _machine_deployment(ns, md, 4))
            # What the MachineSet controller and the infrastructure would have made:
            # two Machines with nodes, one still provisioning, one failed.
            for i in range(2):
                await client.create(NODES, machine_node(t4, node[i]))
                await add_machine(client, f"m{i}", {"phase": "Running", "nodeRef": {"name": node[i]}})
            await add_machine(client, "m2", {"phase": "Provisioning"})
            await add_machine(client, "m3", {"phase": "Failed", "deprecated": {"v1beta1": {
                "failureReason": "CreateError", "failureMessage": "zone out of t4 capacity"}}})

            assert await p.list(pool) == sorted(node[:2])  # from the Machines' nodeRefs
            assert p.provisioning(pool) == 1  # 4 wanted - 2 registered - 1 failed
            (failure,) = p.take_failures(pool)
            assert "m3" in failure and "zone out of t4 capacity" in failure
            assert p.take_failures(pool) == []
            for n in node[:2]:  # adopted: the pool label, no earmark
                meta = (await client.get(NODES, n))["metadata"]
                assert meta["labels"][LABEL_NODEPOOL] == pool.name
                assert ANNOTATION_EARMARK not in (meta.get("annotations") or {})

            made = await p.create(pool, 2, earmark="team-a/big-gang")
            assert made.ok and made.nodes == () and await replicas(client) == 6
            assert p.provisioning(pool) == 3
            # Concurrent scale-ups all land: conflicts are read again and retried.
            results = await asyncio.gather(*(p.create(pool, 1) for _ in range(3)))
            assert all(r.ok for r in results) and await replicas(client) == 9

            # A new Machine registers its node: it joins the pool, earmarked.
            await client.create(NODES, machine_node(t4, node[2]))
            await add_machine(client, "m4", {"phase": "Running", "nodeRef": {"name": node[2]}})
            assert await p.list(pool) == sorted(node)
            meta = (await client.get(NODES, node[2]))["metadata"]
            assert meta["labels"][LABEL_NODEPOOL] == pool.name
            assert meta["annotations"][ANNOTATION_EARMARK] == "team-a/big-gang"

            gone = await p.delete(pool, [node[1]])
            assert gone.ok and gone.nodes == (node[1],), gone
            marks = {m["metadata"]["name"]: (m["metadata"].get("annotations") or {}).get(DELETE_MACHINE)
                     for m in (await client.list(MACHINES, ns))[0]}
            assert marks == {"m0": None, "m1": "yes", "m2": None, "m3": None, "m4": None}
            assert await replicas(client) == 8
            assert await p.list(pool) == sorted([node[0], node[2]])  # node 1 is on its way out

            again = await p.delete(pool, [node[1]])  # already marked: no second scale-down
            assert again.ok and again.nodes == (node[1],) and await replicas(client) == 8
            unknown = await p.delete(pool, ["no-such-node"])
            assert not unknown.ok and "no-such-node" in unknown.error and await replicas(client) == 8

            missing = NodePool(name="capi-missing", machine_type="gpu-t4", provider="clusterapi",
                               provider_config={"machineDeployment": "nope", "namespace": ns})
            r = await p.create(missing, 1)
            assert not r.ok and "not found" in r.error
            r = await p.create(NodePool(name="capi-bad", machine_type="gpu-t4", provider="clusterapi"), 1)
            assert not r.ok and "machineDeployment" in r.error
        finally:
            for n in node:
                await client.delete(NODES, n)

    run(dev_cluster, body)


# -- helpers ---------------------------------------------------------------------


async def _all(check: Callable[[], Awaitable[list[str]]], n: int) -> list[str]:
    got = await check()
    return got if len(got) == n else []


async def _cleanup(client: KubeClient, p: KwokProvider, *pools: NodePool) -> None:
    await p.aclose()
    for pool in pools:
        items, _ = await client.list(NODES, label_selector=f"{LABEL_NODEPOOL}={pool.name}")
        for n in items:
            await client.delete(NODES, n["metadata"]["name"])
