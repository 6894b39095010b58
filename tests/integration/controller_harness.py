"""Helpers shared by the tests that run the shipyard controller on a dev cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from shipyard.kube.objects import experiment_resource
from shipyard.spec import Experiment, RetryPolicy, Role

GROUP, VERSION = "shipyard.dev", "v1alpha1"


def start_controller(cluster: Any, *args: str) -> subprocess.Popen[bytes]:
    """`shipyard install` (CRDs, RBAC; no Deployment) then `shipyard controller run`
    as a subprocess logging to the cluster's log dir; the caller stops it."""
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    subprocess.run([sys.executable, "-m", "shipyard.cli", "install", "--cluster", cluster.context,
                    "--replicas", "0"], env=env, check=True, timeout=120, stdout=subprocess.DEVNULL)
    log = open(cluster.state_dir / "logs" / "shipyard-controller.log", "ab")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "shipyard.cli", "controller", "run", "--cluster", cluster.context,
         *args],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )


def stop_controller(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=30)


@contextmanager
def controller_running(cluster: Any, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """start_controller for the length of a `with` block."""
    proc = start_controller(cluster, *args)
    try:
        yield proc
    finally:
        stop_controller(proc)


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




@contextmanager
def experiment_namespace(cluster: Any, test_name: str) -> Iterator[Api]:
    """A fresh namespace for one test; afterwards its experiments and pods are
    deleted and gone, so the nodes are empty for the next test."""
    from kubernetes import client

    name = f"t-{test_name[5:30].replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}".lower()
    with cluster.api_client(pool_size=1) as raw:
        client.CoreV1Api(raw).create_namespace({"metadata": {"name": name}})
    a = Api(cluster, name)
    try:
        yield a
    finally:
        # Each object may already be going (the controller deletes pods, the garbage
        # collector follows an experiment's deletion): a 404 here is the goal reached.
        for item in a.custom.list_namespaced_custom_object(GROUP, VERSION, name, "experiments")["items"]:
            _gone_ok(a.delete, item["metadata"]["name"])
        for pod in a.pods():
            _gone_ok(a.core.delete_namespaced_pod, pod.metadata.name, name, grace_period_seconds=0)
        a.wait_no_pods()
        a.core.delete_namespace(name)
        a.api.close()


def _gone_ok(delete: Any, *args: Any, **kwargs: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        delete(*args, **kwargs)
    except ApiException as exc:
        if exc.status != 404:
            raise


def gpu_job(name: str, replicas: int, priority: int = 0, annotations: dict[str, str] | None = None,
            retry: RetryPolicy | None = None, machine_type: str = "gpu-a100") -> Experiment:
    """One role of whole-node GPU pods."""
    return Experiment(
        name=name, priority=priority, retry=retry or RetryPolicy(max_restarts=0, backoff_seconds=0),
        roles=[Role(name="trainer", replicas=replicas, machine_type=machine_type,
                    command=["python", "train.py"], annotations=annotations or {})],
    )
