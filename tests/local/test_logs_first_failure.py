"""`shipyard logs` on this machine: the rank that failed first, then every rank."""

from __future__ import annotations

import time

from shipyard.local import launch, logtimes
from shipyard.spec import RetryPolicy

from .conftest import script_experiment
from .test_cli import shipyard

# Rank 1 prints and exits 3 once the others have printed theirs (each leaves a file in
# DONE); the others then wait to be stopped by the gang's failure.
SCRIPT = """
import os, pathlib, sys, time
rank, done = int(os.environ["RANK"]), pathlib.Path(DONE)
for i in range(30):
    print(f"rank {rank} step {i}", flush=True)
if rank == 1:
    deadline = time.monotonic() + 30
    while len(list(done.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    print("CUDA error: an illegal memory access", flush=True)
    sys.exit(3)
(done / str(rank)).touch()
time.sleep(60)
"""


def test_logs_name_the_first_failed_rank_with_exit_code_and_last_lines(store, tmp_path):
    (tmp_path / "done").mkdir()
    script = SCRIPT.replace("DONE", repr(str(tmp_path / "done")))
    exp = script_experiment("crashy", script, replicas=3,
                            retry=RetryPolicy(max_restarts=0, backoff_seconds=0.1))
    status = launch(exp, tmp_path / "crashy.py", store=store)
    assert status.phase == "Failed"

    out = shipyard("logs", status.id).stdout.splitlines()
    assert out[0] == "== rank worker-1 failed first: exited with code 3", out[:3]
    assert out[1:11] == [f"[worker-1] rank 1 step {i}" for i in range(21, 30)] + [
        "[worker-1] CUDA error: an illegal memory access"]
    assert out[11] == "== every rank"
    assert out[12] == "[worker-1] rank 1 step 0"
    for rank in (0, 2):
        assert f"[worker-{rank}] rank {rank} step 29" in out

    grep = shipyard("logs", status.id, "--grep", "CUDA|step 2[89]").stdout.splitlines()
    assert grep[1:4] == ["[worker-1] rank 1 step 28", "[worker-1] rank 1 step 29",
                         "[worker-1] CUDA error: an illegal memory access"]
    body = grep[grep.index("== every rank") + 1:]
    assert sorted(body) == sorted([f"[worker-{r}] rank {r} step {i}" for r in range(3) for i in (28, 29)]
                                  + ["[worker-1] CUDA error: an illegal memory access"])

    tail = shipyard("logs", status.id, "--tail", "2").stdout.splitlines()
    body = tail[tail.index("== every rank") + 1:]
    assert body[:2] == ["[worker-1] rank 1 step 29", "[worker-1] CUDA error: an illegal memory access"]
    assert len(body) == 6

    # With -f, --tail limits what is shown from before (the run is over: then it ends).
    followed = shipyard("logs", status.id, "-f", "--tail", "1").stdout.splitlines()
    assert sorted(followed) == ["[worker-0] rank 0 step 29",
                                "[worker-1] CUDA error: an illegal memory access",
                                "[worker-2] rank 2 step 29"]


def test_logs_since_reads_the_time_index_beside_each_log(store, tmp_path):
    exp = script_experiment("chatty", "for i in range(40): print(f'line {i}', flush=True)", replicas=1)
    status = launch(exp, tmp_path / "chatty.py", store=store)
    assert status.phase == "Succeeded"
    log = store.log_dir(status.id) / "worker-0.log"
    index = logtimes.times_path(log)
    assert index.read_text().split()[0] == "0"  # the first line's offset, with its time
    assert log.read_text().splitlines()[0] == "line 0"  # the log itself: as printed

    recent = shipyard("logs", status.id, "--since", "5m").stdout.splitlines()
    assert recent == [f"[worker-0] line {i}" for i in range(40)]
    # As if lines 0-19 had been written an hour ago and the rest now.
    now, offset = time.time(), len("".join(f"line {i}\n" for i in range(20)))
    index.write_text(f"0 {now - 3600}\n{offset} {now}\n")
    assert shipyard("logs", status.id, "--since", "10m").stdout.splitlines() == [
        f"[worker-0] line {i}" for i in range(20, 40)]
    assert shipyard("logs", status.id, "--since", "2h").stdout.splitlines() == recent
    assert shipyard("logs", status.id, "-f", "--since", "10m", "--tail", "1").stdout == \
        "[worker-0] line 39\n"
