"""Volumes on the local backend: what of a cluster's storage this machine can stand in for.

A rank here cannot have a volume at its mount path (that needs root and a mount
namespace), so each replica finds it through SHIPYARD_MOUNT_<VOLUME> (on a cluster the
mount path, here a folder): a host_path volume is that folder itself (plus sub_path),
an empty_dir one is a folder of the run (kept across its restarts, removed with the run
folder). PersistentVolumeClaims, NFS, Secrets, /dev/shm sizes, Secret and ConfigMap
env and extended resources do not exist here: `ignored()` lists them, and `launch`
warns once.
"""

from __future__ import annotations

from pathlib import Path

from shipyard.render.env import env_key
from shipyard.spec import Experiment, Role


def mount_dirs(exp: Experiment, role: Role, run_dir: Path) -> dict[str, str]:
    """Volume name -> the folder standing in for it here (its first mount in the role, with
    that mount's sub_path), for what can be had here; empty_dir folders are made."""
    volumes = {v.name: v for v in exp.volumes}
    out: dict[str, str] = {}
    for mount in role.mounts:
        volume = volumes[mount.volume]
        if volume.name in out:
            continue
        if volume.host_path is not None:
            base = Path(volume.host_path)
        elif volume.empty_dir is not None:
            base = run_dir / "volumes" / volume.name
        else:
            continue
        folder = base / mount.sub_path if mount.sub_path else base
        if volume.empty_dir is not None:
            folder.mkdir(parents=True, exist_ok=True)
        out[volume.name] = str(folder)
    return out


def ignored(exp: Experiment) -> list[str]:
    """What of the spec the local backend cannot honour, one line each."""
    out: list[str] = []
    mounted = {m.volume for r in exp.roles for m in r.mounts}
    for v in exp.volumes:
        if v.name in mounted and v.kind in ("pvc", "nfs", "secret"):
            what = {"pvc": f"PersistentVolumeClaim {v.pvc}", "nfs": "NFS share",
                    "secret": f"Secret {v.secret}"}[v.kind]
            out.append(f"volumes: {v.name!r} ({what}) is not available here; "
                       f"SHIPYARD_MOUNT_{env_key(v.name)} is not set")
        if v.name in mounted and v.host_path is not None and not Path(v.host_path).is_dir():
            out.append(f"volumes: {v.name!r}: host_path {v.host_path} is not a folder on this machine")
    for role in exp.roles:
        at = f"roles[{role.name}]"
        if role.shm_size:
            out.append(f"{at}.shm_size: /dev/shm is this machine's own")
        if role.env_from or role.env_keys:
            out.append(f"{at}.env_from/env_keys: Secrets and ConfigMaps exist only on a cluster; "
                       "those variables are not set")
        if role.resources is not None and role.resources.extra:
            out.append(f"{at}.resources.extra: {', '.join(role.resources.extra)} not counted here")
    return out
