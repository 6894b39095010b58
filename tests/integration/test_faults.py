"""The short fault suite: every fault of `bench/faults.py`, small, on a dev cluster of its
own (these faults restart its API server and delete its nodes).

Each scenario runs real controller processes through a burst of mixed gangs while one
kind of fault is injected, with invariants sampled from the API server (not from the
controller): no node over capacity, no two live pods for one member, no gang partial
for longer than PARTIAL_BOUND_S, nothing lost or orphaned, restart counts exact.
"""

from __future__ import annotations

import pytest

from shipyard.dev.faults import POOLS, Lease, Row, Scenario, controller_log_count, run_scenario

PARTIAL_BOUND_S = 5.0
SHORT_LEASE = Lease(duration_s=6, renew_deadline_s=4, retry_s=1)


@pytest.fixture(scope="module")
def faults_cluster(dev_cluster_factory):
    return dev_cluster_factory("faults", POOLS)


def _run(cluster, fault: str, **kw) -> Row:
    kw.setdefault("experiments", 40)
    kw.setdefault("injections", 3)
    kw.setdefault("spread_s", 12.0)
    row = run_scenario(Scenario(cluster, fault, timeout_s=240, **kw))
    v = row.violations
    detail = (f"{fault}: lost={row.lost} orphans={row.orphans} restarts={row.wrong_restarts} "
              f"over_capacity={v.over_capacity} duplicates={v.duplicates} "
              f"partial={sorted(v.partial_windows, key=lambda w: -w[1])[:5]} "
              f"examples={v.examples} notes={row.notes}")
    assert not row.lost, detail
    assert not row.orphans, detail
    assert not row.wrong_restarts, detail
    assert v.over_capacity == 0, detail
    assert v.duplicates == 0, detail
    assert v.partial_over(PARTIAL_BOUND_S) == 0, detail
    assert v.samples >= 2, detail  # the sampler really watched
    return row


def test_controller_sigkill_storm(faults_cluster):
    _run(faults_cluster, "controller-kill", injections=5)


def test_apiserver_restart(faults_cluster):
    # Evidence that the outage really happened comes from the controller, whose watches
    # break when the server dies. The sampler can miss it: a restart that listens again
    # within its 1 s pause is answered, late, by a LIST that waits for readiness.
    before = controller_log_count(faults_cluster, ": failing (")
    _run(faults_cluster, "apiserver-restart", injections=2)
    assert controller_log_count(faults_cluster, ": failing (") > before, \
        "the controller never saw the API server go away"


def test_watch_expiry_relists(faults_cluster):
    before = controller_log_count(faults_cluster, "is too old (410)")
    _run(faults_cluster, "watch-expiry", injections=2)
    assert controller_log_count(faults_cluster, "is too old (410)") > before


def test_paused_leader_never_acts_beside_the_new_one(faults_cluster):
    row = _run(faults_cluster, "leader-pause", injections=1, lease=SHORT_LEASE, spread_s=16.0)
    assert len(row.failover_s) == 1
    assert not [n for n in row.notes if "did not exit" in n or "exited 0" in n], row.notes


def test_killed_leader_fails_over(faults_cluster):
    row = _run(faults_cluster, "leader-kill", injections=1, lease=SHORT_LEASE)
    assert len(row.failover_s) == 1


def test_node_not_ready_restarts_gangs_whole(faults_cluster):
    _run(faults_cluster, "node-notready", injections=2)


def test_node_deleted_restarts_gangs_whole(faults_cluster):
    _run(faults_cluster, "node-delete", injections=2)


def test_malformed_objects_never_stop_the_controller(faults_cluster):
    row = _run(faults_cluster, "malformed", injections=2)
    assert any(n.startswith("accepted: pod") for n in row.notes), row.notes
    # Experiments the schema let through (an unknown machine type, two roles of one
    # name) end Failed with their reason, and the burst beside them is unharmed.
    assert any("experiment" in n for n in row.notes if n.startswith("accepted")), row.notes
    assert "bad experiments ended: Failed" in row.notes, row.notes
