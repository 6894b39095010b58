"""Time from `shipyard launch` to every rank running, beside plain subprocess.

For 1, 4 and 16 ranks, in one run, each measured --repeat times (median shown):
  subprocess     N python processes started by subprocess.Popen from this process
  shipyard API   shipyard.local.launch() in this process (spec already loaded)
  shipyard CLI   `shipyard launch spec.yaml` as a user types it (includes CLI start-up)
"Running" is the moment each rank's first line of Python executes (it writes
time.time() to a file); the figure is the latest rank's time minus the start.

    python bench/local_launch.py [--ranks 1,4,16] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from shipyard.cli.flags import arg, counts
from shipyard.local import Store, launch
from shipyard.spec import experiment_from_data

RANK_SCRIPT = (
    "import os, time; "
    "open(os.path.join(os.environ['BENCH_OUT'], os.environ['RANK']), 'w').write(repr(time.time()))"
)


def spec_data(ranks: int) -> dict:
    return {
        "name": f"bench-{ranks}",
        "roles": [{
            "name": "w", "replicas": ranks, "machine_type": "cpu-small",
            "resources": {"cpu": "1m", "memory": "1Mi"},
            "command": ["python", "-c", RANK_SCRIPT],
        }],
    }


def latest_start(out: Path, ranks: int) -> float:
    stamps = [float((out / str(r)).read_text()) for r in range(ranks)]
    return max(stamps)


def plain_subprocess(ranks: int, out: Path) -> float:
    start = time.time()
    procs = [
        subprocess.Popen([sys.executable, "-c", RANK_SCRIPT], env={**os.environ, "RANK": str(r)})
        for r in range(ranks)
    ]
    for p in procs:
        p.wait()
    return latest_start(out, ranks) - start


def shipyard_api(ranks: int, out: Path, workdir: Path) -> float:
    exp = experiment_from_data(spec_data(ranks))
    start = time.time()
    status = launch(exp, workdir / "spec.yaml", store=Store())
    if status.phase != "Succeeded":
        raise SystemExit(f"shipyard run failed: {status.message}")
    return latest_start(out, ranks) - start


def shipyard_cli(ranks: int, out: Path, workdir: Path) -> float:
    spec = workdir / f"bench-{ranks}.yaml"
    spec.write_text(yaml.safe_dump(spec_data(ranks)))
    start = time.time()
    subprocess.run([sys.executable, "-m", "shipyard.cli", "launch", str(spec)],
                   check=True, stdout=subprocess.DEVNULL)
    return latest_start(out, ranks) - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=counts(high=4096), default="1,4,16", help="comma-separated rank counts")
    parser.add_argument("--repeat", type=arg(integer=True, low=1, high=1000), default=5, help="runs per cell; the median is shown")
    args = parser.parse_args()
    sizes = [int(x) for x in args.ranks.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.environ["SHIPYARD_HOME"] = str(workdir / "home")
        out = workdir / "stamps"
        out.mkdir()
        os.environ["BENCH_OUT"] = str(out)
        rows = []
        for ranks in sizes:
            samples: dict[str, list[float]] = {"subprocess": [], "api": [], "cli": []}
            for _ in range(args.repeat):  # interleaved, so drift hits every method alike
                samples["subprocess"].append(plain_subprocess(ranks, out))
                samples["api"].append(shipyard_api(ranks, out, workdir))
                samples["cli"].append(shipyard_cli(ranks, out, workdir))
            med = {k: statistics.median(v) for k, v in samples.items()}
            rows.append((ranks, med))

    print(f"time to all ranks running (median of {args.repeat}, seconds); ratio = shipyard / subprocess")
    print(f"{'ranks':>5}  {'subprocess':>10}  {'shipyard API':>12}  {'ratio':>6}  {'shipyard CLI':>12}  {'ratio':>6}")
    for ranks, med in rows:
        base = med["subprocess"]
        print(f"{ranks:>5}  {base:>10.3f}  {med['api']:>12.3f}  {med['api'] / base:>6.2f}"
              f"  {med['cli']:>12.3f}  {med['cli'] / base:>6.2f}")


if __name__ == "__main__":
    main()
