"""The experiment a researcher describes: roles, replicas, machine types, queue, retries."""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, model_validator

from shipyard.spec.inputs import clip, short
from shipyard.spec.k8s_checks import kubernetes_problems
from shipyard.spec.k8s_names import (
    DNS1035_PATTERN,
    DNS1123_LABEL_PATTERN,
    Dns1123Label,
    Dns1123Subdomain,
    ImageName,
    QualifiedName,
    absolute_path,
    checked,
    dns1035_label,
    dns1123_label,
    env_name,
)
from shipyard.spec.machines import (
    DEFAULT_MACHINE_TYPES,
    CpuMilli,
    MachineType,
    MemoryBytes,
    StrictModel,
)
from shipyard.spec.podspec import (
    RESERVED_VOLUME_PREFIX,
    EnvFrom,
    EnvKey,
    Mount,
    PullPolicy,
    SecurityContext,
    Volume,
)
from shipyard.spec.quantity import MAX_SECONDS, parse_duration_seconds

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# <experiment>-<role>-<index> is a pod's host name (a DNS label): room for both and an index.
if TYPE_CHECKING:  # checked() builds these types at run time; their values are str
    ExperimentName = str
    RoleName = str
    CheckpointPath = str
else:
    ExperimentName = checked(dns1035_label, 40, DNS1035_PATTERN)
    RoleName = checked(dns1123_label, 30, DNS1123_LABEL_PATTERN)
    # A mount path (k8s_names.absolute_path), at most PATH_MAX characters.
    CheckpointPath = checked(absolute_path, 4096)
DEFAULT_IMAGE = "python:3.11-slim"
DEFAULT_PORT = 29500
# A pod name is also its host name, so <experiment>-<role>-<index> must be a DNS label.
MAX_HOSTNAME = 63
NO_NUL = ", which no process can be given; remove it"


def _split_command(value: object) -> object:
    # "python train.py --lr 3e-4" is friendlier than a list; keep lists as they are.
    return shlex.split(value) if isinstance(value, str) else value


def _one_workdir_error(value: object) -> object:
    # One message instead of pydantic's one per member of the union.
    if value is None or value is False or isinstance(value, str):
        return value
    raise ValueError(f"must be a folder's path, or false to ship nothing, got {short(value)}")


Command = Annotated[list[str], BeforeValidator(_split_command), Field(min_length=1)]
Seconds = Annotated[float, BeforeValidator(parse_duration_seconds)]
OptionalSeconds = Annotated[
    float | None,
    BeforeValidator(lambda v: None if v is None else parse_duration_seconds(v)),
    PlainSerializer(lambda v: v, return_type=float | None),
]


@dataclass(frozen=True, slots=True)
class Request:
    """What one replica asks for, every amount known: `Resources` as given, or the
    machine's allocatable for what it leaves out."""

    cpu: int  # millicores
    memory: int  # bytes
    gpus: int
    extra: Mapping[str, int] = field(default_factory=dict)


class Resources(StrictModel):
    """What one replica requests, when it does not take the whole machine. Without cpu and
    memory it takes the whole machine (and its GPUs) and adds only `extra`."""

    cpu: CpuMilli | None = Field(default=None, gt=0)
    memory: MemoryBytes | None = Field(default=None, gt=0)
    gpus: int | None = Field(default=None, ge=0, le=64)
    # Extended resources per replica, e.g. {"rdma/hca": 1}: requests = limits.
    extra: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _cpu_and_memory_together(self) -> Resources:
        if (self.cpu is None) != (self.memory is None):
            raise ValueError("give both cpu and memory, or neither (the whole machine)")
        return self

    @property
    def whole_machine(self) -> bool:
        return self.cpu is None


class RetryPolicy(StrictModel):
    """A failed replica stops the whole gang; this decides whether it starts again."""

    max_restarts: int = Field(default=0, ge=0, le=1000)
    backoff_seconds: float = Field(default=10.0, ge=0, le=MAX_SECONDS)
    max_backoff_seconds: float = Field(default=300.0, ge=0, le=MAX_SECONDS)

    def backoff(self, restart: int) -> float:
        """Seconds to wait before restart number `restart` (1-based): doubling, capped."""
        return min(self.backoff_seconds * 2.0 ** max(restart - 1, 0), self.max_backoff_seconds)


