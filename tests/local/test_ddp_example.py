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
