"""Runs of the local backend, kept on disk so any `shipyard` process can see them.

Layout under $SHIPYARD_HOME (default ~/.local/share/shipyard/local):
  queue.lock                 held while a run decides whether it may start
  runs/<id>/experiment.json  the validated spec, as launched
  runs/<id>/status.json      phase, ranks, restarts, message (written atomically)
  runs/<id>/logs/<rank>.log  every rank's output
  runs/<id>/logs/<rank>.times when each second of that output began (local/logtimes.py)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shipyard.api.vocab import ACTIVE, Phase
from shipyard.local.machine import SettingError
from shipyard.spec import Experiment, experiment_from_data
from shipyard.spec.inputs import clip, short

# What a run id or experiment name can be: a DNS label (an experiment name) and -<n>.
RUN_REF = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def home() -> Path:
    """$SHIPYARD_HOME, else ~/.local/share/shipyard/local."""
    env = os.environ.get("SHIPYARD_HOME", "").strip()
    return Path(env) if env else Path.home() / ".local" / "share" / "shipyard" / "local"


@dataclass
class RankState:
    pid: int | None = None
    state: str = "pending"  # pending, running, succeeded, failed, stopped
    exit_code: int | None = None


@dataclass
class RunStatus:
    id: str
    name: str
    queue: str
    priority: int
    submitted_at: float
    source: str
    workdir: str
    phase: str = Phase.QUEUED.value  # plain strings on disk and in `-o yaml`
    message: str = ""
    position: int | None = None
    restarts: int = 0
    started_at: float | None = None
    attempt_started_at: float | None = None  # this attempt's: its time limit runs from here
    finished_at: float | None = None
    supervisor_pid: int | None = None
    gpus: dict[str, list[int]] = field(default_factory=dict)  # rank -> GPU indices
    ranks: dict[str, RankState] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunStatus:
        ranks = {k: RankState(**v) for k, v in data.pop("ranks", {}).items()}
        return cls(**data, ranks=ranks)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE


def _home_problem(root: Path, exc: OSError) -> str:
    where = f"SHIPYARD_HOME={short(str(root), 300)}" if os.environ.get("SHIPYARD_HOME") else str(root)
    file = isinstance(exc, FileExistsError | NotADirectoryError)
    reason = "it, or a folder above it, is a file" if file else exc.strerror or str(exc)
    return (f"{where}: cannot keep runs there ({reason}); point SHIPYARD_HOME at a directory "
            "you can write, or unset it")


class RunNotFound(LookupError):
    pass


class RunDamaged(RunNotFound):
    """The run's files exist but cannot be read; the message names the file and the fix."""


def _damaged(path: Path, exc: Exception) -> RunDamaged:
    return RunDamaged(f"{path}: the run's state cannot be read ({clip(str(exc), 120)}); "
                      f"remove {path.parent} to forget the run")


class Store:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or home()
        self.runs = self.root / "runs"
        try:
            self.runs.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SettingError(_home_problem(self.root, exc)) from None

    @contextlib.contextmanager
    def queue_lock(self) -> Iterator[None]:
        """One decision at a time across every shipyard process on this machine."""
        with open(self.root / "queue.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def run_dir(self, run_id: str) -> Path:
        """The run's folder: always directly under runs/ (a ref like ../x is no run)."""
        if len(run_id) > 80 or not RUN_REF.match(run_id):
            raise RunNotFound(run_id)
        return self.runs / run_id

    def log_dir(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "logs"

    def create(self, exp: Experiment, status: RunStatus) -> None:
        """Reserve a fresh id <name>-<n> and write the run's files."""
        with self.queue_lock():
            taken = [int(m.group(1)) for p in self.runs.glob(f"{exp.name}-*")
                     if (m := re.fullmatch(re.escape(exp.name) + r"-(\d+)", p.name))]
            status.id = f"{exp.name}-{max(taken, default=0) + 1}"
            run_dir = self.run_dir(status.id)
            (run_dir / "logs").mkdir(parents=True)
            (run_dir / "experiment.json").write_text(exp.model_dump_json(indent=2))
            self.save(status)

    def save(self, status: RunStatus) -> None:
        path = self.run_dir(status.id) / "status.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status.to_json(), indent=2))
        os.replace(tmp, path)  # readers never see half a file

    def load(self, run_id: str) -> RunStatus:
        path = self.run_dir(run_id) / "status.json"
        try:
            return RunStatus.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            raise RunNotFound(run_id) from None
        except (OSError, ValueError, TypeError) as exc:  # edited or cut short by hand
            raise _damaged(path, exc) from None

    def experiment(self, run_id: str) -> Experiment:
        path = self.run_dir(run_id) / "experiment.json"
        try:
            return experiment_from_data(json.loads(path.read_text()), str(path))
        except (OSError, ValueError, TypeError) as exc:  # SpecError included
            raise _damaged(path, exc) from None

    def all(self) -> list[RunStatus]:
        out = []
        for path in self.runs.glob("*/status.json"):
            # A run being written, or a file someone broke: not a run to show.
            with contextlib.suppress(OSError, ValueError, TypeError):
                out.append(RunStatus.from_json(json.loads(path.read_text())))
        return sorted(out, key=lambda s: s.submitted_at)

    def resolve(self, ref: str) -> RunStatus:
        """A run id (`allreduce-3`) or an experiment name (its latest run); anything else,
        a path included, is RunNotFound."""
        if (self.run_dir(ref) / "status.json").exists():
            return self.load(ref)
        named = [s for s in self.all() if s.name == ref]
        if not named:
            raise RunNotFound(ref)
        return named[-1]
