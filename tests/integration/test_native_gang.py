"""kube-scheduler's native gang scheduling on a dev cluster started with its feature
gates: what bench/schedule_scale.py's native-gang column relies on."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.dev import build, nativegang
from shipyard.dev import cluster as devcluster
from shipyard.dev.client import RawClient
from shipyard.dev.pools import parse_pool_arg
from shipyard.kube.resources import NAMESPACES, PODS
from shipyard.render.objects import render_pod
from shipyard.spec import Experiment, Role
from tests.integration.test_devcluster import eventually

MACHINE = "gpu-a100"  # a pod of Role(machine_type=MACHINE) asks for the whole node
NS = "gang"


@given(st.dictionaries(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                               min_size=1, max_size=20), st.booleans(), max_size=5))
def test_feature_gates_round_trip(gates: dict[str, bool]) -> None:
    assert devcluster.parse_feature_gates(devcluster.format_feature_gates(gates)) == gates


@pytest.mark.parametrize("text", ["GangScheduling", "A=yes", "=true", "A-B=true"])
def test_bad_feature_gates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="bad feature gate"):
        devcluster.parse_feature_gates(text)


@pytest.fixture(scope="module")
def gang_cluster() -> Iterator[devcluster.DevCluster]:
    try:
        build.require_binaries()
    except build.BuildError as e:
        pytest.skip(f"no control-plane binaries: {e}")
    # pytest-<pid>-: the conftest's reaper stops it if this session dies.
    c = devcluster.up(f"pytest-{os.getpid()}-native-gang", merge_kubeconfig=False,
                      pool_specs=[parse_pool_arg(f"{MACHINE}:3")],
                      feature_gates=nativegang.GATES)
    try:
        yield c
    finally:
        devcluster.down(c.name)


def _ok(status: int, body: bytes) -> Any:
    assert status in (200, 201), body[:300]
    return json.loads(body)


def _gang(api: RawClient, name: str, size: int, group: bool = True) -> None:
    exp = Experiment(name=name, namespace=NS, roles=[Role(
        name="worker", replicas=size, machine_type=MACHINE, command=["python", "train.py"])])
    if group:
        _ok(*api.request("POST", nativegang.PODGROUPS.path(NS),
                         nativegang.pod_group(name, NS, size)))
    for i in range(size):
        pod = render_pod(exp, exp.roles[0], i)
        _ok(*api.request("POST", PODS.path(NS), nativegang.join(pod, name) if group else pod))


def _pods(api: RawClient, name: str) -> list[dict[str, Any]]:
    got = _ok(*api.request("GET", PODS.path(NS) + f"?labelSelector=shipyard.dev/experiment={name}"))
    return got["items"]


def _bound(api: RawClient, name: str) -> int:
    return sum(bool(p["spec"].get("nodeName")) for p in _pods(api, name))


def _unschedulable(api: RawClient, name: str) -> bool:
    """kube-scheduler tried every pod of `name` and gave up (PodScheduled=False)."""
    pods = _pods(api, name)
    return bool(pods) and all(
        any(c["type"] == "PodScheduled" and c["status"] == "False"
            for c in (p.get("status") or {}).get("conditions") or []) for p in pods)


@pytest.mark.integration
def test_native_gang_binds_whole_gangs_or_none(gang_cluster: devcluster.DevCluster) -> None:
    api = gang_cluster.raw_client()
    _ok(*api.request("POST", NAMESPACES.path(), {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": NS}}))
    eventually(lambda: api.request("GET", f"/api/v1/namespaces/{NS}/serviceaccounts/default")[0]
               == 200, what="the namespace's default service account")
    # A gang that fits (2 of the 3 nodes): all of it bound.
    _gang(api, "fits", 2)
    eventually(lambda: _bound(api, "fits") == 2, what="the fitting gang bound")
    # One node is left: a gang of 4 must get none of it, once the scheduler has tried.
    _gang(api, "too-big", 4)
    eventually(lambda: _unschedulable(api, "too-big"), what="the big gang's pods found unschedulable")
    assert _bound(api, "too-big") == 0
    # The free node was there for the taking: a pod of no group gets it.
    _gang(api, "single", 1, group=False)
    eventually(lambda: _bound(api, "single") == 1, what="the lone pod bound")
    assert _bound(api, "too-big") == 0


@pytest.mark.integration
def test_gates_are_fixed_when_the_cluster_starts(gang_cluster: devcluster.DevCluster) -> None:
    assert devcluster.up(gang_cluster.name, merge_kubeconfig=False).server == gang_cluster.server
    with pytest.raises(devcluster.DevClusterError, match="running with feature gates"):
        devcluster.up(gang_cluster.name, merge_kubeconfig=False, feature_gates={})
