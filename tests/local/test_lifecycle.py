"""The local backend runs, fails, retries, queues and cancels whole gangs."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.local import launch
from shipyard.local.backend import cancel, read_logs
from shipyard.local.store import RunStatus
from shipyard.local.supervisor import Supervisor
from shipyard.spec import RetryPolicy, load_experiment

from .conftest import Recorder, SteppedClock, assert_all_gone, queued, script_experiment, wait_for

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_allreduce_example_succeeds_on_every_rank(store):
    path = EXAMPLES / "allreduce" / "experiment.py"
    recorder = Recorder()
    status = launch(load_experiment(path), path, reporter=recorder, store=store)
    assert status.phase == "Succeeded", status.message
    assert sorted(status.ranks) == [f"worker-{i}" for i in range(4)]
    assert all(r.exit_code == 0 for r in status.ranks.values())
    ok = {rank for rank, text in recorder.lines if "allreduce OK" in text}
    assert ok == {f"worker-{i}" for i in range(4)}
    # Logs are kept on disk, per rank, and read back with their rank.
    logged = {rank for rank, text in read_logs(status.id, store=store) if "allreduce OK" in text}
    assert logged == ok
    assert_all_gone([r.pid for r in status.ranks.values() if r.pid])


FAIL_RANK_1 = """
import os, sys, time
if os.environ["RANK"] == "1":
    print("rank 1 giving up", flush=True); sys.exit(3)
time.sleep(60)
"""


def test_failed_rank_stops_the_gang_restarts_per_policy_then_fails(store, tmp_path):
    exp = script_experiment("flaky", FAIL_RANK_1, retry=RetryPolicy(max_restarts=2, backoff_seconds=0.1))
    recorder = Recorder()
    status = launch(exp, tmp_path / "spec.py", reporter=recorder, store=store)
    assert status.phase == "Failed"
    assert status.restarts == 2
    assert status.message == "rank worker-1 exited with code 3 after 2 restart(s)"
    assert status.ranks["worker-1"].exit_code == 3
    assert status.ranks["worker-0"].state == "stopped"  # torn down, not left running
    assert [p for p, _ in recorder.events].count("Restarting") == 2
    attempts = [t for r, t in read_logs(status.id, store=store) if r == "worker-1" and "giving up" in t]
    assert len(attempts) == 3
    assert_all_gone([r.pid for r in status.ranks.values() if r.pid])


FAIL_FIRST_ATTEMPT = """
import os, sys
sys.exit(1 if os.environ["SHIPYARD_ATTEMPT"] == "1" and os.environ["RANK"] == "0" else 0)
"""


def test_restart_can_succeed(store, tmp_path):
    exp = script_experiment("second-time", FAIL_FIRST_ATTEMPT, retry=RetryPolicy(max_restarts=1, backoff_seconds=0))
    status = launch(exp, tmp_path / "spec.py", store=store)
    assert (status.phase, status.restarts) == ("Succeeded", 1)


WAIT_FOR_FILE = """
import os, pathlib, time
flag = pathlib.Path(os.environ["RELEASE"])
while not flag.exists():
    time.sleep(0.05)
