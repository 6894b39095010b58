"""A simulated cloud: nodes are kwok Node objects that appear after a delay, or fail to.

provider_config (all strings, as NodePool keeps them):
- provisioningDelay: seconds from request to the node registering (default 0)
- failureRate: 0..1, the chance each requested node never appears (default 0)
- fail: "true" every requested node fails after the delay (a cloud stock-out);
  "reject" create() itself is refused (a quota error); default "false"
- nodesPerSecond: the most Node creations per second for this pool (default 50),
  so a large scale-up does not flood the API server
- region, zones: topology labels; zones is a comma list used round-robin
  (default us-central1, us-central1-a)

kwok (run by `shipyard dev up`) plays every Node carrying its annotation, so created
nodes turn Ready on their own. Deleting the Node object is all a delete needs.
"""

from __future__ import annotations

import asyncio
import builtins
import random
import secrets
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shipyard.api.vocab import ANNOTATION_EARMARK, LABEL_NODEPOOL
from shipyard.dev.pools import LABEL_REGION, LABEL_ZONE, machine_node
from shipyard.kube.api import ApiClient
from shipyard.kube.errors import AlreadyExists, ApiError
from shipyard.kube.resources import NODES
from shipyard.providers.base import (
    ProviderResult,
    is_live,
    machine_type_for,
    pool_selector,
)
from shipyard.spec.machines import MachineType
from shipyard.spec.nodepool import NodePool

# Like the suffix of a generateName: no vowels (no words), no look-alikes.
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SUFFIX = 10  # 27**10: a collision in a 10,000-node pool is about one in 10^7


DEFAULT_ZONES = ("us-central1-a",)


@dataclass(frozen=True, slots=True)
class KwokConfig:
    delay_s: float = 0.0
    failure_rate: float = 0.0
    fail: str = "false"
    nodes_per_second: float = 50.0
    region: str = "us-central1"
    zones: tuple[str, ...] = DEFAULT_ZONES

    @classmethod
    def parse(cls, pool: NodePool) -> KwokConfig:
        """Read provider_config; a bad value gets an error naming the key and the fix."""
        c = pool.provider_config
        known = {"provisioningDelay", "failureRate", "fail", "nodesPerSecond", "region", "zones"}
        unknown = sorted(set(c) - known)
        if unknown:
            raise ValueError(f"nodepool {pool.name}: unknown kwok provider_config {unknown}; "
                             f"known: {sorted(known)}")
        delay = _number(pool, "provisioningDelay", "0", lo=0)
        rate = _number(pool, "failureRate", "0", lo=0, hi=1)
        nps = _number(pool, "nodesPerSecond", "50", lo=0.001)
        fail = c.get("fail", "false").lower()
        if fail not in ("true", "false", "reject"):
            raise ValueError(f"nodepool {pool.name}: provider_config fail={c['fail']!r}; "
                             "use true (nodes fail to appear), reject (requests refused) or false")
        zones = tuple(z.strip() for z in c.get("zones", "us-central1-a").split(",") if z.strip())
        return cls(delay, rate, fail, nps, c.get("region", "us-central1"), zones or DEFAULT_ZONES)


def _number(pool: NodePool, key: str, default: str, *, lo: float, hi: float | None = None) -> float:
    raw = pool.provider_config.get(key, default)
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value >= lo and (hi is None or value <= hi)):  # also rejects NaN
        bound = f"between {lo:g} and {hi:g}" if hi is not None else f"at least {lo:g}"
        raise ValueError(f"nodepool {pool.name}: provider_config {key}={raw!r} must be a number {bound}")
    return value


class _Pacer:
    """Spaces calls at most `rate` per second; reservations are synchronous, so
    concurrent tasks on one event loop need no lock."""

    def __init__(self) -> None:
        self._next = 0.0

    async def wait(self, rate: float) -> None:
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next)
        self._next = slot + 1.0 / rate
        if slot > now:
            await asyncio.sleep(slot - now)


