"""GPU-hour accounting: what each (queue, namespace) used and what it cost. Plain data.

The controller integrates, every cycle, the resources of the pods that are Running
over the time since the last cycle (`Accountant.step`). Totals only ever grow (they
are Prometheus counters); coarse buckets give `shipyard usage --since`: hourly for
`HOURLY_KEEP_S`, then merged into daily ones kept for `DAILY_KEEP_S`, so the ledger
stays bounded (at most 192 hourly + 92 daily buckets per key) however long it runs.
Across keys it is bounded too: stored, it stays under MAX_LEDGER_BYTES (a ConfigMap
holds at most 1 MiB) by folding the hours of days before today into days early, then
dropping the oldest days, then folding today's hours; the totals are always kept, so
only the reach and resolution of `--since` shrink.

Node-seconds charge a pod its dominant fraction of its node (8 of 8 GPUs: 1 node;
2 of 8: 0.25), and cost is node-seconds times the node's price: a team pays for
the part of the machine it kept others from using.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from shipyard.core.model import Resources
from shipyard.spec.machines import DEFAULT_MACHINE_TYPES, LABEL_INSTANCE_TYPE, MachineType

HOUR, DAY = 3600, 86400
MAX_LEDGER_BYTES = 512 * 1024  # as stored: compact JSON (usage_store.py)
HOURLY_KEEP_S = 8 * DAY
DAILY_KEEP_S = 92 * DAY
FIELDS = ("gpu_seconds", "cpu_seconds", "node_seconds", "cost")
Key = tuple[str, str]  # (queue, namespace)


@dataclass(frozen=True, slots=True)
class Amount:
    gpu_seconds: float = 0.0
    cpu_seconds: float = 0.0  # core-seconds
    node_seconds: float = 0.0
    cost: float = 0.0  # in the catalog's currency (cost_per_hour)

    def __add__(self, other: Amount) -> Amount:
        return Amount(*(a + b for a, b in zip(self.values(), other.values(), strict=True)))

    def scaled(self, k: float) -> Amount:
        return Amount(*(a * k for a in self.values()))

    def values(self) -> tuple[float, float, float, float]:
        return (self.gpu_seconds, self.cpu_seconds, self.node_seconds, self.cost)

    def to_data(self) -> list[float]:
        return [round(v, 3) for v in self.values()]

    @classmethod
    def from_data(cls, data: Iterable[float]) -> Amount:
        values = [float(v) for v in data][: len(FIELDS)]
        if len(values) != len(FIELDS) or not all(math.isfinite(v) and v >= 0 for v in values):
            raise ValueError(f"bad usage amount {values!r}")
        return cls(*values)


@dataclass(frozen=True, slots=True)
class PodUse:
    """One Running pod: who it is for and what of which node it holds."""

    queue: str
    namespace: str
    request: Resources
    node_allocatable: Resources
    node_cost_per_hour: float


def node_price(labels: Mapping[str, str],
               catalog: Mapping[str, MachineType] = DEFAULT_MACHINE_TYPES) -> float:
    """Per hour, from the node's instance-type label; 0 for a type the catalog lacks."""
    machine = catalog.get(labels.get(LABEL_INSTANCE_TYPE, ""))
    return machine.cost_per_hour if machine else 0.0


def node_fraction(request: Resources, allocatable: Resources) -> float:
    """The dominant fraction of its node a pod takes, at most 1."""
    parts = [
        request.gpus / allocatable.gpus if allocatable.gpus else 0.0,
        request.cpu_milli / allocatable.cpu_milli if allocatable.cpu_milli else 0.0,
        request.memory / allocatable.memory if allocatable.memory else 0.0,
    ]
    return min(1.0, max(parts))


def rates(pods: Iterable[PodUse]) -> dict[Key, Amount]:
    """What each key uses per second now."""
    sums: dict[Key, list[float]] = {}  # plain floats: this runs over every Running pod
    for p in pods:
        fraction = node_fraction(p.request, p.node_allocatable)
        acc = sums.setdefault((p.queue, p.namespace), [0.0, 0.0, 0.0, 0.0])
        acc[0] += p.request.gpus
        acc[1] += p.request.cpu_milli / 1000
        acc[2] += fraction
        acc[3] += fraction * p.node_cost_per_hour / HOUR
    return {key: Amount(*acc) for key, acc in sums.items()}


