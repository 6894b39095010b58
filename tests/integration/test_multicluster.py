"""Several clusters (issue #6): launch where the capacity is, move experiments between them.

Two dev clusters, each with its own controller, for the module:
- "onprem": 4 x gpu-a100 and 1 x cpu-large already there (static NodePools over them);
  config `prefer: gpu`.
- "cloud": no nodes; kwok NodePools for cpu-large (2 warm nodes) and gpu-a100 (none)
  that grow on demand; config `prefer: cpu`.
A kubeconfig holds both contexts and a third, "dead", whose API server is not there.
Each test works in its own namespace (the same name in both clusters) and deletes its
experiments afterwards; nodes the cloud grew stay (idle timeout 10 min), so tests
never count on the cloud having no free nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipyard.dev import kubeconfig
from shipyard.dev.cluster import DevCluster
from shipyard.fleet import MoveError, Placement, launch_many, move, read_capacities, redispatch_once
from shipyard.fleet.move import ANNOTATION_HOLD, ANNOTATION_MOVED_FROM, ANNOTATION_MOVING_TO
from shipyard.kube.objects import nodepool_resource
from shipyard.spec import Experiment, NodePool, Resources, RetryPolicy, Role
from shipyard.spec.clusters import ClustersConfig, clusters_config_from_data
from tests.integration.controller_harness import GROUP, VERSION, Api, start_controller, stop_controller
from tests.integration.test_devcluster import eventually

ONPREM_GPU_NODES = 4
GPU_SLOTS = ONPREM_GPU_NODES * 8  # 1-GPU experiments that fit on-prem


@dataclass
class Fleet:
    onprem: DevCluster
    cloud: DevCluster
    kubeconfig: Path
    config_file: Path
    config: ClustersConfig

    def cluster(self, name: str) -> DevCluster:
        return {"onprem": self.onprem, "cloud": self.cloud}[name]

    def cli(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "COLUMNS": "200"}
        return subprocess.run([sys.executable, "-m", "shipyard.cli", *args, "--clusters",
                               str(config or self.config_file)],
                              env=env, capture_output=True, text=True, timeout=300)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _create_pools(cluster: DevCluster, pools: list[NodePool]) -> None:
    from kubernetes import client
    from kubernetes.client import ApiException

    with cluster.api_client(pool_size=1) as raw:
        custom = client.CustomObjectsApi(raw)
        for pool in pools:
            try:
                custom.create_cluster_custom_object(GROUP, VERSION, "nodepools", nodepool_resource(pool))
            except ApiException as exc:  # a kept cluster (SHIPYARD_TEST_REUSE=1) has them
                if exc.status != 409:
                    raise


def _join_static_pool(cluster: DevCluster, dev_pool: str, nodepool: str) -> None:
    """Label the on-prem machines as members of their static NodePool (what an admin does)."""
    from kubernetes import client

    with cluster.api_client(pool_size=1) as raw:
        core = client.CoreV1Api(raw)
        for node in core.list_node(label_selector=f"shipyard.dev/pool={dev_pool}").items:
            core.patch_node(node.metadata.name, {"metadata": {"labels": {"shipyard.dev/nodepool": nodepool}}})


def _capacity(cluster: DevCluster) -> dict[str, Any]:
    from kubernetes import client
    from kubernetes.client import ApiException

    with cluster.api_client(pool_size=1) as raw:
        try:
            obj = client.CustomObjectsApi(raw).get_cluster_custom_object(GROUP, VERSION, "clustercapacities",
                                                                          "shipyard")
        except ApiException:
            return {}
    return {m["machineType"]: m for m in (obj.get("status") or {}).get("machines", [])}


def _write_config(path: Path, fleet_names: list[tuple[str, str, str, str]], **extra: Any) -> Path:
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": n, "context": c, "location": loc, "prefer": p} for n, c, loc, p in fleet_names],
        **extra,
    }))
    return path


CLUSTERS = [("onprem", "shipyard-pytest-onprem", "onprem", "gpu"),
            ("cloud", "shipyard-pytest-cloud", "cloud", "cpu")]
DEAD = ("dead", "shipyard-pytest-dead", "cloud", "any")


@pytest.fixture(scope="module")
def fleet(dev_cluster_factory, tmp_path_factory) -> Iterator[Fleet]:
    onprem = dev_cluster_factory("onprem", (f"gpu-a100:{ONPREM_GPU_NODES}", "cpu-large:1"))
    cloud = dev_cluster_factory("cloud", ())
    tmp = tmp_path_factory.mktemp("fleet")
    kc = tmp / "kubeconfig"
    for c, context in ((onprem, CLUSTERS[0][1]), (cloud, CLUSTERS[1][1])):
        kubeconfig.merge(kc, kubeconfig.build(context, c.server, c.certs_dir))
    kubeconfig.merge(kc, kubeconfig.build(DEAD[1], f"https://127.0.0.1:{_closed_port()}", onprem.certs_dir))
    config_file = _write_config(tmp / "clusters.yaml", [*CLUSTERS, DEAD])
    # One replica each, no Lease: a controller whose API server is frozen for a test
    # would otherwise lose leadership and exit.
    controllers = [start_controller(onprem, "--no-leader-elect"), start_controller(cloud, "--no-leader-elect")]
    try:
        _create_pools(onprem, [
            NodePool(name="a100-onprem", machine_type="gpu-a100", provider="static", max_nodes=4),
            NodePool(name="cpu-onprem", machine_type="cpu-large", provider="static", max_nodes=1),
        ])
        _join_static_pool(onprem, "gpu-a100", "a100-onprem")
        _join_static_pool(onprem, "cpu-large", "cpu-onprem")
        _create_pools(cloud, [
            NodePool(name="cpu-cloud", machine_type="cpu-large", max_nodes=12, warm_buffer=2,
                     provider_config={"provisioningDelay": "1"}),
            NodePool(name="a100-cloud", machine_type="gpu-a100", max_nodes=8, cost_per_hour=32.0,
                     provider_config={"provisioningDelay": "1"}),
        ])
        eventually(lambda: _capacity(onprem).get("gpu-a100", {}).get("staticNodes") == ONPREM_GPU_NODES,
                   120, "on-prem capacity published")
        eventually(lambda: _capacity(cloud).get("cpu-large", {}).get("freeLevels", [0])[-1] >= 2
                   and "gpu-a100" in _capacity(cloud), 120, "cloud capacity published with 2 warm nodes")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("KUBECONFIG", str(kc))  # what fleet/ reads in this process
            yield Fleet(onprem, cloud, kc, config_file, clusters_config_from_data(
                yaml.safe_load(config_file.read_text()), str(config_file)))
    finally:
        for proc in controllers:
            stop_controller(proc)


@dataclass
class Both:
    onprem: Api
    cloud: Api
    ns: str

    def api(self, name: str) -> Api:
        return {"onprem": self.onprem, "cloud": self.cloud}[name]

    def where(self, name: str) -> list[str]:
        return [c for c in ("onprem", "cloud")
                if any(i["metadata"]["name"] == name for i in self.api(c).custom.list_namespaced_custom_object(
                    GROUP, VERSION, self.ns, "experiments")["items"])]


@pytest.fixture
def both(fleet: Fleet, request: pytest.FixtureRequest) -> Iterator[Both]:
    """One namespace, the same name in both clusters; emptied afterwards."""
    from kubernetes.client import ApiException

    # Start from an idle on-prem cluster, as its published summary says.
    eventually(lambda: [(m["freeLevels"][-1], m["queuedGangs"]) for m in _capacity(fleet.onprem).values()]
               == [(1, 0), (ONPREM_GPU_NODES, 0)], 60, "on-prem idle")
    ns = f"mc-{request.node.name[5:25].replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}".lower()
    apis = []
    for c in (fleet.onprem, fleet.cloud):
        a = Api(c, ns)
        a.core.create_namespace({"metadata": {"name": ns}})
        apis.append(a)
    try:
        yield Both(apis[0], apis[1], ns)
    finally:
        for a in apis:
            for item in a.custom.list_namespaced_custom_object(GROUP, VERSION, ns, "experiments")["items"]:
                with contextlib.suppress(ApiException):
                    a.delete(item["metadata"]["name"])
            a.wait_no_pods(timeout=180)
            a.core.delete_namespace(ns)
            a.api.close()


def small(name: str, ns: str, *, gpu: bool, replicas: int = 1) -> Experiment:
    """A tiny experiment: 1 GPU (8 per gpu-a100 node) or 1 CPU (28 per cpu-large node)."""
    res = Resources(cpu="8", memory="64Gi", gpus=1) if gpu else Resources(cpu="1", memory="2Gi")
    return Experiment(name=name, namespace=ns, retry=RetryPolicy(max_restarts=0),
                      roles=[Role(name="w", replicas=replicas, machine_type="gpu-a100" if gpu else "cpu-large",
                                  command=["python", "train.py"], resources=res)])


def whole_nodes(name: str, ns: str, n: int) -> Experiment:
    return Experiment(name=name, namespace=ns, retry=RetryPolicy(max_restarts=0),
                      roles=[Role(name="w", replicas=n, machine_type="gpu-a100", command=["python", "t.py"])])


def running(api: Api, name: str, timeout: float = 120) -> dict[str, Any]:
    return api.wait(name, lambda s: s.get("phase") == "Running", timeout=timeout)


# -- (a) launch where the capacity is ---------------------------------------------------


def test_many_experiments_land_where_the_policy_says(fleet: Fleet, both: Both) -> None:
    # 200 tiny experiments: 60 one-GPU, 140 one-CPU, interleaved.
    exps = [small(f"e{i:03d}", both.ns, gpu=i % 10 < 3) for i in range(200)]
    gpu = [e.name for e in exps if e.roles[0].machine_type == "gpu-a100"]
    cpu = [e.name for e in exps if e.roles[0].machine_type == "cpu-large"]

    def settled() -> dict[str, Any] | None:  # no node coming, none partly used
        c = _capacity(fleet.cloud)
        cpu_large = c["cpu-large"]
        return c if cpu_large["provisioningNodes"] == 0 and sum(cpu_large["freeLevels"][1:-1]) == 0 else None

    cloud_now = eventually(settled, 60, "cloud settled")
    cloud_cpu = cloud_now["cpu-large"]["freeLevels"][-1]  # warm, wholly free nodes
    cloud_gpu_free = sum(cloud_now["gpu-a100"]["freeLevels"][1:])

    placements = asyncio.run(launch_many(exps, fleet.config))
    assert all(isinstance(p, Placement) for p in placements), [str(p) for p in placements]
    where = {e.name: p.cluster.name for e, p in zip(exps, placements, strict=True)}  # type: ignore[union-attr]
    tiers = {e.name: p.chosen.tier for e, p in zip(exps, placements, strict=True)}  # type: ignore[union-attr]

    # GPU work: on-prem (preferred, fits now) until its 32 GPUs are taken, then the
    # cloud's GPU pool grows for the rest rather than waiting on-prem.
    assert [where[n] for n in gpu] == ["onprem"] * GPU_SLOTS + ["cloud"] * (len(gpu) - GPU_SLOTS)
    if cloud_gpu_free == 0:  # as when this test runs first
        assert {tiers[n] for n in gpu[GPU_SLOTS:]} == {1}  # after a scale-up
    # CPU work: the cloud (preferred) while its warm nodes have room, then the on-prem
    # CPU node (fitting now beats waiting for a new node), then the cloud grows.
    per_node = 28  # a node counts as full below 1/8 free: 28 of its 31.9 CPUs
    first = min(cloud_cpu * per_node, len(cpu))
    then = min(per_node, len(cpu) - first)
    assert [where[n] for n in cpu] == ["cloud"] * first + ["onprem"] * then + ["cloud"] * (len(cpu) - first - then)
    assert "dead" not in where.values()

    # And each runs where it was sent: the cloud grows its pools for the overflow.
    for cluster in ("onprem", "cloud"):
        api = both.api(cluster)
        names = {n for n, c in where.items() if c == cluster}
        eventually(lambda api=api, names=names: sum(
            1 for i in api.custom.list_namespaced_custom_object(GROUP, VERSION, both.ns, "experiments")["items"]
            if i["metadata"]["name"] in names and (i.get("status") or {}).get("phase") == "Running"
        ) == len(names), 240, f"all {len(names)} running in {cluster}")


def test_clusters_command_shows_every_cluster(fleet: Fleet) -> None:
    out = fleet.cli("clusters", "-o", "json")
    assert out.returncode == 0, out.stderr
    rows = {(r["cluster"], r["machine_type"]): r for r in yaml.safe_load(out.stdout)}
    assert rows[("onprem", "gpu-a100")]["detail"]["static_nodes"] == ONPREM_GPU_NODES
    assert rows[("onprem", "gpu-a100")]["location"] == "onprem"
    assert rows[("cloud", "gpu-a100")]["detail"]["headroom_nodes"] >= 0
    assert ("cloud", "cpu-large") in rows
    assert rows[("dead", None)]["nodes"] == "unreachable"
    table = fleet.cli("clusters")
    assert table.returncode == 0 and "unreachable" in table.stdout and "MACHINE" in table.stdout


# -- (c) a cluster going away mid-launch --------------------------------------------------


@contextlib.contextmanager
def apiserver_stopped(cluster: DevCluster) -> Iterator[None]:
    """The cluster's API server frozen (SIGSTOP): connections hang, nothing answers."""
    proc = next(p for p in cluster.procs if p.name == "kube-apiserver").process()
    assert proc is not None, "the API server is not running"
    proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGCONT)
        eventually(lambda: _capacity(cluster) != {}, 60, "API server back")


