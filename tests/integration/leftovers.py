"""What of a real-node dev cluster is still on the machine after `shipyard dev down`."""

from __future__ import annotations

from pathlib import Path

import psutil

from shipyard.dev import cluster as devcluster
from shipyard.dev import netns, realnode


def leftovers(c: devcluster.DevCluster) -> list[str]:
    """What of real-node cluster `c` (as loaded while it ran) is still on the machine:
    its processes (control plane, containerds, kubelets, CoreDNS, kube-proxy, shims),
    cgroups (a container's processes would hold theirs), mounts and paths."""
    found = [f"process {r.name} (pid {r.pid})" for r in c.procs if r.alive()]
    ours = (f"{c.state_dir}/", f"/run/shipyard/{c.name}/", f"{realnode.KUBELET_ROOTS}/{c.name}/")
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if any(mark in cmd for mark in ours):
            found.append(f"process {proc.info['pid']}: {cmd[:160]}")
    for node in realnode.from_json(c.real_nodes):
        for ctrl in Path("/sys/fs/cgroup").iterdir():
            if (ctrl / node.cgroup_root.lstrip("/")).exists():
                found.append(f"cgroup {ctrl / node.cgroup_root.lstrip('/')}")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(ours) or point == f"/run/netns/{c.netns}":
                found.append(f"mount {point}")
    found += [f"path {p}" for p in (*(m.rstrip("/") for m in ours), f"/run/netns/{c.netns}")
              if Path(p).exists()]
    if c.netns and netns.Netns(c.netns).exists():
        found.append(f"network namespace {c.netns}")
    return found
