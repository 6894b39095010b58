"""Progress math: step rate, percent, ETA and stragglers, as properties."""

from __future__ import annotations

import math

from hypothesis import assume, given
from hypothesis import strategies as st

from shipyard.core.progress import (
    MAX_METRICS,
    Window,
    eta,
    keep_metrics,
    percent,
    stragglers,
    summarize,
)

rates = st.floats(min_value=0.01, max_value=1e4, allow_nan=False)
gaps = st.lists(st.floats(min_value=0.1, max_value=30), min_size=2, max_size=40)


@given(rate=rates, gaps=gaps, start=st.integers(0, 10**6))
def test_a_steady_rate_is_measured_exactly_and_the_eta_follows(rate, gaps, start):
    w, t = Window(), 1000.0
    steps = []
    for gap in gaps:
        t += gap
        steps.append(start + int(rate * (t - 1000.0)))
        w.add(t, steps[-1])
    assume(w.samples[-1][0] > w.samples[0][0])
    (t0, s0), (t1, s1) = w.samples[0], w.samples[-1]
    assert math.isclose(w.rate(), (s1 - s0) / (t1 - t0))
    # Whole steps measured: within one step over the window of the true rate.
    assert abs(w.rate() - rate) <= 1 / (t1 - t0) + 1e-9
    total = s1 + 1000
    when = eta(s1, total, w.rate(), t1)
    if w.rate() > 0:
        assert math.isclose(when, t1 + 1000 / w.rate())
    else:
        assert when is None


@given(st.lists(st.tuples(st.floats(0, 1e6), st.integers(-10, 10**9)), max_size=60))
def test_the_window_never_measures_a_negative_rate_and_stays_small(points):
    w = Window()
    for t, step in points:
        w.add(t, step)
        assert w.rate() >= 0
        assert len(w.samples) <= 32
        assert w.step == step or w.samples[-1][0] == t


@given(st.integers(0, 10**6), st.integers(1, 10**6))
def test_a_lower_step_is_a_restart_the_rate_starts_again(step, back):
    w = Window()
    w.add(0.0, step + back)
    w.add(10.0, step + back + 100)
    w.add(20.0, step)  # restarted from a checkpoint
    assert w.samples == [(20.0, step)] and w.rate() == 0


@given(st.integers(-10, 10**7), st.one_of(st.none(), st.integers(-5, 10**7)))
def test_percent_is_within_0_and_100_or_unknown(step, total):
    p = percent(step, total)
    if total is None or total <= 0:
        assert p is None
    else:
        assert 0 <= p <= 100


@given(st.integers(0, 1000), st.integers(1, 1000), st.floats(0, 100))
def test_eta_is_unknown_without_a_total_or_a_rate_and_now_when_done(step, total, rate):
    now = 50.0
    assert eta(step, None, rate, now) is None
    result = eta(step, total, rate, now)
    if step >= total:
        assert result == now
    elif rate == 0:
        assert result is None
    else:
        assert result >= now


@given(st.lists(st.integers(1, 100), min_size=1, max_size=8))
def test_an_experiment_goes_at_its_furthest_rank(last_steps):
    windows = []
    for s in last_steps:
        w = Window()
        w.add(0.0, 0)
        w.add(10.0, s)
        windows.append(w)
    summary = summarize(windows, 200, {"loss": 1.0}, now=12.0)
    assert summary.step == max(last_steps)
    assert summary.steps_per_second == round(max(last_steps) / 10, 4)
    assert summary.updated == 10.0
    assert summarize([Window()], 200, {}, 0.0) is None


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.floats(allow_nan=True), max_size=30))
def test_metrics_keep_few_finite_values(new):
    kept = keep_metrics({}, new)
    assert len(kept) <= MAX_METRICS
    assert all(math.isfinite(v) for v in kept.values())


@given(st.lists(st.floats(1, 100), min_size=3, max_size=50), st.floats(1.5, 1e3),
       st.sampled_from([0.125, 0.5, 2.0, 16.0]))  # powers of two: scaling is exact
def test_a_rank_far_below_the_median_is_a_straggler_whatever_the_scale(others, slowdown, scale):
    # Below half the slowest of the others: below half the median of all, whatever they are.
    rates = {f"r{i}": v for i, v in enumerate(others)} | {"slow": min(others) / (2 * slowdown)}
    found = stragglers(rates)
    assert "slow" in found
    scaled = stragglers({k: v * scale for k, v in rates.items()})
    assert set(scaled) == set(found)
    # Every rank flagged is below half the median of all.
    everyone = sorted(rates.values())
    n = len(everyone)
    mid = everyone[n // 2] if n % 2 else (everyone[n // 2 - 1] + everyone[n // 2]) / 2
    assert all(rates[r] < 0.5 * mid for r in found)


def test_too_few_ranks_have_no_stragglers():
    assert stragglers({"a": 1.0, "b": 100.0}) == []
