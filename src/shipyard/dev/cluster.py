"""Start, stop and list local control planes: etcd, kube-apiserver, controller-manager,
scheduler and kwok, bound to 127.0.0.1 on ports picked at `up` time.

Each cluster lives in `<state>/<name>/` (certs/, etcd/, logs/, kubeconfig,
cluster.json); `<state>` is $SHIPYARD_DEV_STATE_DIR or
~/.local/state/shipyard/dev. Processes run in their own process groups and
outlive the command that started them; `down` stops them by recorded pid.
"""

from __future__ import annotations

import functools
import json
import shutil
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shipyard.api.vocab import TAINT_UNHEALTHY
from shipyard.dev import build, certs, client, kubeconfig, netns, pools, procs, realnode
from shipyard.dev.stages import NOT_READY, NOT_READY_REASON, KwokOptions, kwok_config

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
PORT_NAMES = ("etcd", "etcd_peer", "apiserver", "controller_manager", "scheduler", "kwok")
# Alpha API groups a feature gate needs served (--runtime-config), so that turning
# the gate on is enough: GenericWorkload's Workload and PodGroup kinds.
GATE_APIS = {"GenericWorkload": "scheduling.k8s.io/v1alpha2"}
GATED = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")  # get --feature-gates


class DevClusterError(RuntimeError):
    """A dev cluster could not be started, found or stopped; the message says why."""


def parse_feature_gates(text: str) -> dict[str, bool]:
    """`A=true,B=false` (Kubernetes' --feature-gates syntax) as a dict."""
    gates: dict[str, bool] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        gate, sep, value = item.partition("=")
        if not sep or not gate.isalnum() or value.lower() not in ("true", "false"):
            raise ValueError(f"bad feature gate {item!r}: want NAME=true or NAME=false")
        gates[gate] = value.lower() == "true"
    return gates


def format_feature_gates(gates: dict[str, bool]) -> str:
    return ",".join(f"{g}={str(v).lower()}" for g, v in sorted(gates.items()))


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class Tuning:
    """Settings that let a 2-core machine hold thousands of simulated nodes.

    docs/devcluster.md explains each; the defaults are what the benchmark used.
    """

    etcd_quota_bytes: int = 8 * 2**30  # default 2 GiB fills up past ~10k nodes + churn
    etcd_unsafe_no_fsync: bool = True  # throwaway data; fsync dominates write latency
    max_requests_inflight: int = 800
    max_mutating_requests_inflight: int = 400
    # Must exceed kwok's lease renew interval (lease duration / 4).
    node_monitor_grace_period: str = "10m"
    controller_manager_qps: int = 200
    scheduler_qps: int = 500
    # Controllers a simulated batch cluster never needs; `ttl` alone would rewrite
    # every Node object when the cluster crosses a size threshold.
    disabled_controllers: tuple[str, ...] = (
        "ttl-controller",
        "bootstrap-signer-controller",
        "token-cleaner-controller",
        "service-lb-controller",
        "node-route-controller",
        "cloud-node-lifecycle-controller",
        "persistentvolume-attach-detach-controller",
        "persistentvolume-expander-controller",
        "ephemeral-volume-controller",
        "certificatesigningrequest-signing-controller",
        "certificatesigningrequest-approving-controller",
        "certificatesigningrequest-cleaner-controller",
    )
    kwok: KwokOptions = field(default_factory=KwokOptions)


