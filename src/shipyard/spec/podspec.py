"""What a replica needs besides its program: volumes and mounts, credentials from
Secrets and ConfigMaps, the identity it runs as. Rendered into the pod by render/pod_extras.py."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from shipyard.spec.k8s_names import (
    MAX_ID,
    AbsolutePath,
    ConfigKey,
    Dns1123Label,
    Dns1123Subdomain,
    EnvName,
    HostName,
    RelativePath,
)
from shipyard.spec.machines import MemoryBytes, StrictModel

# Pod volumes and containers shipyard adds itself (the /dev/shm emptyDir, the init
# container that unpacks a shipped workdir) start with this.
RESERVED_VOLUME_PREFIX = "shipyard-"
SHM_PATH = "/dev/shm"
# Where shipyard mounts its own volumes in every container (render/runtime.py).
RESERVED_MOUNT_PATHS = ("/etc/shipyard", "/shipyard/workdir", "/shipyard/code")
PullPolicy = Literal["Always", "IfNotPresent", "Never"]


def _exactly_one(model: StrictModel, fields: tuple[str, ...]) -> None:
    given = [f for f in fields if getattr(model, f) is not None]
    if len(given) != 1:
        said = f"got {', '.join(given)}" if given else "got none"
        raise ValueError(f"give exactly one of {', '.join(fields)}; {said}")


class NfsSource(StrictModel):
    server: HostName
    path: AbsolutePath


class EmptyDirSource(StrictModel):
    # Unset: as large as the node's disk allows (counted as the pod's ephemeral storage).
    size_limit: MemoryBytes | None = Field(default=None, gt=0)


class Volume(StrictModel):
    """Storage a role can mount: exactly one of a claim, NFS, a node path, a scratch
    directory, or the files of a Secret."""

    name: Dns1123Label
    pvc: Dns1123Subdomain | None = None  # a PersistentVolumeClaim in the namespace
    nfs: NfsSource | None = None
    host_path: AbsolutePath | None = None  # a directory on the node (on-prem datasets)
    empty_dir: EmptyDirSource | None = None  # per pod; locally, per run
    secret: Dns1123Subdomain | None = None  # each key a file, read-only

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        _exactly_one(self, VOLUME_SOURCES)
        if self.name.startswith(RESERVED_VOLUME_PREFIX):
            raise ValueError(f"volume names starting with {RESERVED_VOLUME_PREFIX!r} are shipyard's own; "
                             f"rename {self.name!r}")
        return self

    @property
    def kind(self) -> str:
        return next(f for f in VOLUME_SOURCES if getattr(self, f) is not None)


VOLUME_SOURCES = ("pvc", "nfs", "host_path", "empty_dir", "secret")


class Mount(StrictModel):
    """One of the experiment's volumes at `path` in every replica of a role."""

    volume: str = Field(min_length=1)
    path: AbsolutePath
    read_only: bool = False
    sub_path: RelativePath | None = None  # mount only this folder of the volume


class EnvFrom(StrictModel):
    """Every key of a Secret or ConfigMap as an environment variable (with `prefix`)."""

    secret: Dns1123Subdomain | None = None
    config_map: Dns1123Subdomain | None = None
    prefix: EnvName | None = None
    optional: bool = False  # true: start even if it does not exist

    @model_validator(mode="after")
    def _one_source(self) -> EnvFrom:
        _exactly_one(self, ("secret", "config_map"))
        return self


class EnvKey(StrictModel):
    """One environment variable's value from one key of a Secret or ConfigMap."""

    secret: Dns1123Subdomain | None = None
    config_map: Dns1123Subdomain | None = None
    key: ConfigKey
    optional: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> EnvKey:
        _exactly_one(self, ("secret", "config_map"))
        return self


class SecurityContext(StrictModel):
    """Who the processes run as, and the group that owns mounted volumes (fs_group)."""

    run_as_user: int | None = Field(default=None, ge=0, le=MAX_ID)
    run_as_group: int | None = Field(default=None, ge=0, le=MAX_ID)
    fs_group: int | None = Field(default=None, ge=0, le=MAX_ID)
