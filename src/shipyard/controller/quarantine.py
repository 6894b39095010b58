"""Quarantine "lemon" nodes: a node on which K different gangs failed within a window.

A gang failure (a pod that failed, or a node that went NotReady or away) is charged to
every node of the gang's placement: one failure says little about which node is bad,
but a bad node takes part in the failures of many more gangs than its neighbours.
Strikes count distinct experiments: a buggy experiment that fails and restarts on the
same nodes again and again is one strike on each of them, however often it fails
(its latest failure is kept as the evidence), so it alone never quarantines its
placement. At K experiments within `window_s` the node gets the
`shipyard.dev/quarantined:NoSchedule` taint (no new work lands there) and an
annotation with the evidence (which experiments failed, when, why), and an Event says
so. It stays quarantined until an operator removes the taint:

    kubectl taint node NODE shipyard.dev/quarantined-

Strikes are kept on the node too, in the annotation `shipyard.dev/quarantine-strikes`
(written when an experiment first fails on it within the window: a restart loop
writes nothing more), so a restarted or new leader goes on counting: it takes a
node's stored strikes the first time it charges that node. A stored strike keeps the
time of that first failure, so after a restart it may leave the window sooner.

Off unless `shipyard controller run --quarantine-after K` is given.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from shipyard.api.vocab import (
    ANNOTATION_QUARANTINE_EVIDENCE,
    ANNOTATION_QUARANTINE_STRIKES,
    TAINT_QUARANTINE,
)
from shipyard.controller.views import format_time, parse_time
from shipyard.controller.writer import Writer
from shipyard.kube.api import ApiClient
from shipyard.kube.resources import NODES

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Strike:
    experiment: str
    at: float
    problem: str


@dataclass
class Strikes:
    """Gang failures per node within a sliding window, one (the latest) per experiment. Pure."""

    after: int
    window_s: float
    by_node: dict[str, list[Strike]] = field(default_factory=dict)

    def record(self, nodes: Iterable[str], strike: Strike) -> list[str]:
        """Charge `strike` to each node; return the nodes on which `after` different
        experiments have now failed within the window."""
        reached = []
        for node in sorted(set(nodes)):
            kept = [s for s in self.by_node.get(node, [])
                    if strike.at - s.at <= self.window_s and s.experiment != strike.experiment]
            kept.append(strike)
            self.by_node[node] = kept
            if len(kept) >= self.after:
                reached.append(node)
        return reached


PROBLEM_CHARS = 200  # of a stored strike's problem: the annotation stays small


def strikes_text(strikes: Iterable[Strike]) -> str:
    return json.dumps([{"experiment": s.experiment, "at": format_time(s.at),
                        "problem": s.problem[:PROBLEM_CHARS]} for s in strikes],
                      separators=(",", ":"))


def strikes_from_text(text: str | None) -> list[Strike]:
    """A node's stored strikes; none from an annotation that cannot be read."""
    try:
        return [Strike(str(d["experiment"]), at, str(d.get("problem", "")))
                for d in json.loads(text or "[]")
                if (at := parse_time(d.get("at"))) is not None]
    except (ValueError, TypeError, KeyError, AttributeError):
        return []


def keeping_strikes(view: Callable[[dict[str, Any]], T], store: dict[str, str]
                    ) -> Callable[[dict[str, Any]], T]:
    """The node informer's view, noting each node's stored strikes in `store` on the way."""
    def read(obj: dict[str, Any]) -> T:
        meta = obj["metadata"]
        text = (meta.get("annotations") or {}).get(ANNOTATION_QUARANTINE_STRIKES)
        if text:
            store[meta["name"]] = text
        else:
            store.pop(meta["name"], None)
        return view(obj)

    return read


class Quarantine:
    def __init__(self, client: ApiClient, writer: Writer,
                 spawn: Callable[[Coroutine[Any, Any, None]], None],
                 tainted: Callable[[str], bool], after: int = 0, window_s: float = 3600.0,
                 stored: Callable[[str], str | None] = lambda node: None) -> None:
        """`tainted(node)`: whether the watch cache shows the quarantine taint on it;
        `stored(node)`: its strikes annotation in the watch cache."""
        self.client, self.writer, self.spawn, self.tainted = client, writer, spawn, tainted
        self.stored = stored
        self.strikes = Strikes(after, window_s)
        self.seeded: set[str] = set()  # nodes whose stored strikes this leader has taken

    @property
    def enabled(self) -> bool:
        return self.strikes.after > 0

    def gang_failed(self, experiment: str, nodes: Iterable[str], problem: str, now: float) -> None:
        if not self.enabled:
            return
        nodes = sorted(set(nodes))
        for node in nodes:
            self._seed(node)
        fresh = {n for n in nodes
                 if not any(s.experiment == experiment for s in self.strikes.by_node.get(n, []))}
        reached = set(self.strikes.record(nodes, Strike(experiment, now, problem)))
        for node in nodes:
            if node in reached and not self.tainted(node):
                # The evidence goes with the taint; once an operator clears it, the node
                # needs K fresh failures to be quarantined again.
                self.spawn(self._quarantine(node, self.strikes.by_node.pop(node), now))
            elif node in fresh and node not in reached:
                self.spawn(self._store(node, list(self.strikes.by_node[node])))

    def _seed(self, node: str) -> None:
        """The first time this leader charges `node`: take the strikes stored on it (one
        per experiment, the latest)."""
        if node in self.seeded:
            return
        self.seeded.add(node)
        latest: dict[str, Strike] = {}
        for strike in [*strikes_from_text(self.stored(node)), *self.strikes.by_node.get(node, [])]:
            if strike.experiment not in latest or latest[strike.experiment].at <= strike.at:
                latest[strike.experiment] = strike
        if latest:
            self.strikes.by_node[node] = sorted(latest.values(), key=lambda s: s.at)

    async def _store(self, node: str, strikes: list[Strike]) -> None:
        await self.client.patch(NODES, node, {"metadata": {"annotations": {
            ANNOTATION_QUARANTINE_STRIKES: strikes_text(strikes)}}})

    async def _quarantine(self, node: str, evidence: list[Strike], now: float) -> None:
        obj = await self.client.get(NODES, node)
        taints = [t for t in (obj.get("spec") or {}).get("taints") or []
                  if t.get("key") != TAINT_QUARANTINE]
        taints.append({"key": TAINT_QUARANTINE, "value": "true", "effect": "NoSchedule",
                       "timeAdded": format_time(now)})
        text = json.dumps([{"experiment": s.experiment, "at": format_time(s.at), "problem": s.problem}
                           for s in evidence])
        await self.client.patch(NODES, node, {
            "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"],
                         "annotations": {ANNOTATION_QUARANTINE_EVIDENCE: text,
                                         ANNOTATION_QUARANTINE_STRIKES: None}},
            "spec": {"taints": taints}})
        message = (f"quarantined after failures of {len(evidence)} experiments within "
                   f"{self.strikes.window_s:g}s: " + ", ".join(sorted({s.experiment for s in evidence}))
                   + f"; clear with: kubectl taint node {node} {TAINT_QUARANTINE}-")
        log.warning("node %s %s", node, message)
        await self.writer.event_on({"apiVersion": "v1", "kind": "Node", "name": node},
                                   "Quarantined", message, now, "Warning")
