"""The local backend's verbs: launch, status, list, logs, cancel."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from shipyard.api.vocab import Phase
from shipyard.local import logtimes, volumes
from shipyard.local.machine import detect_machine
from shipyard.local.preflight import check_launch
from shipyard.local.store import RunDamaged, RunStatus, Store
from shipyard.local.supervisor import Reporter, Supervisor, pid_alive
from shipyard.spec import Experiment


def launch(
    exp: Experiment,
    source: Path,
    *,
    detach: bool = False,
    reporter: Reporter | None = None,
    store: Store | None = None,
) -> RunStatus:
    """Queue the experiment; in the foreground, run it to the end; detached, return at once.

    Nothing is recorded unless it can start here: a bad SHIPYARD_LOCAL_* or SHIPYARD_HOME
    setting is a SettingError, a missing program or working directory a LaunchError."""
    machine = detect_machine()
    store = store or Store()
    workdir = source.resolve().parent
    check_launch(exp, workdir)
    for line in volumes.ignored(exp):  # once per launch, not per attempt
        print(f"shipyard: warning: ignored on the local backend: {line}", file=sys.stderr)
    status = RunStatus(
        id="", name=exp.name, queue=exp.queue, priority=exp.priority,
        submitted_at=time.time(), source=str(source), workdir=str(workdir),
    )
    store.create(exp, status)
    if not detach:
        return Supervisor(store, status.id, reporter, machine=machine).run()
    with open(store.run_dir(status.id) / "supervisor.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "shipyard.local.supervisor", status.id],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, "SHIPYARD_HOME": str(store.root)},
        )
    status.supervisor_pid = process.pid
    store.save(status)
    return status


def cancel(ref: str, *, store: Store | None = None, timeout_s: float | None = None) -> RunStatus:
    """Stop a run and every process of it; a finished run is returned unchanged. The
    supervisor is given the run's stop_grace_seconds and 30 s more (`timeout_s`)."""
    store = store or Store()
    status = store.resolve(ref)
    if not status.active:
        return status
    if timeout_s is None:
        with contextlib.suppress(RunDamaged):
            timeout_s = store.experiment(status.id).stop_grace_seconds + 30.0
    timeout_s = 30.0 if timeout_s is None else timeout_s
    if pid_alive(status.supervisor_pid):
        os.kill(status.supervisor_pid, signal.SIGTERM)  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = store.load(status.id)
            if not status.active:
                return status
            time.sleep(0.1)
    # No supervisor left to do it: stop the ranks ourselves and record it.
    for rank in status.ranks.values():
        if rank.pid and rank.state == "running":
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(rank.pid, signal.SIGKILL)
            rank.state = "stopped"
    status.phase, status.message, status.finished_at = Phase.CANCELLED.value, "cancelled", time.time()
    store.save(status)
    return status


def rank_logs(store: Store, status: RunStatus) -> list[Path]:
    exp = store.experiment(status.id)
    names = [f"{r.name}-{i}" for r in exp.roles for i in range(r.replicas)]
    return [store.log_dir(status.id) / f"{n}.log" for n in names]


def read_logs(
    ref: str, *, follow: bool = False, rank: str | None = None, store: Store | None = None,
    poll_s: float = 0.2, since: float | None = None,
    backlog: Callable[[list[str]], list[str]] | None = None,
) -> Iterator[tuple[str, str]]:
    """(rank, line) pairs. Without `follow`, rank by rank; with it, as they are written,
    until the run finishes. `since`: only lines written from then on (a Unix time; to a
    second, logtimes.py). `backlog` (with `follow`): what to keep of each rank's lines
    already written, e.g. its last N, before following."""
    store = store or Store()
    status = store.resolve(ref)
    paths = rank_logs(store, status)
    if rank is not None:
        paths = [p for p in paths if p.stem == rank]
        if not paths:
            raise KeyError(rank)
    offsets = {p: logtimes.offset_since(p, since) if since is not None else 0 for p in paths}
    if not follow:
        for path in paths:
            if path.exists():
                with path.open("rb") as handle:
                    handle.seek(offsets[path])
                    text = handle.read().decode(errors="replace")
                for line in text.splitlines():
                    yield path.stem, line
        return
    pending = dict.fromkeys(paths, "")
    first = True
    while True:
        finished = not store.load(status.id).active
        for path in paths:
            if not path.exists():
                continue
            with path.open("rb") as handle:
                handle.seek(offsets[path])
                chunk = handle.read()
            offsets[path] += len(chunk)
            text = pending[path] + chunk.decode(errors="replace")
            *lines, pending[path] = text.split("\n")
            for line in backlog(lines) if first and backlog is not None else lines:
                yield path.stem, line
        first = False
        if finished:
            for path, rest in pending.items():
                if rest:
                    yield path.stem, rest
            return
        time.sleep(poll_s)
