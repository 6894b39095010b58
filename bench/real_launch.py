"""Launch latency on a real dev node, beside raw API pods and the local backend.

One run brings up a dev cluster with one real node (cached binaries and images) and
measures:
  bring-up        `dev up --real-pool cpu-small:1` until the node is Ready
  idle RSS        kubelet + containerd + CoreDNS + kube-proxy, nothing scheduled
and then, for 1, 4 and 8 ranks (median of --repeat):
  shipyard -c     `shipyard launch -c CTX spec.yaml` (the CLI, the in-cluster path:
                  Experiment -> controller -> bound pods -> kubelet -> containerd)
  raw API         the same pods (rendered, bound to the node) POSTed directly
  local           `shipyard.local.launch()` on this machine, no cluster
"Running" is the moment the rank's first line of Python executes: it prints (or, on
the local backend, writes) time.time(); the figure is the latest rank's minus the start.

    python bench/real_launch.py [--ranks 1,4,8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from shipyard.dev import cluster as devcluster
from shipyard.dev import realnode
from shipyard.dev.pools import parse_pool_arg
from shipyard.local import Store, launch
from shipyard.render.objects import render_pod
from shipyard.spec import experiment_from_data
from shipyard.spec.machines import DEFAULT_MACHINE_TYPES

STAMP = "import os, time; t = repr(time.time()); print('STAMP', t, flush=True)"
LOCAL_STAMP = (STAMP + "; d = os.environ.get('BENCH_OUT')\n"
               "if d: open(os.path.join(d, os.environ['RANK']), 'w').write(t)")
NODE = "real-cpu-small-00000"


def spec_data(name: str, ranks: int, real: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "retry": {"max_restarts": 0},
        "roles": [{"name": "w", "replicas": ranks, "machine_type": "cpu-small",
                   "resources": {"cpu": "100m", "memory": "64Mi"},
                   "command": ["python", "-c", LOCAL_STAMP]}],
    }
    if real:
        mt = realnode.real_machine_type(DEFAULT_MACHINE_TYPES["cpu-small"])
        data["machine_types"] = [mt.model_dump(mode="json")]
    return data


class Cluster:
    def __init__(self, c: devcluster.DevCluster) -> None:
        self.c, self.api = c, c.raw_client()
        self.env = {**os.environ, "KUBECONFIG": str(c.kubeconfig)}

    def pods(self, ns: str) -> list[dict[str, Any]]:
        return self.api.get_json(f"/api/v1/namespaces/{ns}/pods")["items"]

    def latest_stamp(self, ns: str, ranks: int, start: float, timeout: float = 180) -> float:
        deadline = time.monotonic() + timeout
        stamps: dict[str, float] = {}
        while len(stamps) < ranks:
            for p in self.pods(ns):
                name = p["metadata"]["name"]
                if name in stamps:
                    continue
                status, data = self.api.request("GET", f"/api/v1/namespaces/{ns}/pods/{name}/log")
                for line in data.decode(errors="replace").splitlines() if status == 200 else []:
                    if line.startswith("STAMP "):
                        stamps[name] = float(line.split()[1])
            if time.monotonic() > deadline:
                raise SystemExit(f"{ns}: only {len(stamps)}/{ranks} ranks ran in {timeout:.0f}s")
            time.sleep(0.1)
        return max(stamps.values()) - start

    def fresh_namespace(self, ns: str) -> None:
        self.api.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        while self.api.request("GET", f"/api/v1/namespaces/{ns}/serviceaccounts/default")[0] != 200:
            time.sleep(0.1)

    def drop_namespace(self, ns: str) -> None:
        self.api.request("DELETE", f"/apis/shipyard.dev/v1alpha1/namespaces/{ns}/experiments/bench")
        for p in self.pods(ns):
            self.api.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{p['metadata']['name']}"
                             "?gracePeriodSeconds=0")
        while self.pods(ns):
            time.sleep(0.2)
        self.api.request("DELETE", f"/api/v1/namespaces/{ns}")


def shipyard_cli(k: Cluster, ranks: int, workdir: Path, ns: str) -> float:
    data = {**spec_data("bench", ranks, real=True), "namespace": ns}
    spec = workdir / f"bench-{ranks}.yaml"
    spec.write_text(yaml.safe_dump(data))
    start = time.time()
    subprocess.run([sys.executable, "-m", "shipyard.cli", "launch", "-c", k.c.context, str(spec)],
                   check=True, stdout=subprocess.DEVNULL, env=k.env)
    return k.latest_stamp(ns, ranks, start)


def raw_api(k: Cluster, ranks: int, ns: str) -> float:
    exp = experiment_from_data({**spec_data("bench", ranks, real=True), "namespace": ns})
    pods = [render_pod(exp, exp.roles[0], i) for i in range(ranks)]
    for p in pods:
        p["spec"]["nodeName"] = NODE
    start = time.time()
    for p in pods:
        status, data = k.api.request("POST", f"/api/v1/namespaces/{ns}/pods", p)
        if status != 201:
            raise SystemExit(f"creating a pod: HTTP {status}: {data[:300]!r}")
    return k.latest_stamp(ns, ranks, start)


def local(ranks: int, workdir: Path) -> float:
    out = workdir / "stamps"
    out.mkdir(exist_ok=True)
    for f in out.iterdir():
        f.unlink()
    os.environ["BENCH_OUT"] = str(out)
    exp = experiment_from_data(spec_data(f"bench-{ranks}", ranks, real=False))
    start = time.time()
    status = launch(exp, workdir / "spec.yaml", store=Store())
    if status.phase != "Succeeded":
        raise SystemExit(f"local run failed: {status.message}")
    return max(float((out / str(r)).read_text()) for r in range(ranks)) - start


def idle_rss_mib(c: devcluster.DevCluster) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in c.procs:
        base = r.name.split("/")[0]
        if base in ("kubelet", "containerd", "coredns", "kube-proxy"):
            p = r.process()
            out[base] = out.get(base, 0.0) + (p.memory_info().rss / 2**20 if p else 0.0)
    return out


def start_controller(k: Cluster) -> subprocess.Popen[bytes]:
    subprocess.run([sys.executable, "-m", "shipyard.cli", "install", "-c", k.c.context,
                    "--replicas", "0"], env=k.env, check=True, stdout=subprocess.DEVNULL)
    log = open(k.c.state_dir / "logs" / "shipyard-controller.log", "ab")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "shipyard.cli", "controller", "run", "-c",
                             k.c.context], env=k.env, stdout=log, stderr=subprocess.STDOUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", default="1,4,8", help="comma-separated rank counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; median shown")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    sizes = [int(x) for x in args.ranks.split(",")]
    name = f"bench-real-{os.getpid()}"
    t0 = time.monotonic()
    c = devcluster.up(name, real_specs=[parse_pool_arg("real-cpu-small=cpu-small:1")],
                      merge_kubeconfig=False)
    bring_up = time.monotonic() - t0
    k = Cluster(c)
    controller = start_controller(k)
    try:
        time.sleep(5)  # idle: nothing scheduled yet
        rss = idle_rss_mib(c)
        rows: list[tuple[int, dict[str, float]]] = []
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            os.environ["SHIPYARD_HOME"] = str(workdir / "home")
            run = 0
            for ranks in sizes:
                samples: dict[str, list[float]] = {"cli": [], "raw": [], "local": []}
                for _ in range(args.repeat):  # interleaved: drift hits every method alike
                    for method in ("cli", "raw"):
                        run += 1
                        ns = f"bench-{run}"
                        k.fresh_namespace(ns)
                        samples[method].append(shipyard_cli(k, ranks, workdir, ns)
                                               if method == "cli" else raw_api(k, ranks, ns))
                        k.drop_namespace(ns)
                    samples["local"].append(local(ranks, workdir))
                rows.append((ranks, {m: statistics.median(v) for m, v in samples.items()}))
    finally:
        controller.terminate()
        controller.wait(timeout=30)
        devcluster.down(name)

    print(f"bring-up of a cluster with one real node (cached): {bring_up:.1f} s")
    print("idle RSS (MiB): " + ", ".join(f"{k_} {v:.0f}" for k_, v in rss.items())
          + f"; total {sum(rss.values()):.0f}")
    print(f"time to every rank running (median of {args.repeat}, s); ratios against raw API")
    print(f"{'ranks':>5}  {'shipyard -c':>11}  {'raw API':>8}  {'ratio':>6}  {'local':>6}  "
          f"{'local/raw':>9}")
    for ranks, m in rows:
        print(f"{ranks:>5}  {m['cli']:>11.2f}  {m['raw']:>8.2f}  {m['cli'] / m['raw']:>6.2f}  "
              f"{m['local']:>6.2f}  {m['local'] / m['raw']:>9.3f}")
    if args.json:
        args.json.write_text(json.dumps({"bring_up_s": bring_up, "idle_rss_mib": rss,
                                         "rows": {r: m for r, m in rows}}, indent=2))


if __name__ == "__main__":
    main()
