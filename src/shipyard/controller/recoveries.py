"""Nodes back from NotReady, kept from new gangs for a few seconds.

The node-lifecycle controller (kube-controller-manager) taints a NotReady node
`node.kubernetes.io/not-ready:NoExecute` from its own informer cache, in a pass every
5 s (--node-monitor-period). On a busy control plane that cache lags, and the taint can
land just after the node turned Ready again: pods placed on the node in that gap are
evicted at once by the taint-eviction controller, and their whole gang restarts a second
time for one short outage. So a node that was seen NotReady takes no new pods until it
has been Ready for NODE_SETTLE_S (two of those passes); gangs already there are left
alone (the lifecycle reads `ready`, not `schedulable`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from shipyard.core.model import Node

NODE_SETTLE_S = 10.0


class Recoveries:
    """Which nodes came back from NotReady less than `settle_s` ago, by the watch."""

    def __init__(self, clock: Callable[[], float], settle_s: float = NODE_SETTLE_S) -> None:
        self.clock = clock
        self.settle_s = settle_s
        self._up: set[str] = set()  # seen Ready, and Ready when last seen
        self._down: set[str] = set()  # seen Ready once, NotReady when last seen
        self._since: dict[str, float] = {}  # node -> when it was seen Ready again

    def noting(self, view: Callable[[dict[str, Any]], Node]) -> Callable[[dict[str, Any]], Node]:
        """The node informer's view, noting each Ready -> NotReady -> Ready turn on the way.
        A new node's first Ready is not a recovery (it registers NotReady): the
        autoscaler's nodes are used the moment they are Ready."""
        def read(obj: dict[str, Any]) -> Node:
            node = view(obj)
            name = node.name
            if node.ready:
                if name in self._down:
                    self._down.discard(name)
                    self._since[name] = self.clock()
                self._up.add(name)
            elif name in self._up or name in self._down:
                self._up.discard(name)
                self._down.add(name)
                self._since.pop(name, None)
            return node

        return read

    def settling(self, now: float) -> set[str]:
        for name in [n for n, t in self._since.items() if now - t >= self.settle_s]:
            del self._since[name]
        return set(self._since)

    def hold_back(self, nodes: Iterable[Node], now: float) -> Iterable[Node]:
        """`nodes`, the settling ones unschedulable: placement and the autoscaler treat
        them as a node still coming."""
        settling = self.settling(now)
        if not settling:
            return nodes
        return [replace(n, schedulable=False) if n.name in settling else n for n in nodes]