def state_root() -> Path:
    import os

    env = os.environ.get("SHIPYARD_DEV_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "shipyard" / "dev"


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@dataclass
class DevCluster:
    """A running (or recorded) dev cluster: what tests and the CLI hold on to."""

    name: str
    state_dir: Path
    ports: dict[str, int]
    bin_dir: str
    procs: list[procs.ProcRecord] = field(default_factory=list)
    pool_next_index: dict[str, int] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    # Real nodes: the network namespace everything runs in, the nodes, and the
    # hard-coded host paths this cluster created (removed at `down`).
    netns: str | None = None
    real_nodes: list[dict[str, Any]] = field(default_factory=list)
    host_paths: list[str] = field(default_factory=list)
    # --feature-gates of the API server, controller-manager and scheduler (empty: defaults).
    feature_gates: dict[str, bool] = field(default_factory=dict)

    # -- addresses ------------------------------------------------------------
    @property
    def context(self) -> str:
        return f"shipyard-{self.name}"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def certs_dir(self) -> Path:
        return self.state_dir / "certs"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def inner_server(self) -> str:
        """The API server as seen from inside the namespace (kubelets, pods)."""
        if self.netns is None:
            return self.server
        return f"https://{netns.Netns(self.netns).node_ip(0)}:{self.ports['apiserver']}"

    # -- persistence ----------------------------------------------------------
    def save(self) -> None:
        data = asdict(self)
        data["state_dir"] = str(self.state_dir)
        tmp = self.state_dir / "cluster.json.tmp"
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.state_dir / "cluster.json")

    @classmethod
    def load(cls, name: str) -> DevCluster:
        f = state_root() / name / "cluster.json"
        if not f.is_file():
            raise DevClusterError(f"no dev cluster named {name!r} (looked for {f})")
        data = json.loads(f.read_text())
        data["state_dir"] = Path(data["state_dir"])
        data["procs"] = [procs.ProcRecord(**p) for p in data["procs"]]
        return cls(**data)

    # -- state ----------------------------------------------------------------
    def component_status(self) -> dict[str, bool]:
        alive = {r.name: r.alive() for r in self.procs}
        extra = [r.name for r in self.procs if r.name not in COMPONENTS]
        return {c: alive.get(c, False) for c in (*COMPONENTS, *extra)}

    def running(self) -> bool:
        return all(self.component_status().values())

    def api_client(self, pool_size: int = 32) -> Any:
        """A fresh `kubernetes.client.ApiClient` for this cluster (admin)."""
        return client.api_client(self.kubeconfig, self.context, pool_size=pool_size)

    def raw_client(self) -> client.RawClient:
        """A light JSON client (admin) for bulk calls; see `client.RawClient`."""
        return client.RawClient(self.server, client.tls_context(self.certs_dir))

    # -- nodes ----------------------------------------------------------------
    def add_pools(
        self, specs: list[pools.PoolSpec], *, wait: bool = True, timeout: float = 600,
        progress: Progress = _quiet,
    ) -> list[str]:
        """Create the nodes of `specs` (appending to pools of the same name) and,
        unless `wait` is False, wait until every kwok node is Ready."""
        nodes = list(pools.nodes_for(specs, self.pool_next_index))
        for s in specs:
            self.pool_next_index[s.name] = self.pool_next_index.get(s.name, 0) + s.count
        self.save()
        api = self.raw_client()
        pools.create_nodes(
            api, nodes, workers=24, progress=lambda d, t: progress(f"creating nodes {d}/{t}"))
        if wait:
            self.wait_nodes_ready(timeout=timeout, progress=progress, api=api)
        return [n["metadata"]["name"] for n in nodes]

    def wait_nodes_ready(
        self, minimum: int | None = None, *, timeout: float = 600, progress: Progress = _quiet,
        api: client.RawClient | None = None,
    ) -> int:
        """Wait until `minimum` (default: all) kwok nodes are Ready; return how many are."""
        api = api or self.raw_client()
        deadline = time.monotonic() + timeout
        while True:
            ready, total = pools.ready_count(api)
            want = total if minimum is None else minimum
            progress(f"nodes Ready {ready}/{want}")
            if ready >= want:
                return ready
            if time.monotonic() > deadline:
                raise DevClusterError(
                    f"{self.name}: only {ready}/{want} nodes Ready after {timeout:.0f}s; "
                    f"see {self.state_dir / 'logs' / 'kwok.log'}"
                )
            time.sleep(1.0)

    def stop_kubelet(self, node: str) -> None:
        """Stop a real node's kubelet (its containers keep running), as if it crashed.
        Raises when there is no running kubelet for `node`, or it outlives SIGKILL: a
        fault that silently did nothing would leave a test waiting for a NotReady node."""
        records = [r for r in self.procs if r.name == f"kubelet/{node}"]
        if not any(r.alive() for r in records):
            raise DevClusterError(f"{self.name}: no running kubelet for node {node!r}")
        procs.stop(records, grace=5)
        alive = [r.pid for r in records if r.alive()]
        if alive:
            raise DevClusterError(f"{self.name}: the kubelet of {node} (pid {alive}) did not stop")

    def start_kubelet(self, node: str) -> None:
        """Start a stopped real node's kubelet again with the same arguments."""
        from shipyard.dev import realcluster

        realcluster.restart_kubelet(self, node)

    def set_node_not_ready(self, node: str, message: str = "made NotReady by shipyard dev",
                           reason: str = "KubeletNotReady") -> None:
        self._patch_node(node, {NOT_READY: message, NOT_READY_REASON: reason})

    def set_node_ready(self, node: str) -> None:
        self._patch_node(node, {NOT_READY: None, NOT_READY_REASON: None})

    def set_node_unhealthy(self, node: str, reason: str | None) -> None:
        """What a GPU health agent does: taint the node shipyard.dev/unhealthy=REASON
        (NoSchedule); None: remove the taint."""
        from kubernetes import client as k

        with self.api_client(pool_size=1) as api:
            core = k.CoreV1Api(api)
            obj = core.read_node(node)
            taints = [{"key": t.key, "value": t.value, "effect": t.effect}
                      for t in (obj.spec.taints if obj.spec else None) or [] if t.key != TAINT_UNHEALTHY]
            if reason is not None:
                taints.append({"key": TAINT_UNHEALTHY, "value": reason,
                               "effect": "NoSchedule"})
            version = obj.metadata.resource_version if obj.metadata else None
            core.patch_node(node, {"metadata": {"resourceVersion": version},
                                   "spec": {"taints": taints or None}})

    def delete_node(self, node: str) -> None:
        from kubernetes import client as k

        with self.api_client(pool_size=1) as api:
            k.CoreV1Api(api).delete_node(node)

    def _patch_node(self, node: str, annotations: dict[str, str | None]) -> None:
        from kubernetes import client as k

        with self.api_client(pool_size=1) as api:
            k.CoreV1Api(api).patch_node(node, {"metadata": {"annotations": annotations}})