print("released", flush=True)
"""


def test_gang_waits_whole_until_the_machine_has_room(store, tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPYARD_LOCAL_CPUS", "1")
    release = tmp_path / "release"
    monkeypatch.setenv("RELEASE", str(release))
    first = launch(script_experiment("first", WAIT_FOR_FILE, cpu="500m"), tmp_path / "a.py",
                   detach=True, store=store)
    wait_for(store, first.id, lambda s: s.phase == "Running")
    second = launch(script_experiment("second", WAIT_FOR_FILE, cpu="500m"), tmp_path / "b.py",
                    detach=True, store=store)
    queued = wait_for(store, second.id, lambda s: s.position is not None)
    assert queued.phase == "Queued" and queued.position == 1
    assert "needs 2 x (0.5 CPU, 64 MiB)" in queued.message
    assert queued.ranks == {}  # nothing of it started: no half gang
    assert not any(store.log_dir(second.id).iterdir())

    release.touch()
    done = wait_for(store, second.id, lambda s: s.phase == "Succeeded")
    assert wait_for(store, first.id, lambda s: not s.active).phase == "Succeeded"
    assert store.load(first.id).finished_at <= done.started_at


def test_a_gang_bigger_than_the_machine_says_it_can_never_start(store, tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPYARD_LOCAL_CPUS", "1")
    status = launch(script_experiment("huge", "pass", replicas=4, cpu="500m"), tmp_path / "h.py",
                    detach=True, store=store)
    status = wait_for(store, status.id, lambda s: s.position is not None)
    assert "it can never start here" in status.message
    assert cancel(status.id, store=store).phase == "Cancelled"


SPAWN_AND_SLEEP = """
import os, subprocess, sys, time, pathlib
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
pathlib.Path(os.environ["PIDS"], os.environ["RANK"]).write_text(f"{os.getpid()} {child.pid}")
time.sleep(600)
"""


def test_cancel_stops_every_process_including_grandchildren(store, tmp_path, monkeypatch):
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    monkeypatch.setenv("PIDS", str(pids_dir))
    status = launch(script_experiment("longrun", SPAWN_AND_SLEEP), tmp_path / "s.py",
                    detach=True, store=store)
    wait_for(store, status.id, lambda s: len(list(pids_dir.iterdir())) == 2 if s.phase == "Running" else False)
    pids = [int(p) for f in pids_dir.iterdir() for p in f.read_text().split()]
    final = cancel(status.id, store=store)
    assert final.phase == "Cancelled"
    assert_all_gone([*pids, final.supervisor_pid])


class Stepping(Recorder):
    """Steps the Supervisor's clock by `running` seconds once the gang runs and by
    `restarting` when it is told to restart: the time limit and the backoff are up at
    once if they are measured on that clock (on the wall they would be hours away)."""

    def __init__(self, clock: SteppedClock, running: float, restarting: float = 0.0) -> None:
        super().__init__()
        self.clock, self.running, self.restarting = clock, running, restarting

    def event(self, status: RunStatus, text: str) -> None:
        super().event(status, text)
        if status.phase == "Running":
            self.clock.step(self.running)
        elif status.phase == "Restarting":
            self.clock.step(self.restarting)


def test_time_limit_stops_the_gang(store, tmp_path):
    exp = script_experiment("slow", "import time; time.sleep(60)", time_limit=1)
    clock = SteppedClock()
    status = Supervisor(store, queued(store, exp, tmp_path).id, Stepping(clock, running=2),
                        clock=clock).run()
    assert status.phase == "Failed"
    assert status.message == "time limit of 1s exceeded"


@pytest.mark.timeout(60)  # on the wall clock this run would take over two hours
def test_time_limit_and_backoff_are_measured_on_the_injected_clock(store, tmp_path):
    hour = 3600.0
    exp = script_experiment("slower", "import time; time.sleep(60)", replicas=1, time_limit=hour,
                            retry=RetryPolicy(max_restarts=1, backoff_seconds=hour, max_backoff_seconds=hour))
    clock = SteppedClock()
    recorder = Stepping(clock, running=hour + 1, restarting=hour)
    status = Supervisor(store, queued(store, exp, tmp_path).id, recorder, clock=clock).run()
    assert (status.phase, status.restarts) == ("Failed", 1)
    assert status.message == "time limit of 3600s exceeded after 1 restart(s)"
    assert ("Restarting", "time limit of 3600s exceeded; restart 1/1 in 3600s") in recorder.events
    assert [p for p, _ in recorder.events].count("Running") == 2  # the second attempt ran
    assert status.started_at == 1e9  # the first attempt's start, on the injected clock


PRINT_GPUS = 'import os; print("gpus=" + os.environ["CUDA_VISIBLE_DEVICES"], flush=True)'


def test_gpus_are_split_between_ranks(store, tmp_path, monkeypatch):
    monkeypatch.setenv("SHIPYARD_LOCAL_GPUS", "4")
    recorder = Recorder()
    status = launch(script_experiment("gpus", PRINT_GPUS, gpus=2), tmp_path / "g.py",
                    reporter=recorder, store=store)
    assert status.phase == "Succeeded"
    seen = dict(recorder.lines)
    assert {seen["worker-0"], seen["worker-1"]} == {"gpus=0,1", "gpus=2,3"}
