"""Controller memory at scale: its watch caches holding N nodes and M pods.

Builds the objects the API server would send (nodes shaped like `shipyard dev`
pools, pods rendered by shipyard and bound), passes each through JSON as a watch
does, feeds them to the controller's informers, then reports the process RSS, the
cost per object, and the time to build one snapshot from the caches. The whole
JSON objects are dropped after projection, as in the live controller; for
reference the same objects kept whole (what a cache of full objects would cost)
are measured in a second process in the same run.

    python bench/controller_memory.py [--nodes 7500] [--pods 60000]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time

import psutil

from shipyard.cli.flags import arg
from shipyard.dev.pools import PoolSpec, node_object
from shipyard.kube.informer import object_key
from shipyard.render.objects import render_pod
from shipyard.spec import Experiment, Role

TARGET_MIB = 500


def node_json(count: int) -> list[bytes]:
    pool = PoolSpec(machine_type="gpu-a100", count=count)
    out = []
    for i in range(count):
        node = node_object(pool, i)
        node["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
        out.append(json.dumps(node).encode())
    return out


def pod_json(count: int, nodes: int) -> list[bytes]:
    """Pods of 8-pod experiments, one pod per node (1 GPU each), Running."""
    out = []
    per_exp = 8
    for e in range(count // per_exp):
        exp = Experiment(name=f"exp-{e}", namespace=f"team-{e % 20}",
                         roles=[Role(name="trainer", replicas=per_exp, machine_type="gpu-a100",
                                     command=["python", "train.py", "--config", "big.yaml"],
                                     resources={"cpu": 8, "memory": "64Gi", "gpus": 1})])
        role = exp.roles[0]
        for i in range(per_exp):
            pod = render_pod(exp, role, i)
            pod["spec"]["nodeName"] = f"gpu-a100-{(e * per_exp + i) % nodes:05d}"
            pod["metadata"]["uid"] = f"{e:08d}-{i:04d}"
            pod["status"] = {"phase": "Running", "podIP": "10.64.0.1",
                             "containerStatuses": [{"name": "trainer", "ready": True,
                                                    "state": {"running": {"startedAt": "2026-11-28T00:00:00Z"}}}]}
            out.append(json.dumps(pod).encode())
    return out


def rss_mib() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def measure(nodes: int, pods: int, keep_whole: bool) -> dict[str, float]:
    from shipyard.controller.controller import Controller

    node_bytes, pod_bytes = node_json(nodes), pod_json(pods, nodes)
    controller = Controller(client=None)  # type: ignore[arg-type]  # caches only, no I/O here
    whole: list[dict] = []
    base = rss_mib()
    for raw in node_bytes:
        obj = json.loads(raw)
        controller.nodes._apply(object_key(obj), controller.nodes.project(obj))
        if keep_whole:
            whole.append(obj)
    for raw in pod_bytes:
        obj = json.loads(raw)
        controller.pods._apply(object_key(obj), controller.pods.project(obj))
        if keep_whole:
            whole.append(obj)
    del node_bytes, pod_bytes
    after = rss_mib()
    start = time.process_time()
    snapshot = controller.snapshot(time.time())
    snap_s = time.process_time() - start
    used_gpus = sum(n.used.gpus for n in snapshot.nodes)
    return {"rss_mib": after, "cache_mib": after - base, "snapshot_s": snap_s, "used_gpus": used_gpus,
            "nodes": len(controller.nodes.items), "pods": len(controller.pods.items)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=arg(integer=True, low=1, high=1_000_000), default=7500)
    parser.add_argument("--pods", type=arg(integer=True, low=0, high=10_000_000), default=60000)
    parser.add_argument("--child", choices=["slim", "whole"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.nodes, args.pods, keep_whole=args.child == "whole")))
        return
    results = {}
    for mode in ("slim", "whole"):  # separate processes: RSS never shrinks back
        out = subprocess.run([sys.executable, __file__, "--nodes", str(args.nodes), "--pods",
                              str(args.pods), "--child", mode], capture_output=True, text=True, check=True)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    slim, whole = results["slim"], results["whole"]
    objects = slim["nodes"] + slim["pods"]
    print(f"controller caches at {slim['nodes']} nodes and {slim['pods']} pods")
    print(f"{'':28}{'shipyard (slim)':>16}{'full objects':>14}{'target':>10}")
    print(f"{'process RSS (MiB)':28}{slim['rss_mib']:>16.0f}{whole['rss_mib']:>14.0f}{TARGET_MIB:>10}")
    print(f"{'cache growth (MiB)':28}{slim['cache_mib']:>16.0f}{whole['cache_mib']:>14.0f}")
    print(f"{'per object (KiB)':28}{slim['cache_mib'] * 1024 / objects:>16.2f}"
          f"{whole['cache_mib'] * 1024 / objects:>14.2f}")
    print(f"{'snapshot build (s CPU)':28}{slim['snapshot_s']:>16.3f}")
    print(f"GPUs accounted on nodes: {slim['used_gpus']} (pods x 1 GPU = {slim['pods']})")


if __name__ == "__main__":
    main()
