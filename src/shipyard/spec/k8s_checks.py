"""The checks that span fields and that the API server would make on the rendered objects:
label and annotation keys, env names, mounts of defined volumes, extended resources,
/dev/shm sizes. Each problem is 'path: must be <rule>, got <value>' (k8s_names)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from shipyard.spec.inputs import clip, short
from shipyard.spec.k8s_names import (
    TOTAL_ANNOTATION_BYTES,
    annotation_key,
    env_name,
    extended_resource,
    label_value,
    qualified_name,
)
from shipyard.spec.machines import RESOURCE_GPU
from shipyard.spec.podspec import RESERVED_MOUNT_PATHS, SHM_PATH
from shipyard.spec.quantity import MAX_INT64

if TYPE_CHECKING:
    from shipyard.spec.experiment import Experiment, Role

# Room kept in a pod's annotations for shipyard's own (rank, stop reason, attempt).
SHIPYARD_ANNOTATION_BYTES = 4096
USER_ANNOTATION_BYTES = TOTAL_ANNOTATION_BYTES - SHIPYARD_ANNOTATION_BYTES
# An extended resource is counted in whole units; its quantity in milli-units must fit int64.
MAX_EXTRA_UNITS = MAX_INT64 // 1000
# A GPU role's default /dev/shm: this share of the replica's memory (DataLoader workers
# hand batches over through it; NCCL keeps its intra-node buffers there).
SHM_MEMORY_SHARE = 4


def kubernetes_problems(exp: Experiment) -> Iterator[str]:
    yield from label_problems("labels", exp.labels)
    names = [v.name for v in exp.volumes]
    for i, name in enumerate(names):
        if name in names[:i]:
            yield f"volumes[{i}].name: duplicate volume name {short(name)}; give each volume its own name"
    for i, role in enumerate(exp.roles):
        yield from _role_problems(exp, f"roles[{i}]", role, set(names))
    yield from _checkpoint_problems(exp)


def _checkpoint_problems(exp: Experiment) -> Iterator[str]:
    """The checkpoint volume is mounted in every container (render/runtime.py): its path
    must not be one of shipyard's own, nor another volume's mount."""
    checkpoint = getattr(exp, "checkpoint", None)
    if checkpoint is None:
        return
    path = checkpoint.path.rstrip("/") or "/"
    if path in RESERVED_MOUNT_PATHS or (path == SHM_PATH and any(shm_bytes(exp, r) for r in exp.roles)):
        yield (f"checkpoint.path: {short(checkpoint.path)} is where shipyard mounts its own volume; "
               "pick another path")
    for i, role in enumerate(exp.roles):
        for j, mount in enumerate(role.mounts):
            if (mount.path.rstrip("/") or "/") == path and mount.volume != checkpoint.volume:
                yield (f"roles[{i}].mounts[{j}].path: {short(mount.path)} is checkpoint.path, where "
                       f"volume {checkpoint.volume!r} is mounted; pick another path")


def label_problems(path: str, labels: Mapping[str, str]) -> Iterator[str]:
    for key, value in labels.items():
        if (problem := qualified_name(key)) is not None:
            yield f"{path}.{clip(key, 60)}: the key {problem}"
        elif (problem := label_value(value)) is not None:
            yield f"{path}.{key}: the value {problem}"


def _role_problems(exp: Experiment, at: str, role: Role, volumes: set[str]) -> Iterator[str]:
    for key in role.annotations:
        if (problem := annotation_key(key)) is not None:
            yield f"{at}.annotations.{clip(key, 60)}: the key {problem}"
    size = sum(len(k) + len(v) for k, v in role.annotations.items())
    if size > USER_ANNOTATION_BYTES:
        yield (f"{at}.annotations: must be at most {USER_ANNOTATION_BYTES:,} bytes of keys and values "
               f"in all (the API server's {TOTAL_ANNOTATION_BYTES:,} less {SHIPYARD_ANNOTATION_BYTES:,} "
               f"kept for shipyard's own), got {size:,}")
    for key in role.env_keys:
        if (problem := env_name(key)) is not None:
            yield f"{at}.env_keys.{clip(key, 60)}: {problem}"
        elif key in role.env:
            yield f"{at}.env_keys.{key}: also set in env; set each variable in one place"
    yield from _mount_problems(exp, at, role, volumes)
    request = exp.request(role) if exp.machine_or_none(role) is not None else None
    if role.resources is not None:
        for name, units in role.resources.extra.items():
            where = f"{at}.resources.extra.{clip(name, 60)}"
            if name == RESOURCE_GPU:
                yield f"{where}: GPUs are asked for with resources.gpus; move it there"
            elif (problem := extended_resource(name)) is not None:
                yield f"{where}: {problem}"
            elif isinstance(units, int) and not 0 <= units <= MAX_EXTRA_UNITS:
                yield f"{where}: must be a whole number in 0..{MAX_EXTRA_UNITS}, got {short(units)}"
    if role.host_network and role.resources is not None and not role.resources.whole_machine:
        yield (f"{at}.host_network: a host-network replica must take the whole machine (two on one "
               "node would want the same port); leave out resources.cpu and resources.memory")
    if request is not None and role.shm_size is not None and role.shm_size > request.memory:
        yield (f"{at}.shm_size: /dev/shm is memory the replica uses, so at most its memory "
               f"({request.memory} bytes), got {short(role.shm_size)}")


def _mount_problems(exp: Experiment, at: str, role: Role, volumes: set[str]) -> Iterator[str]:
    reserved = set(RESERVED_MOUNT_PATHS)
    if shm_bytes(exp, role):
        reserved.add(SHM_PATH)
    seen: dict[str, int] = {}
    for j, mount in enumerate(role.mounts):
        where = f"{at}.mounts[{j}]"
        if mount.volume not in volumes:
            known = f"one of {', '.join(sorted(volumes))}" if volumes else "a volume defined under volumes"
            yield f"{where}.volume: no volume named {short(mount.volume)}; use {known}"
        path = mount.path.rstrip("/") or "/"
        if path in seen:
            yield (f"{where}.path: {short(mount.path)} is also mounts[{seen[path]}]'s; "
                   "give each mount its own path")
        elif path in reserved:
            yield (f"{where}.path: {short(mount.path)} is where shipyard mounts its own volume; "
                   "pick another path" + (" (or set shm_size)" if path == SHM_PATH else ""))
        seen.setdefault(path, j)


def shm_bytes(exp: Experiment, role: Role) -> int:
    """The size of the role's /dev/shm emptyDir, 0 for none (the runtime's 64 MiB)."""
    if role.shm_size is not None:
        return role.shm_size
    machine = exp.machine_or_none(role)
    if machine is None:
        return 0
    request = exp.request(role)
    # Whole MiB, so the rendered sizeLimit reads well.
    return request.memory // SHM_MEMORY_SHARE >> 20 << 20 if request.gpus else 0
