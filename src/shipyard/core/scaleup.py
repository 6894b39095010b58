"""The cluster as it would be with more nodes: the snapshot plus hypothetical ones.

Scale-up asks the scheduler's own question (does this gang fit, and where?) of the
snapshot extended with nodes built from pool templates, through the same index and
placement code (node_index.py, placement.py). Hypothetical nodes are ordered by cost;
the search shows some of them and asks for the fewest (and cheapest) that fit.

A node not in play is *hidden*: all its free resources are taken, so the index files
it as full and nothing is placed there; showing it gives them back. That way one index
serves every question of the plan, and each change is a cheap re-filing of one node.
Nodes earmarked for a gang (already requested for it) are hidden from every other gang;
when the plan shares, the room a gang leaves on new nodes it was placed on is shown to
the gangs after it, and nodes on their way for no pending gang are open to all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from shipyard.core.model import Gang, Node, Resources, Snapshot
from shipyard.core.node_index import Capacity, Group
from shipyard.core.placement import Taken, place, unplace


def new_node(template: Node, name: str) -> Node:
    return Node(name, template.allocatable, template.labels, template.taints)


class Extended:
    """One Capacity over existing nodes, spare hypothetical nodes (in cost order) and the
    nodes already on their way for particular gangs."""

    def __init__(
        self,
        snapshot: Snapshot,
        topology_keys: Sequence[str],
        spare: Sequence[tuple[str, Node, int]],
        coming: Mapping[str, Sequence[tuple[str, Node, int]]],
        earmarked: Mapping[str, str],
        unclaimed: Sequence[tuple[str, Node, int]] = (),
    ) -> None:
        nodes = list(snapshot.nodes)
        self.base = len(nodes)
        self.pool_of: dict[int, str] = {}
        # Per pool, cheapest pool first; spare[p][:shown[p]] are shown.
        self.spare: dict[str, list[int]] = {}
        self.cost: dict[str, int] = {}
        # Names with "/" cannot clash with a real node's (a DNS subdomain).
        for rank, (pool, template, n) in enumerate(spare):
            self.cost[pool] = rank
            mine = self.spare[pool] = []
            for j in range(n):
                self.pool_of[len(nodes)] = pool
                mine.append(len(nodes))
                nodes.append(new_node(template, f"{pool}/new-{j}"))
        self.shown = dict.fromkeys(self.spare, 0)
        self.own: dict[str, list[int]] = {}
        for gang, items in coming.items():
            for pool, template, n in items:
                for j in range(n):
                    self.own.setdefault(gang, []).append(len(nodes))
                    nodes.append(new_node(template, f"{pool}/for-{gang}-{j}"))
        # On their way for no pending gang (its gang started elsewhere, or is gone):
        # open to every gang, and free (already asked for).
        self.unclaimed: dict[int, str] = {}
        last = len(nodes)
        for pool, template, n in unclaimed:
            for j in range(n):
                self.unclaimed[len(nodes)] = pool
                nodes.append(new_node(template, f"{pool}/unclaimed-{j}"))
        self.cap = Capacity(Snapshot(tuple(nodes)), topology_keys)
        self.hidden: dict[int, Resources] = {}
        for i in range(self.base, last):
            self.hide(i)
        for name, gang in earmarked.items():
            at = self.cap.index_of.get(name)
            if at is not None and at < self.base:
                self.own.setdefault(gang, []).append(at)
                self.hide(at)

    def index(self, name: str) -> int | None:
        return self.cap.index_of.get(name)

    def hide(self, i: int) -> None:
        c = self.cap
        r = Resources(max(c.fcpu[i], 0), max(c.fmem[i], 0), max(c.fgpu[i], 0))
        c.take(i, r)
        self.hidden[i] = self.hidden.get(i, Resources()) + r

    def show(self, i: int) -> None:
        r = self.hidden.pop(i, None)
        if r is not None:
            self.cap.release(i, r)

    def show_counts(self, counts: Mapping[str, int]) -> None:
        """Show the first counts[pool] spare nodes of each pool, hide the rest."""
        for pool, nodes in self.spare.items():
            k = min(counts.get(pool, 0), len(nodes))
            while self.shown[pool] < k:
                self.show(nodes[self.shown[pool]])
                self.shown[pool] += 1
            while self.shown[pool] > k:
                self.shown[pool] -= 1
                self.hide(nodes[self.shown[pool]])

    def prefix(self, k: int) -> dict[str, int]:
        """The k cheapest spare nodes, as counts per pool."""
        out = {}
        for pool, nodes in self.spare.items():
            out[pool] = min(k, len(nodes))
            k -= out[pool]
        return out

    def withhold(self, amounts: Mapping[int, Resources]) -> dict[int, Resources]:
        """Take up to amounts[i] of node i's free room out of play; returns what was taken,
        for `restore`."""
        c = self.cap
        out: dict[int, Resources] = {}
        for i, r in amounts.items():
            got = Resources(min(r.cpu_milli, max(c.fcpu[i], 0)), min(r.memory, max(c.fmem[i], 0)),
                            min(r.gpus, max(c.fgpu[i], 0)))
            c.take(i, got)
            out[i] = got
        return out

    def restore(self, withheld: Mapping[int, Resources]) -> None:
        for i, r in withheld.items():
            self.cap.release(i, r)

    def open_own(self, gang: str) -> None:
        for i in self.own.get(gang, ()):
            self.show(i)

    def close_own(self, gang: str, keep_open: Iterable[int] = ()) -> None:
        """Hide the gang's nodes again: what it did not take stays its own. Those in
        `keep_open` (nodes it was placed on) stay shown: the room it leaves there is
        open to the gangs after it."""
        keep = set(keep_open)
        for i in self.own.get(gang, ()):
            if i not in keep:
                self.hide(i)

    def place(self, groups: list[Group], gang: Gang, keys: Sequence[str]) -> Taken | None:
        return place(self.cap, groups, gang.topology, keys)

    def fits(self, groups: list[Group], gang: Gang, keys: Sequence[str],
             counts: Mapping[str, int]) -> bool:
        self.show_counts(counts)
        taken = self.place(groups, gang, keys)
        if taken is None:
            return False
        unplace(self.cap, taken)
        return True

    def place_without(self, groups: list[Group], gang: Gang, keys: Sequence[str],
                      left_out: Iterable[int]) -> Taken | None:
        """Place the gang (kept taken) with the nodes `left_out` and every spare one hidden;
        None if it does not fit so."""
        self.show_counts({})
        shown = [i for i in left_out if i not in self.hidden]
        for i in shown:
            self.hide(i)
        taken = self.place(groups, gang, keys)
        for i in shown:
            self.show(i)
        return taken

    def hypothetical(self) -> range:
        """Indices of the nodes not in the snapshot (spare, coming, unclaimed)."""
        return range(self.base, len(self.cap.nodes))

    def smallest(self, groups: list[Group], gang: Gang, keys: Sequence[str]) -> Taken | None:
        """Place the gang (kept taken) on the fewest, cheapest spare nodes; None if even all
        of them are not enough.

        First the shortest cost-ordered prefix that fits (galloping, then bisecting: the
        work grows with the answer, not with the headroom). A prefix that needs one
        expensive node shows every cheap one, and placement may pick new nodes over free
        ones; so then each pool, the most expensive first, is cut to the fewest nodes
        that still fit with the others as they are.
        """
        self.show_counts({})
        taken = self.place(groups, gang, keys)
        if taken is not None:
            return taken
        n = sum(len(v) for v in self.spare.values())
        lo, hi = 0, 1
        while hi < n and not self.fits(groups, gang, keys, self.prefix(hi)):
            lo, hi = hi, hi * 2
        hi = min(hi, n)
        if not self.fits(groups, gang, keys, self.prefix(hi)):
            return None
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.fits(groups, gang, keys, self.prefix(mid)):
                hi = mid
            else:
                lo = mid
        counts = self.prefix(hi)
        for pool in sorted((p for p, c in counts.items() if c), key=lambda p: -self.cost[p]):
            low, high = -1, counts[pool]  # low fails (or is below zero), high fits
            while high - low > 1:
                mid = (low + high) // 2
                if self.fits(groups, gang, keys, {**counts, pool: mid}):
                    high = mid
                else:
                    low = mid
            counts[pool] = high
        for tried in (counts, self.prefix(hi), self.prefix(n)):
            # Best fit is a heuristic: a retry on a larger set may pick other nodes.
            self.show_counts(tried)
            taken = self.place(groups, gang, keys)
            if taken is not None:
                return taken
        return None

    def settle(self, taken: Taken, share: bool = False) -> dict[str, int]:
        """Keep a placement: the spare nodes it used become the gang's. Their remainder is
        hidden too (the node is earmarked for the gang) unless `share`: then the gangs
        after it may count on that room, which is theirs once the gang has started (or
        has started elsewhere). Returns new nodes per pool."""
        used = {i for _, i in taken if i in self.pool_of}
        counts: dict[str, int] = {}
        for i in sorted(used):
            counts[self.pool_of[i]] = counts.get(self.pool_of[i], 0) + 1
        self.show_counts({})
        for i in used:
            self.hide(i)
            if share:
                self.show(i)
            del self.pool_of[i]  # asked for now: a gang placed there later adds none
        for pool in counts:
            self.spare[pool] = [i for i in self.spare[pool] if i not in used]
        return counts

    def on_the_way(self, taken: Iterable[tuple[object, int]]) -> set[int]:
        """The nodes among `taken` that are requested already (a gang's own, unclaimed
        ones, or new ones asked for an earlier gang of this plan): not spare, not the
        snapshot's own."""
        own = {i for nodes in self.own.values() for i in nodes}
        return {i for _, i in taken if i in own or (i >= self.base and i not in self.pool_of)}

    def not_ready_among(self, taken: Iterable[tuple[object, int]]) -> bool:
        """Whether `taken` uses a node not in the snapshot (new, coming or unclaimed)."""
        return any(i >= self.base for _, i in taken)

    def existing(self, taken: Iterable[tuple[object, int]]) -> set[str]:
        """Names of the snapshot's nodes among `taken`."""
        return {self.cap.nodes[i].name for _, i in taken if i < self.base}