# -- bring-up ------------------------------------------------------------------


def _args(c: DevCluster, tuning: Tuning) -> dict[str, list[str]]:
    args = _plain_args(c, tuning)
    if c.netns is None:
        return args
    # Inside the namespace: reachable by kubelets and pods on the node address too.
    node_ip = netns.Netns(c.netns).node_ip(0)
    api = args["kube-apiserver"]
    api[api.index("--bind-address=127.0.0.1")] = "--bind-address=0.0.0.0"
    api[api.index("--advertise-address=127.0.0.1")] = f"--advertise-address={node_ip}"
    api.append("--kubelet-preferred-address-types=InternalIP,Hostname")
    return args


def _with_gates(args: dict[str, list[str]], gates: dict[str, bool]) -> dict[str, list[str]]:
    if not gates:
        return args
    for comp in GATED:
        args[comp].append(f"--feature-gates={format_feature_gates(gates)}")
    apis = sorted(GATE_APIS[g] for g, on in gates.items() if on and g in GATE_APIS)
    if apis:
        args["kube-apiserver"].append("--runtime-config=" + ",".join(f"{a}=true" for a in apis))
    return args


def _plain_args(c: DevCluster, tuning: Tuning) -> dict[str, list[str]]:
    b = Path(c.bin_dir)
    s = c.state_dir
    cd = c.certs_dir
    p = c.ports
    etcd_url = f"http://127.0.0.1:{p['etcd']}"
    peer_url = f"http://127.0.0.1:{p['etcd_peer']}"
    etcd = [
        str(b / "etcd"), f"--name={c.name}", f"--data-dir={s / 'etcd'}",
        f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster={c.name}={peer_url}",
        f"--quota-backend-bytes={tuning.etcd_quota_bytes}",
        "--log-level=warn",
    ]
    if tuning.etcd_unsafe_no_fsync:
        etcd.append("--unsafe-no-fsync")
    apiserver = [
        str(b / "kube-apiserver"),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
        f"--secure-port={p['apiserver']}",
        f"--tls-cert-file={cd / 'apiserver.crt'}", f"--tls-private-key-file={cd / 'apiserver.key'}",
        f"--client-ca-file={cd / 'ca.crt'}",
        # No aggregated API servers here, but components read this CA bundle at start.
        f"--requestheader-client-ca-file={cd / 'ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--kubelet-client-certificate={cd / 'apiserver-client.crt'}",
        f"--kubelet-client-key={cd / 'apiserver-client.key'}",
        f"--service-account-key-file={cd / 'sa.pub'}",
        f"--service-account-signing-key-file={cd / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        f"--max-requests-inflight={tuning.max_requests_inflight}",
        f"--max-mutating-requests-inflight={tuning.max_mutating_requests_inflight}",
        "--profiling=false",
        "--v=1",
    ]
    kcm_kc = s / "controller-manager.kubeconfig"
    kcm = [
        str(b / "kube-controller-manager"),
        f"--kubeconfig={kcm_kc}",
        f"--authentication-kubeconfig={kcm_kc}", f"--authorization-kubeconfig={kcm_kc}",
        "--bind-address=127.0.0.1", f"--secure-port={p['controller_manager']}",
        f"--cert-dir={s / 'controller-manager-certs'}",
        "--leader-elect=false",
        f"--cluster-name=shipyard-{c.name}",
        f"--service-account-private-key-file={cd / 'sa.key'}",
        f"--root-ca-file={cd / 'ca.crt'}",
        "--use-service-account-credentials=true",  # as kubeadm: per-controller RBAC
        "--controllers=*," + ",".join(f"-{x}" for x in tuning.disabled_controllers),
        f"--node-monitor-grace-period={tuning.node_monitor_grace_period}",
        f"--kube-api-qps={tuning.controller_manager_qps}",
        f"--kube-api-burst={tuning.controller_manager_qps * 2}",
        "--profiling=false",
        "--v=1",
    ]
    sched = [
        str(b / "kube-scheduler"),
        f"--config={s / 'scheduler.yaml'}",
        f"--authentication-kubeconfig={s / 'scheduler.kubeconfig'}",
        f"--authorization-kubeconfig={s / 'scheduler.kubeconfig'}",
        "--bind-address=127.0.0.1", f"--secure-port={p['scheduler']}",
        f"--cert-dir={s / 'scheduler-certs'}",
        "--v=1",
    ]
    kwok = [
        str(b / "kwok"),
        f"--kubeconfig={s / 'kwok.kubeconfig'}",
        f"--config={s / 'kwok.yaml'}",
        # INFO logs a line per node and pod patch: at thousands of nodes the
        # logging alone costs a noticeable share of a core.
        "--v=WARN",
    ]
    return _with_gates({"etcd": etcd, "kube-apiserver": apiserver, "kube-controller-manager": kcm,
                        "kube-scheduler": sched, "kwok": kwok}, c.feature_gates)


