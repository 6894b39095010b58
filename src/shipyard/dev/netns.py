"""The network namespace a dev cluster with real nodes lives in.

Real kubelets refuse a loopback node IP and this kind of VM has no `dummy` links, so
the cluster gets a namespace of its own whose only non-loopback address sits on an
empty bridge (the node network). The control plane, containerd, kubelet, kube-proxy
and CoreDNS all run inside it; nothing in it can reach the outside, and the host
reaches the API server only through `forward.py` on 127.0.0.1.

Processes enter it with `nsenter --net=...` and not `ip netns exec`, which remounts
/sys and hides the cgroup v1 hierarchies kubelet needs.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
NODE_BRIDGE = "shipyard-node"
NODE_NET = ipaddress.ip_network("10.250.0.0/24")


class NetnsError(RuntimeError):
    """The namespace could not be made or entered; the message says why and what to do."""


@dataclass(frozen=True)
class Netns:
    name: str

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    def exists(self) -> bool:
        return self.path.exists()

    def prefix(self) -> list[str]:
        """argv prefix that runs a command inside the namespace."""
        return ["nsenter", f"--net={self.path}", "--"]

    def node_ip(self, index: int = 0) -> str:
        """The address of real node `index` on the node bridge (.1 is the first)."""
        return str(NODE_NET.network_address + 1 + index)


def ns_name(cluster: str) -> str:
    return f"shipyard-{cluster}"


def unavailable_reason() -> str | None:
    """Why a namespace cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "real nodes need root (network namespaces, mounts, cgroups)"
    # iptables is not asked for here: it is one of the Debian packages `dev up` installs
    # when missing (realnode.ensure_host_deps), so a fresh machine still runs real nodes.
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install iproute2 util-linux)"
    return None


def _ip(*args: str, ns: Netns | None = None) -> None:
    argv = [*(ns.prefix() if ns else []), "ip", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` failed: {proc.stderr.strip()}")


def create(name: str, nodes: int = 1) -> Netns:
    """Make the namespace with lo up and the node bridge holding one address per node."""
    ns = Netns(name)
    if ns.exists():
        delete(name)
    _ip("netns", "add", name)
    try:
        _ip("link", "set", "lo", "up", ns=ns)
        _ip("link", "add", NODE_BRIDGE, "type", "bridge", ns=ns)
        for i in range(nodes):
            _ip("addr", "add", f"{ns.node_ip(i)}/{NODE_NET.prefixlen}", "dev", NODE_BRIDGE, ns=ns)
        _ip("link", "set", NODE_BRIDGE, "up", ns=ns)
        # Service ClusterIPs need a route to be DNATed by kube-proxy's iptables rules.
        _ip("route", "add", "default", "dev", NODE_BRIDGE, ns=ns)
    except NetnsError:
        delete(name)
        raise
    return ns


def delete(name: str) -> None:
    ns = Netns(name)
    if ns.exists():
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at `fd`."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns failed: {os.strerror(err)}")
