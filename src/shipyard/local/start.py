"""When will a queued local run start? core/start_estimate.py over this machine's queue.

The machine is one node; the runs holding it are running gangs (their time limit runs
from their attempt's start, their progress ETA from their ranks' reports), the queued
runs are played forward in the order the supervisors admit them (core/queueing.py).
Read-only: any `shipyard list` or `status` may compute it, no supervisor needs to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from shipyard.api.vocab import HOLDING, Phase
from shipyard.core.from_spec import gang_for
from shipyard.core.model import Policy, Resources, Running, Snapshot, Waiting
from shipyard.core.queueing import schedule
from shipyard.core.start_estimate import StartEstimate, estimate_starts
from shipyard.local import progress
from shipyard.local.machine import LOCAL_NODE, LocalMachine
from shipyard.local.store import RunDamaged, RunStatus, Store

# What the supervisors decide with, less preemption (the local queue never preempts).
POLICY = Policy(preemption=False)


def start_estimates(store: Store, machine: LocalMachine, now: float,
                    runs: Iterable[RunStatus] | None = None) -> dict[str, StartEstimate]:
    """Run id -> its estimated start, for every queued run that waits for room."""
    running: list[Running] = []
    pending = []
    etas: dict[str, float] = {}
    used = Resources()
    for s in store.all() if runs is None else runs:
        if s.phase not in HOLDING and s.phase != Phase.QUEUED:
            continue
        try:
            exp = store.experiment(s.id)
        except RunDamaged:  # a spec damaged by hand cannot be weighed (as in admission)
            continue
        if s.phase == Phase.QUEUED:
            pending.append(gang_for(exp, s.id, s.submitted_at, select_machine_type=False))
            continue
        gang = gang_for(exp, s.id, 0, select_machine_type=False)
        used = used + gang.total
        # Starting: this attempt's clock has not begun (attempt_started_at is the last one's).
        started = (s.attempt_started_at or s.started_at or now) if s.phase == Phase.RUNNING else now
        running.append(Running(gang, {m.name: LOCAL_NODE for m in gang.members}, started))
        if (eta := _eta(store, s.id)) is not None:
            etas[s.id] = eta
    if not pending:
        return {}
    snapshot = Snapshot((machine.node(used),), tuple(pending), now, tuple(running))
    result = schedule(snapshot, POLICY)
    # Admitted by this look but not yet by its supervisor: it starts first, about now.
    order = [Waiting(a.gang, 0, "") for a in result.admitted] + list(result.waiting)
    return estimate_starts(snapshot, order, POLICY, etas)


def _eta(store: Store, run_id: str) -> float | None:
    with contextlib.suppress(OSError, ValueError):
        return progress.eta(store.run_dir(run_id))
    return None