def test_launch_auto_explains_and_skips_clusters_that_are_gone(fleet: Fleet, both: Both, tmp_path) -> None:
    spec = tmp_path / "exp.yaml"
    spec.write_text(yaml.safe_dump(small("auto-gpu", both.ns, gpu=True).model_dump(mode="json")))
    out = fleet.cli("launch", "--cluster", "auto", "--explain", str(spec))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "cluster dead skipped" in out.stderr
    for name in ("onprem", "cloud", "dead"):
        assert name in out.stdout
    assert "chosen: onprem (fits now" in out.stdout
    assert both.where("auto-gpu") == ["onprem"]

    # On-prem goes away in the middle of launches: skipped with a warning, the
    # experiment goes to the cloud.
    spec.write_text(yaml.safe_dump(small("auto-gone", both.ns, gpu=True).model_dump(mode="json")))
    with apiserver_stopped(fleet.onprem):
        out = fleet.cli("launch", "--cluster", "auto", str(spec))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "cluster onprem skipped" in out.stderr and "created in cloud" in out.stdout
    assert both.where("auto-gone") == ["cloud"]
    running(both.cloud, "auto-gone")


# -- (b) moves ----------------------------------------------------------------------------


def test_move_a_queued_experiment(fleet: Fleet, both: Both) -> None:
    both.onprem.launch(whole_nodes("blocker", both.ns, ONPREM_GPU_NODES))
    running(both.onprem, "blocker")
    both.onprem.launch(whole_nodes("waiter", both.ns, 2))
    both.onprem.wait("waiter", lambda s: s.get("phase") == "Queued" and s.get("position") == 1)

    out = fleet.cli("move", "waiter", "-n", both.ns, "--to", "cloud")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"moved {both.ns}/waiter from onprem to cloud" in out.stdout
    assert both.where("waiter") == ["cloud"]
    moved = both.cloud.get("waiter")
    assert moved["metadata"]["annotations"][ANNOTATION_MOVED_FROM] == "onprem"
    running(both.cloud, "waiter", timeout=180)
    events = [e for e in both.cloud.core.list_namespaced_event(both.ns).items
              if e.involved_object.name == "waiter" and e.reason == "Moved"]
    assert events and "moved here from cluster onprem" in events[0].message
    # Running it again finds the move done.
    again = fleet.cli("move", "waiter", "-n", both.ns, "--to", "cloud")
    assert again.returncode == 0 and "already in cloud" in again.stdout


