"""Traces of experiment arrivals for the simulator: a plain CSV, or the Alibaba GPU trace.

Plain CSV: a header `submit_s,gpus,duration_s` (any column order; an optional `name`
column), one experiment a row: when it is submitted (seconds from the start), how many
GPUs it needs, how long it runs once started.

Alibaba (cluster-trace-gpu-v2023, openb_pod_list_default.csv; Weng et al., "Beware of
Fragmentation", USENIX ATC 2023): one task a row. The busiest window (24 h by default)
of creation_time is kept; duration = deletion_time - (scheduled_time or creation_time);
tasks without GPUs are left out (they do not use a GPU pool).
"""

from __future__ import annotations

import bisect
import csv
import io
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shipyard.spec.inputs import MAX_TRACE_BYTES, InputError, clip, read_text
from shipyard.spec.quantity import MAX_SECONDS, bounded_number

ALIBABA_POD_LIST = Path("alibaba-gpu-2023") / "openb_pod_list_default.csv"
CSV_COLUMNS = ("submit_s", "gpus", "duration_s")
DAY_S = 86400.0
# 65,536 GPUs (8,192 nodes of 8) in one experiment: beyond any real cluster, and still a
# gang the simulator places in bounded time.
MAX_TRACE_GPUS = 65536


class TraceError(ValueError):
    """A trace that cannot be read; the message names the file, row and column."""


@dataclass(frozen=True, slots=True)
class Arrival:
    name: str
    submit_s: float
    gpus: int
    duration_s: float
    queue: str = "default"
    # What an estimate of its duration learns from: experiments alike (same user, name
    # and shape); empty: its queue and GPUs only.
    kind: str = ""