class KwokProvider:
    def __init__(self, client: ApiClient, machine_types: Mapping[str, MachineType] | None = None,
                 rng: random.Random | None = None) -> None:
        self.client = client
        self.machine_types = machine_types
        self.rng = rng or random.Random()
        self._pending: dict[str, dict[str, asyncio.Task[None]]] = defaultdict(dict)
        self._failures: dict[str, list[str]] = defaultdict(list)
        self._pacers: dict[str, _Pacer] = defaultdict(_Pacer)
        self._zone_turn: dict[str, int] = defaultdict(int)
        self._posting: set[str] = set()  # names whose POST is in flight

    async def create(self, pool: NodePool, count: int, *, earmark: str | None = None) -> ProviderResult:
        try:
            cfg = KwokConfig.parse(pool)
            mt = machine_type_for(pool, self.machine_types)
        except ValueError as exc:
            return ProviderResult(False, error=str(exc))
        if count <= 0:
            return ProviderResult(True)
        if cfg.fail == "reject":
            return ProviderResult(False, error=(
                f"nodepool {pool.name}: simulated cloud refused {count} x {mt.name}: "
                "quota exceeded (provider_config fail=reject)"))
        names = []
        for _ in range(count):
            name = self._name(pool)
            zone = cfg.zones[self._zone_turn[pool.name] % len(cfg.zones)]
            self._zone_turn[pool.name] += 1
            body = machine_node(
                mt, name,
                topology={LABEL_REGION: cfg.region, LABEL_ZONE: zone},
                labels={LABEL_NODEPOOL: pool.name},
                annotations={ANNOTATION_EARMARK: earmark} if earmark else None,
            )
            task = asyncio.create_task(self._provision(pool.name, name, zone, mt.name, body, cfg),
                                       name=f"kwok-provision-{name}")
            self._pending[pool.name][name] = task
            names.append(name)
        return ProviderResult(True, tuple(names))

    async def delete(self, pool: NodePool, nodes: Sequence[str]) -> ProviderResult:
        """Delete the pool's Node objects; a still-pending request is cancelled instead.
        A node of another pool is never touched (it is named in the error)."""
        gone: list[str] = []
        wanted: list[str] = []
        settled: set[str] = set()  # requests that were in flight: absent now means never made
        pending = self._pending[pool.name]
        for name in nodes:
            task = pending.get(name)
            if task is None:
                wanted.append(name)
            elif name in self._posting:
                # Cancelling a POST on the wire could still leave the node behind: let
                # it land, then delete it like any other.
                await asyncio.wait([task])
                wanted.append(name)
                settled.add(name)
            else:
                del pending[name]
                task.cancel()
                gone.append(name)
        errors = []
        try:
            members: set[str] = set(await self._names(pool)) if wanted else set()
        except ApiError as exc:
            return ProviderResult(False, tuple(gone), f"nodepool {pool.name}: listing nodes: {exc}")
        for name in wanted:
            if name not in members:
                if name in settled:
                    gone.append(name)
                else:
                    errors.append(f"{name} is not a node of pool {pool.name}")
                continue
            try:
                await self.client.delete(NODES, name)  # a node already gone counts as deleted
            except ApiError as exc:
                errors.append(f"deleting {name}: {exc}")
                continue
            gone.append(name)
        return ProviderResult(not errors, tuple(gone), "; ".join(errors))

    def provisioning(self, pool: NodePool) -> int:
        return len(self._pending.get(pool.name, ()))

    def take_failures(self, pool: NodePool) -> list[str]:
        return self._failures.pop(pool.name, [])

    async def aclose(self) -> None:
        tasks = [t for pending in self._pending.values() for t in pending.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pending.clear()

    async def list(self, pool: NodePool) -> list[str]:
        return await self._names(pool)

    # -- internals --------------------------------------------------------------

    async def _names(self, pool: NodePool) -> builtins.list[str]:
        items, _ = await self.client.list(NODES, label_selector=pool_selector(pool))
        return sorted(n["metadata"]["name"] for n in items if is_live(n))

    def _name(self, pool: NodePool) -> str:
        # Node names are also hostname label values: at most 63 characters.
        prefix = pool.name[: 63 - _SUFFIX - 1].rstrip("-")
        return f"{prefix}-{''.join(secrets.choice(_ALPHABET) for _ in range(_SUFFIX))}"

    async def _provision(self, pool: str, name: str, zone: str, machine: str, body: dict,
                         cfg: KwokConfig) -> None:
        try:
            if cfg.delay_s:
                await asyncio.sleep(cfg.delay_s)
            if cfg.fail == "true" or self.rng.random() < cfg.failure_rate:
                self._failures[pool].append(
                    f"nodepool {pool}: node {name} failed to provision: simulated cloud error: "
                    f"insufficient capacity for {machine} in zone {zone}")
                return
            await self._pacers[pool].wait(cfg.nodes_per_second)
            self._posting.add(name)
            try:
                await self.client.create(NODES, body)
            except AlreadyExists:
                self._failures[pool].append(f"nodepool {pool}: node name {name} already taken")
            except ApiError as exc:
                self._failures[pool].append(f"nodepool {pool}: creating node {name}: {exc}")
        finally:
            self._posting.discard(name)
            pending = self._pending.get(pool)
            if pending is not None and pending.get(name) is asyncio.current_task():
                del pending[name]