def test_a_move_takes_the_shipped_workdir_along(fleet: Fleet, both: Both, tmp_path: Path) -> None:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "train.py").write_text("print('moved code')\n")
    spec = small("shipcode", both.ns, gpu=False).model_dump(mode="json", exclude_none=True)
    (folder / "experiment.yaml").write_text(yaml.safe_dump(spec))
    out = fleet.cli("launch", "-c", CLUSTERS[0][1], str(folder / "experiment.yaml"))
    assert out.returncode == 0, out.stdout + out.stderr
    source = both.onprem.core.read_namespaced_config_map("shipcode-workdir", both.ns)
    out = fleet.cli("move", "shipcode", "-n", both.ns, "--to", "cloud")
    assert out.returncode == 0, out.stdout + out.stderr
    copy = both.cloud.core.read_namespaced_config_map("shipcode-workdir", both.ns)
    assert copy.binary_data == source.binary_data
    uid = both.cloud.get("shipcode")["metadata"]["uid"]
    assert [r.uid for r in copy.metadata.owner_references] == [uid]


class PodWatch:
    """Polls both clusters for an experiment's pods: target first, then source, so a
    sighting of pods in both is a real overlap (the target's pods exist only after
    the source had none)."""

    def __init__(self, both: Both, name: str, source: str, target: str) -> None:
        self.both, self.name, self.source, self.target = both, name, source, target
        self.overlaps: list[tuple[int, int]] = []
        self.seen_target = False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            on_target = len(self.both.api(self.target).pods(self.name))
            on_source = len(self.both.api(self.source).pods(self.name))
            self.seen_target |= on_target > 0
            if on_target and on_source:
                self.overlaps.append((on_source, on_target))
            self.stop.wait(0.05)

    def __enter__(self) -> PodWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_move_a_running_experiment_never_runs_it_twice(fleet: Fleet, both: Both) -> None:
    both.onprem.launch(whole_nodes("runner", both.ns, 2))
    running(both.onprem, "runner")
    assert len(both.onprem.pods("runner")) == 2
    lines: list[str] = []
    with PodWatch(both, "runner", "onprem", "cloud") as watch:
        result = asyncio.run(move("runner", both.ns, "cloud", fleet.config, progress=lines.append))
        running(both.cloud, "runner", timeout=180)
        eventually(lambda: len(both.cloud.pods("runner")) == 2, 60, "pods on the target")
    assert result.outcome == "moved" and result.source == "onprem"
    assert watch.seen_target and watch.overlaps == [], watch.overlaps
    assert both.onprem.pods("runner") == [] and both.where("runner") == ["cloud"]
    assert any("held in onprem with no pods" in line for line in lines), lines


