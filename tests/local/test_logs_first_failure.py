"""`shipyard logs` on this machine: the rank that failed first, then every rank."""

from __future__ import annotations

from shipyard.local import launch
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

    bad = shipyard("logs", status.id, "--since", "5m")
    assert bad.returncode == 2 and "--since needs --cluster" in bad.stderr
