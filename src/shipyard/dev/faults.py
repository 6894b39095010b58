"""Fault injection against a dev cluster running shipyard's controller, for the fault
suite (`bench/faults.py`, tests/integration/test_faults.py).

A scenario starts controllers as real processes (`shipyard controller run`), submits
a burst of mixed gangs (1-16 pods, three queues, kwok pods that finish after a few
seconds), injects one kind of fault several times while the burst runs, waits for
every experiment to finish, and reports what the API server showed meanwhile
(dev/invariants.py): capacity, duplicate and partial gangs, lost experiments,
orphans, restart counts, time to converge and leader failover times.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from shipyard.api.vocab import LABEL_ATTEMPT, LABEL_EXPERIMENT, LABEL_INDEX, LABEL_ROLE
from shipyard.dev import cluster as devcluster
from shipyard.dev import procs
from shipyard.dev.client import RawClient
from shipyard.dev.invariants import (
    EXPERIMENTS_PATH,
    Restarts,
    Sampler,
    Violations,
    final_check,
    live,
)
from shipyard.dev.pools import parse_pool_arg
from shipyard.dev.stages import TRAIN_DURATION
from shipyard.kube.install import CONTROLLER, SYSTEM_NAMESPACE
from shipyard.kube.objects import experiment_resource
from shipyard.spec import Experiment, Resources, RetryPolicy, Role

FAULTS = ("controller-kill", "apiserver-restart", "watch-expiry", "leader-pause", "leader-kill",
          "node-notready", "node-delete", "malformed")
POOLS = ("cpu-small:24", "gpu-a100:12")
QUEUES = {"faults-a": 1.0, "faults-b": 1.0, "faults-c": 2.0}
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{SYSTEM_NAMESPACE}/leases/{CONTROLLER}"


@dataclass(frozen=True)
class Lease:
    """Leader-election timings passed to every controller of a scenario."""

    duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_s: float = 2.0

    def args(self) -> list[str]:
        return [f"--leader-elect-lease-duration={self.duration_s:g}",
                f"--leader-elect-renew-deadline={self.renew_deadline_s:g}",
                f"--leader-elect-retry-period={self.retry_s:g}"]


@dataclass
class Row:
    """One scenario's result: the columns of the fault table."""

    fault: str
    runs: int  # faults injected
    experiments: int
    violations: Violations
    lost: list[str]
    orphans: list[str]
    wrong_restarts: list[str]
    converge_s: float  # from the last fault to every experiment finished, no pod left
    failover_s: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def clean(self, bound_s: float) -> bool:
        v = self.violations
        return not (self.lost or self.orphans or self.wrong_restarts or v.over_capacity
                    or v.duplicates or v.partial_over(bound_s))


# -- the workload ---------------------------------------------------------------------