class Role(StrictModel):
    """A group of identical replicas, each one machine (pod) of `machine_type`."""

    name: RoleName
    replicas: int = Field(default=1, ge=1, le=10000)
    machine_type: str = Field(min_length=1)
    command: Command
    image: ImageName = DEFAULT_IMAGE
    image_pull_policy: PullPolicy | None = None  # unset: the cluster's default
    env: dict[str, str] = Field(default_factory=dict)
    # Every key of Secrets / ConfigMaps as variables, and single keys by variable name.
    env_from: list[EnvFrom] = Field(default_factory=list)
    env_keys: dict[str, EnvKey] = Field(default_factory=dict)
    # The experiment's volumes this role sees, and the size of its /dev/shm (None: a
    # quarter of the replica's memory for a GPU role, the runtime's 64 MiB otherwise;
    # 0: the runtime's).
    mounts: list[Mount] = Field(default_factory=list)
    shm_size: MemoryBytes | None = None
    # The node's network (fabrics that need it): the replica takes the whole machine.
    host_network: bool = False
    # Extra pod annotations (sidecar settings, or kwok's simulated training time).
    annotations: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    # Processes per replica (torchrun's --nproc-per-node), usually one per GPU.
    procs_per_replica: int = Field(default=1, ge=1, le=64)
    # Defaults to the whole machine type; set it to pack several replicas on one node.
    resources: Resources | None = None
    # Non-distributed roles (a tensorboard, an evaluator) get no rank.
    distributed: bool = True
    port: int = Field(default=DEFAULT_PORT, ge=1024, le=65535)


class Topology(StrictModel):
    """Keep an experiment's pods inside one topology domain (a rack, a block) of nodes."""

    # A node label whose value names the domain, e.g. topology.shipyard.dev/block.
    key: QualifiedName
    # True: wait until one domain can hold the whole experiment. False: prefer one.
    required: bool = False


class Checkpoint(StrictModel):
    """Where every attempt saves and finds its checkpoints: SHIPYARD_CHECKPOINT_DIR."""

    # A volume of `volumes` (a PersistentVolumeClaim, NFS...): what outlives a pod.
    volume: Dns1123Label
    # Where it is mounted in every replica, the same on every attempt and after a move:
    # a mount path, so the same rule as a mount's.
    path: CheckpointPath = "/shipyard/checkpoint"


# The most a pod may ask to be waited for between SIGTERM and SIGKILL (one day).
MAX_STOP_GRACE_S = 86400


class Experiment(StrictModel):
    """Everything shipyard needs to run one experiment anywhere: locally or on a cluster."""

    # It names the headless Service too: a DNS-1035 label (starts with a letter).
    name: ExperimentName
    roles: list[Role] = Field(min_length=1)
    namespace: Dns1123Label = "default"
    queue: Dns1123Label = "default"  # also a label value on every pod
    priority: int = Field(default=0, ge=-1000, le=1000)
    time_limit: OptionalSeconds = None
    # No shipyard.progress report and no log line from any rank for this long -> Stalled, then on_hang.
    hang_timeout: OptionalSeconds = None
    on_hang: Literal["restart", "fail", "notify"] = "notify"
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    # Extra or overriding machine types, on top of DEFAULT_MACHINE_TYPES.
    machine_types: list[MachineType] = Field(default_factory=list)
    # The experiment succeeds when every replica of these roles exits 0 (default: all).
    success_roles: list[str] | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    topology: Topology | None = None
    volumes: list[Volume] = Field(default_factory=list)
    service_account: Dns1123Subdomain | None = None
    image_pull_secrets: list[Dns1123Subdomain] = Field(default_factory=list)
    security_context: SecurityContext | None = None
    # The folder whose files the replicas need, shipped with the experiment to a cluster
    # (default for `launch -c FILE`: the spec file's folder; false: ship nothing).
    workdir: Annotated[str | Literal[False] | None, BeforeValidator(_one_workdir_error)] = None
    checkpoint: Checkpoint | None = None
    # Preemption, cancel, moves and the time limit send SIGTERM, wait this long, then kill.
    stop_grace_seconds: int = Field(default=30, ge=0, le=MAX_STOP_GRACE_S)

    @model_validator(mode="after")
    def _check_references(self) -> Experiment:
        problems = list(_reference_problems(self))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def catalog(self) -> dict[str, MachineType]:
        return {**DEFAULT_MACHINE_TYPES, **{m.name: m for m in self.machine_types}}

    def machine(self, role: Role) -> MachineType:
        return self.catalog()[role.machine_type]

    def machine_or_none(self, role: Role) -> MachineType | None:
        return self.catalog().get(role.machine_type)

    def request(self, role: Role) -> Request:
        """What each replica of `role` asks the scheduler for."""
        r = role.resources
        if r is not None and r.cpu is not None and r.memory is not None:
            return Request(r.cpu, r.memory, r.gpus or 0, r.extra)
        m = self.machine(role)
        return Request(m.allocatable_cpu, m.allocatable_memory,
                       m.gpus if r is None or r.gpus is None else r.gpus, r.extra if r else {})

    def role(self, name: str) -> Role:
        for role in self.roles:
            if role.name == name:
                return role
        raise KeyError(name)

    @property
    def total_replicas(self) -> int:
        return sum(r.replicas for r in self.roles)


