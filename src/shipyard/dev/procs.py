"""Start and stop the control-plane processes, each in its own process group.

A component is started in a new session so that `down` (or a test fixture's
teardown) can signal its whole group and leave no orphans, and so that it
outlives the `shipyard dev up` command that started it. The pid is recorded with
the process's start time: a recycled pid is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class ProcRecord:
    name: str
    pid: int
    started: float  # psutil create_time, to tell our process from a recycled pid
    log: str

    def process(self) -> psutil.Process | None:
        try:
            p = psutil.Process(self.pid)
            if abs(p.create_time() - self.started) > 1.0 or p.status() == psutil.STATUS_ZOMBIE:
                return None
            return p
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.process() is not None


def start(name: str, argv: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None
          ) -> ProcRecord:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:
        started = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        started = time.time()
    return ProcRecord(name=name, pid=proc.pid, started=started, log=str(log))


def log_tail(record: ProcRecord, lines: int = 25) -> str:
    try:
        text = Path(record.log).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def stop(records: list[ProcRecord], grace: float = 10.0) -> None:
    """SIGTERM every group, wait up to `grace` seconds, then SIGKILL what is left."""
    procs: list[tuple[ProcRecord, psutil.Process]] = []
    for r in records:
        p = r.process()
        if p is None:
            continue
        procs.append((r, p))
        _signal_group(r.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for _r, p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except psutil.TimeoutExpired:
            pass
        except psutil.Error:
            continue
    for r, p in procs:
        if p.is_running():
            _signal_group(r.pid, signal.SIGKILL)
            with contextlib.suppress(psutil.Error):
                p.wait(timeout=5)
    # Reap our own children so none is left a zombie in a long-lived pytest.
    for r, _p in procs:
        try:
            os.waitpid(r.pid, os.WNOHANG)
        except ChildProcessError:
            pass
        except OSError:
            pass


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # the pid leads its own group (start_new_session)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)
