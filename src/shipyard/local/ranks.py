"""The processes of one gang: start every rank, pump its output, stop them all.

Each rank runs in its own session (process group) so that stopping it also stops
whatever it spawned (torchrun workers, data loaders), and so that a Ctrl-C in the
terminal reaches only the supervisor, which then stops every rank in order.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from shipyard.local.logtimes import TimeIndex
from shipyard.spec import Role

LineSink = Callable[[str, str], None]  # (rank name, line without newline)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # If the supervisor is killed outright, the kernel kills the rank too.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Rank:
    name: str  # <role>-<index>
    role: str
    process: subprocess.Popen[bytes]
    pump: threading.Thread
    exit_code: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class Gang:
    ranks: list[Rank] = field(default_factory=list)

    def poll(self) -> list[Rank]:
        """Ranks that exited since the last poll."""
        exited = []
        for rank in self.ranks:
            if rank.exit_code is None and (code := rank.process.poll()) is not None:
                rank.exit_code = code
                exited.append(rank)
        return exited

    def alive(self) -> list[Rank]:
        return [r for r in self.ranks if r.exit_code is None and r.process.poll() is None]

    def stop(self, grace_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        """SIGTERM every rank's process group, then SIGKILL what is left after `grace_s`
        (measured on `clock`)."""
        for rank in self.ranks:
            _signal_group(rank.pid, signal.SIGTERM)
        deadline = clock() + grace_s
        while clock() < deadline and self.alive():
            time.sleep(0.05)
        for rank in self.ranks:
            _signal_group(rank.pid, signal.SIGKILL)
        for rank in self.ranks:
            with contextlib.suppress(subprocess.TimeoutExpired):
                rank.process.wait(timeout=5)
            if rank.exit_code is None:
                rank.exit_code = rank.process.returncode
            rank.pump.join(timeout=2)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def local_command(command: list[str]) -> list[str]:
    # `python` (and `torchrun`) in a spec mean "with the Python shipyard runs on".
    if command and command[0] in ("python", "python3"):
        return [sys.executable, *command[1:]]
    if command and command[0] == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", *command[1:]]
    return command


def role_cwd(workdir: Path, role: Role) -> Path:
    """Where the role's processes start: its working_dir, relative to the spec's folder."""
    return workdir / role.working_dir if role.working_dir else workdir


def _pump(name: str, stream: BinaryIO, log: BinaryIO, times: TimeIndex,
          sink: LineSink | None) -> None:
    offset = log.tell()  # opened for append: its end
    with stream, log, contextlib.closing(times):
        for raw in iter(stream.readline, b""):
            times.line(offset)
            offset += len(raw)
            log.write(raw)
            log.flush()
            if sink is not None:
                sink(name, raw.decode(errors="replace").rstrip("\n"))


def start_rank(
    name: str,
    role: str,
    command: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    sink: LineSink | None,
) -> Rank:
    log = open(log_path, "ab")  # noqa: SIM115 - the pump thread owns and closes it
    try:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        message = f"shipyard: cannot start {command[0]!r}: {exc}\n"
        log.write(message.encode())
        log.close()
        if sink is not None:
            sink(name, message.rstrip())
        raise
    stdout = process.stdout
    if stdout is None:  # cannot happen with stdout=PIPE; keeps the type checker honest
        raise RuntimeError(f"rank {name}: no output pipe")
    pump = threading.Thread(
        target=_pump, args=(name, stdout, log, TimeIndex(log_path), sink), name=f"log-{name}",
        daemon=True
    )
    pump.start()
    return Rank(name, role, process, pump)
