"""The local control plane is a real Kubernetes: API semantics, scheduling, kwok nodes."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client import ApiException

from shipyard.dev import build
from shipyard.dev import stages as st
from shipyard.dev.pools import LABEL_POOL, parse_pool_arg

pytestmark = pytest.mark.integration


def eventually(check: Callable[[], Any], timeout: float = 120, what: str = "") -> Any:
    """Poll until `check()` is truthy; the timeout only bounds a hung test."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what or check}")
        time.sleep(0.2)


def test_version_is_semver(kube) -> None:
    info = client.VersionApi(kube).get_code()
    assert info.git_version == build.KUBERNETES_VERSION
    assert info.major == "1"
    assert info.minor == build.KUBERNETES_VERSION.split(".")[1]


def test_crud_watch_and_conflict(core_v1, namespace) -> None:
    events: queue.Queue[tuple[str, str]] = queue.Queue()
    w = watch.Watch()
    started = threading.Event()
    # Watched from the list's resourceVersion (as an informer does): every write after
    # the list is delivered, however late the watch connects, and nothing before it.
    listed = core_v1.list_namespaced_config_map(namespace).metadata.resource_version

    def run() -> None:
        started.set()
        for ev in w.stream(core_v1.list_namespaced_config_map, namespace, resource_version=listed,
                           field_selector="metadata.name=cfg", timeout_seconds=60):
            events.put((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    started.wait()
    cm = core_v1.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    stale_rv = cm.metadata.resource_version
    cm.data["a"] = "2"
    updated = core_v1.replace_namespaced_config_map("cfg", namespace, cm)
    assert int(updated.metadata.resource_version) > int(stale_rv)
    # Optimistic concurrency: a write with an old resourceVersion is a Conflict.
    stale = {"metadata": {"name": "cfg", "resourceVersion": stale_rv}, "data": {"a": "3"}}
    with pytest.raises(ApiException) as exc:
        core_v1.replace_namespaced_config_map("cfg", namespace, stale)
    assert exc.value.status == 409
    assert core_v1.read_namespaced_config_map("cfg", namespace).data == {"a": "2"}
    core_v1.delete_namespaced_config_map("cfg", namespace)
    t.join(timeout=60)
    w.stop()
    seen = []
    while not events.empty():
        seen.append(events.get())
    assert seen == [("ADDED", "cfg"), ("MODIFIED", "cfg"), ("DELETED", "cfg")]


def test_rbac_is_enforced(kube, namespace) -> None:
    authz = client.AuthorizationV1Api(kube)

    def allowed() -> bool:
        review = authz.create_subject_access_review({
            "spec": {
                "user": f"system:serviceaccount:{namespace}:bot",
                "resourceAttributes": {"namespace": namespace, "verb": "list",
                                       "resource": "pods"},
            }
        })
        return bool(review.status.allowed)

    assert not allowed()
    rbac = client.RbacAuthorizationV1Api(kube)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
    })
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "bot-reads-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": namespace}],
    })
    eventually(allowed, what="RoleBinding takes effect")


def test_crd_schema_validation(kube) -> None:
    ext = client.ApiextensionsV1Api(kube)
    group = "devtest.shipyard.dev"
    crd = {
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Cluster",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object", "required": ["size"],
                        "properties": {"size": {"type": "integer", "minimum": 1}},
                    }},
                }},
            }],
        },
    }
    try:
        ext.create_custom_resource_definition(crd)
    except ApiException as e:
        if e.status != 409:
            raise
    co = client.CustomObjectsApi(kube)

    def established() -> bool:
        try:
            co.list_cluster_custom_object(group, "v1", "widgets")
            return True
        except ApiException:
            return False

    eventually(established, what="CRD served")
    with pytest.raises(ApiException) as exc:
        co.create_cluster_custom_object(group, "v1", "widgets", {
            "apiVersion": f"{group}/v1", "kind": "Widget",
            "metadata": {"name": "bad"}, "spec": {"size": 0},
        })
    assert exc.value.status == 422
    assert "spec.size" in exc.value.body
    ext.delete_custom_resource_definition(f"widgets.{group}")


