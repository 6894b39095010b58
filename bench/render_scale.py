"""Render time for big gangs, beside a plain yaml.safe_dump of as many pod dicts.

For each size, one experiment of that many 8-GPU replicas (with a volume mount, a
Secret's keys as env and an extended resource, as a real job has):
  render        render_experiment(): the objects as dicts (what the controller writes)
  render+yaml   what `shipyard render` does: render, then to_yaml() (render/dump.py)
  plain dump    the reference: yaml.safe_dump_all of as many already-built pod dicts
                (copies of one rendered pod), the cost of merely printing them
Each cell is the median of --repeat runs. Linear rendering keeps the ratios flat as
the gang grows; a per-pod rank layout (the old code) made render grow as n^2.

    python bench/render_scale.py [--sizes 100,1000,10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import yaml

from shipyard.cli.flags import arg, counts
from shipyard.render import render_experiment
from shipyard.render.objects import to_yaml
from shipyard.spec import Experiment, experiment_from_data


def experiment(replicas: int) -> Experiment:
    return experiment_from_data({
        "name": "scale",
        "roles": [{
            "name": "worker", "replicas": replicas, "machine_type": "gpu-h100",
            "procs_per_replica": 8, "command": ["torchrun", "train.py"],
            "resources": {"extra": {"rdma/hca": 1}},
            "mounts": [{"volume": "data", "path": "/data", "read_only": True}],
            "env_from": [{"secret": "wandb"}],
        }],
        "volumes": [{"name": "data", "pvc": "imagenet"}],
    })


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=counts(high=10_000), default="100,1000,10000",
                        help="comma-separated replica counts (at most 10,000, the spec's limit)")
    parser.add_argument("--repeat", type=arg(integer=True, low=1, high=100), default=3,
                        help="runs per cell; the median is shown")
    args = parser.parse_args()

    print(f"seconds, median of {args.repeat}; ratios against a plain yaml.safe_dump_all of as many pod dicts")
    print(f"{'replicas':>8}  {'render':>8}  {'render+yaml':>11}  {'plain dump':>10}  "
          f"{'render/plain':>12}  {'(render+yaml)/plain':>19}")
    for n in (int(x) for x in args.sizes.split(",")):
        sample = render_experiment(experiment(n))[1]
        pods = [copy.deepcopy(sample) for _ in range(n)]
        cells: dict[str, list[float]] = {"render": [], "cli": [], "plain": []}
        for _ in range(args.repeat):  # interleaved, so drift hits every column alike
            # A fresh (equal) experiment each time: nothing cached from the last run.
            exp = experiment(n)
            cells["render"].append(timed(lambda e=exp: render_experiment(e)))
            exp = experiment(n)
            cells["cli"].append(timed(lambda e=exp: to_yaml(render_experiment(e))))  # `shipyard render`
            cells["plain"].append(timed(lambda p=pods: yaml.safe_dump_all(p, sort_keys=False)))
        med = {k: statistics.median(v) for k, v in cells.items()}
        print(f"{n:>8}  {med['render']:>8.3f}  {med['cli']:>11.3f}  {med['plain']:>10.3f}  "
              f"{med['render'] / med['plain']:>12.3f}  {med['cli'] / med['plain']:>19.3f}")

if __name__ == "__main__":
    main()
