"""train.py's checkpoint logic, apart from torch so that it is tested without it
(tests/unit/test_ddp_checkpointing.py): where the checkpoint lives, how it is written,
the step a run starts from, when rank 0 saves, and each step's data seed.

train.py passes the torch parts in (what one step does, how a state is saved and
loaded); this module only decides when and where.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

CHECKPOINT_FILE = "ddp.pt"


def checkpoint_path(env: Mapping[str, str] = os.environ) -> Path | None:
    """$SHIPYARD_CHECKPOINT_DIR/ddp.pt, the same on every attempt; None without the variable."""
    folder = env.get("SHIPYARD_CHECKPOINT_DIR")
    return Path(folder) / CHECKPOINT_FILE if folder else None


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write` to a file beside `path`, then rename it over `path`: a stop half-way
    through leaves the previous checkpoint whole."""
    tmp = path.with_suffix(".tmp")
    write(tmp)
    os.replace(tmp, path)


def start_step(path: Path | None, load: Callable[[Path], Mapping[str, Any]]
               ) -> tuple[int, Mapping[str, Any] | None]:
    """The step to start from and the state saved with it: the checkpoint's, or 0 and
    None without one."""
    if path is None or not path.exists():
        return 0, None
    state = load(path)
    return int(state["step"]), state


def data_seed(rank: int, step: int) -> int:
    """Each step's data depends on (rank, step) only, so a resumed run sees what it would
    have seen."""
    return 1000 + 100_003 * rank + step


def train(start: int, steps: int, every: int, rank: int, one_step: Callable[[int], None],
          save: Callable[[int], None] | None) -> None:
    """Steps `start`..`steps - 1`; after every `every`-th, rank 0 saves the step reached."""
    for step in range(start, steps):
        one_step(step)
        if save is not None and rank == 0 and (step + 1) % every == 0:
            save(step + 1)
