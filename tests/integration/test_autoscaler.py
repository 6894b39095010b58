"""The autoscaler on a real control plane: kwok NodePools that start empty.

One cluster ("scale", no nodes but one CPU node for system pods) and one controller
for the module. Each test owns its pools (cluster-scoped) and a machine type no other
test uses, so their nodes never mix; pools and their nodes are deleted afterwards.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from shipyard.kube.objects import nodepool_resource
from shipyard.spec import NodePool
from tests.integration.controller_harness import (
    GROUP,
    VERSION,
    Api,
    experiment_namespace,
    gpu_job,
    start_controller,
    stop_controller,
)
from tests.integration.test_devcluster import eventually

LABEL_NODEPOOL = "shipyard.dev/nodepool"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def scale(dev_cluster_factory) -> Iterator[Any]:
    cluster = dev_cluster_factory("scale", ("cpu-small:1",))
    cluster.metrics_port = _free_port()
    # --look-ahead-gangs (opt-in): the look-ahead test below needs it; it changes nothing
    # for the tests whose work has no time limit.
    controller = start_controller(cluster, "--scale-down-confirm", "1", "--pool-backoff", "30",
                                  "--look-ahead-gangs", "--metrics-port", str(cluster.metrics_port))
    yield cluster
    stop_controller(controller)


class Pools:
    """Create NodePools for one test; delete them and every node they made after it."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.names: list[str] = []

    def create(self, **fields: Any) -> None:
        pool = NodePool(**fields)
        self.api.custom.create_cluster_custom_object(GROUP, VERSION, "nodepools", nodepool_resource(pool))
        self.names.append(pool.name)

    def status(self, name: str) -> dict[str, Any]:
        return self.api.custom.get_cluster_custom_object(GROUP, VERSION, "nodepools", name).get("status") or {}

    def nodes(self, name: str) -> list[Any]:
        return self.api.core.list_node(label_selector=f"{LABEL_NODEPOOL}={name}").items

    def events(self, name: str, reason: str) -> list[Any]:
        return [e for e in self.api.core.list_namespaced_event("default").items
                if e.involved_object.kind == "NodePool" and e.involved_object.name == name
                and e.reason == reason]

    def cleanup(self) -> None:
        for name in self.names:
            self.api.custom.delete_cluster_custom_object(GROUP, VERSION, "nodepools", name)
            for node in self.nodes(name):
                self.api.core.delete_node(node.metadata.name)


@pytest.fixture
def pools(scale, request) -> Iterator[tuple[Api, Pools]]:
    with experiment_namespace(scale, request.node.name) as api:
        p = Pools(api)
        try:
            yield api, p
        finally:
            for item in api.custom.list_namespaced_custom_object(GROUP, VERSION, api.ns,
                                                                 "experiments")["items"]:
                api.delete(item["metadata"]["name"])
            api.wait_no_pods()
            p.cleanup()


def metric(cluster: Any, name: str, **labels: str) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{cluster.metrics_port}/metrics", timeout=10).read()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.decode().splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    return None


def test_pending_gang_gets_exactly_its_nodes_in_one_step_then_they_go_idle_and_away(pools, scale):
    api, p = pools
    p.create(name="a100-burst", machine_type="gpu-a100", max_nodes=100, idle_timeout=2,
             provider_config={"provisioningDelay": "1"})
    api.launch(gpu_job("big", 64))
    running = api.wait("big", lambda s: s.get("phase") == "Running", timeout=180)
    assert len(set(running["placement"].values())) == 64
    nodes = {n.metadata.name for n in p.nodes("a100-burst")}
    assert nodes == set(running["placement"].values()), "exactly the gang's nodes, no more"
    ups = p.events("a100-burst", "ScaleUp")
    assert len(ups) == 1 and "64" in ups[0].message, [e.message for e in ups]
    status = eventually(lambda: p.status("a100-burst").get("ready") == 64 and p.status("a100-burst"),
                        60, "pool status")
    assert status["desired"] == 64 and status["idle"] == 0
    assert metric(scale, "shipyard_nodepool_nodes", pool="a100-burst", state="ready") == 64

    # Running work is never scaled away, whatever the idle timeout.
    assert p.events("a100-burst", "ScaleDown") == []
    api.delete("big")
    api.wait_no_pods("big")
    eventually(lambda: not p.nodes("a100-burst"), 120, "idle nodes removed")
    downs = p.events("a100-burst", "ScaleDown")
    assert len(downs) >= 2, "never more than half of a pool in one step"


def test_warm_buffer_is_kept_idle(pools):
    api, p = pools
    p.create(name="t4-warm", machine_type="gpu-t4", max_nodes=10, warm_buffer=2, idle_timeout=1)
    eventually(lambda: len(p.nodes("t4-warm")) == 2, 60, "warm nodes")
    api.launch(gpu_job("small", 1, machine_type="gpu-t4"))
    api.wait("small", lambda s: s.get("phase") == "Running", timeout=60)
    # One warm node was used: the pool tops the idle ones back up to two.
    eventually(lambda: len(p.nodes("t4-warm")) == 3, 60, "top-up")


def test_provisioning_failure_retries_another_pool(pools):
    api, p = pools
    p.create(name="h100-cheap", machine_type="gpu-h100", max_nodes=10, cost_per_hour=1.0,
             provider_config={"fail": "true"})
    p.create(name="h100-dear", machine_type="gpu-h100", max_nodes=10, cost_per_hour=500.0)
    api.launch(gpu_job("stubborn", 2, machine_type="gpu-h100"))
    running = api.wait("stubborn", lambda s: s.get("phase") == "Running", timeout=120)
    dear = {n.metadata.name for n in p.nodes("h100-dear")}
    assert set(running["placement"].values()) == dear and len(dear) == 2
    assert p.nodes("h100-cheap") == []
    assert p.events("h100-cheap", "ScaleUpFailed"), "the failure is reported on the pool"


def test_no_node_is_bought_for_a_gang_that_running_work_makes_room_for_first(pools):
    """Look-ahead: the controller learns the pool's provisioning delay from its first node;
    a gang arriving when running work is stopped by its time limit sooner than a new node
    could be Ready starts on the freed node. Nodes requested: one; never used: none."""
    api, p = pools
    p.create(name="cpu-ahead", machine_type="cpu-large", max_nodes=4, idle_timeout=300,
             provider_config={"provisioningDelay": "8"})
    limit = 20.0
    api.launch(gpu_job("first", 1, machine_type="cpu-large").model_copy(update={"time_limit": limit}))
    first = api.wait("first", lambda s: s.get("phase") == "Running", timeout=120)
    began = time.monotonic()
    [node] = set(first["placement"].values())
    # Submitted when less of the limit is left than a new node takes (8 s, as learnt).
    time.sleep(max(limit - 4.0 - (time.monotonic() - began), 0.0))
    api.launch(gpu_job("second", 1, machine_type="cpu-large"))
    second = api.wait("second", lambda s: s.get("phase") == "Running", timeout=120)
    assert set(second["placement"].values()) == {node}
    assert {n.metadata.name for n in p.nodes("cpu-ahead")} == {node}, "no node bought and left unused"
    ups = [e.message for e in p.events("cpu-ahead", "ScaleUp")]
    assert len(ups) == 1, ups  # and none still on its way
