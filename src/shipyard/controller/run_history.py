"""Run-time estimates on a cluster: core/estimate.py's History fed from the experiments
that succeeded (kept in the API server, so a restarted controller learns them again
from its first list), as the simulator feeds it from the trace's past.

An experiment's kind is its namespace, its name without a trailing run number or hash
(`bert-ft-3` and `bert-ft-4` are one kind) and its shape (replicas x machine type per
role): the user/name/shape history Helios' QSSF predicts from. Each gang's estimate is
made once, when it is first seen, and kept while it lives (as the simulator does).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from shipyard.controller.views import ExperimentView, parse_time
from shipyard.core.estimate import Estimate, EstimateSettings, History
from shipyard.spec import Experiment

_RUN_SUFFIX = re.compile(r"(-(\d+|[0-9a-f]{5,}))+$")


def kind_of(spec: Experiment, namespace: str) -> str:
    stem = _RUN_SUFFIX.sub("", spec.name) or spec.name
    shape = "+".join(f"{r.replicas}x{r.machine_type}" for r in spec.roles)
    return f"{namespace}/{stem}/{shape}"


def gpus_of(spec: Experiment) -> int:
    return sum(spec.request(r).gpus * r.replicas for r in spec.roles)


class RunHistory:
    def __init__(self, settings: EstimateSettings = EstimateSettings()) -> None:
        self.history = History(settings)
        self.learnt: set[str] = set()  # uids already added
        self.made: dict[tuple[str, str], Estimate | None] = {}  # (key, uid) -> its estimate

    def finished(self, exp: ExperimentView, status: Mapping[str, object]) -> None:
        """Learn from a Succeeded experiment (once per uid)."""
        if exp.uid in self.learnt or exp.spec is None:
            return
        self.learnt.add(exp.uid)
        started = parse_time(str(status.get("startedAt") or "")) or None
        ended = parse_time(str(status.get("finishedAt") or "")) or None
        if started is None or ended is None or ended < started:
            return
        self.history.add(kind_of(exp.spec, exp.namespace), exp.spec.queue, gpus_of(exp.spec),
                         max(ended - started, 1.0), ended)

    def estimate(self, exp: ExperimentView, now: float) -> Estimate | None:
        """The gang's estimate, made the first time it is asked for."""
        cache = (exp.key, exp.uid)
        if cache not in self.made and exp.spec is not None:
            self.made[cache] = self.history.estimate(kind_of(exp.spec, exp.namespace), exp.spec.queue,
                                                     gpus_of(exp.spec), now)
        return self.made.get(cache)

    def forget(self, key: str, uid: str) -> None:
        self.made.pop((key, uid), None)
