"""A second cluster beside the session one: multi-cluster, and 1,000 simulated nodes."""

from __future__ import annotations

import pytest
from kubernetes import client

from shipyard.dev.pools import LABEL_POOL, LABEL_RACK, LABEL_ZONE, ready_count

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def second(dev_cluster_factory):
    return dev_cluster_factory("second", ("edge=cpu-small:2",))


def test_two_clusters_side_by_side(dev_cluster, second) -> None:
    assert dev_cluster.server != second.server
    assert dev_cluster.context != second.context
    with dev_cluster.api_client(2) as a, second.api_client(2) as b:
        ca, cb = client.CoreV1Api(a), client.CoreV1Api(b)
        ca.create_namespace({"metadata": {"name": "only-in-main"}})
        try:
            names_b = {n.metadata.name for n in cb.list_namespace().items}
            assert "only-in-main" not in names_b
            assert client.VersionApi(b).get_code().git_version.startswith("v1.")
            # Nodes of one cluster are not in the other.
            nodes_a = {n.metadata.name for n in ca.list_node().items}
            nodes_b = {n.metadata.name for n in cb.list_node().items}
            assert nodes_a and nodes_b and not (nodes_a & nodes_b)
        finally:
            ca.delete_namespace("only-in-main")


def test_thousand_nodes_ready(second) -> None:
    from shipyard.dev.pools import parse_pool_arg

    names = second.add_pools([parse_pool_arg("cpu:1000")], timeout=600)
    assert len(names) == 1000
    ready, total = ready_count(second.raw_client(), f"{LABEL_POOL}=cpu")
    assert (ready, total) == (1000, 1000)
    with second.api_client(2) as api:
        node = client.CoreV1Api(api).read_node(names[-1])
    labels = node.metadata.labels
    assert labels[LABEL_ZONE].startswith("us-central1-")
    assert labels[LABEL_RACK].startswith("cpu-r")
    assert node.status.allocatable["cpu"].endswith("m")
