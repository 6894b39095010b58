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

Strikes are kept in the leader's memory: a restarted (or new) leader starts counting
afresh; the evidence of a quarantine is on the node.

Off unless `shipyard controller run --quarantine-after K` is given.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from shipyard.api.vocab import ANNOTATION_QUARANTINE_EVIDENCE, TAINT_QUARANTINE
from shipyard.controller.views import format_time
from shipyard.controller.writer import Writer
from shipyard.kube.api import ApiClient
from shipyard.kube.resources import NODES

log = logging.getLogger(__name__)


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


class Quarantine:
    def __init__(self, client: ApiClient, writer: Writer,
                 spawn: Callable[[Coroutine[Any, Any, None]], None],
                 tainted: Callable[[str], bool], after: int = 0, window_s: float = 3600.0) -> None:
        """`tainted(node)`: whether the watch cache shows the quarantine taint on it."""
        self.client, self.writer, self.spawn, self.tainted = client, writer, spawn, tainted
        self.strikes = Strikes(after, window_s)

    @property
    def enabled(self) -> bool:
        return self.strikes.after > 0

    def gang_failed(self, experiment: str, nodes: Iterable[str], problem: str, now: float) -> None:
        if not self.enabled:
            return
        for node in self.strikes.record(nodes, Strike(experiment, now, problem)):
            if not self.tainted(node):
                # The evidence goes with the taint; once an operator clears it, the node
                # needs K fresh failures to be quarantined again.
                self.spawn(self._quarantine(node, self.strikes.by_node.pop(node), now))

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
                         "annotations": {ANNOTATION_QUARANTINE_EVIDENCE: text}},
            "spec": {"taints": taints}})
        message = (f"quarantined after failures of {len(evidence)} experiments within "
                   f"{self.strikes.window_s:g}s: " + ", ".join(sorted({s.experiment for s in evidence}))
                   + f"; clear with: kubectl taint node {node} {TAINT_QUARANTINE}-")
        log.warning("node %s %s", node, message)
        await self.writer.event_on({"apiVersion": "v1", "kind": "Node", "name": node},
                                   "Quarantined", message, now, "Warning")
