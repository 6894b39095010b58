"""The controller's metrics, scraped by a real Prometheus, after a scripted scenario.

One dev cluster (2 x gpu-a100), one controller with --metrics-port, one Prometheus
(built by `shipyard dev build`) on 127.0.0.1 scraping it every second with the
shipped rules. The scenario admits, restarts, preempts and finishes; then the
metrics are checked against what happened, every query of the shipped Grafana
dashboard and of the rules must return series, and the usage counts must survive
a controller restart.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from shipyard.dev import build
from shipyard.dev.stages import EXIT_CODE, FAIL_AFTER, TRAIN_DURATION
from shipyard.kube.install import SYSTEM_NAMESPACE
from shipyard.monitor import usage_store
from shipyard.spec import RetryPolicy
from tests.integration.controller_harness import (
    GROUP,
    VERSION,
    experiment_namespace,
    gpu_job,
    start_controller,
    stop_controller,
)
from tests.integration.test_devcluster import eventually

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "shipyard.json"
A100_PRICE = 32.77
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def _binaries() -> dict[str, Path]:
    bins = build.cached_monitoring_binaries()
    if bins is None and shutil.which("go"):
        build.build_monitoring(log=lambda m: None)  # `shipyard dev build` does it first
        bins = build.cached_monitoring_binaries()
    if bins is None:
        pytest.skip("prometheus is not built and go is missing: run `shipyard dev build`")
    return bins


@pytest.fixture(scope="module")
def monitored(dev_cluster_factory, tmp_path_factory) -> Iterator[Any]:
    bins = _binaries()
    cluster = dev_cluster_factory("metrics", ("gpu-a100:2",))
    cluster.metrics_port = _free_port()
    cluster.controller = start_controller(cluster, "--metrics-port", str(cluster.metrics_port))
    # (after the CRDs are installed) A real Queue, so the quota gauges have a nominal quota to show.
    with cluster.api_client(pool_size=1) as raw:
        from kubernetes import client

        try:
            client.CustomObjectsApi(raw).create_cluster_custom_object(GROUP, VERSION, "queues", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "Queue", "metadata": {"name": "default"},
                "spec": {"weight": 1, "nominal": {"gpus": 16}}})
        except client.ApiException as exc:
            if exc.status != 409:  # left by an earlier session (SHIPYARD_TEST_REUSE=1)
                raise
    work = tmp_path_factory.mktemp("prometheus")
    shutil.copy(RULES, work / "rules.yaml")
    (work / "prometheus.yaml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yaml"],
        "scrape_configs": [{"job_name": "shipyard-controller", "static_configs": [
            {"targets": [f"127.0.0.1:{cluster.metrics_port}"]}]}],
    }))
    cluster.prom_port = _free_port()
    log = open(work / "prometheus.log", "wb")  # noqa: SIM115
    prom = subprocess.Popen(
        [str(bins["prometheus"]), f"--config.file={work / 'prometheus.yaml'}",
         f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{cluster.prom_port}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    cluster.promtool = bins["promtool"]
    try:
        eventually(lambda: _ready(cluster.prom_port), 60, "prometheus ready")
        yield cluster
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        log.close()
        stop_controller(cluster.controller)


def _drain(api: Any, *names: str) -> None:
    """Delete the experiments and wait for their pods to go, so the namespace's own
    cleanup finds no pod that vanishes under it."""
    for name in names:
        api.delete(name)
    api.wait_no_pods()


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def query(port: int, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    assert body.get("status") == "success", f"{expr}: {body}"
    return body["data"]["result"]


def dashboard_queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    # Grafana's variables, as Grafana would fill them in for "All" over the last minutes.
    subst = {"$queue": ".*", "$__rate_interval": "1m", "$__range": "5m"}
    out = []
    for panel in dash["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for k, v in subst.items():
                expr = expr.replace(k, v)
            out.append(expr)
    return out


def rule_queries() -> list[str]:
    """Every rule's expression; an alert's without its threshold (a healthy cluster fires
    no alert, but what the alert compares must exist)."""
    out = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            expr = rule["expr"].strip()
            if "alert" in rule:
                expr = re.sub(r"\s*(==|!=|>=|<=|>|<)\s*[0-9.e+-]+\s*$", "", expr)
            out.append(expr)
    return out


def test_scenario_metrics_then_every_query_returns_series(monitored, request):
    port = monitored.metrics_port
    with experiment_namespace(monitored, request.node.name) as api:
        # restart: a one-pod gang fails once, is restarted whole, fails for good
        api.launch(gpu_job("flaky", 1, annotations={FAIL_AFTER: "1s", EXIT_CODE: "3"},
                           retry=RetryPolicy(max_restarts=1, backoff_seconds=0.5)))
        api.wait("flaky", lambda s: s.get("phase") == "Failed", timeout=90)
        # admit a gang that takes both nodes; a higher-priority one preempts it and finishes
        api.launch(gpu_job("low", 2, priority=0))
        api.wait("low", lambda s: s.get("phase") == "Running")
        api.launch(gpu_job("high", 1, priority=100, annotations={TRAIN_DURATION: "2s"}))
        api.wait("high", lambda s: s.get("phase") == "Succeeded", timeout=60)
        api.wait("low", lambda s: s.get("phase") == "Running" and s.get("attempt") == 2,
                 timeout=60)
        # and one that waits for capacity
        api.launch(gpu_job("waiter", 1))
        api.wait("waiter", lambda s: s.get("position") == 1)

        m = eventually(lambda: (s := scrape(port)) and
                       value(s, "shipyard_queue_used_gpus", queue="default") == 16 and s,
                       30, "low's 16 GPUs in the queue gauge")
        q = {"queue": "default"}
        # flaky twice (first try, restart), low twice (first, after preemption), high once
        assert value(m, "shipyard_admissions_total", **q) == 5
        assert value(m, "shipyard_admission_wait_seconds_count", **q) == 3  # first admissions
        assert value(m, "shipyard_preemptions_total", **q) == 1
        assert value(m, "shipyard_evictions_total", reason="Preempted", **q) == 1
        assert value(m, "shipyard_restarts_total", cause="PodFailed", **q) == 1
        assert value(m, "shipyard_restarts_total", **q) == 1
        assert value(m, "shipyard_experiments_finished_total", phase="Failed", **q) == 1
        assert value(m, "shipyard_experiments_finished_total", phase="Succeeded", **q) == 1
        assert value(m, "shipyard_experiments", phase="Running", **q) == 1
        assert value(m, "shipyard_experiments", phase="Failed", **q) == 1
        assert value(m, "shipyard_experiments", phase="Succeeded", **q) == 1
        # low (twice) and high at least went Starting -> Running under the controller's eyes
        assert value(m, "shipyard_start_latency_seconds_count", **q) >= 3
        assert value(m, "shipyard_scheduling_cycle_duration_seconds_count") > 0
        assert value(m, "shipyard_queue_dominant_share", **q) == 1.0  # all GPUs of the cluster
        assert value(m, "shipyard_pending_gangs", reason="Capacity", **q) == 1
        assert value(m, "shipyard_pending_demand_gpus", reason="Capacity", **q) == 8
        assert value(m, "shipyard_pending_oldest_wait_seconds", **q) >= 0
        assert value(m, "shipyard_queue_nominal_quota_gpus", **q) == 16
        assert value(m, "shipyard_experiments", phase="Queued", **q) == 1
        assert value(m, "shipyard_cluster_nodes", state="ready") == 2

        # usage: charged to the experiments' namespace; every pod ran on a gpu-a100
        u = {"queue": "default", "namespace": api.ns}
        m = eventually(lambda: (s := scrape(port)) and
                       value(s, "shipyard_usage_gpu_seconds_total", **u) > 0 and s,
                       30, "usage counted")
        gpu_s = value(m, "shipyard_usage_gpu_seconds_total", **u)
        node_s = value(m, "shipyard_usage_node_seconds_total", **u)
        assert gpu_s == pytest.approx(8 * node_s, rel=1e-3)  # whole-node pods: 8 GPUs each
        assert value(m, "shipyard_usage_cpu_seconds_total", **u) > 0
        assert value(m, "shipyard_usage_cost_dollars_total", **u) == pytest.approx(
            node_s * A100_PRICE / 3600, rel=1e-3)

        # the shipped rules pass promtool, and every query returns series from Prometheus
        check = subprocess.run([str(monitored.promtool), "check", "rules", str(RULES)],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
        pending = set(dashboard_queries()) | set(rule_queries())
        assert len(pending) > 15

        def all_answered() -> bool:
            for expr in list(pending):
                if query(monitored.prom_port, expr):
                    pending.discard(expr)
            return not pending

        try:
            eventually(all_answered, 90)
        except AssertionError:
            raise AssertionError(f"no series for {sorted(pending)}") from None
        up = query(monitored.prom_port, 'up{job="shipyard-controller"}')
        assert [float(r["value"][1]) for r in up] == [1.0]
        share = query(monitored.prom_port, 'shipyard_queue_dominant_share{queue="default"}')
        assert float(share[0]["value"][1]) == 1.0
        _drain(api, "flaky", "low", "high", "waiter")


def _usage_report(cluster: Any) -> dict[str, Any]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    out = subprocess.run([sys.executable, "-m", "shipyard.cli", "usage", "-c", cluster.context,
                          "--since", "1d", "--by", "both", "-o", "json"],
                         capture_output=True, text=True, timeout=60, env=env, check=True)
    return json.loads(out.stdout)


def _stored_gpu_seconds(api: Any, namespace: str) -> float:
    cm = api.core.read_namespaced_config_map(usage_store.NAME, SYSTEM_NAMESPACE)
    ledger = usage_store.ledger_from_configmap({"data": cm.data})
    return ledger.totals[("default", namespace)].gpu_seconds


def test_usage_survives_a_controller_restart(monitored, request):
    port = monitored.metrics_port
    with experiment_namespace(monitored, request.node.name) as api:
        u = {"queue": "default", "namespace": api.ns}
        api.launch(gpu_job("steady", 1))
        api.wait("steady", lambda s: s.get("phase") == "Running")
        eventually(lambda: value(scrape(port), "shipyard_usage_gpu_seconds_total", **u) > 0,
                   60, "usage counted")
        _drain(api, "steady")  # nothing of this namespace runs from here on
        stop_controller(monitored.controller)  # SIGTERM: the ledger is flushed on the way out
        stored = _stored_gpu_seconds(api, api.ns)
        assert stored > 0

        monitored.controller = start_controller(monitored, "--metrics-port", str(port))
        # Nothing runs, so a count begun afresh would show nothing for this namespace:
        # the restarted controller shows the stored count.
        eventually(lambda: value(scrape_or_empty(port), "shipyard_usage_gpu_seconds_total", **u)
                   == pytest.approx(stored, abs=1e-3), 60, "the stored count")
        report = _usage_report(monitored)
        row = next(r for r in report["rows"] if r["namespace"] == api.ns)
        assert row["queue"] == "default" and 0 < row["gpu_share"] <= 1
        assert row["gpu_hours"] == round(stored / 3600, 3)
        assert report["total"]["gpu_hours"] >= row["gpu_hours"]
        # (That it goes on counting from there is the accountant's step, which the
        # scenario above and tests/unit/test_usage.py cover.)


def scrape_or_empty(port: int) -> Samples:
    try:
        return scrape(port)
    except httpx.HTTPError:
        return {}


def test_cluster_logs_name_the_rank_that_failed_first(monitored, request):
    # (Here for the cluster this module already runs; kwok pods exit but write no log.)
    with experiment_namespace(monitored, request.node.name) as api:
        api.launch(gpu_job("crash", 2, annotations={FAIL_AFTER: "1s", EXIT_CODE: "3"}))
        failed = api.wait("crash", lambda s: s.get("phase") == "Failed", timeout=60)
        blamed = failed["failedPod"].split()[1].removeprefix("crash-")  # "pod crash-trainer-1 ..."
        env = {**os.environ, "KUBECONFIG": str(monitored.kubeconfig)}
        out = subprocess.run([sys.executable, "-m", "shipyard.cli", "logs", "-c", monitored.context,
                              "-n", api.ns, "crash", "--tail", "5"],
                             capture_output=True, text=True, timeout=60, env=env, check=True)
        lines = out.stdout.splitlines()
        assert lines[0].startswith(f"== rank {blamed} failed first: exited with code 3"), lines
        assert "== every rank" in lines
        _drain(api, "crash")


def test_nodes_of_repeated_gang_failures_are_quarantined_until_cleared(monitored, request):
    stop_controller(monitored.controller)
    monitored.controller = start_controller(monitored, "--metrics-port", str(monitored.metrics_port),
                                            "--quarantine-after", "2")
    core = None
    try:
        with experiment_namespace(monitored, request.node.name) as api:
            core = api.core
            # A two-pod gang that fails twice: one experiment, one strike on each node ...
            api.launch(gpu_job("lemon", 2, annotations={FAIL_AFTER: "1s", EXIT_CODE: "1"},
                               retry=RetryPolicy(max_restarts=1, backoff_seconds=0)))
            api.wait("lemon", lambda s: s.get("phase") == "Failed", timeout=90)
            assert not any(t.key == "shipyard.dev/quarantined"
                           for n in core.list_node().items for t in n.spec.taints or [])
            # ... and a second experiment failing on the same (the only two) GPU nodes:
            # both are quarantined.
            api.launch(gpu_job("lemon2", 2, annotations={FAIL_AFTER: "1s", EXIT_CODE: "1"}))
            api.wait("lemon2", lambda s: s.get("phase") == "Failed", timeout=90)
            nodes = eventually(lambda: (ns := [n for n in core.list_node().items if any(
                t.key == "shipyard.dev/quarantined" for t in n.spec.taints or [])]) and len(ns) == 2
                and ns, 30, "both nodes quarantined")
            evidence = json.loads(nodes[0].metadata.annotations["shipyard.dev/quarantine-evidence"])
            assert sorted(e["experiment"] for e in evidence) == [f"{api.ns}/lemon", f"{api.ns}/lemon2"]
            assert all("failed with exit code 1" in e["problem"] for e in evidence)
            events = eventually(lambda: [
                e for e in core.list_namespaced_event("default").items
                if e.reason == "Quarantined" and e.involved_object.name == nodes[0].metadata.name],
                30, "the Quarantined event")  # written after the taint
            assert "kubectl taint node" in events[0].message
            eventually(lambda: value(scrape_or_empty(monitored.metrics_port), "shipyard_cluster_nodes",
                                     state="quarantined") == 2, 30, "the quarantined gauge")

            # No new work on them ...
            api.launch(gpu_job("next", 1))
            waiting = api.wait("next", lambda s: s.get("position") == 1)
            assert waiting["phase"] == "Queued" and api.pods("next") == []
            # ... until an operator clears the taint.
            _clear_quarantine(core)
            api.wait("next", lambda s: s.get("phase") == "Running")
            _drain(api, "lemon", "lemon2", "next")
    finally:
        if core is not None:
            _clear_quarantine(core)


def _clear_quarantine(core: Any) -> None:
    for node in core.list_node().items:
        taints = [t for t in node.spec.taints or [] if t.key != "shipyard.dev/quarantined"]
        if len(taints) != len(node.spec.taints or []):
            core.patch_node(node.metadata.name, {"spec": {"taints": [
                {"key": t.key, "value": t.value, "effect": t.effect} for t in taints] or None}})


def test_an_unhealthy_node_gets_its_gang_restarted_elsewhere_and_no_new_work(monitored, request):
    def mark(node: str, *extra: str) -> None:
        subprocess.run([sys.executable, "-m", "shipyard.cli", "dev", "node-unhealthy", node,
                        "--name", monitored.name, *extra], check=True, timeout=60,
                       capture_output=True)

    with experiment_namespace(monitored, request.node.name) as api:
        api.launch(gpu_job("sturdy", 1, retry=RetryPolicy(max_restarts=2, backoff_seconds=0)))
        first = api.wait("sturdy", lambda s: s.get("phase") == "Running")
        sick = first["placement"]["trainer-0"]
        try:
            mark(sick, "--reason", "gpu-xid-79")
            moved = api.wait("sturdy", lambda s: s.get("phase") == "Running"
                             and s.get("restarts") == 1, timeout=60)
            assert moved["placement"]["trainer-0"] != sick
            assert moved["failedPod"] == f"node {sick} of pod sturdy-trainer-0 is unhealthy: gpu-xid-79"
            eventually(lambda: [e for e in api.core.list_namespaced_event(api.ns).items
                                if e.reason == "Restarting" and "unhealthy" in e.message],
                       30, "the Restarting event")
            # Nothing new there: a gang that needs the other node too waits.
            api.launch(gpu_job("pair", 2))
            assert api.wait("pair", lambda s: s.get("position") == 1)["phase"] == "Queued"
        finally:
            mark(sick, "--recover")
        _drain(api, "sturdy", "pair")
