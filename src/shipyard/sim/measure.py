"""Run simulations in child processes: each reports its own wall time and peak RSS, and
several run side by side on as many cores as there are."""

from __future__ import annotations

import multiprocessing
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Measured:
    value: Any
    wall_s: float
    rss_mib: float  # the child's peak resident set
    cpu_s: float = 0.0  # the child's own CPU time (wall is longer on a busy machine)


def _child(fn: Callable[..., Any], args: tuple[Any, ...], conn: Any) -> None:
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn(*args)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    conn.send(Measured(value, wall, peak / (2**20 if sys.platform == "darwin" else 2**10), cpu))
    conn.close()


def measure_all(jobs: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]],
                parallel: int = 1) -> list[Measured]:
    """fn(*args) for each job, each in a forked child (at most `parallel` at once), in order."""
    ctx = multiprocessing.get_context("fork")
    out: list[Measured | None] = [None] * len(jobs)
    running: list[tuple[int, Any, Any]] = []
    todo = list(enumerate(jobs))
    while todo or running:
        while todo and len(running) < max(parallel, 1):
            i, (fn, args) = todo.pop(0)
            recv, send = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_child, args=(fn, args, send))
            p.start()
            send.close()
            running.append((i, p, recv))
        i, p, recv = running.pop(0)
        try:
            out[i] = recv.recv()
        except EOFError:
            raise RuntimeError(f"simulation {i} died (exit code {p.exitcode})") from None
        p.join()
    return [m for m in out if m is not None]