def workload(n: int, seed: int = 0, prefix: str = "f") -> list[Experiment]:
    """Mixed gangs: 70% CPU gangs of 1-16 small pods, 30% whole-node GPU gangs of 1-4;
    each pod succeeds 2-8 s after it runs; up to 3 restarts, 20 s apart at first
    (doubling). Not shorter: kwok deletes a terminating pod by name, with no UID
    precondition, and retries a delete that found nothing for some seconds (up to 6 s
    seen on a quiet machine, in the API server's audit log; longer while its watch lags
    on a loaded one); a gang made again under the same pod names within that time loses
    pods to it, which a real kubelet never does (it deletes on the pod's UID). The
    default 10 s once let a CI run restart three gangs twice for one NotReady."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        gpu = rng.random() < 0.3
        role = Role(
            name="worker", replicas=rng.randint(1, 4) if gpu else rng.randint(1, 16),
            machine_type="gpu-a100" if gpu else "cpu-small", command=["python", "train.py"],
            resources=None if gpu else Resources(cpu="250m", memory="256Mi"),
            annotations={TRAIN_DURATION: f"{rng.randint(2, 8)}s"},
        )
        out.append(Experiment(name=f"{prefix}{i:04d}", queue=rng.choice(list(QUEUES)), roles=[role],
                              retry=RetryPolicy(max_restarts=3, backoff_seconds=20)))
    return out


def _post(api: RawClient, path: str, body: dict[str, Any], attempts: int = 120) -> int:
    """POST, retrying while the API server is away (as a user would); the status."""
    status = 0
    for _ in range(attempts):
        try:
            status, _ = api.request("POST", path, body)
        except OSError:
            status = 0
        if status and status < 500:
            return status
        time.sleep(0.5)
    return status


def submit(api: RawClient, namespace: str, exps: list[Experiment], spread_s: float) -> None:
    """Create the experiments, evenly over `spread_s` seconds, from a few threads."""
    path = EXPERIMENTS_PATH.format(ns=namespace)
    start = time.monotonic()

    def one(i: int) -> None:
        delay = start + spread_s * i / max(1, len(exps)) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        body = experiment_resource(exps[i].model_copy(update={"namespace": namespace}))
        status = _post(api, path, body)
        if status not in (201, 409):
            raise RuntimeError(f"creating {exps[i].name}: HTTP {status}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(len(exps))))


# -- processes ------------------------------------------------------------------------


class Controllers:
    """`shipyard controller run` processes on one cluster, logging to its log dir."""

    def __init__(self, cluster: devcluster.DevCluster, *, leader_elect: bool,
                 lease: Lease) -> None:
        self.cluster, self.leader_elect, self.lease = cluster, leader_elect, lease
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log = cluster.state_dir / "logs" / "shipyard-controller.log"
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
        env.pop("POD_NAME", None)
        self.env = env

    def install(self) -> None:
        subprocess.run([sys.executable, "-m", "shipyard.cli", "install", "--cluster",
                        self.cluster.context, "--replicas", "0"], env=self.env, check=True,
                       timeout=120, stdout=subprocess.DEVNULL)

    def start(self) -> subprocess.Popen[bytes]:
        args = self.lease.args() if self.leader_elect else ["--no-leader-elect"]
        with open(self.log, "ab") as out:
            p = subprocess.Popen([sys.executable, "-m", "shipyard.cli", "controller", "run",
                                  "--cluster", self.cluster.context, *args],
                                 env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        self.procs.append(p)
        return p

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def supervise(self, replicas: int) -> None:
        """Keep `replicas` processes running, as a Deployment would: a controller that
        exits (it lost its lease, say) is replaced by a fresh one."""
        self.replicas = replicas
        self._supervising = threading.Event()
        self._supervising.set()

        def loop() -> None:
            while self._supervising.is_set():
                if len(self.alive()) < self.replicas:
                    self.start()
                time.sleep(0.5)

        threading.Thread(target=loop, name="controller-supervisor", daemon=True).start()

    def exits(self) -> list[int]:
        return [p.returncode for p in self.procs if p.poll() is not None]

    def leader(self, api: RawClient) -> subprocess.Popen[bytes] | None:
        holder = lease_holder(api)
        for p in self.alive():
            if holder == f"{socket.gethostname()}-{p.pid}":
                return p
        return None

    def stop_all(self) -> None:
        if getattr(self, "_supervising", None) is not None:
            self._supervising.clear()
            time.sleep(0.6)
        for p in self.alive():
            os.killpg(p.pid, signal.SIGCONT)
            os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


def lease_holder(api: RawClient) -> str | None:
    try:
        status, body = api.request("GET", LEASE_PATH)
    except OSError:
        return None
    return (json.loads(body).get("spec") or {}).get("holderIdentity") if status == 200 else None


def lease_renewed_since(api: RawClient, wall: float) -> bool:
    """A controller holds the Lease and renewed it after `wall` (a time.time())."""
    try:
        status, body = api.request("GET", LEASE_PATH)
    except OSError:
        return False
    spec = (json.loads(body).get("spec") or {}) if status == 200 else {}
    renewed = spec.get("renewTime")
    return bool(spec.get("holderIdentity") and renewed
                and datetime.fromisoformat(renewed).timestamp() > wall)


def restart_component(cluster: devcluster.DevCluster, name: str, *, kill: bool = True,
                      timeout: float = 120) -> float:
    """SIGKILL (or stop) one control-plane process and start it again with the same
    command line; returns the seconds until it answered again."""
    record = next(r for r in cluster.procs if r.name == name)
    p = record.process()
    if p is None:
        raise RuntimeError(f"{name} of {cluster.name} is not running")
    argv, cwd = p.cmdline(), p.cwd()
    began = time.monotonic()
    if kill:
        os.killpg(record.pid, signal.SIGKILL)
        p.wait(timeout=30)
    else:
        procs.stop([record])
    fresh = procs.start(name, argv, Path(record.log), cwd=Path(cwd))
    cluster.procs = [fresh if r is record else r for r in cluster.procs]
    cluster.save()
    tls = cluster.raw_client()
    deadline = began + timeout
    while time.monotonic() < deadline:
        try:
            if tls.request("GET", "/readyz")[0] == 200:
                return time.monotonic() - began
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not come back in {timeout:.0f}s")


def compact_etcd(cluster: devcluster.DevCluster) -> int:
    """Compact etcd to its current revision, so every older watch position is gone."""
    import urllib.request

    base = f"http://127.0.0.1:{cluster.ports['etcd']}/v3/kv"

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(f"{base}/{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    revision = int(post("range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"])
    post("compaction", {"revision": revision, "physical": True})
    return revision


# -- scenarios ------------------------------------------------------------------------


@dataclass
class Scenario:
    """What one run of a fault needs; `bench/faults.py` and the tests fill it in."""

    cluster: devcluster.DevCluster
    fault: str
    experiments: int = 150
    injections: int = 3
    spread_s: float = 20.0  # the burst is submitted over this long
    lease: Lease = field(default_factory=Lease)
    seed: int = 0
    timeout_s: float = 600.0
    sample_interval_s: float = 0.5
    bound_s: float = 5.0  # a partial window longer than this is a violation
    progress: Callable[[str], None] = lambda _: None


class _Run:
    def __init__(self, s: Scenario) -> None:
        self.s = s
        self.api = s.cluster.raw_client()
        self.ns = f"faults-{s.fault}-{os.getpid()}-{int(time.time()) % 100000}"
        two = s.fault.startswith("leader")
        self.controllers = Controllers(s.cluster, leader_elect=two or s.fault != "controller-kill",
                                       lease=s.lease)
        self.restarts = Restarts()
        self.failover: list[float] = []
        self.notes: list[str] = []
        self.exps = workload(s.experiments, s.seed, prefix="x")

    def setup(self) -> None:
        self.log_offset = _size(self.controllers.log)
        self.controllers.install()
        _post(self.api, "/api/v1/namespaces", {"metadata": {"name": self.ns}})
        for name, weight in QUEUES.items():
            _post(self.api, "/apis/shipyard.dev/v1alpha1/queues",
                  {"apiVersion": "shipyard.dev/v1alpha1", "kind": "Queue",
                   "metadata": {"name": name}, "spec": {"weight": weight}})
        self.controllers.start()
        if self.s.fault.startswith("leader"):
            self._wait(lambda: self.controllers.leader(self.api) is not None, 60, "a leader")
            self.controllers.supervise(2)  # a standby, and a fresh one for each that exits
        else:
            self.controllers.supervise(1)

    def _wait(self, check: Callable[[], bool], timeout: float, what: str) -> float:
        began = time.monotonic()
        while not check():
            if time.monotonic() - began > timeout:
                raise RuntimeError(f"{self.s.fault}: no {what} after {timeout:.0f}s")
            time.sleep(0.1)
        return time.monotonic() - began

    # -- the faults -------------------------------------------------------------------

    def inject(self, i: int) -> None:
        getattr(self, "_" + self.s.fault.replace("-", "_"))(i)

    def _controller_kill(self, i: int) -> None:
        # With no standby nobody can act from the kill until the replacement (the
        # supervisor starts it, as a Deployment would) has filled its caches: excused, as
        # a failover is until the new leader holds the lease. How long that takes is in
        # the notes, and so is the longest partial window counting it.
        offset = _size(self.controllers.log)
        excused = self.sampler.excuse(time.monotonic())
        for p in self.controllers.alive():
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        self._wait(lambda: b"caches synced" in _read_from(self.controllers.log, offset), 120,
                   "restarted controller")
        self.sampler.end_excuse(excused, time.monotonic())

    def _restart_apiserver(self) -> float:
        """Kill and restart the API server; excused until /readyz and, with leader
        election, until a leader renews its Lease after that: an outage past the renew
        deadline costs the leader its lease (it stops writing, as client-go's does), and
        nobody acts until a new one has waited the lease out."""
        excused = self.sampler.excuse(time.monotonic())
        took = restart_component(self.s.cluster, "kube-apiserver")
        if self.controllers.leader_elect:
            back = time.time()
            leaderless = self._wait(lambda: lease_renewed_since(self.api, back),
                                    self.s.lease.duration_s * 3 + 30, "leader after the restart")
            self.notes.append(f"a leader renewed {leaderless:.1f}s after the API server was back")
        self.sampler.end_excuse(excused, time.monotonic())
        return took

    def _apiserver_restart(self, i: int) -> None:
        self.notes.append(f"apiserver back in {self._restart_apiserver():.1f}s")

    def _watch_expiry(self, i: int) -> None:
        compact_etcd(self.s.cluster)
        self._restart_apiserver()

    def _leader_pause(self, i: int) -> None:
        self._failover(pause=True)

    def _leader_kill(self, i: int) -> None:
        self._failover(pause=False)

    def _failover(self, *, pause: bool) -> None:
        leader = self.controllers.leader(self.api)
        if leader is None:
            self._wait(lambda: self.controllers.leader(self.api) is not None, 60, "leader")
            leader = self.controllers.leader(self.api)
        assert leader is not None
        old = lease_holder(self.api)
        began = time.monotonic()
        excused = self.sampler.excuse(began)  # nobody can act until a new leader holds it
        os.killpg(leader.pid, signal.SIGSTOP if pause else signal.SIGKILL)
        limit = self.s.lease.duration_s * 3 + 30
        self._wait(lambda: lease_holder(self.api) not in (None, old), limit, "new leader")
        self.failover.append(time.monotonic() - began)
        self.sampler.end_excuse(excused, time.monotonic())
        if pause:
            # Past its lease: resume it; it must find its fence closed and exit.
            time.sleep(max(0.0, began + self.s.lease.duration_s + 2 - time.monotonic()))
            os.killpg(leader.pid, signal.SIGCONT)
            try:
                code = leader.wait(timeout=self.s.lease.retry_s + 15)
            except subprocess.TimeoutExpired:
                self.notes.append("resumed old leader did not exit")
                os.killpg(leader.pid, signal.SIGKILL)
                code = leader.wait()
            if code == 0:
                self.notes.append("resumed old leader exited 0, expected non-zero")
        else:
            leader.wait()

    def _busy_node(self, gpu: bool) -> str:
        """The node running pods of the most experiments of this scenario ("" if none)."""
        status, body = self.api.request("GET", f"/api/v1/namespaces/{self.ns}/pods")
        by_node: dict[str, set[str]] = {}
        for pod in json.loads(body)["items"] if status == 200 else []:
            node = pod["spec"].get("nodeName")
            if node and live(pod) and ("gpu" in node) == gpu:
                by_node.setdefault(node, set()).add(pod["metadata"]["labels"][LABEL_EXPERIMENT])
        return max(by_node, key=lambda n: len(by_node[n]), default="")

    def _experiments_on(self, node: str) -> set[str]:
        status, body = self.api.request(
            "GET", f"/api/v1/namespaces/{self.ns}/pods?fieldSelector=spec.nodeName%3D{node}")
        return {p["metadata"]["labels"][LABEL_EXPERIMENT]
                for p in (json.loads(body)["items"] if status == 200 else []) if live(p)}

    def _hit_busy_node(self, i: int, fault: Callable[[str], None], *, fatal: bool) -> str:
        """Apply `fault` to a busy node (GPU and CPU in turn). A gang with a live pod there
        just before or at any look in the 2 s after (placed from a cache not yet up to
        date, and maybe restarted before the last look) may be restarted once for it;
        with `fatal` (the node is gone), one live there before and at the last look must be."""
        node = self._busy_node(gpu=i % 2 == 0)
        if not node:
            self.notes.append("no busy node for the fault")
            return ""
        before = self._experiments_on(node)
        fault(node)
        seen: set[str] = set()
        deadline = time.monotonic() + 2
        while True:  # a restart takes over a second (stop reason, then delete): looks
            after = self._experiments_on(node)  # 0.25 s apart see every gang placed there
            seen |= after
            if time.monotonic() >= deadline:
                break
            time.sleep(0.25)
        r = self.restarts
        r.nodes.add(node)
        for exp in before | seen:
            r.high[exp] = r.high.get(exp, 0) + 1
        for exp in (before & after) if fatal else ():
            r.low[exp] = r.low.get(exp, 0) + 1
        return node

    def _node_notready(self, i: int) -> None:
        node = self._hit_busy_node(
            i, lambda n: self.s.cluster.set_node_not_ready(n, "fault suite"), fatal=False)
        if node:
            self.s.cluster.set_node_ready(node)

    def _node_delete(self, i: int) -> None:
        node = self._hit_busy_node(i, self.s.cluster.delete_node, fatal=True)
        if node:  # a fresh node in its place, as an autoscaler would
            machine = "gpu-a100" if "gpu" in node else "cpu-small"
            self.s.cluster.add_pools([parse_pool_arg(f"{machine}:1")], timeout=120)

    def _malformed(self, i: int) -> None:
        self.notes.append("accepted: " + ", ".join(plant_malformed(self.api, f"{self.ns}-bad", i))
                          or "none accepted")
        if i == self.s.injections - 1:  # a restart must sync with the bad objects there
            for p in self.controllers.alive():
                os.killpg(p.pid, signal.SIGTERM)  # releases the lease: no wait for a new one
                p.wait(timeout=30)

    # -- the run ----------------------------------------------------------------------

    def finished(self) -> bool:
        status, body = self.api.request("GET", EXPERIMENTS_PATH.format(ns=self.ns))
        if status != 200:
            return False
        items = json.loads(body)["items"]
        if len(items) < len(self.exps) or any(
                (e.get("status") or {}).get("phase") not in ("Succeeded", "Failed") for e in items):
            return False
        status, body = self.api.request("GET", f"/api/v1/namespaces/{self.ns}/pods")
        return status == 200 and not any(
            p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
            for p in json.loads(body)["items"])

    def run(self) -> Row:
        s = self.s
        self.setup()
        sampler = self.sampler = Sampler(s.cluster.raw_client(), self.ns,
                                               server=s.cluster.server,
                                               certs_dir=s.cluster.certs_dir,
                                               interval_s=s.sample_interval_s,
                                               bound_s=s.bound_s)
        sampler.start()
        submitter = threading.Thread(target=submit, args=(s.cluster.raw_client(), self.ns,
                                                          self.exps, s.spread_s), daemon=True)
        submitter.start()
        try:
            for i in range(s.injections):
                time.sleep(s.spread_s / (s.injections + 1))
                s.progress(f"{s.fault}: fault {i + 1}/{s.injections}")
                self.inject(i)
            submitter.join()
            last = time.monotonic()
            self._wait(lambda: _safe(self.finished), s.timeout_s, "convergence")
            converge = time.monotonic() - last
        finally:
            violations = sampler.stop()
            self.controllers.stop_all()
        out = final_check(self.api, self.ns, {e.name: "Succeeded" for e in self.exps},
                          self.restarts)
        if s.fault == "malformed":
            status, body = self.api.request("GET", EXPERIMENTS_PATH.format(ns=f"{self.ns}-bad"))
            phases = sorted({(e.get("status") or {}).get("phase") or "no phase"
                             for e in (json.loads(body)["items"] if status == 200 else [])})
            self.notes.append(f"bad experiments ended: {', '.join(phases) or 'none accepted'}")
        self._cleanup()
        restart = restart_times(self.controllers.log, self.log_offset)
        if restart:
            self.notes.append(restart)
        if out.creation_spans:
            self.notes.append(self._creation_note(out.creation_spans))
        if violations.samples:
            self.notes.append(f"{violations.samples} invariant samples; the pod watch "
                              f"ran at most {sampler.watch_lag_s:.1f}s behind")
        if violations.partial_windows:
            self.notes.append("longest partial window counting the excused time: "
                              f"{violations.longest_partial_unexcused:.1f}s")
        exits = self.controllers.exits()
        if exits:
            self.notes.append(f"controller exit codes: {sorted(exits)}")
        if any(code > 0 for code in exits):  # why they stopped, for the failure message
            self.notes += log_errors(self.controllers.log, self.log_offset)
        return Row(s.fault, s.injections, len(self.exps), violations, out.lost, out.orphans,
                   out.wrong_restarts, converge, self.failover, self.notes)

    def _creation_note(self, spans: list[tuple[str, float, float]]) -> str:
        """Gang creation timed by the API server's creationTimestamps, excused time
        taken off: the partial windows' cross-check that no watch lag can stretch."""
        to_monotonic = time.monotonic() - time.time()
        took = sorted(((max(0.0, last - first - self.sampler.excused_within(
            first + to_monotonic, last + to_monotonic)), name) for name, first, last in spans),
            reverse=True)
        over = [f"{name} {s:.0f}s" for s, name in took if s > self.s.bound_s]
        return (f"gang creation by the API server's timestamps (1 s resolution): longest "
                f"{took[0][0]:.0f}s, {len(over)} over {self.s.bound_s:g}s"
                + (f" ({', '.join(over[:8])})" if over else ""))

    def _cleanup(self) -> None:
        for ns in (self.ns, f"{self.ns}-bad"):
            self.api.request("DELETE", f"/api/v1/namespaces/{ns}")


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except (OSError, ValueError):
        return False


def run_scenario(scenario: Scenario) -> Row:
    return _Run(scenario).run()


# -- malformed objects --------------------------------------------------------------


def plant_malformed(api: RawClient, namespace: str, i: int) -> list[str]:
    """Objects written by hand with bad fields, of every kind the controller watches.
    Returns what the API server accepted (the rest it refused, which is also fine)."""
    _post(api, "/api/v1/namespaces", {"metadata": {"name": namespace}})
    node = _some_node(api)
    bad_pods = [
        {LABEL_EXPERIMENT: "ghost", LABEL_ATTEMPT: "x", LABEL_ROLE: "worker", LABEL_INDEX: "0"},
        {LABEL_EXPERIMENT: "ghost", LABEL_ROLE: "worker"},  # no index
        {LABEL_EXPERIMENT: "ghost", LABEL_INDEX: "zero"},
    ]
    accepted = []
    for j, labels in enumerate(bad_pods):
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"bad-{i}-{j}", "namespace": namespace, "labels": labels},
                "spec": {"nodeName": node, "containers": [
                    {"name": "c", "image": "none", "resources": {"requests": {"cpu": "10m"}}}],
                    "tolerations": [{"operator": "Exists"}]}}
        if _post(api, f"/api/v1/namespaces/{namespace}/pods", body) == 201:
            accepted.append(f"pod bad-{i}-{j}")
    role = {"name": "w", "replicas": 1, "machine_type": "cpu-small", "command": ["x"]}
    exps: list[dict[str, Any]] = [
        {"roles": []}, {"roles": "not a list"}, {"priority": 10**9, "roles": [role]},
        # The schema cannot know these; the controller must fail them, and go on.
        {"roles": [{**role, "machine_type": "nope"}]}, {"roles": [role, role]}]
    for j, spec in enumerate(exps):
        body = {"apiVersion": "shipyard.dev/v1alpha1", "kind": "Experiment",
                "metadata": {"name": f"bad-{i}-{j}", "namespace": namespace}, "spec": spec}
        if _post(api, EXPERIMENTS_PATH.format(ns=namespace), body) == 201:
            accepted.append(f"experiment bad-{i}-{j}")
    for kind, spec in (("queues", {"weight": -1}), ("nodepools", {"machine_type": 7, "max": "x"})):
        body = {"apiVersion": "shipyard.dev/v1alpha1",
                "kind": "Queue" if kind == "queues" else "NodePool",
                "metadata": {"name": f"bad-{i}-{os.getpid()}"}, "spec": spec}
        if _post(api, f"/apis/shipyard.dev/v1alpha1/{kind}", body) == 201:
            accepted.append(f"{kind} bad-{i}")
    return accepted