def _reference_problems(exp: Experiment) -> Iterator[str]:
    """Checks that span fields; each problem is 'path: what is wrong and the fix'."""
    catalog = exp.catalog()
    seen: dict[str, int] = {}
    for i, role in enumerate(exp.roles):
        if role.name in seen:
            yield (
                f"roles[{i}].name: duplicate role name {short(role.name)} "
                f"(also roles[{seen[role.name]}]); give each role its own name"
            )
        seen.setdefault(role.name, i)
        if role.name.startswith(RESERVED_VOLUME_PREFIX):
            # A role's name is its container's, beside shipyard's own (the init container
            # that unpacks a shipped workdir, shipyard-unpack).
            yield (f"roles[{i}].name: role names starting with {RESERVED_VOLUME_PREFIX!r} are "
                   f"shipyard's own; rename {short(role.name)}")
        machine = catalog.get(role.machine_type)
        if machine is None:
            known = ", ".join(sorted(catalog))
            yield (
                f"roles[{i}].machine_type: unknown machine type {short(role.machine_type)}; "
                f"use one of {known}, or define it under machine_types"
            )
        elif role.resources is not None:
            r = exp.request(role)
            for field, want, have in (
                ("cpu", r.cpu, machine.allocatable_cpu),
                ("memory", r.memory, machine.allocatable_memory),
                ("gpus", r.gpus, machine.gpus),
            ):
                if want is not None and want > have:
                    yield (
                        f"roles[{i}].resources.{field}: asks for more than one "
                        f"{machine.name} has ({want} > {have}); lower it or pick a bigger machine"
                    )
        for key, value in role.env.items():
            if (problem := env_name(key)) is not None:
                yield f"roles[{i}].env.{clip(key, 60)}: {problem}"
            elif "\0" in value:
                yield f"roles[{i}].env.{key}: the value contains a NUL byte{NO_NUL}"
        yield from _command_problems(i, role)
        host = f"{exp.name}-{role.name}-{role.replicas - 1}"
        if len(host) > MAX_HOSTNAME:
            yield (
                f"roles[{i}].name: pod host name {short(host)} is longer than {MAX_HOSTNAME} "
                "characters; shorten the experiment or role name"
            )
    for i, name in enumerate(exp.success_roles or []):
        if name not in seen:
            yield (
                f"success_roles[{i}]: no role named {short(name)}; "
                f"use one of {', '.join(seen)}"
            )
    if not any(r.distributed for r in exp.roles):
        yield "roles: at least one role must be distributed (the one that owns rank 0)"
    yield from kubernetes_problems(exp)
    if isinstance(exp.workdir, str) and ("\0" in exp.workdir or not exp.workdir.strip()):
        yield f"workdir: must be a folder's path without NUL bytes, got {short(exp.workdir)}"
    volumes = [v.name for v in getattr(exp, "volumes", None) or []]
    if exp.checkpoint is not None and exp.checkpoint.volume not in volumes:
        known = f"one of {', '.join(volumes)}" if volumes else "a volume defined under volumes"
        yield (f"checkpoint.volume: no volume named {short(exp.checkpoint.volume)}; "
               f"use {known}")


def _command_problems(i: int, role: Role) -> Iterator[str]:
    if not role.command[0].strip():
        yield f"roles[{i}].command[0]: the program to run is empty; name one, e.g. [python, train.py]"
    for j, arg in enumerate(role.command):
        if "\0" in arg:
            yield f"roles[{i}].command[{j}]: contains a NUL byte{NO_NUL}"
    if role.working_dir is not None and ("\0" in role.working_dir or not role.working_dir.strip()):
        yield f"roles[{i}].working_dir: must be a path without NUL bytes, got {short(role.working_dir)}"