def test_move_when_the_target_goes_away_loses_nothing_and_resumes(fleet: Fleet, both: Both) -> None:
    both.onprem.launch(whole_nodes("sturdy", both.ns, 1))
    running(both.onprem, "sturdy")
    with apiserver_stopped(fleet.cloud):
        out = fleet.cli("move", "sturdy", "-n", both.ns, "--to", "cloud", "--from", "onprem")
        assert out.returncode == 1
        assert "could not create" in out.stderr and "stays held in onprem" in out.stderr
        assert "--to onprem" in out.stderr  # how to release it
        held = both.onprem.get("sturdy")
        assert held["status"]["phase"] == "Held" and both.onprem.pods("sturdy") == []
        assert held["metadata"]["annotations"][ANNOTATION_MOVING_TO] == "cloud"
        # Releasing needs to know no copy runs in the cloud: refused while it is away.
        out = fleet.cli("move", "sturdy", "-n", both.ns, "--to", "onprem")
        assert out.returncode == 1 and "cannot release" in out.stderr
    assert both.where("sturdy") == ["onprem"]  # nothing lost
    out = fleet.cli("move", "sturdy", "-n", both.ns, "--to", "cloud")
    assert out.returncode == 0, out.stdout + out.stderr
    assert both.where("sturdy") == ["cloud"]
    running(both.cloud, "sturdy", timeout=180)