def _some_node(api: RawClient) -> str:
    status, body = api.request("GET", "/api/v1/nodes?limit=1")
    return json.loads(body)["items"][0]["metadata"]["name"] if status == 200 else ""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except OSError:
        return b""


def restart_times(log_path: Path, offset: int) -> str:
    """How long each controller of a run took to fill its caches and run its first
    cycle, from its own log lines (after `offset`): where a restart's time goes."""
    text = _read_from(log_path, offset).decode(errors="replace")
    synced = [float(m) for m in re.findall(r"caches synced in ([0-9.]+)s", text)]
    first = [float(m) for m in re.findall(r"first cycle in ([0-9.]+)s", text)]
    if not synced:
        return ""
    out = (f"{len(synced)} controller starts: caches synced in {statistics.median(synced):.2f}s "
           f"median ({max(synced):.2f} max)")
    if first:
        out += f", first cycle {statistics.median(first):.2f}s median ({max(first):.2f} max)"
    return out


def log_errors(log_path: Path, offset: int, keep: int = 6) -> list[str]:
    """The distinct ERROR/CRITICAL lines and exception lines of a run's controller log,
    and its failed writes and outages (warnings): what a gang completed late waited on."""
    lines = _read_from(log_path, offset).decode(errors="replace").splitlines()
    wanted = [ln[24:300] for ln in lines if " ERROR " in ln or " CRITICAL " in ln
              or (" WARNING " in ln and ("write failed" in ln or ": failing (" in ln))
              or re.match(r"^[A-Za-z_.]+(Error|Exception|Leadership|Stopped)\b", ln)]
    return list(dict.fromkeys(wanted))[:keep]


def controller_log_count(cluster: devcluster.DevCluster, text: str) -> int:
    path = cluster.state_dir / "logs" / "shipyard-controller.log"
    try:
        return path.read_text(errors="replace").count(text)
    except OSError:
        return 0
