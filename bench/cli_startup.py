"""How fast does the `shipyard` command start? Each command beside `python -c pass`.

Runs every command --runs times (after one warm-up run, so the page cache is warm) and
prints the median wall time and the median CPU time (user + system of the child,
which a busy machine inflates less than wall time), each also as a ratio to the
interpreter alone, and `python -c "import typer"` as the floor a typer CLI cannot go
below. With --hyperfine, also runs hyperfine (Debian package `hyperfine`) if present.
With --instructions, also counts each command's instructions once under valgrind's
callgrind (Debian package `valgrind`): a figure a busy machine does not change, so a
change can be judged while other work runs (about 2.5 instructions per ns here).
The issue's goal: `shipyard --help` <= 0.2 s on a quiet machine.

    python bench/cli_startup.py [--runs N] [--hyperfine] [--instructions]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shipyard.cli.flags import arg

ROOT = Path(__file__).parents[1]


def shipyard() -> list[str]:
    """The installed console script beside this interpreter, else `python -m shipyard.cli`."""
    script = Path(sys.executable).parent / "shipyard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "shipyard.cli"]


def once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run; output discarded, a failure is an error."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode() if p.stderr else ""
    if p.stderr:
        p.stderr.close()
    if p.returncode != 0:
        sys.exit(f"error: {shlex.join(cmd)} exited {p.returncode}: {err.strip()[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime


def measure(cmd: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    once(cmd, env)  # warm-up
    samples = [once(cmd, env) for _ in range(runs)]
    return statistics.median(w for w, _ in samples), statistics.median(c for _, c in samples)


def instructions(cmd: list[str], env: dict[str, str]) -> int | None:
    """Instructions one run executes, by callgrind; None without valgrind."""
    vg = shutil.which("valgrind")
    if vg is None:
        return None
    p = subprocess.run([vg, "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd], cwd=ROOT,
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    found = re.search(r"Collected : (\d+)", p.stderr)
    if p.returncode != 0 or found is None:
        sys.exit(f"error: valgrind {shlex.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-500:]}")
    return int(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=arg(integer=True, low=1, high=1000), default=15,
                    help="runs per command (median reported)")
    ap.add_argument("--hyperfine", action="store_true", help="also run hyperfine, if installed")
    ap.add_argument("--instructions", action="store_true",
                    help="also count instructions under valgrind (slow: ~50x a run)")
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="shipyard-bench-")
    env = {**os.environ, "SHIPYARD_HOME": home, "COLUMNS": "100"}  # an empty local store
    sy = shipyard()
    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ('python -c "import typer"', [sys.executable, "-c", "import typer"]),
        ("shipyard --help", [*sy, "--help"]),
        ("shipyard list", [*sy, "list"]),
        ("shipyard render (ddp example)", [*sy, "render", "examples/ddp/experiment.py"]),
    ]
    load = os.getloadavg()[0]
    print(f"{len(cases)} commands x {args.runs} runs (+1 warm-up), {os.cpu_count()} CPUs, "
          f"load average {load:.2f}{' (busy: wall times are inflated, CPU less so)' if load > 1 else ''}")
    print(f"shipyard = {shlex.join(sy)}\n")
    if args.instructions and shutil.which("valgrind") is None:
        print("--instructions: valgrind is not installed (Debian: apt-get install valgrind)\n")
        args.instructions = False
    extra = f"{'instructions':>15}{'x pass':>8}" if args.instructions else ""
    print(f"{'command':<32}{'wall median':>12}{'x pass':>8}{'CPU median':>12}{'x pass':>8}{extra}")
    base: tuple[float, float] | None = None
    base_ins: int | None = None
    for name, cmd in cases:
        wall, cpu = measure(cmd, env, args.runs)
        base = base or (wall, cpu)
        line = (f"{name:<32}{wall * 1000:>10.0f}ms{wall / base[0]:>7.1f}x"
                f"{cpu * 1000:>10.0f}ms{cpu / max(base[1], 1e-3):>7.1f}x")
        if args.instructions:
            ins = instructions(cmd, env) or 0
            base_ins = base_ins or ins
            line += f"{ins / 1e6:>14,.0f}M{ins / max(base_ins, 1):>7.1f}x"
        print(line)
    print("\ngoal: shipyard --help <= 200 ms wall on a quiet machine")
    if args.hyperfine:
        hf = shutil.which("hyperfine")
        if hf is None:
            print("hyperfine: not installed (Debian: apt-get install hyperfine)")
        else:
            subprocess.run([hf, "--warmup", "1", "--runs", str(args.runs), "--shell=none",
                            *(shlex.join(cmd) for _, cmd in cases)], cwd=ROOT, env=env, check=False)
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