def test_resume_after_a_crash_between_create_and_delete_and_release(fleet: Fleet, both: Both) -> None:
    # A move that stopped after step 3: the source held, the copy already made.
    both.onprem.launch(whole_nodes("half", both.ns, 1))
    running(both.onprem, "half")
    both.onprem.custom.patch_namespaced_custom_object(GROUP, VERSION, both.ns, "experiments", "half", {
        "metadata": {"annotations": {ANNOTATION_HOLD: "true", ANNOTATION_MOVING_TO: "cloud"}}})
    both.onprem.wait("half", lambda s: s.get("phase") == "Held")
    copy = both.onprem.get("half")
    both.cloud.custom.create_namespaced_custom_object(GROUP, VERSION, both.ns, "experiments", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Experiment",
        "metadata": {"name": "half", "annotations": {ANNOTATION_MOVED_FROM: "onprem"}}, "spec": copy["spec"]})
    # Releasing would run it twice: refused.
    with pytest.raises(MoveError, match="already copied from onprem to cloud"):
        asyncio.run(move("half", both.ns, "onprem", fleet.config))
    result = asyncio.run(move("half", both.ns, "cloud", fleet.config))
    assert result.outcome == "moved" and both.where("half") == ["cloud"]

    # A hold without a copy is released back into its own queue.
    both.onprem.launch(whole_nodes("back", both.ns, 1))
    running(both.onprem, "back")
    both.onprem.custom.patch_namespaced_custom_object(GROUP, VERSION, both.ns, "experiments", "back", {
        "metadata": {"annotations": {ANNOTATION_HOLD: "true", ANNOTATION_MOVING_TO: "cloud"}}})
    both.onprem.wait("back", lambda s: s.get("phase") == "Held")
    assert asyncio.run(move("back", both.ns, "onprem", fleet.config)).outcome == "released"
    running(both.onprem, "back")


