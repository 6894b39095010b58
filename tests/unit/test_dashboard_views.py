"""The dashboard's pure parts: rows from the CLI's summaries, filters, ordering, the
cells' words, the progress history, queue and node summaries; and the app's gate
(token, read-only) through Starlette's test client."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.controller.views import PodView
from shipyard.core.model import Node, Resources, Taint
from shipyard.dashboard.fleet_views import gpu_hours_series, health, node_cells, queue_rows
from shipyard.dashboard.views import (
    Filters,
    ProgressHistory,
    Row,
    cells,
    choices,
    ordered,
    percent,
    row_from_summary,
)
from shipyard.monitor.usage import HOUR, Amount, Ledger
from shipyard.spec import Queue

PHASES = ["Queued", "Running", "Succeeded", "Failed", "Cancelled"]
words = st.text(alphabet="abc-", min_size=0, max_size=4)
rows = st.builds(
    Row, source=st.sampled_from(["local", "onprem", "cloud"]), namespace=st.sampled_from(["a", "b"]),
    id=st.text(alphabet="xyz-", min_size=1, max_size=5), name=st.just("n"),
    queue=st.sampled_from(["q1", "q2"]), priority=st.integers(-5, 5), phase=st.sampled_from(PHASES),
    position=st.one_of(st.none(), st.integers(1, 50)), reason=words, restarts=st.integers(0, 3),
    submitted_at=st.one_of(st.none(), st.floats(0, 2e9)))
filters = st.builds(Filters, source=st.sampled_from(["", "local", "onprem"]),
                    namespace=st.sampled_from(["", "a"]), queue=st.sampled_from(["", "q1"]),
                    phase=st.sampled_from(["", *PHASES]), search=words)


@given(st.lists(rows, max_size=30), filters)
def test_a_filter_keeps_exactly_the_rows_that_match_every_field(table, f):
    kept = [r for r in table if f.keeps(r)]
    for r in table:
        matches = all(not want or want == got for want, got in
                      ((f.source, r.source), (f.namespace, r.namespace), (f.queue, r.queue), (f.phase, r.phase)))
        found = not f.search or any(f.search.lower() in t.lower() for t in (r.id, r.queue, r.reason, r.namespace))
        assert (r in kept) == (matches and found)
    assert Filters.from_query(dict(pair.split("=") for pair in f.query().split("&") if pair)) == f


@given(st.lists(rows, max_size=30))
def test_ordered_is_a_permutation_with_waiting_rows_by_position_before_finished(table):
    out = ordered(table)
    assert sorted(map(repr, out)) == sorted(map(repr, table))
    done = [r.phase in ("Succeeded", "Failed", "Cancelled") for r in out]
    assert done == sorted(done)  # active first
    active_positions = [r.position for r in out if r.phase not in ("Succeeded", "Failed", "Cancelled")
                        and r.position is not None]
    assert active_positions == sorted(active_positions)
    assert set(choices(table)["phase"]) == {r.phase for r in table}


def test_rows_from_the_cli_summaries_keep_position_reason_progress_and_estimate():
    now = time.time()
    summary = {"id": "bert", "name": "bert", "namespace": "team-a", "queue": "nlp", "priority": 5,
               "phase": "Queued", "position": 3, "restarts": 1, "message": "needs 4 x gpu-a100; 0 free",
               "submitted_at": now - 125}
    status = {"startEstimate": {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 600)),
                                "reason": "after ddp finishes (time limit)"},
              "progress": {"step": 40, "totalSteps": 200, "stepsPerSecond": 2.0}}
    r = row_from_summary("onprem", summary, status)
    assert (r.key, r.position, r.reason, r.restarts) == ("onprem/team-a/bert", 3, summary["message"], 1)
    c = cells(r, now)
    assert c["age"] == "2m" and c["position"] == 3
    assert c["estimate"].startswith("about ") and c["estimate"].endswith("after ddp finishes (time limit)")
    assert c["percent"] == 20.0  # step of totalSteps when no percent is reported
    assert "step 40/200" in c["progress"]
    running = row_from_summary("onprem", {**summary, "phase": "Running"}, status)
    assert cells(running, now)["estimate"] == ""  # only a waiting experiment has a start estimate


@given(st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)), st.integers(0, 500),
       st.one_of(st.none(), st.integers(-5, 500)))
def test_percent_is_always_between_0_and_100(pct, step, total):
    got = percent({"percent": pct, "step": step, "totalSteps": total})
    assert got is None or 0.0 <= got <= 100.0
    assert percent(None) is None


def test_the_progress_history_keeps_each_new_point_once_and_bounded():
    h = ProgressHistory(limit=3)
    for step in (1, 1, 2, 3, 4):
        h.add("k", {"step": step, "updatedAt": f"2026-01-01T00:00:0{step}Z", "metrics": {"loss": 1 / step}})
    series = h.series("k", None)
    assert series["step"] == [2, 3, 4]
    assert series["loss"] == [0.5, 1 / 3, 0.25]
    assert series["t"][1] - series["t"][0] == 1.0


def _node(name, ready=True, taints=(), gpus=8, schedulable=True):
    return Node(name, Resources(96_000, 2**40, gpus), {"node.kubernetes.io/instance-type": "gpu-a100"},
                tuple(taints), ready=ready, schedulable=schedulable)


def _pod(name, node, gpus, phase="Running", ns="team-a"):
    return PodView(ns, name, node, Resources(1000, 2**30, gpus), phase, f"{ns}/e", "w-0", 1, None, False)


def test_node_health_words_and_allocation():
    nodes = [_node("a"), _node("b", ready=False), _node("c", taints=[Taint("shipyard.dev/quarantined", "3 failures")]),
             _node("d", schedulable=False)]
    assert [health(n)[0] for n in nodes] == ["ok", "NotReady", "quarantined", "cordoned"]
    cells_ = {c.name: c for c in node_cells(nodes, [_pod("p1", "a", 4), _pod("p2", "a", 4), _pod("p3", "d", 2, "Succeeded")])}
    assert cells_["a"].allocated == 1.0 and cells_["d"].allocated == 0.0  # a finished pod holds nothing
    assert cells_["c"].detail == "3 failures"


def test_queue_rows_sum_holding_pods_and_count_waiting_experiments():
    capacity = Resources(96_000 * 4, 2**42, 32)
    pods = [_pod("p1", "a", 8), _pod("p2", "b", 8), _pod("p3", None, 8, "Pending")]
    queue_of = {"team-a/p1": "nlp", "team-a/p2": "nlp", "team-a/p3": "vision"}
    table = [Row("c", "team-a", "x", "x", "vision", 0, "Queued", 1, "waits", 0, None),
             Row("c", "team-a", "y", "y", "nlp", 0, "Running", None, "", 0, None),
             Row("local", "-", "z", "z", "nlp", 0, "Queued", 1, "", 0, None)]
    out = {q.name: q for q in queue_rows([Queue(name="nlp", weight=2.0)], pods, queue_of, table, capacity)}
    assert out["nlp"].used.gpus == 16 and out["nlp"].dominant_share == pytest.approx(16 / 32 / 2)
    assert out["vision"].used.gpus == 0 and out["vision"].pending == 1  # a pending pod holds nothing
    assert (out["nlp"].running, out["nlp"].pending) == (1, 0)  # local runs are not the cluster's


def test_gpu_hours_per_hour_add_up_to_the_ledger():
    ledger = Ledger()
    t0 = 1_700_000_000 // HOUR * HOUR
    ledger.add(("nlp", "a"), Amount(gpu_seconds=2 * HOUR), t0)
    ledger.add(("nlp", "b"), Amount(gpu_seconds=HOUR), t0)
    ledger.add(("vision", "a"), Amount(gpu_seconds=HOUR / 2), t0 + HOUR)
    series = gpu_hours_series(ledger, t0)
    assert series == {"t": [t0, t0 + HOUR], "nlp": [3.0, 0.0], "vision": [0.0, 0.5]}
    total = sum(a.gpu_seconds for a in ledger.since(t0).values()) / HOUR
    assert sum(sum(v) for k, v in series.items() if k != "t") == pytest.approx(total)


@pytest.fixture
def client(tmp_path):
    from starlette.testclient import TestClient

    from shipyard.dashboard.app import create_app
    from shipyard.dashboard.hub import Hub
    from shipyard.dashboard.sources import LocalSource

    app = create_app(Hub([LocalSource(tmp_path)]), token="s3cret-token-0123456789")
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def test_with_a_token_every_request_needs_it_and_the_app_is_read_only(client):
    assert client.get("/").status_code == 401
    assert client.get("/api/experiments", headers={"Authorization": "Bearer wrong"}).status_code == 401
    first = client.get("/?token=s3cret-token-0123456789")
    assert first.status_code == 200 and "shipyard_dashboard_token" in first.headers["set-cookie"]
    assert client.get("/api/experiments").json() == {"total": 0, "rows": []}  # the cookie carries it
    assert client.post("/api/experiments").status_code == 405
    assert client.delete("/").status_code == 405


def test_off_loopback_a_token_is_made_and_contexts_become_clusters(tmp_path):
    from shipyard.dashboard.server import is_loopback, plan

    config = tmp_path / "clusters.yaml"
    config.write_text("clusters: [{name: onprem, context: kind-onprem}, {name: cloud, context: gke-cloud}]\n")
    local = plan([], config, "127.0.0.1", 8765, None, True)
    assert local.token is None and [r.name for r in local.refs] == ["onprem", "cloud"]
    assert local.url == "http://127.0.0.1:8765/"
    wide = plan(["cloud", "kind-onprem", "Other_Ctx"], config, "0.0.0.0", 9000, None, False)
    assert wide.token and len(wide.token) >= 24 and wide.url.endswith(f"/?token={wide.token}")
    assert [(r.name, r.context) for r in wide.refs] == [("cloud", "gke-cloud"), ("onprem", "kind-onprem"),
                                                        ("other-ctx", "Other_Ctx")]
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("10.0.0.1")
    assert not is_loopback("example.org")


def test_a_cluster_that_cannot_be_reached_is_named_and_the_others_still_show(tmp_path, monkeypatch):
    from starlette.testclient import TestClient

    from shipyard.dashboard.app import create_app
    from shipyard.dashboard.hub import Hub
    from shipyard.dashboard.sources import ClusterSource, LocalSource
    from shipyard.fleet.connect import Clusters
    from shipyard.spec.clusters import ClusterRef

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    ref = ClusterRef(name="gone", context="nope")
    hub = Hub([LocalSource(tmp_path), ClusterSource(ref, Clusters([ref]))])
    with TestClient(create_app(hub), base_url="http://127.0.0.1") as c:
        page = c.get("/")
        assert page.status_code == 200
        assert "cluster gone: cluster gone is unreachable: kubeconfig context &#39;nope&#39;" in page.text
        assert c.get("/api/experiments").json() == {"total": 0, "rows": []}
        assert "cluster gone is unreachable" in c.get("/queues").text


def test_a_specs_demand_is_parsed_once_per_generation_not_per_status_write():
    from shipyard.dashboard import sources
    from shipyard.kube.objects import experiment_resource
    from shipyard.spec import Experiment, Role

    obj = experiment_resource(Experiment(name="bert", namespace="team-a", roles=[
        Role(name="w", replicas=3, machine_type="gpu-a100", command=["python", "t.py"])]))
    obj["metadata"] |= {"uid": "u1", "generation": 1}
    demands = sources._Demands()
    first = demands(obj)
    assert first is not None and first.gpus == 24  # 3 whole 8-GPU machines
    obj["status"] = {"progress": {"step": 5}}
    assert demands(obj) is first  # a status write: the spec is not read again
    obj["metadata"]["generation"] = 2
    obj["spec"]["roles"][0]["replicas"] = 1
    assert demands(obj).gpus == 8
