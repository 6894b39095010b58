"""The gang scheduler controller against a real control plane with kwok nodes.

One cluster ("ctl": 4 x gpu-a100, 2 x cpu-small) and one controller process for the
module; each test works in its own namespace and leaves the nodes empty behind it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shipyard.controller.views import parse_rfc3339
from shipyard.dev.stages import EXIT_CODE, FAIL_AFTER, TRAIN_DURATION
from shipyard.spec import RetryPolicy
from tests.integration.controller_harness import (
    GROUP,
    VERSION,
    Api,
    experiment_namespace,
    gpu_job,
    start_controller,
    stop_controller,
)

GPU_NODES = 4


@pytest.fixture(scope="module")
def ctl(dev_cluster_factory) -> Iterator[Any]:
    cluster = dev_cluster_factory("ctl", (f"gpu-a100:{GPU_NODES}", "cpu-small:2"))
    controller = start_controller(cluster)
    cluster.controller = controller
    yield cluster
    stop_controller(controller)


@pytest.fixture
def api(ctl, request) -> Iterator[Api]:
    with experiment_namespace(ctl, request.node.name) as a:
        yield a


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
    # A later arrival queued behind it: a scheduling cycle weighed `second` again after it
    # was queued (where a broken scheduler would start part of it) and still held it whole.
    api.launch(gpu_job("third", 1))
    third = api.wait("third", lambda s: s.get("position") is not None)
    assert (third["phase"], third["position"]) == ("Queued", 2)
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


def test_a_waiting_experiment_shows_an_estimated_start(api, ctl):
    first = gpu_job("first", GPU_NODES).model_copy(update={"time_limit": 3600.0})
    api.launch(first)
    api.wait("first", lambda s: s.get("phase") == "Running")
    api.launch(gpu_job("second", 1))
    status = api.wait("second", lambda s: (s.get("startEstimate") or {}).get("at") is not None)
    est = status["startEstimate"]
    assert est["after"] == [f"{api.ns}/first"] and est["basis"] == "time limit"
    assert est["reason"] == "after first finishes (time limit)"
    # first's time limit ends it an hour after it started (the estimate is to the minute).
    started = parse_rfc3339(api.status("first")["startedAt"])
    assert started is not None and abs(parse_rfc3339(est["at"]) - (started + 3600.0)) <= 60
    out = subprocess.run([sys.executable, "-m", "shipyard.cli", "status", "--cluster", ctl.context,
                          "-n", api.ns, "second"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "KUBECONFIG": str(ctl.kubeconfig), "COLUMNS": "200"})
    line = next((x for x in out.stdout.splitlines() if x.startswith("estimated start: ")), "")
    assert line.startswith("estimated start: about ") and line.endswith(
        ", after first finishes (time limit)"), out
    # Gone before the namespace's teardown lists pods (the controller deletes them too).
    for name in ("second", "first"):
        api.delete(name)
    api.wait_no_pods()


def test_launch_of_a_folder_too_big_to_ship_fails_and_creates_nothing(ctl, tmp_path):
    """`launch -c` of a spec whose folder holds a dataset (a sparse 1 TiB file: read, it
    would take hours; packed in memory, more than the machine has) exits non-zero with
    the size, the limit and the alternatives, before any write: no namespace, no
    ConfigMap, no Experiment."""
    import uuid

    import yaml
    from kubernetes import client
    from kubernetes.client import ApiException

    ns = f"t-oversize-{uuid.uuid4().hex[:6]}"
    (tmp_path / "train.py").write_text("print('train')\n")
    (tmp_path / "data").mkdir()
    with open(tmp_path / "data" / "train.bin", "wb") as handle:
        handle.truncate(1 << 40)
    spec = gpu_job("toobig", 1).model_dump(mode="json", exclude_none=True)
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump({**spec, "namespace": ns}))
    out = subprocess.run([sys.executable, "-m", "shipyard.cli", "launch", "-c", ctl.context,
                          str(tmp_path / "experiment.yaml")], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "KUBECONFIG": str(ctl.kubeconfig),
                                           "COLUMNS": "200"})
    said = " ".join((out.stdout + out.stderr).split())  # rich wraps long lines
    assert out.returncode != 0, said
    assert "bytes before compression" in said and "data/train.bin" in said, said
    assert "1,048,576 bytes a ConfigMap holds" in said, said
    assert ".shipyardignore" in said and "image" in said and "volume" in said, said
    with ctl.api_client(pool_size=1) as raw:
        core, custom = client.CoreV1Api(raw), client.CustomObjectsApi(raw)
        with pytest.raises(ApiException) as gone:
            core.read_namespace(ns)
        assert gone.value.status == 404
        assert not [e for e in custom.list_cluster_custom_object(GROUP, VERSION, "experiments")[
            "items"] if e["metadata"]["name"] == "toobig"]
        assert not core.list_config_map_for_all_namespaces(
            field_selector="metadata.name=toobig-workdir").items