def _write_configs(c: DevCluster, tuning: Tuning) -> None:
    s = c.state_dir
    extra = (netns.Netns(c.netns).node_ip(0),) if c.netns else ()
    certs.generate(c.certs_dir, c.name, extra_ips=extra)
    kubeconfig.write(c.kubeconfig, kubeconfig.build(c.context, c.server, c.certs_dir, "admin"))
    for comp, cert in (("controller-manager", "controller-manager"),
                       ("scheduler", "scheduler"), ("kwok", "kwok")):
        kubeconfig.write(s / f"{comp}.kubeconfig",
                         kubeconfig.build(c.context, c.server, c.certs_dir, cert))
    sched = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {
            "kubeconfig": str(s / "scheduler.kubeconfig"),
            "qps": tuning.scheduler_qps,
            "burst": tuning.scheduler_qps * 2,
        },
        "leaderElection": {"leaderElect": False},
    }
    (s / "scheduler.yaml").write_text(json.dumps(sched, indent=2))
    (s / "kwok.yaml").write_text(kwok_config(tuning.kwok, f"127.0.0.1:{c.ports['kwok']}"))


def _answers(url: str, ctx: ssl.SSLContext | None) -> bool:
    return client.http_get(url, ctx)[0] == 200


def _wait(what: str, check: Callable[[], bool], c: DevCluster, comps: list[str],
          timeout: float, progress: Progress) -> None:
    progress(f"waiting for {what}")
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        for r in c.procs:
            if r.name in comps and not r.alive():
                raise DevClusterError(
                    f"{r.name} exited while starting cluster {c.name!r}; log {r.log}:\n"
                    + procs.log_tail(r)
                )
        if time.monotonic() > deadline:
            raise DevClusterError(
                f"{what} not ready after {timeout:.0f}s; logs in {c.state_dir / 'logs'}"
            )
        time.sleep(0.2)


