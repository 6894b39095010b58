"""The distributed-training environment of every replica, the way torchrun and MPI
users expect it. One function for every backend: only the addresses differ
(DNS names on a cluster, 127.0.0.1 and free ports on the local machine)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shipyard.spec import Experiment, Role

# (role, index) -> (host, port) where that replica can be reached.
Addressing = Callable[[Role, int], tuple[str, int]]


@dataclass(frozen=True, slots=True)
class RankLayout:
    """Where each distributed replica sits in the world."""

    node_rank: dict[tuple[str, int], int]  # (role, index) -> node rank
    first_rank: dict[tuple[str, int], int]  # (role, index) -> RANK of its first process
    nnodes: int
    world_size: int
    master: tuple[str, int]  # (role, index) of rank 0


# The last few experiments' layouts: rendering n pods must not compute it n times
# (O(n^2) for a 10,000-replica gang). Keyed by identity and holding the experiment, so
# an id is never reused while cached; specs are frozen, so a layout never goes stale.
_LAYOUTS: dict[int, tuple[Experiment, RankLayout]] = {}
_LAYOUTS_MAX = 16


def rank_layout(exp: Experiment) -> RankLayout:
    cached = _LAYOUTS.get(id(exp))
    if cached is not None and cached[0] is exp:
        return cached[1]
    layout = _compute_layout(exp)
    if len(_LAYOUTS) >= _LAYOUTS_MAX:
        _LAYOUTS.pop(next(iter(_LAYOUTS)))
    _LAYOUTS[id(exp)] = (exp, layout)
    return layout


def _compute_layout(exp: Experiment) -> RankLayout:
    node_rank: dict[tuple[str, int], int] = {}
    first_rank: dict[tuple[str, int], int] = {}
    rank = 0
    for role in exp.roles:
        if not role.distributed:
            continue
        for i in range(role.replicas):
            node_rank[(role.name, i)] = len(node_rank)
            first_rank[(role.name, i)] = rank
            rank += role.procs_per_replica
    master = next(iter(node_rank))
    return RankLayout(node_rank, first_rank, len(node_rank), rank, master)


def env_key(role_name: str) -> str:
    return role_name.upper().replace("-", "_")


def pod_name(exp: Experiment, role: Role | str, index: int) -> str:
    name = role if isinstance(role, str) else role.name
    return f"{exp.name}-{name}-{index}"


# Above this many replicas in all, the per-host lists are left out of the
# environment: they grow with the gang in every pod (O(n^2) bytes: 50 KB per pod of a
# 512-replica gang, 25 MB written for the gang), and a 512-node job is not launched
# with `mpirun -H`. SHIPYARD_HOST_PATTERN_<ROLE> names every host in constant space.
HOST_LISTS_MAX_REPLICAS = 64


def replica_env(exp: Experiment, role: Role, index: int, address: Addressing,
                host_pattern: Callable[[Role], str] | None = None,
                mounts: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of replica `index` of `role`, in a stable order (user env last wins).

    `host_pattern(role)`: the host name of every replica of `role` with `{index}` in
    place of the index, where names follow a pattern (a cluster's, not the local
    machine's ports). `mounts`: volume name -> where it is, when not at its mount path
    (the local backend's folders; a volume left out gets no SHIPYARD_MOUNT_*)."""
    layout = rank_layout(exp)
    master_role = exp.role(layout.master[0])
    master_host, master_port = address(master_role, layout.master[1])
    host, port = address(role, index)
    env: dict[str, str] = {
        "SHIPYARD_EXPERIMENT": exp.name,
        "SHIPYARD_ROLE": role.name,
        "SHIPYARD_REPLICA_INDEX": str(index),
        "SHIPYARD_REPLICAS": str(role.replicas),
        "SHIPYARD_ROLES": ",".join(r.name for r in exp.roles),
        "SHIPYARD_HOST": host,
        "SHIPYARD_PORT": str(port),
        "MASTER_ADDR": master_host,
        "MASTER_PORT": str(master_port),
        "WORLD_SIZE": str(layout.world_size),
        "NNODES": str(layout.nnodes),
    }
    lists = sum(r.replicas for r in exp.roles) <= HOST_LISTS_MAX_REPLICAS or host_pattern is None
    mpi_hosts: list[str] = []
    for other in exp.roles:
        if host_pattern is not None:
            env[f"SHIPYARD_HOST_PATTERN_{env_key(other.name)}"] = host_pattern(other)
        if not lists:
            continue
        addrs = [address(other, i) for i in range(other.replicas)]
        env[f"SHIPYARD_HOSTS_{env_key(other.name)}"] = ",".join(h for h, _ in addrs)
        env[f"SHIPYARD_ADDRS_{env_key(other.name)}"] = ",".join(f"{h}:{p}" for h, p in addrs)
        if other.distributed:
            mpi_hosts += [f"{h}:{other.procs_per_replica}" for h, _ in addrs]
    if lists:
        # `mpirun -H $SHIPYARD_MPI_HOSTS`: every distributed replica with its slots.
        env["SHIPYARD_MPI_HOSTS"] = ",".join(mpi_hosts)
    key = (role.name, index)
    if key in layout.node_rank:
        env |= {
            "RANK": str(layout.first_rank[key]),
            "NODE_RANK": str(layout.node_rank[key]),
            "GROUP_RANK": str(layout.node_rank[key]),
            "LOCAL_RANK": "0",
            "NPROC_PER_NODE": str(role.procs_per_replica),
            "LOCAL_WORLD_SIZE": str(role.procs_per_replica),
            # torchrun reads its flags from PET_* variables.
            "PET_NNODES": str(layout.nnodes),
            "PET_NPROC_PER_NODE": str(role.procs_per_replica),
            "PET_NODE_RANK": str(layout.node_rank[key]),
            "PET_MASTER_ADDR": master_host,
            "PET_MASTER_PORT": str(master_port),
        }
    # Where each mounted volume is (the first mount of it): its mount path on a cluster.
    for mount in reversed(role.mounts):
        where = mount.path if mounts is None else mounts.get(mount.volume)
        if where is not None:
            env[f"SHIPYARD_MOUNT_{env_key(mount.volume)}"] = where
    env |= role.env
    return env
