"""Client-side operations on Experiments in a cluster: what `shipyard launch --cluster`,
`list`, `status`, `logs` and `cancel` do."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from shipyard.api.vocab import ANNOTATION_CANCEL, LABEL_EXPERIMENT, TERMINAL
from shipyard.kube import workdir
from shipyard.kube.api import ApiClient
from shipyard.kube.errors import AlreadyExists, ApiError, NotFound
from shipyard.kube.objects import experiment_resource
from shipyard.kube.resources import CONFIG_MAPS, EXPERIMENTS, NAMESPACES, PODS
from shipyard.render.runtime import ships_workdir, workdir_configmap_name
from shipyard.spec import Experiment


class ExperimentExists(RuntimeError):
    pass


async def submit(client: ApiClient, exp: Experiment) -> dict[str, Any]:
    """Create the Experiment (and its namespace when missing); with a workdir, first the
    ConfigMap of its files, then owned by the Experiment so that it goes with it."""
    packed = None
    if ships_workdir(exp):
        root = Path(str(exp.workdir))
        packed = workdir.pack(root)  # before any write: a too-large folder changes nothing
    with contextlib.suppress(AlreadyExists):
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": exp.namespace}})
    exists = ExperimentExists(
        f"experiment {exp.namespace}/{exp.name} already exists; delete it first or pick another name")
    if packed is not None:
        with contextlib.suppress(NotFound):
            await client.get(EXPERIMENTS, exp.name, exp.namespace)
            raise exists  # its ConfigMap must stay as it is
        # Applied, not created: one left by a launch that died before its Experiment is replaced.
        await client.apply(CONFIG_MAPS, workdir.configmap(exp, packed))
    try:
        obj = await client.create(EXPERIMENTS, experiment_resource(exp))
    except AlreadyExists:
        raise exists from None
    if packed is not None:
        await client.patch(CONFIG_MAPS, workdir_configmap_name(exp), workdir.owner_patch(obj),
                           exp.namespace)
    return obj


async def list_experiments(client: ApiClient, namespace: str | None = None) -> list[dict[str, Any]]:
    items, _ = await client.list(EXPERIMENTS, namespace)
    return sorted(items, key=lambda o: o["metadata"].get("creationTimestamp", ""))


async def get_experiment(client: ApiClient, name: str, namespace: str) -> dict[str, Any]:
    return await client.get(EXPERIMENTS, name, namespace)


async def pods_of(client: ApiClient, name: str, namespace: str) -> list[dict[str, Any]]:
    items, _ = await client.list(PODS, namespace, label_selector=f"{LABEL_EXPERIMENT}={name}")
    return sorted(items, key=lambda o: o["metadata"]["name"])


async def cancel(client: ApiClient, name: str, namespace: str, timeout_s: float = 60) -> dict[str, Any]:
    """Ask the controller to stop the experiment, and wait until it has."""
    await client.patch(EXPERIMENTS, name, {"metadata": {"annotations": {ANNOTATION_CANCEL: "true"}}},
                       namespace)
    deadline = time.monotonic() + timeout_s
    while True:
        obj = await client.get(EXPERIMENTS, name, namespace)
        if (obj.get("status") or {}).get("phase") in TERMINAL or time.monotonic() > deadline:
            return obj
        await asyncio.sleep(0.2)


async def pod_logs(client: ApiClient, pod: str, namespace: str) -> str:
    try:
        return await client.text(PODS.path(namespace, pod, "log"))
    except ApiError as exc:  # an error answer or none (Transient is one): shown to the user
        return f"(no logs: HTTP {exc.status}: {exc.message[:200].strip()})" if exc.status \
            else f"(no logs: {exc})"


async def follow_logs(client: ApiClient, name: str, namespace: str,
                      rank: str | None = None) -> AsyncIterator[tuple[str, str]]:
    """(pod, line) of every pod of the experiment, or of one rank."""
    for pod in await pods_of(client, name, namespace):
        pod_name = pod["metadata"]["name"]
        if rank and not pod_name.endswith(f"-{rank}"):
            continue
        text = await pod_logs(client, pod_name, namespace)
        for line in text.splitlines():
            yield pod_name, line


async def delete(client: ApiClient, name: str, namespace: str) -> None:
    """Delete the Experiment; its pods and Service go with it (owner references)."""
    await client.delete(EXPERIMENTS, name, namespace, missing_ok=False)