def up(
    name: str,
    *,
    pool_specs: list[pools.PoolSpec] | None = None,
    real_specs: list[pools.PoolSpec] | None = None,
    tuning: Tuning | None = None,
    progress: Progress = _quiet,
    merge_kubeconfig: bool = True,
    apiserver_port: int | None = None,
    timeout: float = 120,
    nodes_timeout: float = 900,
    feature_gates: dict[str, bool] | None = None,
) -> DevCluster:
    """Start cluster `name` (or return it if already running) and add `pool_specs`
    (kwok nodes) and `real_specs` (real kubelets; only when the cluster is created).
    `feature_gates` go to the API server, controller-manager and scheduler, with the
    alpha API groups they need (GATE_APIS); a running cluster must have the same."""
    if tuning is None and real_specs:
        # Real kubelets renew their lease every 10 s: a stopped one should turn NotReady
        # in seconds, not after the 10 minutes thousands of kwok nodes need.
        tuning = Tuning(node_monitor_grace_period="40s",
                        kwok=KwokOptions(node_lease_duration_seconds=40))
    tuning = tuning or Tuning()
    if not name.replace("-", "").isalnum() or not name[0].isalnum() or len(name) > 40:
        raise DevClusterError(f"bad cluster name {name!r}: use letters, digits and '-'")
    try:
        existing = DevCluster.load(name)
    except DevClusterError:
        existing = None
    if existing is not None and existing.running():
        progress(f"cluster {name!r} is already running")
        have = sum(s.count for s in real_specs or [])
        if have > len(existing.real_nodes):
            raise DevClusterError(
                f"cluster {name!r} is running with {len(existing.real_nodes)} real node(s); real "
                f"pools are made with the cluster: `shipyard dev down --name {name}` first")
        if feature_gates is not None and feature_gates != existing.feature_gates:
            raise DevClusterError(
                f"cluster {name!r} is running with feature gates "
                f"{format_feature_gates(existing.feature_gates) or '(defaults)'}; gates are set "
                f"when the cluster starts: `shipyard dev down --name {name}` first")
        if pool_specs:
            existing.add_pools(pool_specs, timeout=nodes_timeout, progress=progress)
        return existing
    if existing is not None:
        down(name)  # half-dead from an earlier run: start over clean

    bins = build.require_binaries()
    state_dir = state_root() / name
    if apiserver_port is not None and not _port_free(apiserver_port):
        raise DevClusterError(f"port {apiserver_port} on 127.0.0.1 is taken; pick another "
                              "--apiserver-port or leave it out to pick a free one")
    ports = dict(zip(PORT_NAMES, _free_ports(len(PORT_NAMES)), strict=True))
    if apiserver_port is not None:
        ports["apiserver"] = apiserver_port
    shutil.rmtree(state_dir, ignore_errors=True)
    (state_dir / "logs").mkdir(parents=True)
    c = DevCluster(name=name, state_dir=state_dir, ports=ports,
                   bin_dir=str(bins["etcd"].parent), feature_gates=dict(feature_gates or {}))
    real_nodes = _prepare_real(c, real_specs or [], progress)
    progress("generating certificates")
    _write_configs(c, tuning)
    c.save()
    args = _args(c, tuning)
    prefix = netns.Netns(c.netns).prefix() if c.netns else []

    def start_proc(comp: str, argv: list[str], log: Path) -> procs.ProcRecord:
        rec = procs.start(comp, [*prefix, *argv], log, cwd=state_dir)
        c.procs.append(rec)
        c.save()
        return rec

    def start(comp: str) -> None:
        start_proc(comp, args[comp], state_dir / "logs" / f"{comp}.log")

    try:
        if c.netns:
            # The host reaches the namespace's ports through this one process.
            c.procs.append(procs.start(
                "forward", [sys.executable, "-m", "shipyard.dev.forward", "--netns",
                            str(netns.Netns(c.netns).path), *map(str, ports.values())],
                state_dir / "logs" / "forward.log", cwd=state_dir))
            c.save()
        start("etcd")
        _wait("etcd", lambda: client.http_get(f"http://127.0.0.1:{ports['etcd']}/health")[0]
              == 200, c, ["etcd"], timeout, progress)
        start("kube-apiserver")
        tls = client.tls_context(c.certs_dir)
        _wait("kube-apiserver", lambda: client.http_get(f"{c.server}/readyz", tls)[0] == 200,
              c, ["etcd", "kube-apiserver"], timeout, progress)
        for comp in ("kube-controller-manager", "kube-scheduler", "kwok"):
            start(comp)
        insecure = client.insecure_context()
        for comp, url in (
            ("kube-controller-manager",
             f"https://127.0.0.1:{ports['controller_manager']}/healthz"),
            ("kube-scheduler", f"https://127.0.0.1:{ports['scheduler']}/healthz"),
            ("kwok", f"http://127.0.0.1:{ports['kwok']}/healthz"),
        ):
            ctx = insecure if url.startswith("https") else None
            _wait(comp, functools.partial(_answers, url, ctx), c,
                  list(COMPONENTS), timeout, progress)
        # Pods are refused until the namespace's default ServiceAccount exists.
        _wait("default service account", lambda: client.http_get(
            f"{c.server}/api/v1/namespaces/default/serviceaccounts/default", tls)[0] == 200,
              c, list(COMPONENTS), timeout, progress)
        if real_nodes:
            from shipyard.dev import realcluster

            realcluster.start_nodes(c, real_nodes, start_proc, progress)
    except BaseException:
        procs.stop(list(reversed(c.procs)), grace=3)
        if c.netns:
            from shipyard.dev import realcluster

            realcluster.teardown(c)
        raise
    if merge_kubeconfig:
        kubeconfig.merge(kubeconfig.user_kubeconfig_path(),
                         kubeconfig.build(c.context, c.server, c.certs_dir, "admin"))
    progress(f"control plane ready at {c.server}")
    if pool_specs:
        c.add_pools(pool_specs, timeout=nodes_timeout, progress=progress)
    return c


