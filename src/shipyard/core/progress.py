"""Training progress: step rate, percent and ETA from a few (time, step) samples.

Pure: times are seconds on whatever clock the caller uses (the receiver's own, never
a rank's). A rank reports its step now and then; the rate is measured over the
samples of the last `window_s` seconds, so a pause (evaluation, checkpoint) weighs
for a while and then no more. A step lower than the last one (a restart from a
checkpoint) starts the window again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

WINDOW_S = 120.0  # the rate is measured over this much recent history
MAX_SAMPLES = 32  # per window; older ones are dropped first
MAX_METRICS = 8  # metric values kept per experiment (the first names reported)


@dataclass(slots=True)
class Window:
    """Recent (time, step) samples of one series, oldest first."""

    samples: list[tuple[float, int]] = field(default_factory=list)
    window_s: float = WINDOW_S

    def add(self, t: float, step: int) -> None:
        if self.samples and (step < self.samples[-1][1] or t < self.samples[-1][0]):
            self.samples.clear()  # restarted from an earlier step (or a clock step back)
        if self.samples and t == self.samples[-1][0]:
            self.samples[-1] = (t, max(step, self.samples[-1][1]))
        else:
            self.samples.append((t, step))
        # Keep one sample older than the window, so the rate spans the whole window.
        while len(self.samples) > 2 and self.samples[1][0] <= t - self.window_s:
            self.samples.pop(0)
        if len(self.samples) > MAX_SAMPLES:
            del self.samples[1:len(self.samples) - MAX_SAMPLES + 1]

    @property
    def step(self) -> int | None:
        return self.samples[-1][1] if self.samples else None

    @property
    def updated(self) -> float | None:
        return self.samples[-1][0] if self.samples else None

    def rate(self) -> float:
        """Steps per second over the window (0 with fewer than two samples)."""
        if len(self.samples) < 2:
            return 0.0
        (t0, s0), (t1, s1) = self.samples[0], self.samples[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0


def percent(step: int, total: int | None) -> float | None:
    if not total or total <= 0:
        return None
    return round(min(max(step / total, 0.0), 1.0) * 100, 2)


def eta(step: int, total: int | None, rate: float, now: float) -> float | None:
    """When the last step is expected (a time on `now`'s clock); None when unknowable."""
    if not total or total <= 0:
        return None
    if step >= total:
        return now
    if rate <= 0:
        return None
    return now + (total - step) / rate


@dataclass(frozen=True, slots=True)
class Summary:
    step: int
    total_steps: int | None
    percent: float | None
    steps_per_second: float
    eta: float | None  # on the caller's clock
    updated: float
    metrics: Mapping[str, float]


def summarize(windows: Iterable[Window], total: int | None, metrics: Mapping[str, float],
              now: float) -> Summary | None:
    """One experiment from its ranks' windows: the furthest rank's step and its rate
    (synchronous ranks move together; one that reports alone, rank 0 often, is enough).
    The ETA counts from that rank's last report, not from `now`."""
    best = None
    for w in windows:
        if w.step is not None and (best is None or (w.step, w.rate()) > (best.step, best.rate())):
            best = w
    if best is None or best.step is None or best.updated is None:
        return None
    rate = best.rate()
    return Summary(best.step, total, percent(best.step, total), round(rate, 4),
                   eta(best.step, total, rate, best.updated), best.updated, dict(metrics))


def keep_metrics(current: Mapping[str, float], new: Mapping[str, object]) -> dict[str, float]:
    """The last value of each metric; at most MAX_METRICS names, the first ones seen."""
    out = dict(current)
    for name, value in new.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if value != value or value in (float("inf"), float("-inf")):
            continue  # NaN/inf: not JSON, and no use on a status
        if name in out or len(out) < MAX_METRICS:
            out[str(name)[:63]] = float(value)
    return out


def stragglers(rates: Mapping[str, float], *, ratio: float = 0.5, min_ranks: int = 3) -> list[str]:
    """Ranks whose step rate is below `ratio` times the median of all (at least
    `min_ranks` ranks with a rate, or no median worth comparing to)."""
    measured = sorted(r for r in rates.values() if r > 0)
    if len(rates) < min_ranks or len(measured) < min_ranks:
        return []
    median = _median(measured)
    return sorted(rank for rank, r in rates.items() if r < ratio * median)


def _median(values: Sequence[float]) -> float:
    n = len(values)
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2


def status_fields(s: Summary, format_time: Callable[[float], str]) -> dict[str, Any]:
    """`status.progress` as the Experiment (and a local run) carries it."""
    return {"step": s.step, "totalSteps": s.total_steps, "percent": s.percent,
            "stepsPerSecond": s.steps_per_second,
            "eta": format_time(s.eta) if s.eta is not None else None,
            "updatedAt": format_time(s.updated), "metrics": dict(s.metrics)}


def stalled(ages: Mapping[str, float | None], running_for: float, timeout: float) -> bool:
    """No member has reported for `timeout` seconds, and the attempt has run that long.
    `ages`: seconds since each member's last report (None: never, this attempt or ever)."""
    if running_for <= timeout:
        return False
    return all(age is None or age > timeout for age in ages.values())


class Persistent:
    """Who has been flagged in each of the last `times` checks (a straggler must stay
    slow, not be slow once): `check` returns those newly persistent, once each."""

    def __init__(self, times: int = 3) -> None:
        self.times = times
        self.streak: dict[str, int] = {}
        self.told: set[str] = set()

    def check(self, flagged: Iterable[str]) -> list[str]:
        flagged = set(flagged)
        self.streak = {k: self.streak.get(k, 0) + 1 for k in flagged}
        self.told &= flagged  # a rank that recovered may be told of again
        new = sorted(k for k, n in self.streak.items() if n >= self.times and k not in self.told)
        self.told |= set(new)
        return new