Buckets = dict[int, dict[Key, Amount]]


@dataclass
class Ledger:
    totals: dict[Key, Amount] = field(default_factory=dict)
    hourly: Buckets = field(default_factory=dict)  # hour start (epoch s) -> key -> amount
    daily: Buckets = field(default_factory=dict)  # day start (epoch s) -> key -> amount

    def add(self, key: Key, amount: Amount, at: float) -> None:
        self.totals[key] = self.totals.get(key, Amount()) + amount
        bucket = self.hourly.setdefault(int(at // HOUR) * HOUR, {})
        bucket[key] = bucket.get(key, Amount()) + amount

    def compact(self, now: float) -> None:
        """Merge hourly buckets older than HOURLY_KEEP_S into days; drop old days."""
        for start in [s for s in self.hourly if s < now - HOURLY_KEEP_S]:
            day = self.daily.setdefault(start // DAY * DAY, {})
            for key, amount in self.hourly.pop(start).items():
                day[key] = day.get(key, Amount()) + amount
        for start in [s for s in self.daily if s < now - DAILY_KEEP_S]:
            del self.daily[start]

    def bound(self, max_bytes: int = MAX_LEDGER_BYTES) -> None:
        """Under `max_bytes` stored (`stored_text`), the oldest history going first: the
        hours of days before the newest become daily buckets (oldest day first), then
        the oldest days go, then the newest day's hours are folded too (first, if they
        alone are over). The totals stay (they alone may be over)."""
        sizes = {("h", t): _size(b) for t, b in self.hourly.items()}
        sizes |= {("d", t): _size(b) for t, b in self.daily.items()}
        envelope = len(json.dumps(Ledger().to_data(), separators=(",", ":")))
        total = envelope + _size(self.totals) + sum(sizes.values())  # at most this, stored
        today = max(self.hourly, default=0) // DAY * DAY
        today_alone = envelope + _size(self.totals) + sum(
            n for (kind, t), n in sizes.items() if kind == "h" and t >= today)
        while total > max_bytes and (self.hourly or self.daily):
            oldest_hours = min(self.hourly, default=None)
            if oldest_hours is not None and (oldest_hours < today or not self.daily
                                             or today_alone > max_bytes):
                day = oldest_hours // DAY * DAY
                bucket = self.daily.setdefault(day, {})
                total -= sizes.pop(("d", day), 0)
                for start in [t for t in self.hourly if t // DAY * DAY == day]:
                    total -= sizes.pop(("h", start))
                    for key, amount in self.hourly.pop(start).items():
                        bucket[key] = bucket.get(key, Amount()) + amount
                sizes["d", day] = _size(bucket)
                total += sizes["d", day]
            else:
                oldest = min(self.daily)
                del self.daily[oldest]
                total -= sizes.pop(("d", oldest))

    def since(self, cutoff: float) -> dict[Key, Amount]:
        """Usage in the buckets that begin at or after the bucket holding `cutoff`
        (to the hour while hourly buckets reach back that far, else to the day)."""
        out: dict[Key, Amount] = {}
        hour, day = int(cutoff // HOUR) * HOUR, int(cutoff // DAY) * DAY
        chosen = [b for s, b in self.hourly.items() if s >= hour]
        chosen += [b for s, b in self.daily.items() if s >= day]
        for bucket in chosen:
            for key, amount in bucket.items():
                out[key] = out.get(key, Amount()) + amount
        return out

    @property
    def oldest(self) -> float | None:
        starts = [*self.hourly, *self.daily]
        return float(min(starts)) if starts else None

    def stored_text(self, max_bytes: int = MAX_LEDGER_BYTES) -> str:
        """The stored form (compact JSON), under `max_bytes`: `bound` only when over, so
        a ledger within it costs one serialization, as before."""
        text = json.dumps(self.to_data(), separators=(",", ":"))
        if len(text) > max_bytes:
            self.bound(max_bytes)
            text = json.dumps(self.to_data(), separators=(",", ":"))
        return text

    def to_data(self) -> dict[str, object]:
        return {"version": 1, "fields": list(FIELDS), "totals": _keyed(self.totals),
                "hourly": {str(s): _keyed(b) for s, b in sorted(self.hourly.items())},
                "daily": {str(s): _keyed(b) for s, b in sorted(self.daily.items())}}

    @classmethod
    def from_data(cls, data: Mapping[str, object]) -> Ledger:
        if data.get("version") != 1:
            raise ValueError(f"unknown usage ledger version {data.get('version')!r}")
        return cls(_unkeyed(data.get("totals")),
                   {int(s): _unkeyed(b) for s, b in _mapping(data.get("hourly")).items()},
                   {int(s): _unkeyed(b) for s, b in _mapping(data.get("daily")).items()})


def _size(amounts: Mapping[Key, Amount]) -> int:
    """Bytes of one bucket (or the totals) in the stored JSON, its own key included."""
    return len(json.dumps(_keyed(amounts), separators=(",", ":"))) + 14


def _keyed(amounts: Mapping[Key, Amount]) -> dict[str, list[float]]:
    # "queue/namespace": both are DNS labels, so "/" never appears in either.
    return {f"{q}/{ns}": a.to_data() for (q, ns), a in sorted(amounts.items())}


def _mapping(data: object) -> Mapping[str, object]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ValueError(f"expected a mapping, got {type(data).__name__}")
    return data


def _unkeyed(data: object) -> dict[Key, Amount]:
    out: dict[Key, Amount] = {}
    for text, values in _mapping(data).items():
        queue, _, namespace = text.partition("/")
        if not isinstance(values, list):
            raise ValueError(f"bad usage amount for {text!r}")
        out[(queue, namespace)] = Amount.from_data(values)
    return out


class Accountant:
    """Integrates piecewise-constant rates: each step charges the rates set at the
    previous step for the time since. A step after a long gap (a standby taking over,
    a stalled loop) charges at most `max_gap_s`, so nothing is billed twice or for a
    time no one watched."""

    def __init__(self, ledger: Ledger | None = None, max_gap_s: float = 60.0) -> None:
        self.ledger = ledger or Ledger()
        self.max_gap_s = max_gap_s
        self.current: dict[Key, Amount] = {}
        self.last_at: float | None = None

    def step(self, now: float, current: dict[Key, Amount]) -> None:
        if self.last_at is not None and now > self.last_at:
            dt = min(now - self.last_at, self.max_gap_s)
            for key, rate in self.current.items():
                self.ledger.add(key, rate.scaled(dt), now)
        if self.last_at is None or now > self.last_at:
            self.last_at = now
        self.current = current


@dataclass(frozen=True, slots=True)
class ReportRow:
    queue: str
    namespace: str
    used: Amount
    gpu_share: float  # of all GPU-seconds in the report
    cost_share: float


def report(amounts: Mapping[Key, Amount], by: str = "queue") -> list[ReportRow]:
    """Rows per queue ("queue"), per namespace ("namespace") or per both ("both"),
    largest cost first, with each row's share of the GPU-seconds and of the cost."""
    grouped: dict[Key, Amount] = {}
    for (queue, namespace), amount in amounts.items():
        key = {"queue": (queue, ""), "namespace": ("", namespace)}.get(by, (queue, namespace))
        grouped[key] = grouped.get(key, Amount()) + amount
    total = sum(grouped.values(), Amount())
    rows = [ReportRow(q, ns, a, a.gpu_seconds / total.gpu_seconds if total.gpu_seconds else 0.0,
                      a.cost / total.cost if total.cost else 0.0)
            for (q, ns), a in grouped.items()]
    return sorted(rows, key=lambda r: (-r.used.cost, -r.used.gpu_seconds, r.queue, r.namespace))


def running_uses(pods_of: Mapping[str, Mapping[str, Any]], queue_of: Mapping[str, str],
                 nodes: Mapping[str, Any]) -> Iterator[PodUse]:
    """The Running pods of the controller's caches as PodUse (duck-typed PodView with
    `.phase`, `.node`, `.namespace`, `.request`; Node with `.allocatable`, `.labels`).
    `queue_of`: experiment key -> its queue; pods of unknown experiments are skipped."""
    for key, pods in list(pods_of.items()):
        queue = queue_of.get(key)
        if queue is None:
            continue
        for pod in list(pods.values()):
            node = nodes.get(pod.node) if pod.node else None
            if pod.phase == "Running" and node is not None:
                yield PodUse(queue, pod.namespace, pod.request, node.allocatable,
                             node_price(node.labels))
