"""Real nodes of a dev cluster: containerd + kubelet per node, kube-proxy and CoreDNS per
cluster, all inside the cluster's network namespace (see netns.py).

Every fix of ../shared/notes/real-node.md is here: containerd with its own config,
root, state and socket and `restrict_oom_score_adj` (the VM withholds
CAP_SYS_RESOURCE); kubelet with `failCgroupV1: false`, cgroupfs and a cgroup root of
its own; client and serving certificates signed by the cluster CA (no CSR signer)
and `system:node` bound to `system:nodes`; pods resolve through CoreDNS on the node
address with a resolv.conf of the project's own.

Real nodes carry `shipyard.dev/node-kind=real` and the taint of the same key, kwok
nodes the label `shipyard.dev/node-kind=kwok`: work for real nodes uses
`real_machine_type()` (a nodeSelector and a toleration), kwok work never lands here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from shipyard.api.vocab import LABEL_NODE_KIND, LABEL_POOL
from shipyard.dev import certs, kubeconfig
from shipyard.dev.netns import Netns
from shipyard.dev.pools import LABEL_REGION, LABEL_ZONE, PoolSpec
from shipyard.spec.machines import MachineType, Taint

REAL_TAINT = Taint(key=LABEL_NODE_KIND, value="real", effect="NoSchedule")
POD_NET = "10.244.0.0/16"
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
# Paths kubelet and containerd use whatever they are configured with: removed at
# `down` when this cluster made them and no other real cluster is running.
HARDCODED_HOST_PATHS = ("/var/lib/kubelet", "/var/log/containers", "/run/containerd",
                        "/var/lib/cni", "/var/log/pods")

KUBELET_ROOTS = "/var/lib/shipyard"

Progress = Callable[[str], None]


class RealNodeError(RuntimeError):
    """A real node could not be started; the message names the part and its log."""


def real_machine_type(mt: MachineType) -> MachineType:
    """`mt` as it is on real dev nodes: pods of it select and tolerate real nodes."""
    return mt.model_copy(update={
        "labels": {**mt.labels, LABEL_NODE_KIND: "real"},
        "taints": (*mt.taints, REAL_TAINT),
    })


@dataclass
class RealNode:
    """One real node of a cluster: where its files, sockets and cgroups are."""

    name: str
    pool: str
    index: int  # position on the node bridge, 0 for the first real node
    ip: str
    dir: str  # state: configs, certs, logs, kubelet root, containerd root
    run_dir: str  # short paths for sockets (a unix socket path is < 108 bytes)
    labels: dict[str, str]
    taints: list[dict[str, str]]

    @property
    def kubelet_root(self) -> str:
        # On disk (emptyDirs live here) and short: kubelet puts unix sockets in it.
        return f"{KUBELET_ROOTS}/{Path(self.run_dir).parent.name}/{self.index}"

    @property
    def sock(self) -> str:
        return f"{self.run_dir}/containerd.sock"

    @property
    def cgroup_root(self) -> str:
        return f"/shipyard-{Path(self.run_dir).parent.name}-{self.index}"

    def ctr(self) -> list[str]:
        return ["ctr", "-a", self.sock]


def plan(cluster: str, state_dir: Path, ns: Netns, specs: list[PoolSpec],
         first_index: int = 0) -> list[RealNode]:
    out: list[RealNode] = []
    i = first_index
    for spec in specs:
        for n in range(spec.count):
            name = f"{spec.name}-{n:05d}"
            labels = {LABEL_REGION: spec.region, LABEL_ZONE: spec.zones[0], LABEL_POOL: spec.name,
                      **spec.mt.node_labels(), **spec.labels, LABEL_NODE_KIND: "real"}
            taints = [t.model_dump() for t in (*spec.mt.taints, REAL_TAINT)]
            out.append(RealNode(name=name, pool=spec.name, index=i, ip=ns.node_ip(i),
                                dir=str(state_dir / "real" / name),
                                run_dir=f"/run/shipyard/{cluster}/{i}", labels=labels,
                                taints=taints))
            i += 1
    return out


def host_deps_missing() -> list[str]:
    """Debian packages real nodes need that are not installed."""
    missing = []
    for binary, pkg in (("containerd", "containerd"), ("runc", "runc"), ("ctr", "containerd"),
                        ("iptables", "iptables"), ("debootstrap", "debootstrap"),
                        ("gcc", "gcc")):
        if shutil.which(binary) is None and pkg not in missing:
            missing.append(pkg)
    if not any(Path(d, "bridge").is_file() for d in CNI_BIN_DIRS):
        missing.append("containernetworking-plugins")
    return missing


def ensure_host_deps(progress: Progress) -> None:
    """apt-get install what is missing, or say exactly what to run."""
    missing = host_deps_missing()
    if not missing:
        return
    cmd = ["apt-get", "install", "-y", "-q", *missing, "libc6-dev"]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RealNodeError(f"real nodes need {', '.join(missing)}; run: sudo {' '.join(cmd)}")
    progress(f"installing {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:  # a fresh machine has no package lists yet
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RealNodeError(f"`{' '.join(cmd)}` failed:\n{proc.stderr[-2000:]}")


def cni_bin_dir() -> str:
    return next((d for d in CNI_BIN_DIRS if Path(d, "bridge").is_file()), CNI_BIN_DIRS[0])


# -- configuration ---------------------------------------------------------------


def containerd_config(node: RealNode, pause_image: str) -> str:
    d = Path(node.dir) / "containerd"
    return f"""version = 2
