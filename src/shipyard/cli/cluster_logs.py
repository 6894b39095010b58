"""`shipyard logs -c CTX EXP [-f] [--rank R] [--since D]`: every rank's lines, as written.

Each pod's log is streamed from the kubelet (`follow=true`) the moment its container
has started, and lines of all ranks are printed as they arrive with the `[role-index]`
prefix the local backend uses. A restarted gang brings new pods (new uid, same
name): they are followed too. With -f it ends when the experiment is finished and
every stream is drained; without -f it prints what is there now, rank by rank.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import httpx

from shipyard.kube import experiments as kexp
from shipyard.kube.client import KubeClient
from shipyard.kube.errors import NotFound
from shipyard.kube.resources import EXPERIMENTS, PODS
from shipyard.render.objects import LABEL_INDEX, LABEL_ROLE

POLL_S = 0.5
Emit = Callable[[str, str], None]


def rank_of(pod: dict[str, Any]) -> str:
    labels = pod["metadata"].get("labels") or {}
    if LABEL_ROLE in labels and LABEL_INDEX in labels:
        return f"{labels[LABEL_ROLE]}-{labels[LABEL_INDEX]}"
    return pod["metadata"]["name"]


def started(pod: dict[str, Any]) -> bool:
    """A container of it has run: there is a log to read."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "running" in state or "terminated" in state:
            return True
    return False


def _params(follow: bool, since_s: float | None) -> dict[str, str]:
    p = {"follow": "true" if follow else "false"}
    if since_s is not None:
        p["sinceSeconds"] = str(max(1, int(since_s)))
    return p


async def _stream(client: KubeClient, pod: dict[str, Any], follow: bool,
                  since_s: float | None, emit: Emit) -> None:
    meta = pod["metadata"]
    path = PODS.path(meta["namespace"], meta["name"], "log")
    rank = rank_of(pod)
    with contextlib.suppress(httpx.HTTPError):
        # No read timeout: a quiet rank is not a dead stream.
        async with client.http.stream("GET", path, params=_params(follow, since_s),
                                      timeout=httpx.Timeout(None, connect=10.0)) as r:
            if r.status_code != 200:
                return  # the pod went away (restart, cancel) before its log was read
            async for line in r.aiter_lines():
                emit(rank, line)


async def print_once(client: KubeClient, name: str, namespace: str, rank: str | None,
                     since_s: float | None, emit: Emit) -> None:
    for pod in await kexp.pods_of(client, name, namespace):
        if (rank is None or rank_of(pod) == rank) and started(pod):
            await _stream(client, pod, False, since_s, emit)


async def follow(client: KubeClient, name: str, namespace: str, rank: str | None,
                 since_s: float | None, emit: Emit) -> None:
    """Stream every (matching) pod's log until the experiment has finished."""
    await client.get(EXPERIMENTS, name, namespace)  # a clear NotFound for a wrong name
    streams: dict[str, asyncio.Task[None]] = {}
    while True:
        pods = await kexp.pods_of(client, name, namespace)
        for pod in pods:
            uid = pod["metadata"]["uid"]
            if uid in streams or (rank is not None and rank_of(pod) != rank) or not started(pod):
                continue
            streams[uid] = asyncio.create_task(_stream(client, pod, True, since_s, emit))
        try:
            exp = await client.get(EXPERIMENTS, name, namespace)
        except NotFound:
            break  # deleted: nothing more will be written
        if (exp.get("status") or {}).get("phase") in kexp.FINISHED:
            # Pods that never started have no log; the others' streams end with them.
            break
        await asyncio.sleep(POLL_S)
    if streams:
        await asyncio.gather(*streams.values())
