from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from shipyard.local.store import RunNotFound, RunStatus, Store
from shipyard.spec import Experiment, Resources, RetryPolicy, Role


def script_experiment(
    name: str,
    script: str,
    replicas: int = 2,
    cpu: str = "100m",
    gpus: int = 0,
    **fields: object,
) -> Experiment:
    """An experiment whose ranks run `python -c script`."""
    role = Role(
        name="worker", replicas=replicas, machine_type="gpu-a100" if gpus else "cpu-small",
        resources=Resources(cpu=cpu, memory="64Mi", gpus=gpus),
        command=["python", "-c", script],
    )
    fields.setdefault("retry", RetryPolicy(max_restarts=0, backoff_seconds=0.1))
    return Experiment(name=name, roles=[role], **fields)  # type: ignore[arg-type]


def queued(store: Store, exp: Experiment, tmp_path: Path) -> RunStatus:
    """A run queued in `store` as `launch` records it, for a Supervisor the test makes."""
    status = RunStatus(id="", name=exp.name, queue=exp.queue, priority=exp.priority,
                       submitted_at=time.time(), source=str(tmp_path / "s.py"), workdir=str(tmp_path))
    store.create(exp, status)
    return status


def wait_for(store: Store, run_id: str, check: Callable[[RunStatus], bool], timeout: float = 30) -> RunStatus:
    deadline = time.monotonic() + timeout
    status = None
    while True:
        with contextlib.suppress(RunNotFound):  # the run's files may not be written yet
            status = store.load(run_id)
            if check(status):
                return status
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last status: {status}")
        time.sleep(0.05)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_all_gone(pids: list[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while any(running(p) for p in pids):
        if time.monotonic() > deadline:
            alive = [p for p in pids if running(p)]
            raise AssertionError(f"orphan processes still running: {alive}")
        time.sleep(0.05)


class SteppedClock:
    """A Supervisor's clock that moves only when the test steps it (then `tick` seconds
    more at every read, for waits measured on it such as a stop's grace)."""

    def __init__(self, start: float = 1e9) -> None:
        self.now, self.tick = start, 0.0

    def __call__(self) -> float:
        now = self.now
        self.now += self.tick
        return now

    def step(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    """A Reporter that keeps what a person would have seen."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.events: list[tuple[str, str]] = []
        self.waits: list[tuple[int | None, str]] = []

    def waiting(self, status: RunStatus) -> None:
        self.waits.append((status.position, status.message))

    def line(self, rank: str, text: str) -> None:
        self.lines.append((rank, text))

    def event(self, status: RunStatus, text: str) -> None:
        self.events.append((status.phase, text))


@pytest.fixture
def store(shipyard_home) -> Store:
    return Store()