root = "{d / 'root'}"
state = "{node.run_dir}/state"
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{node.sock}"

[ttrpc]
  address = "{node.sock}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / 'opt'}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  # The VM withholds CAP_SYS_RESOURCE even from root: runc cannot raise oom_score_adj.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin_dir()}"
    conf_dir = "{d / 'net.d'}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{node.run_dir}/runc"
"""


def cni_config(node: RealNode) -> dict:
    return {
        "cniVersion": "1.0.0",
        "name": "shipyard",
        "plugins": [{
            "type": "bridge",
            "bridge": f"shipyard-cni{node.index}",
            "isGateway": True,
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": f"10.244.{node.index}.0/24"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": str(Path(node.dir) / "cni-ipam"),
            },
        }],
    }


def kubelet_config(node: RealNode, ca: Path, dns_ip: str) -> dict:
    d = Path(node.dir)
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # 1.36 refuses cgroup v1 unless told
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup_root,
        "address": node.ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248 + 10 * node.index,
        "tlsCertFile": str(d / "pki" / "kubelet.crt"),
        "tlsPrivateKeyFile": str(d / "pki" / "kubelet.key"),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(ca)}},
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDNS": [dns_ip],
        "clusterDomain": "cluster.local",
        "resolvConf": str(d / "resolv.conf"),
        "containerRuntimeEndpoint": f"unix://{node.sock}",
        "podLogsDir": str(d / "pods"),
        "volumePluginDir": str(d / "volume-plugins"),
        "registerWithTaints": node.taints,
        "failSwapOn": False,
        # Images cannot be pulled again here: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi"},
        "serializeImagePulls": False,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "60s",
    }


def kube_proxy_config(node: RealNode, kubeconfig_path: Path) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig_path)},
        "hostnameOverride": node.name,
        "mode": "iptables",
        "clusterCIDR": POD_NET,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # Leave the host's conntrack sysctls alone (they are not ours, and not per netns).
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }


def corefile(bind_ip: str, kubeconfig_path: Path, context: str) -> str:
    # No cache: ranks look each other up the moment their pods exist.
    return f""".:53 {{
    bind {bind_ip}
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig_path} {context}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
}}
"""


def _binding(name: str, role: str, kind: str, subject: str) -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind,
                          "name": subject}]}


COREDNS_RBAC = [
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
     "metadata": {"name": "shipyard:coredns"},
     "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                "verbs": ["list", "watch"]},
               {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                "verbs": ["list", "watch"]}]},
    _binding("shipyard:coredns", "shipyard:coredns", "User", "shipyard:coredns"),
    # No Node authorizer in the dev control plane: kubelets get the role by group.
    _binding("shipyard:nodes", "system:node", "Group", "system:nodes"),
]


def write_node_files(node: RealNode, certs_dir: Path, server: str, context: str,
                     pause_image: str, dns_ip: str) -> None:
    d = Path(node.dir)
    for sub in ("containerd/net.d", "pki", "pods", "volume-plugins", "cni-ipam"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    Path(node.kubelet_root).mkdir(parents=True, exist_ok=True)
    Path(node.run_dir).mkdir(parents=True, exist_ok=True)
    (d / "containerd" / "config.toml").write_text(containerd_config(node, pause_image))
    (d / "containerd" / "net.d" / "10-shipyard.conflist").write_text(
        json.dumps(cni_config(node), indent=2))
    certs.issue(certs_dir, d / "pki", "kubelet", f"system:node:{node.name}", ("system:nodes",),
                server_sans=[node.name, node.ip])
    (d / "resolv.conf").write_text(f"nameserver {dns_ip}\n")
    kc = kubeconfig.build(context, server, d / "pki", "kubelet")
    kubeconfig.write(d / "kubelet.kubeconfig", kc)
    (d / "kubelet-config.yaml").write_text(json.dumps(
        kubelet_config(node, certs_dir / "ca.crt", dns_ip), indent=2))


def write_shared_files(nodes: list[RealNode], state_dir: Path, certs_dir: Path, server: str,
                       context: str) -> Path:
    d = state_dir / "real" / "shared"
    d.mkdir(parents=True, exist_ok=True)
    certs.issue(certs_dir, d, "kube-proxy", "system:kube-proxy")
    certs.issue(certs_dir, d, "coredns", "shipyard:coredns")
    for who in ("kube-proxy", "coredns"):
        kubeconfig.write(d / f"{who}.kubeconfig", kubeconfig.build(context, server, d, who))
    (d / "kube-proxy.yaml").write_text(json.dumps(
        kube_proxy_config(nodes[0], d / "kube-proxy.kubeconfig"), indent=2))
    (d / "Corefile").write_text(corefile(nodes[0].ip, d / "coredns.kubeconfig", context))
    return d


# -- argv ------------------------------------------------------------------------


def containerd_argv(node: RealNode) -> list[str]:
    return ["containerd", "--config", str(Path(node.dir) / "containerd" / "config.toml")]


def kubelet_argv(node: RealNode, kubelet: Path) -> list[str]:
    d = Path(node.dir)
    labels = ",".join(f"{k}={v}" for k, v in sorted(node.labels.items()))
    return [str(kubelet), f"--config={d / 'kubelet-config.yaml'}",
            f"--kubeconfig={d / 'kubelet.kubeconfig'}", f"--root-dir={node.kubelet_root}",
            f"--node-ip={node.ip}", f"--hostname-override={node.name}",
            f"--node-labels={labels}", "--v=1"]


def kube_proxy_argv(shared: Path, kube_proxy: Path) -> list[str]:
    return [str(kube_proxy), f"--config={shared / 'kube-proxy.yaml'}", "--v=1"]


def coredns_argv(shared: Path, coredns: Path) -> list[str]:
    return [str(coredns), "-conf", str(shared / "Corefile")]


# -- waiting ---------------------------------------------------------------------


def wait_containerd(node: RealNode, alive: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(node.sock).exists():
            proc = subprocess.run([*node.ctr(), "version"], capture_output=True, check=False)
            if proc.returncode == 0:
                return
        if not alive():
            raise RealNodeError(f"containerd of {node.name} exited; see "
                                f"{Path(node.dir) / 'containerd.log'}")
        time.sleep(0.2)
    raise RealNodeError(f"containerd of {node.name} not answering after {timeout:.0f}s")


def node_ready(node_obj: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node_obj.get("status") or {}).get("conditions") or [])


# -- teardown --------------------------------------------------------------------


def host_paths_missing() -> list[str]:
    return [p for p in HARDCODED_HOST_PATHS if not os.path.lexists(p)]


def kill_containers(nodes: list[RealNode]) -> int:
    """SIGKILL every container of these nodes and their shims; how many processes."""
    socks = {n.sock for n in nodes}
    killed = 0
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info.get("cmdline") or []
        if not cmd or "containerd-shim" not in os.path.basename(cmd[0]):
            continue
        if not any(a in socks or a in {f"{s}.ttrpc" for s in socks} for a in cmd):
            continue
        with contextlib.suppress(psutil.Error):
            for child in p.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child.kill()
                    killed += 1
            p.kill()
            killed += 1
    return killed


def unmount_under(roots: list[str]) -> None:
    """Lazily unmount every mount below these directories, deepest first."""
    prefixes = tuple(r.rstrip("/") + "/" for r in roots)
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp.startswith(prefixes) or mp in {r.rstrip("/") for r in roots}:
                points.append(mp)
    for mp in sorted(set(points), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True, check=False)


def make_cgroups(cgroup_root: str) -> None:
    """kubelet wants its cgroup root to exist in every v1 hierarchy; a new cpuset
    starts with no CPUs or memory nodes, so it gets its parent's."""
    base = Path("/sys/fs/cgroup")
    for ctrl in base.iterdir():
        if not (ctrl / "cgroup.procs").is_file():
            continue
        top = ctrl / cgroup_root.lstrip("/")
        top.mkdir(exist_ok=True)
        for f in ("cpuset.cpus", "cpuset.mems"):
            if (ctrl / f).is_file() and not (top / f).read_text().strip():
                (top / f).write_text((ctrl / f).read_text())


