"""GPU-hour accounting (monitor/usage.py): the ledger, its buckets, the integration of
rates over time, the report, and the counters the controller increments."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from shipyard.core.model import Resources
from shipyard.monitor.scheduler import SchedulerMetrics, restart_cause
from shipyard.monitor.usage import (
    DAY,
    HOUR,
    HOURLY_KEEP_S,
    MAX_LEDGER_BYTES,
    Accountant,
    Amount,
    Ledger,
    PodUse,
    node_fraction,
    node_price,
    rates,
    report,
)
from shipyard.spec.machines import DEFAULT_MACHINE_TYPES, LABEL_INSTANCE_TYPE

A100 = DEFAULT_MACHINE_TYPES["gpu-a100"]
A100_NODE = Resources(A100.allocatable_cpu, A100.allocatable_memory, 8)

keys = st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["ns1", "ns2"]))
amounts = st.builds(Amount, *(st.floats(0, 1e6, allow_nan=False) for _ in range(4)))
times = st.floats(1.7e9, 1.7e9 + 200 * DAY)
entries = st.lists(st.tuples(keys, amounts, times), max_size=60)


def _close(a: Amount, b: Amount, tol: float = 1e-6) -> bool:
    return all(math.isclose(x, y, rel_tol=tol, abs_tol=0.01) for x, y in zip(a.values(), b.values(),
                                                                              strict=True))


def _sum(amounts_: dict) -> Amount:
    return sum(amounts_.values(), Amount())


@given(entries)
def test_buckets_add_up_to_the_totals(items):
    ledger = Ledger()
    for key, amount, at in items:
        ledger.add(key, amount, at)
    assert _close(_sum(ledger.since(0)), _sum(ledger.totals))
    for key in ledger.totals:
        assert _close(ledger.since(0).get(key, Amount()), ledger.totals[key])


@given(entries, times)
def test_compaction_keeps_what_is_recent_and_bounds_the_ledger(items, now):
    ledger = Ledger()
    for key, amount, at in items:
        ledger.add(key, amount, min(at, now))
    before_totals = dict(ledger.totals)
    recent = ledger.since(now - 7 * DAY)
    ledger.compact(now)
    assert ledger.totals == before_totals  # counters never go back
    assert all(s >= now - HOURLY_KEEP_S - HOUR for s in ledger.hourly)
    assert len(ledger.hourly) <= HOURLY_KEEP_S // HOUR + 1
    assert len(ledger.daily) <= 93
    after = ledger.since(now - 7 * DAY)
    for key, amount in recent.items():
        assert _close(after.get(key, Amount()), amount)


def _stored(ledger: Ledger) -> int:
    return len(json.dumps(ledger.to_data(), separators=(",", ":")))  # as usage_store writes it


def test_many_keys_keep_the_stored_ledger_under_its_bound_and_the_recent_hours_hourly():
    now, use = 1.7e9, Amount(3600.0, 7200.0, 1.0, 2.5)
    keys_ = [(f"team-{i % 30}", f"ns-{i}") for i in range(300)]
    hour0, day0 = int(now // HOUR) * HOUR, int(now // DAY) * DAY
    # 300 (queue, namespace) pairs busy for 100 days, as compaction by age alone leaves
    # them (192 hourly and 92 daily buckets): about 3.5 MiB stored.
    ledger = Ledger({k: use.scaled(2400) for k in keys_},
                    {hour0 - h * HOUR: dict.fromkeys(keys_, use) for h in range(192)},
                    {day0 - (9 + d) * DAY: dict.fromkeys(keys_, use.scaled(24)) for d in range(92)})
    assert _stored(ledger) > 6 * MAX_LEDGER_BYTES
    totals = dict(ledger.totals)
    text = ledger.stored_text()
    assert len(text) <= MAX_LEDGER_BYTES and text == json.dumps(ledger.to_data(), separators=(",", ":"))
    assert ledger.totals == totals  # counters never go back
    # Today's hours stay hourly; earlier days' hours were folded, the oldest days dropped.
    assert sorted(ledger.hourly) == [t for t in sorted(hour0 - h * HOUR for h in range(192))
                                     if t >= hour0 // DAY * DAY]
    assert min(ledger.daily) > day0 - 30 * DAY
    # What is left adds up: every bucket kept is whole.
    folded = ledger.daily[day0 - DAY][("team-0", "ns-0")]
    assert _close(folded, use.scaled(24))


@given(entries, times, st.integers(200, 4000))
def test_the_bound_holds_and_only_the_oldest_history_goes(items, now, bound):
    ledger = Ledger()
    for key, amount, at in items:
        ledger.add(key, amount, min(at, now))
    totals = dict(ledger.totals)
    ledger.compact(now)
    full = Ledger(dict(ledger.totals), dict(ledger.hourly), dict(ledger.daily))
    ledger.bound(bound)
    assert ledger.totals == totals
    assert _stored(ledger) <= bound or not (ledger.hourly or ledger.daily)
    # The hourly buckets kept are the newest of those the unbounded ledger keeps, unchanged.
    assert sorted(ledger.hourly) == sorted(full.hourly)[len(full.hourly) - len(ledger.hourly):]
    assert all(ledger.hourly[t] == full.hourly[t] for t in ledger.hourly)


@given(entries)
def test_the_ledger_survives_its_stored_form(items):
    ledger = Ledger()
    for key, amount, at in items:
        ledger.add(key, amount, at)
    back = Ledger.from_data(json.loads(json.dumps(ledger.to_data())))
    assert back.totals.keys() == ledger.totals.keys()
    for key, amount in ledger.totals.items():
        assert _close(back.totals[key], amount, 1e-9)
    assert back.hourly.keys() == ledger.hourly.keys()


@pytest.mark.parametrize("bad", [[1, 2, 3], [1, 2, 3, -1], [1, 2, float("nan"), 0], "x"])
def test_a_damaged_ledger_is_refused(bad):
    with pytest.raises(ValueError):
        Ledger.from_data({"version": 1, "totals": {"q/ns": bad}})
    with pytest.raises(ValueError):
        Ledger.from_data({"version": 2})


@given(st.lists(st.tuples(st.floats(0.01, 120), st.floats(0, 64)), min_size=1, max_size=30))
def test_the_accountant_charges_each_rate_for_the_time_until_the_next_step(steps):
    acct = Accountant(max_gap_s=60)
    now, expected, rate = 1.7e9, 0.0, 0.0
    acct.step(now, {})
    for dt, gpus in steps:
        now += dt
        expected += rate * min(dt, 60)
        acct.step(now, {("q", "ns"): Amount(gpu_seconds=gpus)})
        rate = gpus
    got = acct.ledger.totals.get(("q", "ns"), Amount()).gpu_seconds
    # Times near 1.7e9 s carry ~2e-7 s of float error per step.
    assert math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-3)


def test_a_clock_going_back_charges_nothing():
    acct = Accountant()
    acct.step(100.0, {("q", "ns"): Amount(gpu_seconds=8)})
    acct.step(90.0, {("q", "ns"): Amount(gpu_seconds=8)})
    assert acct.ledger.totals == {}
    acct.step(101.0, {})
    assert acct.ledger.totals[("q", "ns")].gpu_seconds == 8


@given(st.integers(0, 16), st.integers(0, 200_000), st.integers(0, 2**41))
def test_node_fraction_is_the_dominant_share_of_the_node_at_most_one(gpus, cpu, mem):
    f = node_fraction(Resources(cpu, mem, gpus), A100_NODE)
    assert 0 <= f <= 1
    assert f >= min(1.0, gpus / 8)


def test_rates_of_a_whole_node_and_a_quarter_node():
    price = node_price({LABEL_INSTANCE_TYPE: "gpu-a100"})
    assert price == A100.cost_per_hour
    assert node_price({LABEL_INSTANCE_TYPE: "no-such-type"}) == 0
    got = rates([PodUse("a", "ns", A100_NODE, A100_NODE, price),
                 PodUse("a", "ns", Resources(1000, 2**30, 2), A100_NODE, price)])
    r = got[("a", "ns")]
    assert r.gpu_seconds == 10
    assert r.node_seconds == pytest.approx(1.25)
    assert r.cost == pytest.approx(1.25 * price / 3600)
    assert r.cpu_seconds == pytest.approx(A100_NODE.cpu_milli / 1000 + 1)


@given(st.dictionaries(keys, amounts, min_size=1), st.sampled_from(["queue", "namespace", "both"]))
def test_report_shares_add_up_and_rows_cover_everything(data, by):
    rows = report(data, by)
    total = _sum(data)
    assert _close(sum((r.used for r in rows), Amount()), total)
    if total.gpu_seconds > 0:
        assert math.isclose(sum(r.gpu_share for r in rows), 1.0, rel_tol=1e-9)
    if total.cost > 0:
        assert math.isclose(sum(r.cost_share for r in rows), 1.0, rel_tol=1e-9)
    assert [r.used.cost for r in rows] == sorted((r.used.cost for r in rows), reverse=True)


@pytest.mark.parametrize(("problem", "cause"), [
    ("pod ddp-trainer-1 failed with exit code 3", "PodFailed"),
    ("pod ddp-trainer-1 failed", "PodFailed"),
    ("pod ddp-trainer-0 was deleted", "PodDeleted"),
    ("node gpu-1 of pod ddp-trainer-0 is NotReady", "NodeLost"),
    ("node gpu-1 of pod ddp-trainer-0 is gone", "NodeLost"),
    ("time limit of 60s exceeded", "TimeLimit"),
    ("", "Other"),
])
def test_restart_causes_are_a_bounded_set(problem, cause):
    assert restart_cause(problem) == cause


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_transitions_count_restarts_evictions_and_start_latency():
    reg = CollectorRegistry()
    m = SchedulerMetrics(reg)
    m.admitted("a", 0, submitted_at=100, now=130)
    m.admitted("a", 1, submitted_at=100, now=500)  # a re-admission: no wait observed
    m.transition("a", {"phase": "Starting"}, {"phase": "Running"}, admitted_at=130, now=134)
    lost = {"phase": "Restarting", "failedPod": "node n1 of pod x-trainer-0 is gone"}
    m.transition("a", {"phase": "Running"}, lost, 130, 200)
    m.transition("a", {"phase": "Running"}, {"phase": "Holding"}, 130, 210)
    m.transition("a", {"phase": "Running"}, {"phase": "Running", "pods": "2/2"}, 130, 220)
    m.preempted("a")
    m.transition("a", {"phase": "Running"}, {"phase": "Succeeded"}, 130, 300)
    assert _sample(reg, "shipyard_admissions_total", queue="a") == 2
    assert _sample(reg, "shipyard_admission_wait_seconds_count", queue="a") == 1
    assert _sample(reg, "shipyard_admission_wait_seconds_sum", queue="a") == 30
    assert _sample(reg, "shipyard_start_latency_seconds_sum", queue="a") == 4
    assert _sample(reg, "shipyard_restarts_total", queue="a", cause="NodeLost") == 1
    assert _sample(reg, "shipyard_evictions_total", queue="a", reason="NodeLost") == 1
    assert _sample(reg, "shipyard_evictions_total", queue="a", reason="Held") == 1
    assert _sample(reg, "shipyard_evictions_total", queue="a", reason="Preempted") == 1
    assert _sample(reg, "shipyard_preemptions_total", queue="a") == 1
    assert _sample(reg, "shipyard_experiments_finished_total", queue="a", phase="Succeeded") == 1
