"""The PyTorch DDP example, run on this machine's CPUs with gloo (only when torch is here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.local import launch
from shipyard.spec import Resources, load_experiment

from .conftest import Recorder

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

EXAMPLE = Path(__file__).parents[2] / "examples" / "ddp" / "experiment.py"


def test_ddp_example_trains_with_replicas_in_sync(store):
    exp = load_experiment(EXAMPLE)
    trainer = exp.roles[0].model_copy(update={
        # The cluster spec, shrunk to this machine: 2 replicas, 1 process each, no GPU.
        "procs_per_replica": 1,
        "resources": Resources(cpu="250m", memory="512Mi"),
        "command": ["python", "train.py"],
        "env": {"TRAIN_STEPS": "20"},
    })
    small = exp.model_copy(update={"roles": [trainer]})
    recorder = Recorder()
    status = launch(small, EXAMPLE, reporter=recorder, store=store)
    assert status.phase == "Succeeded", recorder.lines[-20:]
    in_sync = [text for _, text in recorder.lines if "replicas in sync: True" in text]
    assert len(in_sync) == 2


def test_torchrun_reads_its_flags_from_the_pet_variables(store):
    path = EXAMPLE.with_name("local-torchrun.yaml")
    recorder = Recorder()
    status = launch(load_experiment(path), path, reporter=recorder, store=store)
    assert status.phase == "Succeeded", recorder.lines[-20:]
    in_sync = {text.split(":")[0] for _, text in recorder.lines if "replicas in sync: True" in text}
    assert in_sync == {f"rank {r}" for r in range(4)}  # 2 replicas x 2 processes


def test_ddp_example_killed_mid_run_resumes_from_its_checkpoint(store):
    import os
    import signal

    from shipyard.local.backend import read_logs
    from shipyard.spec import RetryPolicy

    from .conftest import wait_for

    exp = load_experiment(EXAMPLE)
    trainer = exp.roles[0].model_copy(update={
        "procs_per_replica": 1, "resources": Resources(cpu="250m", memory="512Mi"),
        "command": ["python", "train.py"],
        "env": {"TRAIN_STEPS": "60", "CHECKPOINT_EVERY": "10", "TRAIN_STEP_SECONDS": "0.05"},
    })
    small = exp.model_copy(update={"roles": [trainer],
                                   "retry": RetryPolicy(max_restarts=1, backoff_seconds=0.1),
                                   "stop_grace_seconds": 5})
    status = launch(small, EXAMPLE, detach=True, store=store)
    log = store.log_dir(status.id) / "trainer-0.log"
    running = wait_for(store, status.id, lambda s: s.phase == "Running" and log.exists()
                       and "checkpoint at step 20" in log.read_text(), timeout=120)
    os.kill(running.ranks["trainer-1"].pid, signal.SIGKILL)  # a lost machine, say
    final = wait_for(store, status.id, lambda s: not s.active, timeout=180)
    assert final.phase == "Succeeded", final.message
    assert final.restarts == 1
    lines = [text for _, text in read_logs(status.id, store=store)]
    resumed = [t for t in lines if "resumed from step" in t]
    assert len(resumed) == 2, lines  # both ranks, on the second attempt
    assert all(int(t.split("resumed from step ")[1].split()[0]) >= 20 for t in resumed), resumed
    assert sum("replicas in sync: True" in t for t in lines) == 2