def test_moving_a_finished_experiment_is_refused(fleet: Fleet, both: Both) -> None:
    from shipyard.dev.stages import TRAIN_DURATION

    exp = whole_nodes("done", both.ns, 1)
    exp = exp.model_copy(update={"roles": [exp.roles[0].model_copy(update={"annotations": {TRAIN_DURATION: "1s"}})]})
    both.onprem.launch(exp)
    both.onprem.wait("done", lambda s: s.get("phase") == "Succeeded", timeout=120)
    with pytest.raises(MoveError, match="nothing to move"):
        asyncio.run(move("done", both.ns, "cloud", fleet.config))
    assert both.where("done") == ["onprem"]
    assert ANNOTATION_HOLD not in (both.onprem.get("done")["metadata"].get("annotations") or {})


# -- re-dispatch --------------------------------------------------------------------------


def test_redispatch_moves_a_long_wait_to_where_it_fits_now(fleet: Fleet, both: Both,
                                                          request: pytest.FixtureRequest) -> None:
    from kubernetes import client

    def warm(n: int) -> None:
        with fleet.cloud.api_client(pool_size=1) as raw:
            client.CustomObjectsApi(raw).patch_cluster_custom_object(GROUP, VERSION, "nodepools", "a100-cloud",
                                                                     {"spec": {"warm_buffer": n}})

    # A free cloud GPU node to fit on now: one warm node in the cloud's GPU pool.
    warm(1)
    request.addfinalizer(lambda: warm(0))
    eventually(lambda: _capacity(fleet.cloud)["gpu-a100"]["freeLevels"][-1] >= 1, 120, "a free cloud GPU node")
    both.onprem.launch(whole_nodes("hog", both.ns, ONPREM_GPU_NODES))
    running(both.onprem, "hog")
    both.onprem.launch(whole_nodes("patient", both.ns, 1))
    both.onprem.wait("patient", lambda s: s.get("phase") == "Queued" and s.get("position") == 1)
    # The summary follows within seconds: no free node on-prem, one gang queued.
    eventually(lambda: _capacity(fleet.onprem)["gpu-a100"]["freeLevels"][-1] == 0
               and _capacity(fleet.onprem)["gpu-a100"]["queuedGangs"] == 1, 60, "on-prem summary shows it full")

    config = ClustersConfig.model_validate({**fleet.config.model_dump(), "redispatch_after": 3600})
    assert asyncio.run(redispatch_once(config)) == []  # not waited long enough
    config = ClustersConfig.model_validate({**fleet.config.model_dump(), "redispatch_after": 0.001})
    lines: list[str] = []
    moved = asyncio.run(redispatch_once(config, progress=lines.append))
    assert [(m.name, m.source, m.target) for m in moved] == [("patient", "onprem", "cloud")], lines
    running(both.cloud, "patient", timeout=120)
    assert both.where("hog") == ["onprem"]  # running work is never re-dispatched
    events = [e.message for e in both.cloud.core.list_namespaced_event(both.ns).items
              if e.involved_object.name == "patient" and e.reason == "Moved"]
    assert events and "queued" in events[0] and "fits now" in events[0], events


def test_unreachable_clusters_are_read_as_such(fleet: Fleet) -> None:
    readings = {r.ref.name: r for r in asyncio.run(read_capacities(list(fleet.config.clusters)))}
    assert readings["dead"].capacity is None and readings["dead"].problem
    assert readings["onprem"].capacity is not None and readings["cloud"].capacity is not None
