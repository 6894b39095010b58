"""Runs one experiment on this machine: queue, start the whole gang, watch, retry, finish.

The same loop serves `shipyard launch` in the foreground (Ctrl-C stops everything)
and `--detach` (this module run as `python -m shipyard.local.supervisor RUN_ID`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import psutil

from shipyard.api.vocab import HOLDING, Phase
from shipyard.core.from_spec import gang_for
from shipyard.core.lifecycle import (
    CANCELLED_REASON,
    after_failure,
    stop_cause,
    success_message,
    success_roles,
    time_limit_exceeded,
)
from shipyard.core.model import Resources, Snapshot
from shipyard.core.queueing import schedule
from shipyard.local import logtimes, progress, ranks, volumes
from shipyard.local.hangs import Silence
from shipyard.local.machine import LocalMachine, detect_machine
from shipyard.local.store import RankState, RunDamaged, RunStatus, Store
from shipyard.render.env import pod_name, replica_env
from shipyard.spec import Experiment, Role
from shipyard.spec.inputs import clip

STOP_REASON_FILE, CHECKPOINT_DIR = "stop-reason", "checkpoint"  # in the run's folder
STALL_CHECK_S = 0.5  # how often the ranks' progress files are looked at (hang_timeout)


class Reporter(Protocol):
    def waiting(self, status: RunStatus) -> None: ...
    def line(self, rank: str, text: str) -> None: ...
    def event(self, status: RunStatus, text: str) -> None: ...


class SilentReporter:
    def waiting(self, status: RunStatus) -> None: ...
    def line(self, rank: str, text: str) -> None: ...
    def event(self, status: RunStatus, text: str) -> None: ...


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Supervisor:
    def __init__(
        self,
        store: Store,
        run_id: str,
        reporter: Reporter | None = None,
        machine: LocalMachine | None = None,
        poll_s: float = 0.1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.status = store.load(run_id)
        self.exp = store.experiment(run_id)
        self.reporter = reporter or SilentReporter()
        self.machine = machine or detect_machine()
        self.poll_s = poll_s
        self.clock = clock  # time limits, backoffs and stop grace are measured on it
        self.attempt_started: float | None = None  # on self.clock
        self.cancelled = False
        self.silence: Silence | None = None  # this attempt's, with a hang_timeout
        self.stall_checked_at = -float("inf")
        self._experiments: dict[str, Experiment] = {run_id: self.exp}

    # -- lifecycle ---------------------------------------------------------

    def run(self) -> RunStatus:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._save(supervisor_pid=os.getpid())
            self._loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.status

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.cancelled = True

    def _loop(self) -> None:
        while True:
            if not self._wait_for_admission():
                return self._finish(Phase.CANCELLED, "cancelled while queued")
            gang = self._start_gang()
            if gang is None:
                return None  # could not start: already Failed, no process left
            outcome, message = self._watch(gang)
            self._stop(gang, outcome, message)
            if outcome == "succeeded":
                return self._finish(Phase.SUCCEEDED, message)
            if outcome == "cancelled":
                return self._finish(Phase.CANCELLED, "cancelled; every rank stopped")
            may_retry = outcome != "stalled" or self.exp.on_hang == "restart"
            after = after_failure(self.exp.retry, self.status.restarts, message, may_retry)
            if not after.restart:
                return self._finish(after.phase, after.message)
            self._save(phase=after.phase, restarts=after.restarts, message=after.message)
            resume_at = self.clock() + after.delay  # the backoff runs from the stop
            self.reporter.event(self.status, self.status.message)
            if not self._wait_until(resume_at):
                return self._finish(Phase.CANCELLED, "cancelled while waiting to restart")
            self._save(phase=Phase.QUEUED, message="requeued after failure")

    def _stop(self, gang: ranks.Gang, outcome: str, message: str) -> None:
        """Say why in the stop-reason file, SIGTERM every rank still running, kill what is
        left after stop_grace_seconds (on this supervisor's clock)."""
        if gang.alive():
            if outcome == "cancelled":
                reason = CANCELLED_REASON
            else:
                cause = "finished" if outcome == "succeeded" else stop_cause(message)
                reason = f"{cause}: {message}"
            self._stop_reason_file().write_text(reason + "\n")
        gang.stop(grace_s=self.exp.stop_grace_seconds, clock=self.clock)
        self._record_ranks(gang)

    def _checkpoint_dir(self) -> Path:
        """The same folder on every attempt: the checkpoint's hostPath volume, else the
        run's own folder (other kinds of volume are the cluster's)."""
        ck = self.exp.checkpoint
        for volume in getattr(self.exp, "volumes", None) or []:
            if ck is not None and volume.name == ck.volume and volume.host_path:
                return Path(volume.host_path)
        return self.store.run_dir(self.status.id) / CHECKPOINT_DIR

    def _stop_reason_file(self) -> Path:
        return self.store.run_dir(self.status.id) / STOP_REASON_FILE

    def _finish(self, phase: Phase, message: str) -> None:
        self._save(phase=phase, message=message, finished_at=self.clock(), position=None)
        self.reporter.event(self.status, message)

    def _save(self, **changes: object) -> None:
        for key, value in changes.items():
            # A phase as the plain string status.json holds (and `-o yaml` can print).
            setattr(self.status, key, str(value) if isinstance(value, Phase) else value)
        self.store.save(self.status)

    def _wait_until(self, deadline: float) -> bool:
        """Wait until `deadline` on self.clock, polling for a cancel; False: cancelled."""
        while (left := deadline - self.clock()) > 0:
            if self.cancelled:
                return False
            time.sleep(min(self.poll_s, left))
        return not self.cancelled

    # -- admission: the local machine is a one-node snapshot for core/ ---------

    def _wait_for_admission(self) -> bool:
        while not self.cancelled:
            if self._try_admit():
                return True
            self.reporter.waiting(self.status)
            time.sleep(max(self.poll_s, 0.2))
        return False

    def _experiment(self, run_id: str) -> Experiment:
        if run_id not in self._experiments:
            self._experiments[run_id] = self.store.experiment(run_id)
        return self._experiments[run_id]

    def _readable(self, run_id: str) -> bool:
        try:
            self._experiment(run_id)
        except RunDamaged:
            return False
        return True

    def _try_admit(self) -> bool:
        with self.store.queue_lock():
            # A run whose spec file was damaged by hand cannot be weighed: left out.
            runs = [self._reap(s) for s in self.store.all()
                    if s.id != self.status.id and self._readable(s.id)]
            holding = [s for s in runs if s.phase in HOLDING]
            used = Resources()
            for s in holding:
                used = used + gang_for(self._experiment(s.id), s.id, 0, select_machine_type=False).total
            queued = [s for s in runs if s.phase == Phase.QUEUED] + [self.status]
            gangs = tuple(
                gang_for(self._experiment(s.id), s.id, s.submitted_at, select_machine_type=False)
                for s in queued
            )
            result = schedule(Snapshot((self.machine.node(used),), gangs, self.clock()))
            if any(a.gang == self.status.id for a in result.admitted):
                taken = {g for s in holding for ids in s.gpus.values() for g in ids}
                self._save(phase=Phase.STARTING, position=None, message="starting",
                           gpus=self._assign_gpus(taken))
                return True
            mine = next(w for w in result.waiting if w.gang == self.status.id)
            if (mine.position, mine.reason) != (self.status.position, self.status.message):
                self._save(position=mine.position, message=mine.reason)
            return False

    def _reap(self, status: RunStatus) -> RunStatus:
        """A run whose supervisor died holds nothing; record that once, for everyone."""
        if status.active and not pid_alive(status.supervisor_pid) and status.supervisor_pid:
            status.phase, status.message = Phase.FAILED.value, "its supervisor process exited unexpectedly"
            status.finished_at = self.clock()
            self.store.save(status)
        return status

    def _assign_gpus(self, taken: set[int]) -> dict[str, list[int]]:
        free = [g for g in self.machine.gpus if g not in taken]
        out: dict[str, list[int]] = {}
        for role in self.exp.roles:
            want = self.exp.request(role).gpus
            for i in range(role.replicas):
                out[f"{role.name}-{i}"], free = free[:want], free[want:]
        return out

    # -- running ---------------------------------------------------------------

    def _start_gang(self) -> ranks.Gang | None:
        """Every rank started, or (one could not start) none left running and the run Failed."""
        ports = {(r.name, i): free_port() for r in self.exp.roles for i in range(r.replicas)}

        def address(role: Role, index: int) -> tuple[str, int]:
            return "127.0.0.1", ports[(role.name, index)]

        gang = ranks.Gang()
        starting = ""
        workdir = Path(self.status.workdir)
        attempt = self.status.restarts + 1
        checkpoint = self._checkpoint_dir()
        checkpoint.mkdir(parents=True, exist_ok=True)
        self._stop_reason_file().write_text("")  # not stopping (yet), this attempt
        run_dir = self.store.run_dir(self.status.id)
        (run_dir / progress.PROGRESS_DIR).mkdir(exist_ok=True)
        names = [f"{r.name}-{i}" for r in self.exp.roles for i in range(r.replicas)]
        silence = self.silence = (Silence(names, lambda n: progress.rank_file(run_dir, n), self.clock)
                                  if self.exp.hang_timeout else None)

        def sink(rank: str, text: str) -> None:
            if silence is not None:
                silence.line(rank)
            self.reporter.line(rank, text)
        try:
            for role in self.exp.roles:
                for i in range(role.replicas):
                    name = f"{role.name}-{i}"
                    folders = volumes.mount_dirs(self.exp, role, self.store.run_dir(self.status.id))
                    env = {**os.environ, **replica_env(self.exp, role, i, address, mounts=folders)}
                    env |= {
                        "SHIPYARD_RUN_ID": self.status.id,
                        "SHIPYARD_POD_NAME": pod_name(self.exp, role, i),
                        "SHIPYARD_ATTEMPT": str(attempt),
                        "SHIPYARD_RESTART_COUNT": str(attempt - 1),
                        "SHIPYARD_CHECKPOINT_DIR": str(checkpoint),
                        "SHIPYARD_STOP_REASON": str(self._stop_reason_file()),
                        "SHIPYARD_PROGRESS_FILE": str(progress.rank_file(run_dir, name)),
                        "CUDA_VISIBLE_DEVICES": ",".join(map(str, self.status.gpus.get(name, []))),
                        "PYTHONUNBUFFERED": "1",
                    }
                    cwd = ranks.role_cwd(workdir, role)
                    starting = name
                    log = self.store.log_dir(self.status.id) / f"{name}.log"
                    if attempt > 1:
                        with log.open("ab") as handle:
                            logtimes.mark(log, handle.tell())
                            handle.write(f"---- shipyard: attempt {attempt} ----\n".encode())
                    gang.ranks.append(ranks.start_rank(
                        name, role.name, ranks.local_command(role.command), env, cwd, log, sink,
                    ))
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            gang.stop(grace_s=1, clock=self.clock)
            self._record_ranks(gang)
            self._finish(Phase.FAILED, f"rank {starting} could not start: {clip(str(exc))}")
            return None
        self.attempt_started = self.clock()  # this attempt's time limit runs from here
        self._save(
            phase=Phase.RUNNING, started_at=self.status.started_at or self.attempt_started,
            attempt_started_at=self.attempt_started,
            message=f"{len(gang.ranks)} rank(s) running",
            ranks={r.name: RankState(pid=r.pid, state="running") for r in gang.ranks},
        )
        self.reporter.event(self.status, self.status.message)
        return gang

    def _watch(self, gang: ranks.Gang) -> tuple[str, str]:
        roles = success_roles(self.exp)
        needed = {r.name for r in gang.ranks if r.role in roles}
        while True:
            for rank in gang.poll():
                self.status.ranks[rank.name] = RankState(
                    rank.pid, "succeeded" if rank.exit_code == 0 else "failed", rank.exit_code
                )
                if rank.exit_code != 0:
                    self.store.save(self.status)
                    return "failed", f"rank {rank.name} {describe_exit(rank.exit_code)}"
                needed.discard(rank.name)
            if not needed:
                return "succeeded", success_message(roles, "rank", "exited 0")
            if self.cancelled:
                return "cancelled", ""
            late = time_limit_exceeded(self.exp.time_limit, self.attempt_started, self.clock())
            if late is not None:
                return "failed", late
            if (stall := self._stall()) is not None:
                return stall
            time.sleep(self.poll_s)

    def _stall(self) -> tuple[str, str] | None:
        """("stalled", why) when the gang went silent and on_hang stops it; notify: the
        message says so (once), and is put back when a rank is heard again."""
        timeout, silence = self.exp.hang_timeout, self.silence
        if not timeout or silence is None or self.attempt_started is None:
            return None
        if self.clock() - self.stall_checked_at < STALL_CHECK_S:
            return None
        self.stall_checked_at = self.clock()
        why = silence.hung(timeout, self.clock() - self.attempt_started)
        if why is not None and self.exp.on_hang != "notify":
            return "stalled", f"stalled: {why}"
        message = f"{len(silence.ranks)} rank(s) running" + (f"; stalled: {why}" if why else "")
        if message != self.status.message:
            self._save(message=message)
            self.reporter.event(self.status, f"stalled: {why}" if why else "a rank reports or logs again")
        return None

    def _record_ranks(self, gang: ranks.Gang) -> None:
        for rank in gang.ranks:
            state = self.status.ranks.get(rank.name)
            if state is not None and state.state == "running":
                state.state, state.exit_code = "stopped", rank.exit_code
        self.store.save(self.status)


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def main(argv: list[str]) -> int:
    """Entry for a detached run: python -m shipyard.local.supervisor RUN_ID."""
    status = Supervisor(Store(), argv[0]).run()
    return 0 if status.phase == Phase.SUCCEEDED else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
