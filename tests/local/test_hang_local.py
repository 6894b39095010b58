"""hang_timeout on this machine: no progress report and no log line from any rank for
that long, then on_hang (as on a cluster)."""

from __future__ import annotations

from shipyard.local import launch
from shipyard.spec import RetryPolicy

from .conftest import Recorder, script_experiment

SILENT = "import time; print('started', flush=True); time.sleep(60)"
# Silent for 3 s, then one line (rank 0 only: the gang is not silent after it), done soon after.
PAUSE = """
import os, time
time.sleep(3)
if os.environ["RANK"] == "0":
    print("back", flush=True)
time.sleep(1.5)
"""
# Reports progress through the SDK every 0.2 s (and prints nothing) for 3 s.
REPORTS = """
import time, shipyard
for step in range(15):
    shipyard.progress(step, total_steps=15)
    time.sleep(0.2)
"""


def test_on_hang_fail_stops_a_silent_gang(store, tmp_path):
    exp = script_experiment("quiet", SILENT, hang_timeout=1, on_hang="fail",
                            retry=RetryPolicy(max_restarts=3, backoff_seconds=0.1))
    status = launch(exp, tmp_path / "s.py", store=store)
    assert status.phase == "Failed" and status.restarts == 0  # fail: whatever the retry policy
    assert status.message.startswith("stalled: no progress report or log line from any rank for 1s")
    assert "worker-0, worker-1" in status.message


def test_on_hang_restart_counts_against_retry(store, tmp_path):
    exp = script_experiment("quiet", SILENT, hang_timeout=1, on_hang="restart",
                            retry=RetryPolicy(max_restarts=1, backoff_seconds=0.1))
    status = launch(exp, tmp_path / "s.py", store=store)
    assert status.phase == "Failed" and status.restarts == 1
    assert status.message.startswith("stalled: ") and status.message.endswith("after 1 restart(s)")


def test_notify_says_so_and_lets_it_run(store, tmp_path):
    exp = script_experiment("pause", PAUSE, hang_timeout=1, on_hang="notify")
    recorder = Recorder()
    status = launch(exp, tmp_path / "s.py", store=store, reporter=recorder)
    assert status.phase == "Succeeded"
    said = [text for _, text in recorder.events]
    stalled = next(i for i, t in enumerate(said) if t.startswith("stalled: "))
    assert "a rank reports or logs again" in said[stalled:]


def test_progress_reports_alone_keep_it_alive(store, tmp_path):
    exp = script_experiment("busy", REPORTS, hang_timeout=1, on_hang="fail")
    role = exp.roles[0].model_copy(update={"env": {"SHIPYARD_PROGRESS_INTERVAL": "0.1"}})
    status = launch(exp.model_copy(update={"roles": [role]}), tmp_path / "s.py", store=store)
    assert status.phase == "Succeeded", status.message
