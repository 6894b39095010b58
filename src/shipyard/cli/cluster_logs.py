"""`shipyard logs -c CTX EXP [-f] [--rank R] [--since D] [--grep RE] [--tail N]`: every
rank's lines, as written; without -f, the rank that failed first (exit code, reason,
last lines) comes before the rest (rank_logs.py lays it out).

Each pod's log is streamed from the kubelet (`follow=true`) the moment its container
has started, and lines of all ranks are printed as they arrive with the `[role-index]`
prefix the local backend uses. A restarted gang brings new pods (new uid, same
name): they are followed too. With -f it ends when the experiment is finished and
every stream is drained; without -f it prints what is there now, rank by rank.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from shipyard.api.vocab import TERMINAL
from shipyard.cli.rank_logs import Failure, first_failure, pod_failure, rank_of
from shipyard.kube import experiments as kexp
from shipyard.kube.api import ApiClient
from shipyard.kube.errors import ApiError, NotFound
from shipyard.kube.resources import EXPERIMENTS, PODS

POLL_S = 0.5
RETRIES, BACKOFF_S, MAX_BACKOFF_S = 5, 0.5, 8.0  # a failed log read: about 15 s in all
Emit = Callable[[str, str], None]


def started(pod: dict[str, Any]) -> bool:
    """A container of it has run: there is a log to read."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "running" in state or "terminated" in state:
            return True
    return False


def log_container(pod: dict[str, Any]) -> str | None:
    """Whose log to read: "" for the pod's main container once it has run; the name of
    an init container that failed (the main one then never runs: its log is where the
    error is, e.g. shipyard-unpack on a bad archive); None: no log yet."""
    if started(pod):
        return ""
    failure = pod_failure(pod)
    return failure.init_container if failure is not None and failure.init_container else None


def _params(follow: bool, since_s: float | None, tail: int | None = None,
            container: str = "") -> dict[str, str]:
    p = {"follow": "true" if follow else "false"}
    if container:
        p["container"] = container
    if since_s is not None:
        p["sinceSeconds"] = str(max(1, int(since_s)))
    if tail is not None:
        p["tailLines"] = str(tail)
    return p


async def _stream(client: ApiClient, pod: dict[str, Any], follow: bool,
                  since_s: float | None, emit: Emit, tail: int | None = None,
                  container: str = "") -> None:
    """Emit the pod's lines. A failed read (the kubelet not serving the log yet, a
    dropped connection) is tried again RETRIES times, backing off; from the start of
    the log, the lines already shown are skipped. With --since or --tail the window
    moves, so a stream that failed after showing lines is not resumed (kubelet logs
    carry no line numbers to resume from). NotFound: the pod went away (a restart, a
    cancel), nothing more to read."""
    meta = pod["metadata"]
    path = PODS.path(meta["namespace"], meta["name"], "log")
    rank = rank_of(pod)
    resumable = since_s is None and tail is None
    shown = 0
    for attempt in range(RETRIES + 1):
        seen = 0
        try:
            # No read timeout: a quiet rank is not a dead stream.
            async for line in client.lines(path, _params(follow, since_s, tail, container)):
                seen += 1
                if seen > shown:
                    shown = seen
                    emit(rank, line.decode(errors="replace"))
            return
        except NotFound:
            return
        except ApiError:
            if attempt == RETRIES or (shown and not resumable):
                return
            await asyncio.sleep(min(BACKOFF_S * 2 ** attempt, MAX_BACKOFF_S))


async def collect(client: ApiClient, name: str, namespace: str, rank: str | None,
                  since_s: float | None, tail: int | None = None
                  ) -> tuple[dict[str, list[str]], Failure | None]:
    """Every (matching) started pod's lines by rank, and the rank that failed first:
    the earliest non-zero exit among the pods, ties going to the pod the controller
    blamed (status.failedPod)."""
    exp = await client.get(EXPERIMENTS, name, namespace)  # a clear NotFound for a wrong name
    pods = [p for p in await kexp.pods_of(client, name, namespace)
            if rank is None or rank_of(p) == rank]
    blamed = str((exp.get("status") or {}).get("failedPod") or "")
    named = next((rank_of(p) for p in pods if f"pod {p['metadata']['name']} " in blamed + " "), None)
    failure = first_failure((f for p in pods if (f := pod_failure(p)) is not None), named)
    lines: dict[str, list[str]] = {}

    def keep(pod_rank: str, line: str) -> None:
        lines.setdefault(pod_rank, []).append(line)

    for pod in pods:
        container = log_container(pod)
        if container is not None:
            lines.setdefault(rank_of(pod), [])
            await _stream(client, pod, False, since_s, keep, tail, container)
    return lines, failure


async def follow(client: ApiClient, name: str, namespace: str, rank: str | None,
                 since_s: float | None, emit: Emit, tail: int | None = None) -> None:
    """Stream every (matching) pod's log until the experiment has finished."""
    await client.get(EXPERIMENTS, name, namespace)  # a clear NotFound for a wrong name
    streams: dict[str, asyncio.Task[None]] = {}
    while True:
        pods = await kexp.pods_of(client, name, namespace)
        for pod in pods:
            uid = pod["metadata"]["uid"]
            container = log_container(pod)
            if uid in streams or (rank is not None and rank_of(pod) != rank) or container is None:
                continue
            streams[uid] = asyncio.create_task(
                _stream(client, pod, True, since_s, emit, tail, container))
        try:
            exp = await client.get(EXPERIMENTS, name, namespace)
        except NotFound:
            break  # deleted: nothing more will be written
        if (exp.get("status") or {}).get("phase") in TERMINAL:
            # Pods that never started have no log; the others' streams end with them.
            break
        await asyncio.sleep(POLL_S)
    if streams:
        await asyncio.gather(*streams.values())
