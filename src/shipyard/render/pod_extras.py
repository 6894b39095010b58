"""The parts of a pod a real training job needs besides its program: volumes and their
mounts, a /dev/shm of a useful size, credentials from Secrets and ConfigMaps, the
identity it runs as, extended resources and the node's network. Pure: needs no cluster."""

from __future__ import annotations

from typing import Any

from shipyard.spec import Experiment, Role
from shipyard.spec.k8s_checks import shm_bytes
from shipyard.spec.podspec import SHM_PATH, EnvFrom, EnvKey, Volume
from shipyard.spec.quantity import format_memory

VOLUME_SHM = "shipyard-shm"


def volume_source(volume: Volume) -> dict[str, Any]:
    """A spec volume as a pod volume."""
    out: dict[str, Any] = {"name": volume.name}
    if volume.pvc is not None:
        out["persistentVolumeClaim"] = {"claimName": volume.pvc}
    elif volume.nfs is not None:
        out["nfs"] = {"server": volume.nfs.server, "path": volume.nfs.path}
    elif volume.host_path is not None:
        out["hostPath"] = {"path": volume.host_path, "type": "Directory"}
    elif volume.empty_dir is not None:
        size = volume.empty_dir.size_limit
        out["emptyDir"] = {"sizeLimit": format_memory(size)} if size else {}
    elif volume.secret is not None:
        out["secret"] = {"secretName": volume.secret}
    return out


def _env_from(source: EnvFrom) -> dict[str, Any]:
    ref = "secretRef" if source.secret is not None else "configMapRef"
    out: dict[str, Any] = {ref: {"name": source.secret or source.config_map}}
    if source.optional:
        out[ref]["optional"] = True
    if source.prefix:
        out["prefix"] = source.prefix
    return out


def _env_key(name: str, source: EnvKey) -> dict[str, Any]:
    ref = "secretKeyRef" if source.secret is not None else "configMapKeyRef"
    selector: dict[str, Any] = {"name": source.secret or source.config_map, "key": source.key}
    if source.optional:
        selector["optional"] = True
    return {"name": name, "valueFrom": {ref: selector}}


def apply_extras(pod: dict[str, Any], exp: Experiment, role: Role) -> None:
    """Add the role's storage, credentials, identity and network settings to its pod."""
    spec = pod["spec"]
    container = spec["containers"][0]
    request = exp.request(role)
    resources = container["resources"]
    for name, units in request.extra.items():
        # Extended resources cannot be overcommitted: requests must equal limits.
        resources["requests"][name] = resources["limits"][name] = str(units)

    used = {m.volume for m in role.mounts}
    checkpoint = getattr(exp, "checkpoint", None)  # its mount is render/runtime.py's
    if checkpoint is not None:
        used.add(checkpoint.volume)
    volumes = [volume_source(v) for v in exp.volumes if v.name in used]
    mounts: list[dict[str, Any]] = []
    for m in role.mounts:
        mount: dict[str, Any] = {"name": m.volume, "mountPath": m.path}
        if m.read_only:
            mount["readOnly"] = True
        if m.sub_path:
            mount["subPath"] = m.sub_path
        mounts.append(mount)
    shm = shm_bytes(exp, role)
    if shm:
        # Memory-backed: it counts against the container's memory limit as it fills.
        shm_dir = {"medium": "Memory", "sizeLimit": format_memory(shm)}
        volumes.append({"name": VOLUME_SHM, "emptyDir": shm_dir})
        mounts.append({"name": VOLUME_SHM, "mountPath": SHM_PATH})
    if volumes:
        spec["volumes"] = [*spec.get("volumes", []), *volumes]
    if mounts:
        container["volumeMounts"] = [*container.get("volumeMounts", []), *mounts]

    if role.env_keys:
        # A variable from a key replaces shipyard's own of that name (user's choice wins).
        env = [e for e in container["env"] if e["name"] not in role.env_keys]
        container["env"] = env + [_env_key(k, v) for k, v in role.env_keys.items()]
    if role.env_from:
        container["envFrom"] = [_env_from(s) for s in role.env_from]
    if role.image_pull_policy:
        container["imagePullPolicy"] = role.image_pull_policy

    if exp.service_account:
        spec["serviceAccountName"] = exp.service_account
    if exp.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in exp.image_pull_secrets]
    sc = exp.security_context
    if sc is not None:
        context = {"runAsUser": sc.run_as_user, "runAsGroup": sc.run_as_group, "fsGroup": sc.fs_group}
        context = {k: v for k, v in context.items() if v is not None}
        if context:
            spec["securityContext"] = context
    if role.host_network:
        spec["hostNetwork"] = True
        # Without it a host-network pod resolves with the node's DNS: no <pod>.<service>.
        spec["dnsPolicy"] = "ClusterFirstWithHostNet"
        for port in container["ports"]:
            port["hostPort"] = port["containerPort"]
