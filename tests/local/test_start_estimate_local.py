"""A queued local run shows when it may start: `list` has START, `status` the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from shipyard.local.store import Store

from .conftest import queued, script_experiment

ROOT = Path(__file__).parents[2]


def shipyard(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "shipyard.cli", *args], capture_output=True,
                         text=True, timeout=120, cwd=ROOT, check=True,
                         env={**os.environ, "COLUMNS": "200"})  # one line per row
    return out.stdout


def _holding(store: Store, tmp_path: Path, name: str, started_ago: float, **fields: object) -> str:
    """A run recorded as running this machine's one CPU (no process needed to estimate)."""
    s = queued(store, script_experiment(name, "pass", replicas=1, cpu="1", **fields), tmp_path)
    s.phase, s.started_at = "Running", time.time() - started_ago
    s.attempt_started_at = s.started_at
    store.save(s)
    return s.id


def _waiting(store: Store, tmp_path: Path, name: str) -> str:
    return queued(store, script_experiment(name, "pass", replicas=1, cpu="1"), tmp_path).id


def test_queued_run_starts_after_the_time_limit_of_the_run_ahead(store, tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPYARD_LOCAL_CPUS", "1")
    ahead = _holding(store, tmp_path, "ahead", started_ago=600, time_limit=3600)
    first, second = _waiting(store, tmp_path, "first"), _waiting(store, tmp_path, "second")

    listed = {r["id"]: r for r in json.loads(shipyard("list", "-o", "json"))}
    assert listed[ahead]["start_estimate"] is None  # running: no start to estimate
    est = listed[first]["start_estimate"]
    assert est["after"] == [ahead] and est["basis"] == "time limit"
    assert abs(est["at"] - (time.time() + 3000)) < 60
    # The second waits for the first's whole run; it has no limit, so the end is unknown.
    assert listed[second]["start_estimate"]["at"] is None
    assert listed[second]["start_estimate"]["after"] == [first]

    lines = shipyard("list").splitlines()
    assert lines[0].split()[-2:] == ["START", "MESSAGE"]
    row = next(line.split() for line in lines if line.startswith(first))
    assert row[-1] in ("~49m", "~50m")  # its message is empty
    status = shipyard("status", first)
    assert "estimated start: about 4" in status and f"after {ahead} finishes (time limit)" in status
    assert f"unknown: work ahead has no time limit ({first})" in shipyard("status", second)


def test_progress_eta_sooner_than_the_limit_is_the_end(store, tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPYARD_LOCAL_CPUS", "1")
    ahead = _holding(store, tmp_path, "ahead", started_ago=600, time_limit=36000)
    waiting = _waiting(store, tmp_path, "waiting")
    now = time.time()
    # Rank 0 reports 100 of 1000 steps at 1 step/s: about 900 s left.
    folder = store.run_dir(ahead) / "progress"
    folder.mkdir()
    (folder / "worker-0.json").write_text(json.dumps(
        {"samples": [[now - 100, 0], [now, 100]], "total_steps": 1000}))

    est = {r["id"]: r for r in json.loads(shipyard("list", "-o", "json"))}[waiting]["start_estimate"]
    assert est["basis"] == "progress ETA"
    assert abs(est["at"] - (now + 900)) < 60
