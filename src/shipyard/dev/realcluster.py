"""Bring the real nodes of a dev cluster up and down (the cluster side of realnode.py).

Order at `up`: images (built or reused), then per node containerd -> image import
-> kubelet, then CoreDNS and kube-proxy once for the namespace; it returns when
every real node is Ready. At `down` (after the processes are stopped), every
container, mount, cgroup, socket and host path they made is removed.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from shipyard.dev import build, images, netns, procs, realnode
from shipyard.dev.realnode import RealNode, RealNodeError

if TYPE_CHECKING:
    from shipyard.dev.cluster import DevCluster

Progress = Callable[[str], None]
Start = Callable[[str, list[str], Path], procs.ProcRecord]


def start_nodes(c: DevCluster, nodes: list[RealNode], start: Start, progress: Progress,
                timeout: float = 180) -> None:
    bins = build.require_node_binaries()
    ns = netns.Netns(c.netns or "")
    progress("building or reusing images")
    imgs = images.build_images(log=progress)
    _apply(c, realnode.COREDNS_RBAC)
    dns_ip = ns.node_ip(0)
    for node in nodes:
        realnode.write_node_files(node, c.certs_dir, c.inner_server, c.context,
                                  images.PAUSE_IMAGE, dns_ip)
        progress(f"{node.name}: starting containerd")
        rec = start(f"containerd/{node.name}", realnode.containerd_argv(node),
                    Path(node.dir) / "containerd.log")
        realnode.wait_containerd(node, rec.alive)
        images.import_images([*ns.prefix(), *node.ctr()], imgs,
                             log=functools.partial(_prefixed, progress, node.name))
        progress(f"{node.name}: starting kubelet")
        realnode.make_cgroups(node.cgroup_root)
        start(f"kubelet/{node.name}", realnode.kubelet_argv(node, bins["kubelet"]),
              Path(node.dir) / "kubelet.log")
    first = not any(r.name == "coredns" for r in c.procs)
    if first:
        shared = realnode.write_shared_files(nodes, c.state_dir, c.certs_dir, c.inner_server,
                                             c.context)
        start("coredns", realnode.coredns_argv(shared, bins["coredns"]),
              shared / "coredns.log")
        start("kube-proxy", realnode.kube_proxy_argv(shared, bins["kube-proxy"]),
              shared / "kube-proxy.log")
    wait_ready(c, [n.name for n in nodes], timeout, progress)


def _prefixed(progress: Progress, name: str, message: str) -> None:
    progress(f"{name}: {message}")


def _apply(c: DevCluster, objects: list[dict]) -> None:
    api = c.raw_client()
    for obj in objects:
        plural = obj["kind"].lower() + "s"
        status, data = api.request("POST", f"/apis/rbac.authorization.k8s.io/v1/{plural}", obj)
        if status not in (200, 201, 409):
            raise RealNodeError(f"creating {obj['kind']} {obj['metadata']['name']}: "
                                f"HTTP {status}: {data[:300]!r}")


def wait_ready(c: DevCluster, names: list[str], timeout: float, progress: Progress) -> None:
    api = c.raw_client()
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        for r in c.procs:
            if r.name.startswith(("kubelet/", "containerd/", "coredns", "kube-proxy")) \
                    and not r.alive():
                raise RealNodeError(f"{r.name} exited; log {r.log}:\n{procs.log_tail(r)}")
        status, data = api.request("GET", "/api/v1/nodes?labelSelector="
                                   f"{realnode.LABEL_NODE_KIND}%3Dreal")
        if status == 200:
            ready = {n["metadata"]["name"] for n in json.loads(data)["items"]
                     if realnode.node_ready(n)}
            pending = [n for n in names if n not in ready]
        progress(f"real nodes Ready {len(names) - len(pending)}/{len(names)}")
        if pending and time.monotonic() > deadline:
            raise RealNodeError(f"real nodes {pending} not Ready after {timeout:.0f}s; "
                                f"logs in {c.state_dir / 'real'}")
        if pending:
            time.sleep(0.3)


def others_with_real_nodes(name: str) -> bool:
    from shipyard.dev.cluster import list_clusters

    return any(o.name != name and o.real_nodes and o.running() for o in list_clusters())


def _ledger() -> Path:
    from shipyard.dev.cluster import state_root

    return state_root() / "real-host-paths.json"


def remember_host_paths(paths: list[str]) -> None:
    """Add to the machine-wide list of hard-coded host paths shipyard's real nodes made:
    clusters overlap, so the last one down removes what any of them created."""
    f = _ledger()
    f.parent.mkdir(parents=True, exist_ok=True)
    known = set(json.loads(f.read_text())) if f.is_file() else set()
    f.write_text(json.dumps(sorted(known | set(paths))))


def teardown(c: DevCluster) -> None:
    """After the processes are stopped: containers, mounts, cgroups, paths, namespace."""
    nodes = realnode.from_json(c.real_nodes)
    if nodes:
        last = not others_with_real_nodes(c.name)
        f = _ledger()
        created = sorted({*c.host_paths, *(json.loads(f.read_text()) if f.is_file() else [])})
        realnode.teardown(nodes, f"/run/shipyard/{c.name}", created, not last)
        if last:
            f.unlink(missing_ok=True)
    if c.netns:
        netns.delete(c.netns)


def restart_kubelet(c: DevCluster, name: str) -> None:
    node = next((n for n in realnode.from_json(c.real_nodes) if n.name == name), None)
    if node is None:
        raise RealNodeError(f"{c.name} has no real node {name!r}")
    bins = build.require_node_binaries()
    argv = [*netns.Netns(c.netns or "").prefix(), *realnode.kubelet_argv(node, bins["kubelet"])]
    rec = procs.start(f"kubelet/{name}", argv, Path(node.dir) / "kubelet.log", cwd=c.state_dir)
    c.procs = [r for r in c.procs if r.name != rec.name] + [rec]
    c.save()
