"""What stopping a Python rank takes on a real dev node: PID 1 of its container or not.

A Python process that is PID 1 of its container ignores SIGTERM (it installs no
handler, and PID 1 gets no default action), so the kubelet waits the whole grace period
before SIGKILL. shipyard renders `shareProcessNamespace: true`: the pause container is
PID 1 and the command exits on the SIGTERM itself. One run brings up a dev cluster with
one real node and, for each way, creates the rendered pod of a plain
`python -c "...time.sleep(3600)"` (no handler) bound to the node, waits until it runs,
deletes it with the pod's grace period (stop_grace_seconds, 30 by default) and times
the deletion until the pod object is gone (median of --repeat):
  shipyard        the pod as shipyard renders it (shareProcessNamespace: true)
  PID 1           the same pod with shareProcessNamespace: false (before this change)

    python bench/stop_grace.py [--repeat 3] [--grace 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from shipyard.dev import cluster as devcluster
from shipyard.dev import realnode
from shipyard.dev.pools import parse_pool_arg
from shipyard.render.objects import render_pod
from shipyard.spec import experiment_from_data
from shipyard.spec.machines import DEFAULT_MACHINE_TYPES

NODE = "real-cpu-small-00000"
SCRIPT = "import time; print('ready', flush=True); time.sleep(3600)"


def pod(name: str, grace: int, shared: bool) -> dict[str, Any]:
    mt = realnode.real_machine_type(DEFAULT_MACHINE_TYPES["cpu-small"])
    exp = experiment_from_data({
        "name": name, "namespace": "default", "stop_grace_seconds": grace, "workdir": False,
        "machine_types": [mt.model_dump(mode="json")],
        "roles": [{"name": "w", "machine_type": "cpu-small",
                   "resources": {"cpu": "100m", "memory": "64Mi"},
                   "command": ["python", "-c", SCRIPT]}]})
    body = render_pod(exp, exp.roles[0], 0)
    body["spec"]["nodeName"] = NODE
    body["spec"]["shareProcessNamespace"] = shared
    return body


def stop_seconds(api: Any, body: dict[str, Any]) -> float:
    name = body["metadata"]["name"]
    path = f"/api/v1/namespaces/default/pods/{name}"
    status, data = api.request("POST", "/api/v1/namespaces/default/pods", body)
    if status != 201:
        raise SystemExit(f"creating {name}: HTTP {status}: {data[:300]!r}")
    deadline = time.monotonic() + 180
    while True:
        code, text = api.request("GET", f"{path}/log")
        if code == 200 and b"ready" in text:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} never ran")
        time.sleep(0.2)
    start = time.monotonic()
    api.request("DELETE", path)  # the pod's own terminationGracePeriodSeconds
    while api.request("GET", path)[0] == 200:
        time.sleep(0.1)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--grace", type=int, default=30, help="stop_grace_seconds of the pods")
    args = parser.parse_args()
    name = f"bench-stop-{os.getpid()}"
    c = devcluster.up(name, real_specs=[parse_pool_arg("real-cpu-small=cpu-small:1")],
                      merge_kubeconfig=False)
    samples: dict[str, list[float]] = {"shipyard": [], "pid1": []}
    try:
        api = c.raw_client()
        run = 0
        for _ in range(args.repeat):  # interleaved: drift hits both alike
            for way in ("shipyard", "pid1"):
                run += 1
                samples[way].append(stop_seconds(api, pod(f"stop-{run}", args.grace,
                                                          way == "shipyard")))
    finally:
        devcluster.down(name)
    ship, pid1 = (statistics.median(samples[w]) for w in ("shipyard", "pid1"))
    print(f"delete -> pod gone, plain Python without a SIGTERM handler, grace {args.grace} s "
          f"(median of {args.repeat}, s)")
    print(f"  shipyard (shareProcessNamespace)  {ship:6.2f}   samples {samples['shipyard']}")
    print(f"  Python as PID 1 (before)          {pid1:6.2f}   samples {samples['pid1']}")
    print(f"  ratio PID 1 / shipyard            {pid1 / ship:6.1f}")


if __name__ == "__main__":
    main()