def remove_cgroups(cgroup_root: str) -> None:
    base = Path("/sys/fs/cgroup")
    for ctrl in base.iterdir() if base.is_dir() else []:
        top = ctrl / cgroup_root.lstrip("/")
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                      reverse=True)
        for d in [*dirs, top]:
            for _ in range(20):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)  # tasks still leaving


def remove_container_log_links(node_dirs: list[str]) -> None:
    d = Path("/var/log/containers")
    if not d.is_dir():
        return
    for link in d.iterdir():
        with contextlib.suppress(OSError):
            if link.is_symlink() and any(os.readlink(link).startswith(n) for n in node_dirs):
                link.unlink()


def teardown(nodes: list[RealNode], run_root: str, created_host_paths: list[str],
             others_running: bool) -> None:
    """Remove what the nodes left once their processes are stopped: containers,
    mounts, cgroups, sockets and the host paths this cluster created."""
    kill_containers(nodes)
    roots = sorted({str(Path(n.kubelet_root).parent) for n in nodes})
    unmount_under([n.dir for n in nodes] + [run_root, *roots])
    for r in roots:
        shutil.rmtree(r, ignore_errors=True)
    with contextlib.suppress(OSError):
        Path(KUBELET_ROOTS).rmdir()
    for n in nodes:
        remove_cgroups(n.cgroup_root)
    remove_container_log_links([n.dir for n in nodes])
    shutil.rmtree(run_root, ignore_errors=True)
    with contextlib.suppress(OSError):
        Path(run_root).parent.rmdir()  # /run/shipyard when no other cluster uses it
    if not others_running:
        for p in created_host_paths:
            unmount_under([p])
            shutil.rmtree(p, ignore_errors=True)


def to_json(nodes: list[RealNode]) -> list[dict]:
    return [asdict(n) for n in nodes]


def from_json(items: list[dict]) -> list[RealNode]:
    return [RealNode(**i) for i in items]