def down(name: str, *, keep_state: bool = False) -> bool:
    """Stop every process of cluster `name` and forget it; False if there was none."""
    try:
        c = DevCluster.load(name)
    except DevClusterError:
        return False
    # Reverse start order: clients first, etcd last, so nothing logs a storm of errors.
    procs.stop(list(reversed(c.procs)))
    if c.netns:
        from shipyard.dev import realcluster

        realcluster.teardown(c)
    kubeconfig.remove(kubeconfig.user_kubeconfig_path(), c.context)
    if not keep_state:
        shutil.rmtree(c.state_dir, ignore_errors=True)
    else:
        c.procs = []
        c.save()
    return True


def _prepare_real(c: DevCluster, specs: list[pools.PoolSpec], progress: Progress
                  ) -> list[realnode.RealNode]:
    """Make the namespace and plan the real nodes (nothing runs yet)."""
    if not sum(s.count for s in specs):
        return []
    why = netns.unavailable_reason()
    if why:
        raise DevClusterError(f"cannot start real nodes: {why}")
    try:
        realnode.ensure_host_deps(progress)
    except realnode.RealNodeError as e:
        raise DevClusterError(str(e)) from e
    nodes = realnode.plan(c.name, c.state_dir, netns.Netns(netns.ns_name(c.name)), specs)
    c.host_paths = realnode.host_paths_missing()
    from shipyard.dev import realcluster

    realcluster.remember_host_paths(c.host_paths)
    c.netns = netns.ns_name(c.name)
    c.real_nodes = realnode.to_json(nodes)
    c.save()
    progress(f"creating network namespace {c.netns}")
    netns.create(c.netns, nodes=len(nodes))
    return nodes


def list_clusters() -> list[DevCluster]:
    root = state_root()
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        if (d / "cluster.json").is_file():
            try:
                out.append(DevCluster.load(d.name))
            except (DevClusterError, ValueError, TypeError, KeyError):
                continue
    return out
