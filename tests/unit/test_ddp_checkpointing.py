"""The DDP example's checkpoint logic without torch (examples/ddp/checkpointing.py, which
train.py drives with torch's save, load and step): a run stopped mid-way resumes from
its last checkpoint's step, sees the same data from there, and a stop during a save
leaves the previous checkpoint whole. tests/local/test_ddp_example.py runs the real
thing where torch is installed."""

from __future__ import annotations

import contextlib
import importlib.util
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

_PATH = Path(__file__).parents[2] / "examples" / "ddp" / "checkpointing.py"
_spec = importlib.util.spec_from_file_location("ddp_checkpointing", _PATH)
assert _spec is not None and _spec.loader is not None
ckpt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ckpt)


class Killed(Exception):
    """The run stopped here (preemption, a lost node): nothing after it happens."""


def run(path: Path | None, rank: int, steps: int, every: int, kill_at: int | None = None) -> list[int]:
    """One attempt of train.py's loop with a JSON state: the data seeds it trained on."""
    start, state = ckpt.start_step(path, lambda p: json.loads(p.read_text()))
    weights = state["weights"] if state else []  # stands in for the model: every seed seen
    seeds: list[int] = []

    def one_step(step: int) -> None:
        if step == kill_at:
            raise Killed
        seeds.append(ckpt.data_seed(rank, step))
        weights.append(ckpt.data_seed(rank, step))

    def save(step: int) -> None:
        assert path is not None
        ckpt.write_atomically(path, lambda tmp: tmp.write_text(json.dumps({"step": step, "weights": weights})))

    with contextlib.suppress(Killed):
        ckpt.train(start, steps, every, rank, one_step, save if path else None)
    return seeds


def test_the_checkpoint_is_in_shipyard_checkpoint_dir_and_none_without_it(tmp_path):
    assert ckpt.checkpoint_path({"SHIPYARD_CHECKPOINT_DIR": str(tmp_path)}) == tmp_path / "ddp.pt"
    assert ckpt.checkpoint_path({}) is None
    assert ckpt.start_step(None, lambda p: pytest.fail("nothing to load")) == (0, None)
    assert ckpt.start_step(tmp_path / "ddp.pt", lambda p: pytest.fail("nothing to load")) == (0, None)


@given(steps=st.integers(1, 60), every=st.integers(1, 15), kill_at=st.integers(0, 59))
def test_a_run_stopped_mid_way_resumes_from_its_last_checkpoint_step(tmp_path_factory, steps, every, kill_at):
    path = tmp_path_factory.mktemp("ckpt") / "ddp.pt"
    first = run(path, rank=0, steps=steps, every=every, kill_at=kill_at)
    saved = min(kill_at, steps) // every * every  # the last multiple of `every` reached
    assert ckpt.start_step(path, lambda p: json.loads(p.read_text()))[0] == saved
    second = run(path, rank=0, steps=steps, every=every)
    # Not from 0: from the checkpoint's step, with the data that step would have had.
    assert second == [ckpt.data_seed(0, s) for s in range(saved, steps)]
    assert first[:saved] + second == run(None, rank=0, steps=steps, every=every)
    # The final checkpoint holds exactly the steps of one uninterrupted run (to its last save).
    last = steps // every * every
    if last == 0:
        assert not path.exists()  # it never reached a save
        return
    state = json.loads(path.read_text())
    assert state["step"] == last and state["weights"] == [ckpt.data_seed(0, s) for s in range(last)]


def test_only_rank_0_saves(tmp_path):
    path = tmp_path / "ddp.pt"
    run(path, rank=1, steps=30, every=10)
    assert not path.exists()


def test_a_stop_during_a_save_leaves_the_previous_checkpoint_whole(tmp_path):
    path = tmp_path / "ddp.pt"
    ckpt.write_atomically(path, lambda tmp: tmp.write_text('{"step": 10}'))

    def half_written(tmp: Path) -> None:
        tmp.write_text('{"step": 2')  # cut off by the SIGKILL after the grace period
        raise Killed

    with pytest.raises(Killed):
        ckpt.write_atomically(path, half_written)
    assert ckpt.start_step(path, lambda p: json.loads(p.read_text()))[0] == 10
