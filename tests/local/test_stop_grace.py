"""Stopping a gang on the local backend: SIGTERM, the stop reason in a file the job
reads, stop_grace_seconds on the supervisor's own clock, then SIGKILL."""

from __future__ import annotations

from shipyard.local import launch
from shipyard.local.backend import cancel, read_logs
from shipyard.local.supervisor import Supervisor

from .conftest import Recorder, SteppedClock, queued, script_experiment, wait_for

# On SIGTERM: print the stop reason the file holds, then (as told) exit or go on.
ON_TERM = """\
import os, signal, sys, time
def on_term(*_):
    reason = open(os.environ["SHIPYARD_STOP_REASON"]).read().strip()
    print("stop reason:", reason, flush=True)
    if MODE == "exit":
        time.sleep(0.5)  # some cleanup, well inside the grace period
        print("clean exit", flush=True)
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("restart count", os.environ["SHIPYARD_RESTART_COUNT"], flush=True)
print("checkpoint dir", os.environ["SHIPYARD_CHECKPOINT_DIR"], flush=True)
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""


def term_script(mode: str) -> str:
    return f"MODE = {mode!r}\n" + ON_TERM


class TicksOnceReady(Recorder):
    """Once the rank has its SIGTERM handler, the clock runs 100 s a read."""

    def __init__(self, clock: SteppedClock) -> None:
        super().__init__()
        self.clock = clock

    def line(self, rank: str, text: str) -> None:
        super().line(rank, text)
        if text == "ready":
            self.clock.tick = 100.0


def test_time_limit_kills_a_rank_that_ignores_sigterm_after_the_grace_on_the_injected_clock(
        store, tmp_path):
    # An hour's grace on a clock that runs 100 s a tick: the kill comes at once, so the
    # grace is measured on the injected clock, not on the wall. The time limit is too:
    # the clock stands still until the rank is ready, then the limit is up at once.
    exp = script_experiment("stubborn", term_script("ignore"), replicas=1, time_limit=1,
                            stop_grace_seconds=3600)
    status = queued(store, exp, tmp_path)
    clock = SteppedClock()
    recorder = TicksOnceReady(clock)
    final = Supervisor(store, status.id, recorder, clock=clock).run()
    assert final.phase == "Failed"
    assert final.message == "time limit of 1s exceeded"
    assert final.ranks["worker-0"].exit_code == -9  # SIGKILL, after the grace
    lines = [text for _, text in recorder.lines]
    assert "stop reason: time-limit: time limit of 1s exceeded" in lines, lines
    reason_file = store.run_dir(status.id) / "stop-reason"
    assert reason_file.read_text().strip() == "time-limit: time limit of 1s exceeded"


def test_cancel_gives_the_job_its_grace_and_the_reason(store, tmp_path):
    exp = script_experiment("graceful", term_script("exit"), replicas=2, stop_grace_seconds=120)
    status = launch(exp, tmp_path / "s.py", detach=True, store=store)
    log = store.log_dir(status.id)
    wait_for(store, status.id, lambda s: all(
        (log / f"worker-{i}.log").exists() and "ready" in (log / f"worker-{i}.log").read_text()
        for i in range(2)))
    final = cancel(status.id, store=store)
    assert final.phase == "Cancelled"
    # Each rank finished its SIGTERM handler: exit code 0, not killed.
    assert {k: r.exit_code for k, r in final.ranks.items()} == {"worker-0": 0, "worker-1": 0}
    lines = [text for _, text in read_logs(status.id, store=store)]
    assert lines.count("stop reason: cancelled: shipyard cancel") == 2, lines
    assert lines.count("clean exit") == 2
    # First attempt: no restart yet; the checkpoint folder is the run's own.
    assert lines.count("restart count 0") == 2
    assert f"checkpoint dir {store.run_dir(status.id) / 'checkpoint'}" in lines


# Counts steps in its checkpoint file; rank 1 crashes at step 10 of the first attempt.
RESUMING = """\
import os, pathlib, sys
rank, restart = os.environ["RANK"], os.environ["SHIPYARD_RESTART_COUNT"]
ckpt = pathlib.Path(os.environ["SHIPYARD_CHECKPOINT_DIR"]) / f"rank-{rank}"
start = int(ckpt.read_text()) if ckpt.exists() else 0
print(f"attempt {restart} starts at step {start}", flush=True)
for step in range(start, 20):
    if (rank, restart, step) == ("1", "0", 10):
        sys.exit(1)
    tmp = ckpt.with_suffix(".tmp")
    tmp.write_text(str(step + 1))
    os.replace(tmp, ckpt)
print("trained to step 20", flush=True)
"""


def test_a_restarted_run_resumes_from_its_checkpoint_step(store, tmp_path):
    from shipyard.spec import RetryPolicy

    exp = script_experiment("resume", RESUMING, retry=RetryPolicy(max_restarts=1, backoff_seconds=0.1))
    recorder = Recorder()
    final = launch(exp, tmp_path / "s.py", reporter=recorder, store=store)
    assert final.phase == "Succeeded", recorder.lines
    lines = {(rank, text) for rank, text in recorder.lines}
    assert ("worker-1", "attempt 0 starts at step 0") in lines
    # The same folder on the second attempt: rank 1 goes on from the step it reached.
    assert ("worker-1", "attempt 1 starts at step 10") in lines
    starts = [text for rank, text in recorder.lines if rank == "worker-0" and "attempt 1" in text]
    assert starts and not starts[0].endswith(" 0"), starts
    assert ("worker-0", "trained to step 20") in lines and ("worker-1", "trained to step 20") in lines
