"""The snapshot the policy decides over: plain, immutable data, no I/O.

Every adapter (a live cluster's watch caches, the local machine, the simulator)
builds one of these; every policy function takes one and returns decisions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Resources:
    """Integers only (millicores, bytes, whole GPUs) so arithmetic is exact."""

    cpu_milli: int = 0
    memory: int = 0
    gpus: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.cpu_milli + other.cpu_milli, self.memory + other.memory, self.gpus + other.gpus
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            self.cpu_milli - other.cpu_milli, self.memory - other.memory, self.gpus - other.gpus
        )

    def scaled(self, k: int) -> Resources:
        return Resources(self.cpu_milli * k, self.memory * k, self.gpus * k)

    def fits_in(self, free: Resources) -> bool:
        return (
            self.cpu_milli <= free.cpu_milli
            and self.memory <= free.memory
            and self.gpus <= free.gpus
        )

    def describe(self) -> str:
        cpu = self.cpu_milli / 1000
        gib = self.memory / 2**30
        mem = f"{gib:.3g} GiB" if gib >= 1 else f"{self.memory / 2**20:.3g} MiB"
        text = f"{cpu:g} CPU, {mem}"
        return text + (f", {self.gpus} GPU" if self.gpus else "")


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str
    value: str = ""
    effect: str = ""  # empty: tolerates every effect
    operator: str = "Equal"  # or "Exists"

    def tolerates(self, taint: Taint) -> bool:
        if self.key and self.key != taint.key:
            return False
        if self.effect and self.effect != taint.effect:
            return False
        return self.operator == "Exists" or self.value == taint.value


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    allocatable: Resources
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    # Requests of pods already bound here (ours and anyone else's).
    used: Resources = Resources()
    ready: bool = True
    schedulable: bool = True

    @property
    def free(self) -> Resources:
        return self.allocatable - self.used


@dataclass(frozen=True, slots=True)
class Member:
    """One pod of a gang: a replica of a role."""

    role: str
    index: int
    request: Resources
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"


@dataclass(frozen=True, slots=True)
class Gang:
    """An experiment waiting to run: all members start together or none does."""

    key: str  # unique: namespace/name on a cluster, the run id locally
    queue: str
    priority: int
    submitted_at: float
    members: tuple[Member, ...]
    time_limit_s: float | None = None

    @property
    def total(self) -> Resources:
        total = Resources()
        for m in self.members:
            total = total + m.request
        return total


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The world at one instant, as the policy sees it."""

    nodes: tuple[Node, ...]
    pending: tuple[Gang, ...] = ()
    now: float = 0.0


@dataclass(frozen=True, slots=True)
class Admission:
    """Decision: start this gang with each member on the named node."""

    gang: str
    placement: Mapping[str, str]  # member name -> node name


@dataclass(frozen=True, slots=True)
class Waiting:
    """Decision: keep this gang queued; `reason` is for a person to act on."""

    gang: str
    position: int  # 1-based, in scheduling order
    reason: str


@dataclass(frozen=True, slots=True)
class CycleResult:
    admitted: tuple[Admission, ...]
    waiting: tuple[Waiting, ...]
