"""Slim projections of API objects: only the fields the policy and lifecycle read."""

from __future__ import annotations

import calendar
import functools
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from shipyard.api.status import revision as status_revision
from shipyard.api.vocab import (
    ANNOTATION_CANCEL,
    ANNOTATION_HOLD,
    LABEL_ATTEMPT,
    LABEL_EXPERIMENT,
    LABEL_INDEX,
    LABEL_ROLE,
    TAINT_UNHEALTHY,
)
from shipyard.core.model import Node, Resources, Taint
from shipyard.spec import Experiment, Queue, SpecError, experiment_from_data
from shipyard.spec.errors import spec_error
from shipyard.spec.machines import RESOURCE_GPU
from shipyard.spec.quantity import parse_cpu_milli, parse_memory_bytes

log = logging.getLogger(__name__)
TERMINAL_POD_PHASES = ("Succeeded", "Failed")
# Taints the node lifecycle controller derives from the Ready condition, seconds late:
# a Ready node still wearing one is a fresh node, not a broken one (Ready is the truth).
CONDITION_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
# A sick node, as a health agent says it: this taint (any effect; `shipyard dev
# node-unhealthy` sets it), or a node condition of these types with status True
# (node-problem-detector's and GPU health agents' kind). The view turns either into a
# NoSchedule taint of TAINT_UNHEALTHY, so no new gang lands there and running ones restart.
UNHEALTHY_CONDITIONS = ("GPUUnhealthy", "KernelDeadlock", "ReadonlyFilesystem")


@functools.lru_cache(maxsize=1 << 16)
def parse_time(text: str | None) -> float | None:
    """A status time we wrote (second resolution). Cached: every cycle reads the same
    few hundred strings again, and strptime was a ninth of the controller's CPU while it
    placed 2,500 pods (bench/schedule_scale.py --profile)."""
    if not text:
        return None
    return float(calendar.timegm(time.strptime(text.rstrip("Z").split(".")[0], "%Y-%m-%dT%H:%M:%S")))


def parse_rfc3339(text: object) -> float | None:
    """Any RFC 3339 time (an offset, fractions), as others write it; None if not one."""
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def format_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _resources(amounts: dict[str, Any] | None) -> Resources:
    if not amounts:
        return Resources()
    cpu = parse_cpu_milli(amounts["cpu"]) if "cpu" in amounts else 0
    memory = parse_memory_bytes(amounts["memory"]) if "memory" in amounts else 0
    gpus = int(amounts.get(RESOURCE_GPU, 0))
    return Resources(cpu, memory, gpus)


def node_view(obj: dict[str, Any]) -> Node:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    taints = tuple(
        Taint(t["key"], t.get("value", ""), t.get("effect", "NoSchedule")) for t in spec.get("taints") or []
        if not (ready and t.get("effect") == "NoSchedule" and t["key"] in CONDITION_TAINTS)
    )
    sick = [c for c in status.get("conditions") or []
            if c.get("type") in UNHEALTHY_CONDITIONS and c.get("status") == "True"]
    if sick and not any(t.key == TAINT_UNHEALTHY for t in taints):
        reason = sick[0].get("message") or sick[0].get("reason") or sick[0]["type"]
        taints = (*taints, Taint(TAINT_UNHEALTHY, str(reason), "NoSchedule"))
    return Node(
        name=meta["name"],
        allocatable=_resources(status.get("allocatable")),
        labels=meta.get("labels") or {},
        taints=taints,
        ready=ready,
        schedulable=not spec.get("unschedulable", False),
    )


@dataclass(frozen=True, slots=True)
class PodView:
    namespace: str
    name: str
    node: str | None
    request: Resources
    phase: str
    experiment: str | None  # namespace/name of the owning experiment, if ours
    member: str | None  # role-index
    attempt: int
    exit_code: int | None
    terminating: bool

    @property
    def holds_resources(self) -> bool:
        return self.node is not None and self.phase not in TERMINAL_POD_PHASES


def pod_view(obj: dict[str, Any]) -> PodView:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    labels = meta.get("labels") or {}
    total = Resources()
    for container in spec.get("containers") or []:
        total = total + _resources((container.get("resources") or {}).get("requests"))
    for container in spec.get("initContainers") or []:
        init = _resources((container.get("resources") or {}).get("requests"))
        total = Resources(max(total.cpu_milli, init.cpu_milli), max(total.memory, init.memory),
                          max(total.gpus, init.gpus))
    exp = labels.get(LABEL_EXPERIMENT)
    exit_code = None
    for cs in status.get("containerStatuses") or []:
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated and terminated.get("exitCode"):
            exit_code = int(terminated["exitCode"])
    # An init container that failed (shipyard-unpack) ended the pod before its command.
    inits = (status.get("initContainerStatuses") or []) if exit_code is None else []
    for cs in inits:
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated and terminated.get("exitCode"):
            exit_code = int(terminated["exitCode"])
    # Labels are anyone's to write: a pod with a role and no index, or a bad attempt, is
    # still seen (it holds its node), just never taken for a member of the gang.
    role, index = labels.get(LABEL_ROLE), labels.get(LABEL_INDEX)
    attempt = labels.get(LABEL_ATTEMPT, "0")
    return PodView(
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        node=spec.get("nodeName"),
        request=total,
        phase=status.get("phase", "Pending"),
        experiment=f"{meta.get('namespace')}/{exp}" if exp else None,
        member=f"{role}-{index}" if exp and role and index and index.isascii() and index.isdigit() else None,
        attempt=int(attempt) if attempt.isascii() and attempt.isdigit() else -1,
        exit_code=exit_code,
        terminating=bool(meta.get("deletionTimestamp")),
    )


@dataclass(frozen=True)
class ExperimentView:
    key: str
    namespace: str
    name: str
    uid: str
    spec: Experiment | None
    error: str | None
    status: dict[str, Any] = field(hash=False)
    created_at: float
    cancel_requested: bool
    deleting: bool
    held: bool = False

    @property
    def revision(self) -> int:
        return status_revision(self.status)


def experiment_view(obj: dict[str, Any]) -> ExperimentView:
    meta = obj["metadata"]
    data = {**(obj.get("spec") or {}), "name": meta["name"], "namespace": meta.get("namespace", "default")}
    spec: Experiment | None
    try:
        spec, error = experiment_from_data(data, meta["name"]), None
    except SpecError as exc:
        spec, error = None, "; ".join(exc.problems)
    annotations = meta.get("annotations") or {}
    return ExperimentView(
        key=f"{meta.get('namespace')}/{meta['name']}",
        namespace=meta.get("namespace", "default"),
        name=meta["name"],
        uid=meta.get("uid", ""),
        spec=spec,
        error=error,
        status=obj.get("status") or {},
        created_at=parse_time(meta.get("creationTimestamp")) or 0.0,
        cancel_requested=annotations.get(ANNOTATION_CANCEL) == "true",
        deleting=bool(meta.get("deletionTimestamp")),
        held=annotations.get(ANNOTATION_HOLD) == "true",
    )



def queue_view(obj: dict[str, Any]) -> Queue | None:
    """A Queue resource -> spec.Queue; an invalid one is logged and ignored."""
    name = obj["metadata"]["name"]
    try:
        return Queue.model_validate({**(obj.get("spec") or {}), "name": name})
    except ValidationError as exc:
        problems = spec_error(f"Queue {name}", exc, Queue, "the Queue").problems
        log.warning("ignoring invalid Queue %s: %s", name, "; ".join(problems))
        return None
