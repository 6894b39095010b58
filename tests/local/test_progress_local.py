"""shipyard.progress on the local backend: each rank's reports land in the run's folder
and `shipyard status`/`list` show progress and ETA from them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from shipyard.local import launch, progress
from shipyard.local.backend import cancel
from shipyard.spec import RetryPolicy

from .conftest import script_experiment, wait_for

REPORTING = """
import os, pathlib, time, shipyard
gate = pathlib.Path(os.environ["GATE"])
for step in range(1, 6):
    shipyard.progress(step, total_steps=10000, loss=1.0 / step)
    time.sleep(0.15)
while not gate.exists():
    time.sleep(0.05)
shipyard.progress(10000, loss=0.01)
"""


def _progress(store, run_id):
    return progress.read(store.run_dir(run_id))


def test_progress_reported_by_ranks_shows_in_status_with_eta(store, tmp_path):
    gate = tmp_path / "gate"
    exp = script_experiment("prog", REPORTING, replicas=2, retry=RetryPolicy(max_restarts=0))
    role = exp.roles[0].model_copy(update={"env": {"GATE": str(gate), "SHIPYARD_PROGRESS_INTERVAL": "0.1"}})
    exp = exp.model_copy(update={"roles": [role]})
    run = launch(exp, tmp_path / "spec.py", detach=True, store=store)
    try:
        wait_for(store, run.id, lambda s: s.phase == "Running")
        deadline = time.monotonic() + 30
        seen = _progress(store, run.id)
        while not (seen and seen["eta"] and seen["step"] >= 3):
            assert time.monotonic() < deadline, f"no ETA yet: {seen}"
            time.sleep(0.05)
            seen = _progress(store, run.id)
        assert seen["totalSteps"] == 10000  # a long run: the ETA is far ahead
        assert seen["percent"] == seen["step"] / 100
        assert seen["stepsPerSecond"] > 0
        assert seen["eta"] > seen["updatedAt"]  # RFC3339 in UTC compares as text
        assert set(seen["metrics"]) == {"loss"}
        out = subprocess.run([sys.executable, "-m", "shipyard.cli", "list"], capture_output=True,
                             text=True, check=True, env={**os.environ, "COLUMNS": "200"}).stdout
        header, row = out.splitlines()[0], next(line for line in out.splitlines() if "prog-1" in line)
        assert header.split()[5:7] == ["PROGRESS", "ETA"]
        assert "%" in row.split()[5] and row.split()[6] == "in"
        gate.write_text("go")
        done = wait_for(store, run.id, lambda s: s.phase == "Succeeded")
        final = _progress(store, done.id)
        assert (final["step"], final["percent"]) == (10000, 100.0)  # the exit flush carried the last
        assert final["metrics"]["loss"] == 0.01
        status = json.loads(subprocess.run(
            [sys.executable, "-m", "shipyard.cli", "status", run.id, "-o", "json"],
            capture_output=True, text=True, check=True).stdout)
        assert status["progress"]["step"] == 10000
    finally:
        cancel(run.id, store=store)
