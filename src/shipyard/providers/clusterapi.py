"""Cluster API pools: nodes come from a MachineDeployment, whichever cloud or bare-metal
infrastructure provider stands behind it.

provider_config: "machineDeployment" (name, required) and "namespace" (default "default").

- create: spec.replicas += count through the scale subresource (read, then write
  with the read resourceVersion; a conflict is read and tried again).
- delete: annotate each node's Machine with cluster.x-k8s.io/delete-machine, so the
  MachineSet removes exactly those, then replicas -= the number marked. If the scale
  write fails, the marks are taken off again: no Machine stays marked for nothing.
- list: the pool's nodes: Nodes with the pool label and the nodeRefs of the
  MachineDeployment's Machines, less Machines on their way out. Cluster API cannot
  put per-request metadata on a Node, so list() also labels each newly registered
  Node with the pool label and the oldest earmark still owed.
- provisioning: spec.replicas less registered and failed Machines, as of the last
  create, delete or list; take_failures: Machines in phase Failed, each once.
"""

from __future__ import annotations

import builtins
import contextlib
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shipyard.api.vocab import ANNOTATION_EARMARK, LABEL_NODEPOOL
from shipyard.kube.api import ApiClient, Objects
from shipyard.kube.errors import ApiError, Conflict, NotFound
from shipyard.kube.resources import MACHINE_DEPLOYMENTS, MACHINES, NODES
from shipyard.providers.base import (
    ProviderResult,
    is_live,
    pool_selector,
)
from shipyard.spec.nodepool import NodePool

DELETE_MACHINE = "cluster.x-k8s.io/delete-machine"
LABEL_DEPLOYMENT = "cluster.x-k8s.io/deployment-name"
_CONFLICT_RETRIES = 8


@dataclass(frozen=True, slots=True)
class CapiConfig:
    machine_deployment: str
    namespace: str

    @classmethod
    def parse(cls, pool: NodePool) -> CapiConfig:
        c = pool.provider_config
        known = {"machineDeployment", "namespace"}
        unknown = sorted(set(c) - known)
        if unknown:
            raise ValueError(f"nodepool {pool.name}: unknown clusterapi provider_config {unknown}; "
                             f"known: {sorted(known)}")
        md = c.get("machineDeployment", "").strip()
        if not md:
            raise ValueError(f"nodepool {pool.name}: provider_config machineDeployment is required "
                             "for provider clusterapi (the MachineDeployment to scale)")
        return cls(md, c.get("namespace", "").strip() or "default")

    def where(self) -> str:
        return f"MachineDeployment {self.namespace}/{self.machine_deployment}"


@dataclass(slots=True)
class _Seen:
    replicas: int = 0
    registered: int = 0
    failed: int = 0


