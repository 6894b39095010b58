"""Re-dispatch (off unless the config sets `redispatch_after`): an experiment queued in
one cluster for longer than that moves to a cluster where it fits now.

Only to a cluster where it fits *now*, and only when its own cluster could not start it
now either, so a move never trades one wait for another. Oldest first; each move is
charged to the reading, so one pass never sends two experiments to the same free node.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipyard.api.vocab import ANNOTATION_HOLD, Phase
from shipyard.core.clusters import ClusterScore, Tier
from shipyard.fleet.capacity_reader import ClusterReading, read_capacities
from shipyard.fleet.connect import DEFAULT_TIMEOUT_S, Unreachable, ask_all
from shipyard.fleet.machines import from_cluster
from shipyard.fleet.move import MoveError, MoveResult, Progress, move, quiet
from shipyard.fleet.placement import ChargedReadings, rank
from shipyard.kube import experiments as kexp
from shipyard.kube.objects import experiment_from_resource
from shipyard.spec import Experiment, SpecError
from shipyard.spec.clusters import ClusterRef, ClustersConfig


@dataclass(frozen=True, slots=True)
class Stuck:
    """An experiment that has waited too long in `cluster`."""

    cluster: str
    exp: Experiment  # with the spec's machine type names
    since: float


def _time(text: str | None) -> float | None:
    if not text:
        return None
    return float(calendar.timegm(time.strptime(text.rstrip("Z").split(".")[0], "%Y-%m-%dT%H:%M:%S")))


def stuck(listed: Mapping[str, Sequence[dict[str, Any]]], refs: Mapping[str, ClusterRef],
          after_s: float, now: float) -> list[Stuck]:
    """Queued (not held, not being moved) experiments older than `after_s`, oldest first."""
    out = []
    for cluster, items in listed.items():
        for obj in items:
            meta, status = obj["metadata"], obj.get("status") or {}
            if status.get("phase") != Phase.QUEUED or (meta.get("annotations") or {}).get(ANNOTATION_HOLD):
                continue
            since = _time(status.get("submittedAt")) or _time(meta.get("creationTimestamp"))
            if since is None or now - since < after_s:
                continue
            try:
                exp = from_cluster(experiment_from_resource(obj), refs[cluster])
            except SpecError:
                continue  # its controller reports the bad spec; nothing to move
            out.append(Stuck(cluster, exp, since))
    return sorted(out, key=lambda s: (s.since, s.cluster, s.exp.namespace, s.exp.name))


def better_cluster(s: Stuck, readings: Sequence[ClusterReading]) -> ClusterScore | None:
    """Where `s` fits now when its own cluster cannot start it now; else None."""
    scores = rank(s.exp, readings)
    here = next((x for x in scores if x.cluster == s.cluster), None)
    best = scores[0] if scores else None
    if best is None or best.tier != Tier.FITS_NOW or best.cluster == s.cluster:
        return None
    if here is not None and here.tier == Tier.FITS_NOW:
        return None
    return best


async def redispatch_once(config: ClustersConfig, *, progress: Progress = quiet,
                          warn: Progress | None = None, now: float | None = None,
                          timeout_s: float = DEFAULT_TIMEOUT_S) -> list[MoveResult]:
    """One pass over every cluster's queue; returns the moves made. `progress` gets
    each step, `warn` (default: `progress`) clusters skipped and moves given up."""
    warn = warn or progress
    if config.redispatch_after is None:
        return []
    refs = {r.name: r for r in config.clusters}
    readings = await read_capacities(list(config.clusters), timeout_s)
    answers = await ask_all(list(config.clusters), lambda c: kexp.list_experiments(c), timeout_s * 4)
    listed = {name: items for name, items in answers.items() if isinstance(items, list)}
    for name, answer in answers.items():
        if not isinstance(answer, list):
            why = answer.why if isinstance(answer, Unreachable) else str(answer)
            warn(f"cluster {name} skipped: {why}")
    now = time.time() if now is None else now
    moved = []
    book = ChargedReadings(readings)
    for s in stuck(listed, refs, config.redispatch_after, now):
        best = better_cluster(s, book.current())
        if best is None:
            continue
        why = (f"queued {now - s.since:.0f}s in {s.cluster} (redispatch_after "
               f"{config.redispatch_after:g}s); it fits now here: {best.reason}")
        try:
            result = await move(s.exp.name, s.exp.namespace, best.cluster, config, source=s.cluster,
                                progress=progress, warn=warn, timeout_s=timeout_s, why=why)
        except MoveError as exc:
            warn(f"{s.exp.namespace}/{s.exp.name} not moved: {exc}")
            continue
        book.charge(s.exp, best.cluster, best.tier)
        moved.append(result)
    return moved
