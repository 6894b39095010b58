"""Figures of a simulated run: queueing delay, job completion time, utilisation, the
longest wait per size class and each queue's share of the GPUs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shipyard.sim.model import SimResult

# Size classes by GPUs: one GPU, a node's worth, a few nodes, big gangs.
SIZE_CLASSES = ((1, 1), (2, 8), (9, 31), (32, math.inf))


def size_class(gpus: int) -> str:
    for low, high in SIZE_CLASSES:
        if low <= gpus <= high:
            return f"{low}" if low == high else (f">={low}" if math.isinf(high) else f"{low}-{high}")
    return "0"


def quantile(sorted_xs: Sequence[float], q: float) -> float:
    """Nearest rank."""
    if not sorted_xs:
        return 0.0
    return sorted_xs[max(math.ceil(q * len(sorted_xs)) - 1, 0)]


@dataclass(frozen=True, slots=True)
class Summary:
    experiments: int
    started: int
    mean_wait_s: float
    p50_wait_s: float
    p95_wait_s: float
    p99_wait_s: float
    max_wait_s: float
    mean_jct_s: float  # submit to end, over the experiments that ended
    utilisation: float  # busy GPU-seconds / (GPUs x time to the last end)
    max_wait_by_size: Mapping[str, float]  # size class -> longest wait (started or not)
    gpu_share: Mapping[str, float]  # queue -> share of the busy GPU-seconds


def summarize(r: SimResult, gpus: Mapping[str, int], total_gpus: int,
              queue_of: Mapping[str, str] | None = None) -> Summary:
    """`gpus`: each experiment's GPUs; `total_gpus`: the cluster's (fixed). An experiment
    that never started counts its wait to the end of the run."""
    waits = r.waits
    by_size: dict[str, float] = {}
    for key, submit in r.submit.items():
        wait = r.started[key] - submit if key in r.started else r.end_s - submit
        c = size_class(gpus[key])
        by_size[c] = max(by_size.get(c, 0.0), wait)
    jct = [r.ended[k] - r.submit[k] for k in r.ended]
    span = r.last_end_s
    share: dict[str, float] = {}
    if queue_of is not None:
        for k, end in r.ended.items():
            q = queue_of[k]
            share[q] = share.get(q, 0.0) + gpus[k] * (end - r.started[k])
        busy = sum(share.values()) or 1.0
        share = {q: v / busy for q, v in sorted(share.items())}
    return Summary(
        len(r.submit), len(r.started), statistics.fmean(waits) if waits else 0.0,
        quantile(waits, 0.50), quantile(waits, 0.95), quantile(waits, 0.99),
        waits[-1] if waits else 0.0, statistics.fmean(jct) if jct else 0.0,
        r.busy_gpu_s / (total_gpus * span) if span and total_gpus else 0.0,
        dict(sorted(by_size.items(), key=lambda kv: _class_order(kv[0]))), share)


def _class_order(name: str) -> int:
    return next((i for i, (low, _) in enumerate(SIZE_CLASSES) if name.lstrip(">=").split("-")[0] == str(low)),
                len(SIZE_CLASSES))