class ClusterApiProvider:
    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self._seen: dict[str, _Seen] = defaultdict(_Seen)
        self._earmarks: dict[str, deque[str]] = defaultdict(deque)
        self._failures: dict[str, list[str]] = defaultdict(list)
        self._reported: dict[str, set[str]] = defaultdict(set)  # failed Machines already told

    async def create(self, pool: NodePool, count: int, *, earmark: str | None = None) -> ProviderResult:
        """Nodes register later under names the infrastructure picks, so `nodes` is empty."""
        try:
            cfg = CapiConfig.parse(pool)
        except ValueError as exc:
            return ProviderResult(False, error=str(exc))
        if count <= 0:
            return ProviderResult(True)
        error = await self._scale(pool, cfg, count)
        if error:
            return ProviderResult(False, error=error)
        # Adopt the nodes already there first, so they take none of the new earmarks.
        await self._refresh_quietly(pool, cfg)
        if earmark:
            self._earmarks[pool.name].extend([earmark] * count)
        return ProviderResult(True)

    async def delete(self, pool: NodePool, nodes: Sequence[str]) -> ProviderResult:
        try:
            cfg = CapiConfig.parse(pool)
            machines = await self._machines(cfg)
        except (ValueError, ApiError) as exc:
            return ProviderResult(False, error=str(exc))
        by_node = {_node_ref(m): m for m in machines if _node_ref(m)}
        errors: list[str] = []
        leaving: list[str] = []  # marked earlier, or already being deleted
        marked: list[tuple[str, str]] = []  # (node, machine) marked now
        for node in dict.fromkeys(nodes):
            m = by_node.get(node)
            if m is None:
                errors.append(f"no Machine of {cfg.where()} has node {node}")
            elif not _staying(m):
                leaving.append(node)
            else:
                try:
                    await self._mark(cfg, m["metadata"]["name"], "yes")
                    marked.append((node, m["metadata"]["name"]))
                except ApiError as exc:
                    errors.append(f"marking Machine {m['metadata']['name']} for deletion: {exc}")
        if marked:
            error = await self._scale(pool, cfg, -len(marked))
            if error:
                for _, machine in marked:  # best effort: a stale mark only biases a later scale-down
                    try:
                        await self._mark(cfg, machine, None)
                    except ApiError as exc:
                        errors.append(f"unmarking Machine {machine}: {exc}")
                errors.append(error)
                marked = []
        await self._refresh_quietly(pool, cfg)
        return ProviderResult(not errors, tuple(leaving + [n for n, _ in marked]), "; ".join(errors))

    def provisioning(self, pool: NodePool) -> int:
        seen = self._seen.get(pool.name)
        return max(0, seen.replicas - seen.registered - seen.failed) if seen else 0

    def take_failures(self, pool: NodePool) -> list[str]:
        return self._failures.pop(pool.name, [])

    async def aclose(self) -> None:
        return None

    async def list(self, pool: NodePool) -> list[str]:
        """Raises ValueError for a bad provider_config, ApiError when the API server fails."""
        return await self._refresh(pool, CapiConfig.parse(pool))

    # -- internals --------------------------------------------------------------

    async def _machines(self, cfg: CapiConfig) -> Objects:
        items, _ = await self.client.list(MACHINES, cfg.namespace,
                                          label_selector=f"{LABEL_DEPLOYMENT}={cfg.machine_deployment}")
        return items

    async def _mark(self, cfg: CapiConfig, machine: str, value: str | None) -> None:
        await self.client.patch(MACHINES, machine, {"metadata": {"annotations": {DELETE_MACHINE: value}}},
                                cfg.namespace)

    async def _scale(self, pool: NodePool, cfg: CapiConfig, delta: int) -> str:
        """replicas += delta (never below 0) with optimistic concurrency; "" or an error."""
        path = MACHINE_DEPLOYMENTS.path(cfg.namespace, cfg.machine_deployment, "scale")
        for _ in range(_CONFLICT_RETRIES):
            try:
                scale = await self.client.request("GET", path)
                replicas = max(0, int((scale.get("spec") or {}).get("replicas") or 0) + delta)
                scale["spec"] = {**(scale.get("spec") or {}), "replicas": replicas}
                await self.client.request("PUT", path, body=scale)  # carries the read resourceVersion
            except Conflict:
                continue  # someone else scaled in between: read again
            except NotFound:
                return f"nodepool {pool.name}: {cfg.where()} not found"
            except ApiError as exc:
                return f"nodepool {pool.name}: scaling {cfg.where()}: {exc}"
            self._seen[pool.name].replicas = replicas
            return ""
        return f"nodepool {pool.name}: scaling {cfg.where()}: conflicts on {_CONFLICT_RETRIES} tries in a row"

    async def _refresh_quietly(self, pool: NodePool, cfg: CapiConfig) -> None:
        # The write succeeded; if this read fails, the next list() brings the counts up to date.
        with contextlib.suppress(ApiError):
            await self._refresh(pool, cfg)

    async def _refresh(self, pool: NodePool, cfg: CapiConfig) -> builtins.list[str]:
        scale = await self.client.request(
            "GET", MACHINE_DEPLOYMENTS.path(cfg.namespace, cfg.machine_deployment, "scale"))
        machines = await self._machines(cfg)
        labelled, _ = await self.client.list(NODES, label_selector=pool_selector(pool))
        staying = [m for m in machines if _staying(m)]
        leaving = {_node_ref(m) for m in machines if not _staying(m)} - {""}
        refs = [r for r in map(_node_ref, staying) if r]
        failed = [m for m in staying if _phase(m) == "Failed"]
        seen = self._seen[pool.name]
        seen.replicas = int((scale.get("spec") or {}).get("replicas") or 0)
        seen.registered = len(refs)
        seen.failed = sum(1 for m in failed if not _node_ref(m))
        for m in failed:
            name = m["metadata"]["name"]
            if name not in self._reported[pool.name]:
                self._reported[pool.name].add(name)
                self._failures[pool.name].append(
                    f"nodepool {pool.name}: Machine {cfg.namespace}/{name} failed: {_failure_message(m)}")
        live = {m["metadata"]["name"] for m in machines}
        self._reported[pool.name] &= live  # forget Machines that are gone
        have_label = {n["metadata"]["name"] for n in labelled if is_live(n)}
        for ref in refs:
            if ref not in have_label:
                await self._adopt(pool, ref)
        return sorted((have_label | set(refs)) - leaving)

    async def _adopt(self, pool: NodePool, node: str) -> None:
        """Give a newly registered node the pool label and the oldest earmark owed."""
        owed = self._earmarks[pool.name]
        meta: dict[str, Any] = {"labels": {LABEL_NODEPOOL: pool.name}}
        if owed:
            meta["annotations"] = {ANNOTATION_EARMARK: owed[0]}
        try:
            await self.client.patch(NODES, node, {"metadata": meta})
        except NotFound:
            return  # the Machine names a Node that has not registered (or was removed)
        if owed:
            owed.popleft()


def _node_ref(machine: dict[str, Any]) -> str:
    return str(((machine.get("status") or {}).get("nodeRef") or {}).get("name") or "")


def _phase(machine: dict[str, Any]) -> str:
    return str((machine.get("status") or {}).get("phase") or "")


def _staying(machine: dict[str, Any]) -> bool:
    """Neither deleted nor marked for the next scale-down."""
    annotations = (machine.get("metadata") or {}).get("annotations") or {}
    return is_live(machine) and DELETE_MACHINE not in annotations


def _failure_message(machine: dict[str, Any]) -> str:
    status = machine.get("status") or {}
    old = ((status.get("deprecated") or {}).get("v1beta1") or {})  # v1beta2 keeps v1beta1's fields here
    for source in (old, status):
        if source.get("failureMessage") or source.get("failureReason"):
            return ": ".join(filter(None, (source.get("failureReason"), source.get("failureMessage"))))
    for c in status.get("conditions") or []:
        if c.get("status") == "False" and c.get("message"):
            return f"{c.get('type')}: {c['message']}"
    return "phase Failed"