def traces_dir() -> Path:
    """$SHIPYARD_TRACES, else the shared traces beside the repository (../shared/traces)."""
    env = os.environ.get("SHIPYARD_TRACES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "traces"


def alibaba_path(root: Path | None = None) -> Path:
    return (root or traces_dir()) / ALIBABA_POD_LIST


def _number(path: Path, line: int, column: str, text: str, *, integer: bool = False,
            low: float | None = None, above: float | None = None, high: float | None = None) -> float:
    try:
        return bounded_number(text, integer=integer, low=low, above=above, high=high)
    except ValueError as exc:
        raise TraceError(f"{path}: row {line}, column {column}: {exc}") from None


def _rows(path: Path, required: Sequence[str]) -> Iterable[tuple[int, dict[str, str]]]:
    """(file line number, row) for each data row, after checking the header."""
    try:
        text = read_text(path, MAX_TRACE_BYTES)
    except InputError as exc:
        raise TraceError(f"{exc.source}: cannot read the trace: {exc.problem}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise TraceError(f"{path}: row 1 (header): missing column(s) {', '.join(missing)}; "
                             f"the header must name {', '.join(required)}")
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                raise TraceError(f"{path}: row {reader.line_num}: expected {len(header)} "
                                 "columns as in the header")
            yield reader.line_num, row
    except csv.Error as exc:
        raise TraceError(f"{path}: row {reader.line_num}: not valid CSV: {clip(str(exc))}") from None


def load_csv(path: Path | str) -> list[Arrival]:
    """Arrivals from a `submit_s,gpus,duration_s` CSV, in submission order."""
    path = Path(path)
    out: list[Arrival] = []
    for line, row in _rows(path, CSV_COLUMNS):
        submit = _number(path, line, "submit_s", row["submit_s"], high=MAX_SECONDS)
        gpus = _number(path, line, "gpus", row["gpus"], integer=True, low=1, high=MAX_TRACE_GPUS)
        duration = _number(path, line, "duration_s", row["duration_s"], above=0, high=MAX_SECONDS)
        if submit < 0:
            raise TraceError(f"{path}: row {line}, column submit_s: {submit:g} is negative; "
                             "times count from 0")
        name = clip((row.get("name") or "").strip(), 63) or f"exp-{line - 1:05d}"
        out.append(Arrival(name, submit, int(gpus), duration))
    if not out:
        raise TraceError(f"{path}: no experiments (only a header?)")
    out.sort(key=lambda a: (a.submit_s, a.name))
    return out


def busiest_window(times: Sequence[float], window_s: float) -> float:
    """Start of the window [t, t + window_s) holding the most of `times` (the earliest if
    several do); windows start at an event, which loses nothing."""
    ordered = sorted(times)
    best, start = -1, 0.0
    for i, t in enumerate(ordered):
        n = bisect.bisect_left(ordered, t + window_s) - i
        if n > best:
            best, start = n, t
    return start


def load_alibaba(path: Path | str | None = None, window_s: float = DAY_S) -> list[Arrival]:
    """The busiest `window_s` of the Alibaba GPU trace, times shifted to start at 0."""
    path = Path(path) if path is not None else alibaba_path()
    cols = ("name", "num_gpu", "creation_time", "deletion_time", "scheduled_time")
    tasks: list[tuple[str, float, int, float, str]] = []
    for line, row in _rows(path, cols):
        gpus = _number(path, line, "num_gpu", row["num_gpu"], integer=True, high=MAX_TRACE_GPUS)
        if gpus <= 0:
            continue
        created = _number(path, line, "creation_time", row["creation_time"])
        if not row["deletion_time"].strip():
            continue  # still running when the trace was taken: no known duration
        deleted = _number(path, line, "deletion_time", row["deletion_time"])
        started = (_number(path, line, "scheduled_time", row["scheduled_time"])
                   if row["scheduled_time"].strip() else created)
        # A task deleted the instant it started ran for no time: count one second.
        # The trace names no user: tasks of one QoS class and one shape (CPU, memory,
        # GPU share) are taken as one kind of work, the QoS class first (a queue).
        qos = (row.get("qos") or "").strip().lower() or "default"
        kind = f"{qos}/{row.get('cpu_milli', '')}m/{row.get('memory_mib', '')}Mi/{row.get('gpu_milli', '')}"
        tasks.append((row["name"], created, int(gpus), max(deleted - started, 1.0), kind))
    if not tasks:
        raise TraceError(f"{path}: no GPU tasks with a known end")
    start = busiest_window([t[1] for t in tasks], window_s)
    chosen = [Arrival(name, created - start, gpus, duration, kind=kind)
              for name, created, gpus, duration, kind in tasks if start <= created < start + window_s]
    chosen.sort(key=lambda a: (a.submit_s, a.name))
    return chosen


# Distributed training in the resampled shape: the share of experiments that become
# gangs of whole 8-GPU nodes, by node count (the trace itself has no multi-node jobs;
# the mix is the heavy tail bench/policy_cycle.py uses, cut at 16 nodes).
GANG_NODES = ((2, 0.030), (4, 0.015), (8, 0.006), (16, 0.002))


def resample(source: Sequence[Arrival], jobs: int, span_s: float, seed: int = 0,
             gangs: Sequence[tuple[int, float]] = GANG_NODES, node_gpus: int = 8,
             keep_unended: bool = False) -> list[Arrival]:
    """A trace of `jobs` experiments over `span_s`, drawn from `source` (e.g. the whole
    Alibaba trace): each copies a source task's GPUs and duration, submitted at that
    task's time scaled onto `span_s` (so bursts and lulls keep their shape) plus a
    jitter of up to one source gap; a share of them (`gangs`: node count, probability)
    become gangs of that many whole nodes. Tasks that ran until the trace's last instant
    (still running when it was taken) are left out unless `keep_unended`. Seeded."""
    if not source:
        raise ValueError("resample: the source trace is empty")
    rng = random.Random(seed)
    # A task that ran until the trace was taken has no known end: left out.
    if not keep_unended:
        cut = max(a.submit_s + a.duration_s for a in source) - 1.0
        source = [a for a in source if a.submit_s + a.duration_s < cut] or list(source)
    first, last = source[0].submit_s, source[-1].submit_s
    scale = span_s / max(last - first, 1.0)
    gap = (last - first) / len(source) * scale
    sizes, weights = [n for n, _ in gangs], [p for _, p in gangs]
    out = []
    for i in range(jobs):
        task = rng.choice(source)
        t = min(max((task.submit_s - first) * scale + rng.uniform(-gap, gap), 0.0), span_s)
        gpus = task.gpus
        r = rng.random()
        for n, p in zip(sizes, weights, strict=True):
            if r < p:
                gpus = n * node_gpus
                break
            r -= p
        out.append(Arrival(f"job-{i:06d}", t, gpus, task.duration_s, task.queue,
                           task.kind if gpus == task.gpus else f"{task.kind}/x{gpus}"))
    out.sort(key=lambda a: (a.submit_s, a.name))
    return out


def bench_trace(args: object) -> tuple[list[Arrival], str]:
    """The trace a bench replays (its flags --trace, --traces-dir, --window-days,
    --resample, --days, --seed) and words saying which; exits with the error if it
    cannot be read."""
    a = args
    try:
        return _bench_trace(a.trace, a.traces_dir, a.window_days, a.resample, a.days, a.seed)  # type: ignore[attr-defined]
    except TraceError as e:
        raise SystemExit(f"error: {e}") from None


def _bench_trace(trace: Path | None, traces_dir: Path | None, window_days: float,
                 jobs: int | None, days: float, seed: int) -> tuple[list[Arrival], str]:
    """A CSV; else `jobs` resampled from the whole Alibaba trace over `days`; else its
    busiest `window_days`."""
    if trace is not None:
        return load_csv(trace), str(trace)
    path = alibaba_path(traces_dir)
    if jobs is not None:
        arrivals = resample(load_alibaba(path, window_s=float("inf")), jobs, days * DAY_S, seed=seed)
        return arrivals, f"{path} resampled: {jobs} experiments over {days:g} days (seed {seed})"
    return (load_alibaba(path, window_s=window_days * DAY_S),
            f"{path} (busiest {window_days * 24:g} h of creation_time)")
