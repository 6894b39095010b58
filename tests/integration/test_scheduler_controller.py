"""The gang scheduler controller against a real control plane with kwok nodes.

One cluster ("ctl": 4 x gpu-a100, 2 x cpu-small) and one controller process for the
module; each test works in its own namespace and leaves the nodes empty behind it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shipyard.dev.stages import EXIT_CODE, FAIL_AFTER, TRAIN_DURATION
from shipyard.kube.objects import experiment_resource
from shipyard.spec import Experiment, RetryPolicy, Role

GROUP, VERSION = "shipyard.dev", "v1alpha1"
GPU_NODES = 4


@pytest.fixture(scope="module")
def ctl(dev_cluster_factory) -> Iterator[Any]:
    cluster = dev_cluster_factory("ctl", (f"gpu-a100:{GPU_NODES}", "cpu-small:2"))
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    subprocess.run([sys.executable, "-m", "shipyard.cli", "install", "--cluster", cluster.context,
                    "--replicas", "0"], env=env, check=True, timeout=120)
    log = open(cluster.state_dir / "logs" / "shipyard-controller.log", "ab")  # noqa: SIM115
    controller = subprocess.Popen(
        [sys.executable, "-m", "shipyard.cli", "controller", "run", "--cluster", cluster.context],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    cluster.controller = controller
    yield cluster
    controller.terminate()
    controller.wait(timeout=30)
    log.close()


class Api:
    def __init__(self, cluster: Any, namespace: str) -> None:
        from kubernetes import client

        self.api = cluster.api_client(pool_size=4)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.ns = namespace

    def launch(self, exp: Experiment) -> None:
        exp = exp.model_copy(update={"namespace": self.ns})
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, "experiments",
                                                   experiment_resource(exp))

    def get(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, "experiments", name)

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def wait(self, name: str, check: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(name)
            if check(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: timed out; status {status}")
            time.sleep(0.1)

    def pods(self, name: str | None = None) -> list[Any]:
        selector = f"shipyard.dev/experiment={name}" if name else None
        return self.core.list_namespaced_pod(self.ns, label_selector=selector).items

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, "experiments", name)

    def wait_no_pods(self, name: str | None = None, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.pods(name):
            if time.monotonic() > deadline:
                raise AssertionError(f"pods still there: {[p.metadata.name for p in self.pods(name)]}")
            time.sleep(0.1)


@pytest.fixture
def api(ctl, request) -> Iterator[Api]:
    from kubernetes import client

    name = f"t-{request.node.name[5:30].replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}".lower()
    with ctl.api_client(pool_size=1) as raw:
        client.CoreV1Api(raw).create_namespace({"metadata": {"name": name}})
    a = Api(ctl, name)
    yield a
    # Leave the nodes empty for the next test.
    for item in a.custom.list_namespaced_custom_object(GROUP, VERSION, name, "experiments")["items"]:
        a.delete(item["metadata"]["name"])
    for pod in a.pods():
        a.core.delete_namespaced_pod(pod.metadata.name, name, grace_period_seconds=0)
    a.wait_no_pods()
    a.core.delete_namespace(name)
    a.api.close()


def gpu_job(name: str, replicas: int, priority: int = 0, annotations: dict[str, str] | None = None,
            retry: RetryPolicy | None = None) -> Experiment:
    return Experiment(
        name=name, priority=priority, retry=retry or RetryPolicy(max_restarts=0, backoff_seconds=0),
        roles=[Role(name="trainer", replicas=replicas, machine_type="gpu-a100",
                    command=["python", "train.py"], annotations=annotations or {})],
    )


def gpus_per_node(api: Api) -> dict[str, int]:
    used: dict[str, int] = {}
    for pod in api.core.list_pod_for_all_namespaces().items:
        if pod.spec.node_name and pod.status.phase not in ("Succeeded", "Failed"):
            for c in pod.spec.containers:
                gpus = int(((c.resources and c.resources.requests) or {}).get("nvidia.com/gpu", 0))
                used[pod.spec.node_name] = used.get(pod.spec.node_name, 0) + gpus
    return used


def test_gang_admission_counts_kube_scheduler_pods(api):
    # Three whole-GPU-node pods placed by kube-scheduler, not by shipyard.
    for i in range(3):
        api.core.create_namespaced_pod(api.ns, {
            "metadata": {"name": f"other-{i}"},
            "spec": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                     "nodeSelector": {"node.kubernetes.io/instance-type": "gpu-a100"},
                     "containers": [{"name": "c", "image": "x", "resources": {
                         "requests": {"nvidia.com/gpu": "8"}, "limits": {"nvidia.com/gpu": "8"}}}]},
        })
    deadline = time.monotonic() + 60
    while sum(1 for p in api.pods() if p.spec.node_name) < 3:
        assert time.monotonic() < deadline, "kube-scheduler did not place its pods"
        time.sleep(0.1)

    api.launch(gpu_job("pair", 2))
    waiting = api.wait("pair", lambda s: s.get("position") == 1)
    assert waiting["phase"] == "Queued"
    assert "needs 2 x" in waiting["message"]
    assert api.pods("pair") == []  # no partial gang

    for i in range(2):
        api.core.delete_namespaced_pod(f"other-{i}", api.ns, grace_period_seconds=0)
    running = api.wait("pair", lambda s: s.get("phase") == "Running")
    assert len(running["placement"]) == 2
    other = next(p.spec.node_name for p in api.pods() if p.metadata.name == "other-2")
    assert other not in running["placement"].values()
    assert all(n <= 8 for n in gpus_per_node(api).values())


def test_two_full_cluster_jobs_never_both_half_start(api):
    api.launch(gpu_job("first", GPU_NODES))
    api.launch(gpu_job("second", GPU_NODES))
    api.wait("first", lambda s: s.get("phase") == "Running")
    second = api.wait("second", lambda s: s.get("position") == 1)
    assert second["phase"] == "Queued"
    time.sleep(1)  # give a broken scheduler the chance to start part of it
    assert len(api.pods("first")) == GPU_NODES
    assert api.pods("second") == []


def test_preemption_then_resume(api):
    api.launch(gpu_job("low", GPU_NODES, priority=0))
    api.wait("low", lambda s: s.get("phase") == "Running")
    api.launch(gpu_job("high", 2, priority=100, annotations={TRAIN_DURATION: "3s"}))
    api.wait("low", lambda s: s.get("phase") in ("Preempted", "Queued") and "preempt" in s.get("message", ""))
    high = api.wait("high", lambda s: s.get("phase") == "Running")
    assert len(high["placement"]) == 2
    api.wait("high", lambda s: s.get("phase") == "Succeeded", timeout=60)
    low = api.wait("low", lambda s: s.get("phase") == "Running", timeout=60)
    assert low["attempt"] == 2 and low["restarts"] == 0  # preemption is not a failure


def test_failed_pod_restarts_the_whole_gang_then_fails(api):
    annotations = {FAIL_AFTER: "1s", EXIT_CODE: "3"}
    api.launch(gpu_job("flaky", 2, annotations=annotations,
                       retry=RetryPolicy(max_restarts=1, backoff_seconds=0.5)))
    failed = api.wait("flaky", lambda s: s.get("phase") == "Failed", timeout=90)
    assert failed["restarts"] == 1
    assert "failed with exit code 3" in failed["message"]
    assert "after 1 restart(s)" in failed["message"]


def test_node_loss_restarts_the_gang_elsewhere(api, ctl):
    api.launch(gpu_job("sturdy", 2, retry=RetryPolicy(max_restarts=2, backoff_seconds=0)))
    first = api.wait("sturdy", lambda s: s.get("phase") == "Running")
    lost = sorted(first["placement"].values())[0]
    ctl.set_node_not_ready(lost)
    try:
        again = api.wait("sturdy", lambda s: s.get("phase") == "Running" and s.get("restarts") == 1,
                         timeout=90)
        assert lost not in again["placement"].values()
        assert "NotReady" in again.get("failedPod", "")
    finally:
        ctl.set_node_ready(lost)


def test_cancel_and_delete_clean_up(api):
    api.launch(gpu_job("doomed", 2))
    api.wait("doomed", lambda s: s.get("phase") == "Running")
    api.custom.patch_namespaced_custom_object(GROUP, VERSION, api.ns, "experiments", "doomed",
                                              {"metadata": {"annotations": {"shipyard.dev/cancel-requested": "true"}}})
    api.wait("doomed", lambda s: s.get("phase") == "Cancelled")
    api.wait_no_pods("doomed")

    api.launch(gpu_job("deleted", 2))
    api.wait("deleted", lambda s: s.get("phase") == "Running")
    api.delete("deleted")
    api.wait_no_pods("deleted")  # owner references: the garbage collector removes them
    deadline = time.monotonic() + 60
    while any(s.metadata.name == "deleted" for s in api.core.list_namespaced_service(api.ns).items):
        assert time.monotonic() < deadline, "service left behind"
        time.sleep(0.1)
