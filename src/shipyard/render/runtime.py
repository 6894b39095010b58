"""What every replica's pod gets around the researcher's command: the shipped workdir
unpacked before it starts, the checkpoint folder, the stop reason as a file, and a
stop that is a SIGTERM with a grace period, not a kill. Pure: needs no cluster."""

from __future__ import annotations

import copy
import posixpath
from typing import Any

from shipyard.api.vocab import ANNOTATION_STOP_REASON, LABEL_EXPERIMENT
from shipyard.spec import Experiment, Role

WORKDIR = "/shipyard/workdir"  # where the shipped files are unpacked, the command's cwd
CODE_MOUNT = "/shipyard/code"  # the ConfigMap's archive, read-only
ARCHIVE_KEY = "workdir.tar.gz"
PODINFO_DIR = "/etc/shipyard"
STOP_REASON_FILE = f"{PODINFO_DIR}/stop-reason"
VOLUME_CODE, VOLUME_WORKDIR, VOLUME_PODINFO = "shipyard-code", "shipyard-workdir", "shipyard-podinfo"
# The experiment's progress token (a Secret the controller creates with the gang), read
# by shipyard.progress; optional, so a pod applied without a controller still starts.
VOLUME_PROGRESS, PROGRESS_DIR, PROGRESS_TOKEN_KEY = "shipyard-progress", "/var/run/shipyard/progress", "token"

# Run with the image's own Python, so no other image is needed; tarfile's "data" filter
# (Python >= 3.11.4) refuses absolute paths, '..' and links leaving the folder.
UNPACK = ("import sys, tarfile; f = getattr(tarfile, 'data_filter', None); "
          "tarfile.open(sys.argv[1]).extractall(sys.argv[2], **({'filter': f} if f else {}))")


def workdir_configmap_name(exp: Experiment) -> str:
    return f"{exp.name}-workdir"


def progress_secret_name(experiment: str) -> str:
    return f"{experiment}-progress"


def render_progress_secret(exp: Experiment, token: str) -> dict[str, Any]:
    """The Secret holding the experiment's progress token (the controller sets its owner)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": progress_secret_name(exp.name), "namespace": exp.namespace,
                         "labels": {LABEL_EXPERIMENT: exp.name}},
            "stringData": {PROGRESS_TOKEN_KEY: token}}


def ships_workdir(exp: Experiment) -> bool:
    return isinstance(exp.workdir, str)


def apply(pod: dict[str, Any], exp: Experiment, role: Role) -> None:
    """Add shipyard's runtime parts to a rendered pod (its first container is the role's)."""
    spec = pod["spec"]
    container = spec["containers"][0]
    env = container.setdefault("env", [])
    volumes = spec.setdefault("volumes", [])
    mounts = container.setdefault("volumeMounts", [])
    # The pause container is PID 1, so the command is not: SIGTERM's default action
    # (exit) applies, where a PID 1 Python would ignore it until the SIGKILL.
    spec["shareProcessNamespace"] = True
    spec["terminationGracePeriodSeconds"] = exp.stop_grace_seconds
    volumes.append({"name": VOLUME_PODINFO, "downwardAPI": {"items": [{
        "path": "stop-reason",
        "fieldRef": {"fieldPath": f"metadata.annotations['{ANNOTATION_STOP_REASON}']"},
    }]}})
    mounts.append({"name": VOLUME_PODINFO, "mountPath": PODINFO_DIR, "readOnly": True})
    env.append({"name": "SHIPYARD_STOP_REASON", "value": STOP_REASON_FILE})
    volumes.append({"name": VOLUME_PROGRESS, "secret": {
        "secretName": progress_secret_name(exp.name), "optional": True}})
    mounts.append({"name": VOLUME_PROGRESS, "mountPath": PROGRESS_DIR, "readOnly": True})
    env.append({"name": "SHIPYARD_PROGRESS_TOKEN", "value": f"{PROGRESS_DIR}/{PROGRESS_TOKEN_KEY}"})
    if exp.checkpoint is not None:
        path = exp.checkpoint.path
        if not any(m.get("mountPath") == path for m in mounts):
            mounts.append({"name": exp.checkpoint.volume, "mountPath": path})
        env.append({"name": "SHIPYARD_CHECKPOINT_DIR", "value": path})
    if ships_workdir(exp):
        _ship_workdir(spec, container, exp, role)


def _ship_workdir(spec: dict[str, Any], container: dict[str, Any], exp: Experiment, role: Role) -> None:
    spec["volumes"] += [
        {"name": VOLUME_CODE, "configMap": {"name": workdir_configmap_name(exp)}},
        {"name": VOLUME_WORKDIR, "emptyDir": {}},
    ]
    work_mount = {"name": VOLUME_WORKDIR, "mountPath": WORKDIR}
    # An init container of the role's own image: it runs once, before the command, and
    # a broken archive shows as Init:Error instead of a confusing command failure.
    spec["initContainers"] = [*spec.get("initContainers", []), {
        "name": "shipyard-unpack",
        "image": container["image"],
        "command": ["python3", "-c", UNPACK, f"{CODE_MOUNT}/{ARCHIVE_KEY}", WORKDIR],
        # The same as the role's: a pod asks for the larger of the two, so no more.
        "resources": copy.deepcopy(container["resources"]),
        "volumeMounts": [{"name": VOLUME_CODE, "mountPath": CODE_MOUNT, "readOnly": True},
                         dict(work_mount)],
    }]
    container["volumeMounts"].append(work_mount)
    # As on the local backend: working_dir is relative to the shipped folder.
    container["workingDir"] = posixpath.join(WORKDIR, role.working_dir) if role.working_dir else WORKDIR
