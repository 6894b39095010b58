"""The simulator: small traces with outcomes worked out by hand, and the trace loaders."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shipyard.sim import (
    Arrival,
    SimConfig,
    SimPool,
    TraceError,
    gang_of_arrival,
    load_alibaba,
    load_csv,
    simulate,
)
from shipyard.sim.model import SIM_AUTOSCALE
from shipyard.sim.trace import resample, traces_dir
from shipyard.spec import DEFAULT_MACHINE_TYPES, NodePool

A100 = DEFAULT_MACHINE_TYPES["gpu-a100"]
H100 = DEFAULT_MACHINE_TYPES["gpu-h100"]
COST = A100.cost_per_hour


def pool(**kw) -> SimPool:
    return SimPool("gpu-a100", A100, max_nodes=kw.pop("max_nodes", 10), **kw)


# -- the simulation -------------------------------------------------------------------


def test_nodes_come_for_each_gang_and_go_after_idle_timeout_and_confirmation():
    arrivals = [Arrival("a", 0, 8, 3600), Arrival("b", 10, 16, 600), Arrival("c", 100, 1, 100)]
    r = simulate(arrivals, [pool()])
    # Each waits one provisioning delay (120 s): c cannot use the nodes on their way for b.
    assert r.started == {"a": 120, "b": 130, "c": 220}
    assert r.ended == {"a": 3720, "b": 730, "c": 320}
    assert r.requested_nodes == 4 and r.peak_nodes == 4 and r.never_used == 0
    # Removed 600 s idle + 30 s confirmation after their work: c's at 950; b's two at
    # 1360 and 1370 (half a pool per step, the next step 10 s later); a's at 4350.
    assert r.node_s == {"gpu-a100": (4350 - 0) + (1360 - 10) + (1370 - 10) + (950 - 100)}
    assert r.idle_node_s == 630 + 630 + 640 + 630
    assert r.provisioning_node_s == 4 * 120
    assert r.end_s == 4350 and r.last_end_s == 3720
    assert r.cost == pytest.approx(7910 / 3600 * COST)
    assert r.mean_wait_s == 120 and r.p95_wait_s == 120


def test_a_warm_buffer_starts_an_arrival_at_once():
    arrivals = [Arrival("a", 0, 8, 1000), Arrival("b", 500, 8, 100)]
    cold = simulate(arrivals, [pool()])
    warm = simulate(arrivals, [pool(warm_buffer=1)])
    assert cold.started == {"a": 120, "b": 620}
    assert warm.started == {"a": 120, "b": 500}
    assert warm.waits == (0.0, 120.0) and cold.waits == (120.0, 120.0)
    # Cold: a's node 0..1750 (idle from 1120, marked at 1720, removed at 1750); b's node
    # 500..1350.
    assert cold.node_s == {"gpu-a100": 1750 + 850} and cold.end_s == 1750
    # Warm: a's node and a warm one w1 at 0; b takes w1 at 500, and w2 is asked for then.
    # w1 (idle from 600) goes at 1230, w2 (idle from 620, never used) at 1250; a's node
    # stays as the buffer.
    assert warm.node_s == {"gpu-a100": 1720 + 1230 + 750} and warm.end_s == 1720
    assert (warm.requested_nodes, warm.never_used) == (3, 1)


def test_a_fixed_cluster_queues_what_does_not_fit_and_pays_for_every_node():
    arrivals = [Arrival("a", 0, 8, 100), Arrival("b", 10, 16, 50)]
    r = simulate(arrivals, [SimPool("fixed", A100, max_nodes=2, static=True, start_nodes=2)])
    assert r.started == {"a": 0, "b": 100} and r.ended == {"a": 100, "b": 150}
    assert r.end_s == 150 and r.node_s == {"fixed": 300}
    assert r.idle_node_s == 100  # the second node, until b starts
    assert r.requested_nodes == 0 and r.waits == (0.0, 90.0)


def test_an_experiment_larger_than_the_pool_never_starts_and_the_run_ends():
    r = simulate([Arrival("huge", 0, 64, 10), Arrival("ok", 5, 8, 10)], [pool(max_nodes=4)])
    assert set(r.started) == {"ok"} and r.not_started == 1
    assert r.requested_nodes == 1


def test_after_a_failure_the_pool_is_skipped_until_its_backoff_ends():
    flaky = SimPool("gpu-a100", A100, max_nodes=4, failure_rate=1.0)
    spare = SimPool("spare-a100", A100, max_nodes=4, cost_per_hour=99.0, failure_rate=0.0)
    r = simulate([Arrival("a", 0, 8, 100)], [flaky, spare], SimConfig(autoscale=replace(SIM_AUTOSCALE, backoff_s=300)))
    # The cheap pool fails at 120; the dear one is asked then and delivers at 240.
    assert r.failures == 1 and r.started == {"a": 240}
    assert r.node_s["gpu-a100"] == 120  # paid while it was coming, not after it failed


def test_compressing_time_scales_every_duration_and_nothing_else():
    arrivals = [Arrival("a", 0, 8, 3600), Arrival("b", 10, 16, 600), Arrival("c", 100, 1, 100)]
    base = simulate(arrivals, [pool(warm_buffer=1)])
    k = 4.0
    fast = simulate([Arrival(a.name, a.submit_s / k, a.gpus, a.duration_s / k) for a in arrivals],
                    [pool(warm_buffer=1, idle_timeout_s=600 / k)],
                    SimConfig(provisioning_delay_s=120 / k,
                              autoscale=replace(SIM_AUTOSCALE, confirm_s=30 / k, interval_s=10 / k)))
    assert fast.started == {n: t / k for n, t in base.started.items()}
    assert fast.node_s["gpu-a100"] * k == pytest.approx(base.node_s["gpu-a100"])
    assert fast.requested_nodes == base.requested_nodes


def test_pool_from_spec_uses_the_machine_catalog():
    spec = NodePool(name="a100", machine_type="gpu-a100", min_nodes=1, max_nodes=8, warm_buffer=2)
    p = SimPool.from_spec(spec)
    assert (p.cost, p.start_nodes, p.max_nodes, p.warm_buffer) == (COST, 1, 8, 2)
    fixed = SimPool.from_spec(NodePool(name="onprem", machine_type="gpu-a100", provider="static",
                                       max_nodes=5, cost_per_hour=10.0))
    assert (fixed.static, fixed.start_nodes, fixed.cost) == (True, 5, 10.0)
    with pytest.raises(ValueError, match="machine_type 'tpu' is unknown"):
        SimPool.from_spec(NodePool(name="x", machine_type="tpu"))


def test_gpus_map_to_whole_8_gpu_nodes():
    big = gang_of_arrival(Arrival("x", 0, 12, 1), A100)
    assert [m.request.gpus for m in big.members] == [8, 8]
    assert big.members[0].request.cpu_milli == A100.allocatable_cpu
    small = gang_of_arrival(Arrival("y", 0, 3, 1), A100)
    assert [m.request.gpus for m in small.members] == [3]
    assert small.members[0].request.cpu_milli == A100.allocatable_cpu * 3 // 8


# -- trace loaders ----------------------------------------------------------------------


def write(tmp_path, text: str):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    return path


def test_csv_trace_is_read_and_sorted(tmp_path):
    path = write(tmp_path, "gpus,submit_s,duration_s\n8,30,100\n1,0.5,60\n")
    assert load_csv(path) == [Arrival("exp-00002", 0.5, 1, 60.0), Arrival("exp-00001", 30.0, 8, 100.0)]


@pytest.mark.parametrize(("text", "message"), [
    ("submit_s,gpus\n0,1\n", "row 1 (header): missing column(s) duration_s"),
    ("submit_s,gpus,duration_s\n0,1,10\nsoon,1,10\n", "row 3, column submit_s: 'soon' is not a number"),
    ("submit_s,gpus,duration_s\n0,1.5,10\n", "row 2, column gpus: '1.5' must be a whole number"),
    ("submit_s,gpus,duration_s\n0,0,10\n", "row 2, column gpus: must be at least 1"),
    ("submit_s,gpus,duration_s\n-1,1,10\n", "row 2, column submit_s: -1 is negative"),
    ("submit_s,gpus,duration_s\n0,1,0\n", "row 2, column duration_s: must be above 0"),
    ("submit_s,gpus,duration_s\n0,1,inf\n", "row 2, column duration_s: 'inf' is not a finite number"),
    ("submit_s,gpus,duration_s\n0,1\n", "row 2: expected 3 columns"),
    ("submit_s,gpus,duration_s\n", "no experiments"),
])
def test_csv_errors_name_the_row_and_column(tmp_path, text, message):
    with pytest.raises(TraceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_csv(write(tmp_path, text))


def test_missing_trace_file_is_a_trace_error(tmp_path):
    with pytest.raises(TraceError, match="cannot read"):
        load_csv(tmp_path / "nope.csv")


ALIBABA_HEADER = ("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
                  "deletion_time,scheduled_time\n")


def test_alibaba_trace_keeps_the_busiest_window(tmp_path):
    rows = [
        "p0,1000,1024,1,1000,,LS,Running,0,500,10",  # alone in its window
        "p1,1000,1024,2,1000,,LS,Running,100000,100300,100050",  # ran 250 s from scheduling
        "p2,1000,1024,8,1000,,BE,Pending,100010,100100,",  # never scheduled: 90 s
        "p3,1000,1024,0,0,,BE,Running,100020,100900,100020",  # no GPU: left out
        "p4,1000,1024,1,500,,LS,Running,100030,100030,100030",  # zero time: one second
    ]
    path = write(tmp_path, ALIBABA_HEADER + "\n".join(rows) + "\n")
    got = load_alibaba(path, window_s=3600)
    assert got == [Arrival("p1", 0.0, 2, 250.0, kind="ls/1000m/1024Mi/1000"),
                   Arrival("p2", 10.0, 8, 90.0, kind="be/1000m/1024Mi/1000"),
                   Arrival("p4", 30.0, 1, 1.0, kind="ls/1000m/1024Mi/500")]


def test_a_resampled_trace_keeps_the_source_tasks_and_spans_the_given_time():
    source = [Arrival(f"t{i}", 100.0 * i, 1 + i % 4, 10.0 + i, kind=f"ls/{i % 3}") for i in range(50)]
    out = resample(source, 200, 7 * 86400, seed=3, gangs=((4, 0.1),))
    assert len(out) == 200 and len({a.name for a in out}) == 200
    assert all(0 <= a.submit_s <= 7 * 86400 for a in out)
    assert [a.submit_s for a in out] == sorted(a.submit_s for a in out)
    durations = {a.duration_s for a in source}
    assert all(a.duration_s in durations for a in out)
    gangs = [a for a in out if a.gpus == 32]
    assert 5 <= len(gangs) <= 40 and all(a.kind.endswith("/x32") for a in gangs)
    assert resample(source, 200, 7 * 86400, seed=3, gangs=((4, 0.1),)) == out  # seeded


def test_alibaba_errors_name_the_row_and_column(tmp_path):
    path = write(tmp_path, ALIBABA_HEADER + "p0,1,1,two,0,,LS,Running,0,5,0\n")
    with pytest.raises(TraceError, match="row 2, column num_gpu"):
        load_alibaba(path)


def test_traces_dir_is_beside_the_repository_unless_overridden(monkeypatch, tmp_path):
    monkeypatch.delenv("SHIPYARD_TRACES", raising=False)
    assert traces_dir().parts[-2:] == ("shared", "traces")
    monkeypatch.setenv("SHIPYARD_TRACES", str(tmp_path))
    assert traces_dir() == tmp_path


def test_the_real_trace_loads_when_present():
    path = traces_dir() / "alibaba-gpu-2023" / "openb_pod_list_default.csv"
    if not path.exists():
        pytest.skip(f"no trace at {path}")
    day = load_alibaba(path)
    assert len(day) == 735  # the busiest 24 h: 751 tasks, 16 of them without GPUs
    assert day[0].submit_s == 0 and max(a.submit_s for a in day) < 86400
