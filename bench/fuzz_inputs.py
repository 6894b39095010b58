"""The bad-input fuzz suite's long profile: many more hostile inputs than CI runs.

Runs tests/unit/test_fuzz_inputs.py (spec, clusters.yaml, trace, quantity, setting and
run-reference loaders, in process) and tests/local/test_fuzz_cli.py (`shipyard` verbs and
bench scripts as subprocesses) with fresh random examples (Hypothesis' default profile,
not CI's derandomized one), then prints how many inputs of each family were tried and
whether the oracle held for all: exit non-zero with one message naming the input, no
traceback, no hang (each subprocess has a 60 s guard), nothing changed under
SHIPYARD_HOME. A failure prints Hypothesis' smallest failing input.

    python bench/fuzz_inputs.py [--examples 3000] [--cli-examples 60] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shipyard.cli.flags import arg

ROOT = Path(__file__).resolve().parents[1]
SUITES = ["tests/unit/test_fuzz_inputs.py", "tests/local/test_fuzz_cli.py"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=arg(integer=True, low=1, high=10_000_000), default=3000,
                    help="examples per in-process property (CI: 30-300)")
    ap.add_argument("--cli-examples", type=arg(integer=True, low=1, high=100_000), default=60,
                    help="examples per subprocess property (CI: 4-12)")
    ap.add_argument("--seed", type=arg(integer=True, low=0, high=2**63 - 1),
                    help="Hypothesis seed, to replay a run (default: random)")
    ap.add_argument("-k", dest="select", help="only the properties matching this pytest -k expression")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        counts_file = Path(tmp) / "counts.json"
        env = {**os.environ, "HYPOTHESIS_PROFILE": "default", "SHIPYARD_FUZZ_COUNTS": str(counts_file),
               "SHIPYARD_FUZZ_EXAMPLES": str(args.examples), "SHIPYARD_FUZZ_CLI_EXAMPLES": str(args.cli_examples)}
        command = [sys.executable, "-m", "pytest", *SUITES, "-q", "-p", "no:cacheprovider", "-o", "timeout=7200",
                   "--durations=0", "--durations-min=0"]
        if args.seed is not None:
            command.append(f"--hypothesis-seed={args.seed}")
        if args.select:
            command += ["-k", args.select]
        started = time.monotonic()
        result = subprocess.run(command, cwd=ROOT, env=env, text=True, capture_output=True)
        wall = time.monotonic() - started
        counts = json.loads(counts_file.read_text()) if counts_file.exists() else {}
    print(f"{'family':<66} {'inputs':>8}")
    for family, n in sorted(counts.items()):
        print(f"{family:<66} {n:>8,}")
    print(f"{'in all':<66} {sum(counts.values()):>8,}   ({wall:.0f} s wall)")
    tail = [line for line in result.stdout.splitlines() if line.strip()]
    durations = [line for line in tail if line.split()[:1] and line.split()[0].endswith("s")
                 and " call " in line]
    if durations:
        print("\nslowest properties (all their examples together):")
        for line in durations[:5]:
            print("  " + line.strip())
    summary = tail[-1] if tail else "(no output)"
    print(f"\noracle: {'held for every input' if result.returncode == 0 else 'BROKEN'}: {summary}")
    if result.returncode != 0:
        print(result.stdout[-8000:])
        print(result.stderr[-2000:], file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
