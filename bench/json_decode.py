"""Which JSON decoder should the controller's watches and writes use?

Every watch event and every response the controller reads is one JSON document: a
pod or a node as the API server serves it. This decodes the same documents with the
standard library's `json.loads`, `orjson.loads` and `msgspec.json.decode` (both on
PyPI), in the same run, and prints the median time per document and each one's
ratio to the standard library's. The documents are read from a running dev cluster
(`--cluster NAME`, e.g. one `shipyard dev up` started, with some experiments placed),
or else built like the ones such a cluster serves: shipyard's own rendered pods with
the status kwok writes, and kwok nodes.

    python bench/json_decode.py [--cluster NAME] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from shipyard.cli.flags import arg
from shipyard.render.objects import render_pod
from shipyard.spec import Experiment, Role


def documents_from(cluster: str) -> list[bytes]:
    from shipyard.dev import cluster as devcluster

    c = next((c for c in devcluster.list_clusters() if c.name == cluster), None)
    if c is None:
        sys.exit(f"no dev cluster named {cluster!r}; `shipyard dev list` shows them")
    api = c.raw_client()
    return [json.dumps(o).encode() for path in ("/api/v1/pods", "/api/v1/nodes")
            for o in api.get_json(path)["items"]]


def built_documents(n: int = 400) -> list[bytes]:
    """Pods as shipyard renders them, with the status and server fields the API server
    and kwok add; nodes as kwok registers them."""
    exp = Experiment(name="bench", namespace="team-a",
                     roles=[Role(name="worker", replicas=8, machine_type="gpu-a100",
                                 command=["python", "train.py", "--epochs", "10"])])
    docs = []
    for i in range(n):
        pod = render_pod(exp, exp.roles[0], i % 8)
        pod["metadata"].update(uid=f"{i:08d}-1111-2222-3333-444444444444", resourceVersion=str(1000 + i),
                               creationTimestamp="2026-12-01T16:00:00Z",
                               managedFields=[{"manager": "shipyard", "operation": "Update",
                                               "apiVersion": "v1", "time": "2026-12-01T16:00:00Z",
                                               "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}])
        pod["spec"]["nodeName"] = f"gpu-a100-{i:05d}"
        pod["status"] = {
            "phase": "Running", "hostIP": "10.0.0.1", "podIP": f"10.1.{i // 250}.{i % 250}",
            "startTime": "2026-12-01T16:00:01Z", "qosClass": "Burstable",
            "conditions": [{"type": t, "status": "True", "lastTransitionTime": "2026-12-01T16:00:01Z"}
                           for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
            "containerStatuses": [{"name": "worker", "ready": True, "restartCount": 0,
                                   "image": pod["spec"]["containers"][0]["image"], "imageID": "",
                                   "started": True,
                                   "state": {"running": {"startedAt": "2026-12-01T16:00:01Z"}}}],
        }
        docs.append(json.dumps(pod).encode())
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": f"gpu-a100-{i:05d}", "resourceVersion": str(5000 + i),
            "labels": {"kubernetes.io/hostname": f"gpu-a100-{i:05d}", "type": "kwok",
                       "node.kubernetes.io/instance-type": "gpu-a100", "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "shipyard.dev/pool": "gpu-a100"},
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {"providerID": f"kwok://gpu-a100-{i:05d}"},
            "status": {"allocatable": {"cpu": "96", "memory": "1Ti", "nvidia.com/gpu": "8", "pods": "110"},
                       "capacity": {"cpu": "96", "memory": "1Ti", "nvidia.com/gpu": "8", "pods": "110"},
                       "conditions": [{"type": t, "status": "False" if t != "Ready" else "True",
                                       "lastHeartbeatTime": "2026-12-01T16:00:00Z",
                                       "lastTransitionTime": "2026-12-01T16:00:00Z",
                                       "reason": "Kwok", "message": "kwok"}
                                      for t in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")],
                       "nodeInfo": {"kubeletVersion": "fake", "architecture": "amd64",
                                    "operatingSystem": "linux"}}}
        docs.append(json.dumps(node).encode())
    return docs


def decoders() -> dict[str, Callable[[bytes], Any]]:
    out: dict[str, Callable[[bytes], Any]] = {"json (stdlib)": json.loads}
    try:
        import orjson
        out["orjson"] = orjson.loads
    except ImportError:
        print("orjson is not installed (pip install orjson): left out", file=sys.stderr)
    try:
        import msgspec
        out["msgspec"] = msgspec.json.Decoder().decode
    except ImportError:
        print("msgspec is not installed (pip install msgspec): left out", file=sys.stderr)
    return out


def time_per_doc(decode: Callable[[bytes], Any], docs: list[bytes], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        began = time.process_time()
        for d in docs:
            decode(d)
        runs.append((time.process_time() - began) / len(docs))
    return statistics.median(runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cluster", help="read pods and nodes from this dev cluster")
    ap.add_argument("--repeat", type=arg(integer=True, low=1, high=1000), default=7)
    a = ap.parse_args()
    docs = documents_from(a.cluster) if a.cluster else built_documents()
    size = statistics.median(len(d) for d in docs)
    print(f"{len(docs)} documents, median {size:.0f} bytes, CPU time per document "
          f"(median of {a.repeat} passes over them, each decoder in turn, in one run)")
    ways = decoders()
    for f in ways.values():  # warm each once
        f(docs[0])
    figures = {name: time_per_doc(f, docs, a.repeat) for name, f in ways.items()}
    base = figures["json (stdlib)"]
    print(f"{'decoder':16} {'us/doc':>8} {'MB/s':>8} {'vs stdlib':>10}")
    for name, t in figures.items():
        print(f"{name:16} {t * 1e6:8.1f} {size / t / 1e6:8.0f} {t / base:9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
