"""Run-time estimates from history, as Helios' QSSF does (Hu et al., SC'21): what an
experiment will run for is predicted from experiments alike that finished before it —
the same kind (user, name and shape, as the adapter names it), else the same queue and
size — by a recency-weighted quantile (recent runs count more: half-life).

Pure and incremental: `History.add` a finished run, `History.estimate` one about to
queue. An estimate is *confident* when enough runs of its kind agree (the high
quantile within `max_spread` x the median); only a confident one may be taken as a
gang's end (backfill), any may order gangs. Nothing is ever stopped by an estimate.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EstimateSettings:
    half_life_s: float = 7 * 86400.0  # a run this old weighs half a new one
    window: int = 64  # runs kept per kind (the most recent)
    min_samples: int = 3  # fewer: no estimate from that level
    confident_samples: int = 5  # at the kind level, for a confident one
    max_spread: float = 3.0  # high quantile / median, at most, for a confident one
    quantile: float = 0.5  # the estimate (orders gangs)
    high_quantile: float = 0.9  # the end taken for backfill (confident only)


@dataclass(frozen=True, slots=True)
class Estimate:
    run_s: float  # the weighted `quantile`: for ordering
    high_s: float  # the weighted `high_quantile`: for an end, when confident
    confident: bool
    samples: int


class History:
    """Finished runs by kind and by (queue, GPUs); newest last."""

    def __init__(self, settings: EstimateSettings = EstimateSettings()) -> None:
        self.settings = settings
        self.runs: dict[str, deque[tuple[float, float]]] = {}

    @staticmethod
    def keys(kind: str, queue: str, gpus: int) -> list[tuple[str, bool]]:
        """Where to look, narrowest first, and whether that level may be confident
        (no kind: queue and size only)."""
        size = (f"q:{queue}/{gpus}", False)
        return [(f"k:{kind}", True), size] if kind else [size]

    def add(self, kind: str, queue: str, gpus: int, run_s: float, ended_at: float) -> None:
        for key, _ in self.keys(kind, queue, gpus):
            runs = self.runs.get(key)
            if runs is None:
                runs = self.runs[key] = deque(maxlen=self.settings.window)
            runs.append((ended_at, run_s))

    def estimate(self, kind: str, queue: str, gpus: int, now: float) -> Estimate | None:
        s = self.settings
        for key, may_be_confident in self.keys(kind, queue, gpus):
            runs = self.runs.get(key)
            if runs is None or len(runs) < s.min_samples:
                continue
            mid, high = weighted_quantiles(runs, now, s.half_life_s, (s.quantile, s.high_quantile))
            confident = (may_be_confident and len(runs) >= s.confident_samples
                         and high <= s.max_spread * max(mid, 1.0))
            return Estimate(mid, high, confident, len(runs))
        return None


def weighted_quantiles(runs: deque[tuple[float, float]] | list[tuple[float, float]], now: float,
                       half_life_s: float, qs: tuple[float, ...]) -> tuple[float, ...]:
    """Quantiles of run times, each run weighted 2^-(age / half-life)."""
    pts = sorted((run_s, 0.5 ** (max(now - ended, 0.0) / half_life_s)) for ended, run_s in runs)
    total = math.fsum(w for _, w in pts)
    out = []
    for q in qs:
        target, acc, value = q * total, 0.0, pts[-1][0]
        for run_s, w in pts:
            acc += w
            if acc >= target:
                value = run_s
                break
        out.append(value)
    return tuple(out)