def _pod(name: str, annotations: dict[str, str], pool: str = "cpu-small") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {LABEL_POOL: pool},
            "automountServiceAccountToken": False,
            "containers": [{"name": "train", "image": "example.invalid/train:1",
                            "resources": {"requests": {"cpu": "100m"}}}],
        },
    }


def _phases(core_v1, namespace: str, name: str, until: set[str]) -> list[str]:
    """Every distinct phase the pod goes through, watched, until one of `until`."""
    seen: list[str] = []
    w = watch.Watch()
    for ev in w.stream(core_v1.list_namespaced_pod, namespace,
                       field_selector=f"metadata.name={name}", timeout_seconds=120):
        phase = ev["object"].status.phase
        if not seen or seen[-1] != phase:
            seen.append(phase)
        if phase in until:
            w.stop()
            break
    return seen


def test_pod_trains_then_succeeds(core_v1, namespace) -> None:
    core_v1.create_namespaced_pod(namespace, _pod("job", {st.TRAIN_DURATION: "3s"}))
    seen = _phases(core_v1, namespace, "job", {"Succeeded", "Failed"})
    assert seen[-2:] == ["Running", "Succeeded"], seen
    pod = core_v1.read_namespaced_pod("job", namespace)
    assert pod.spec.node_name.startswith("cpu-small-")  # bound by the real scheduler
    term = pod.status.container_statuses[0].state.terminated
    assert term.exit_code == 0 and term.reason == "Completed"


def test_pod_fails_with_exit_code(core_v1, namespace) -> None:
    core_v1.create_namespaced_pod(
        namespace, _pod("crash", {st.FAIL_AFTER: "1s", st.EXIT_CODE: "137"}))
    seen = _phases(core_v1, namespace, "crash", {"Succeeded", "Failed"})
    assert seen[-2:] == ["Running", "Failed"], seen
    term = core_v1.read_namespaced_pod("crash", namespace).status.container_statuses[0]
    assert term.state.terminated.exit_code == 137


def test_gpu_pod_needs_toleration(core_v1, namespace) -> None:
    body = _pod("gpu", {}, pool="gpu-a100")
    body["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "8"}}
    core_v1.create_namespaced_pod(namespace, body)
    eventually(lambda: any(
        c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
        for c in (core_v1.read_namespaced_pod("gpu", namespace).status.conditions or [])),
        what="GPU pod without toleration is unschedulable (taint)")
    body["metadata"]["name"] = "gpu-ok"
    body["spec"]["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    core_v1.create_namespaced_pod(namespace, body)
    eventually(lambda: core_v1.read_namespaced_pod("gpu-ok", namespace).status.phase
               == "Running", what="tolerating GPU pod runs")


def _ready(core_v1, node: str) -> str:
    n = core_v1.read_node(node)
    return next(c.status for c in n.status.conditions if c.type == "Ready")


def test_node_not_ready_and_delete(dev_cluster, core_v1, request) -> None:
    pool = f"flaky{abs(hash(request.node.nodeid)) % 10_000}"
    (node,) = dev_cluster.add_pools([parse_pool_arg(f"{pool}=cpu-small:1")])
    assert _ready(core_v1, node) == "True"
    dev_cluster.set_node_not_ready(node, "simulated kubelet failure")
    eventually(lambda: _ready(core_v1, node) == "False", what="node NotReady")
    # The real node-lifecycle controller reacts to it: not-ready taint.
    eventually(lambda: any(t.key == "node.kubernetes.io/not-ready"
                           for t in core_v1.read_node(node).spec.taints or []),
               what="not-ready taint from kube-controller-manager")
    dev_cluster.set_node_ready(node)
    eventually(lambda: _ready(core_v1, node) == "True", what="node recovers")
    dev_cluster.delete_node(node)

    def gone() -> bool:
        try:
            core_v1.read_node(node)
            return False
        except ApiException as e:
            return e.status == 404

    eventually(gone, what="node deleted")
