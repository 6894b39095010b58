"""What happens to one experiment next, decided from its status and its pods. Pure.

Phases: Queued -> Admitted (placement decided, pods being created) -> Starting (all
pods created) -> Running (all pods running) -> Succeeded | Failed | Cancelled.
A failed pod, a pod whose node is NotReady or gone, a deleted pod or an exceeded
time limit stops the whole gang: Restarting (pods being deleted, then back to
Queued after the backoff) or Failed when the retry policy is spent. Preempted
gangs are deleted the same way and requeued without counting a restart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from shipyard.api.status import next_status
from shipyard.api.vocab import ANNOTATION_HOLD, HELD, STOPPING, TAINT_UNHEALTHY, TERMINAL, Phase
from shipyard.controller.views import ExperimentView, PodView, format_time, parse_time
from shipyard.core.lifecycle import (
    CANCELLED_REASON,
    after_failure,
    success_message,
    success_roles,
    time_limit_exceeded,
)
from shipyard.core.model import Node

STALLED = "Stalled"  # the condition (and Event reason) of a gang that stopped reporting
# How long after admission a created pod may still be missing from the watch cache
# before it counts as deleted.
POD_VISIBLE_S = 60.0


@dataclass(frozen=True, slots=True)
class Decision:
    status: dict[str, Any] | None = None  # the new status, or None for no change
    delete: str | None = None  # "all" pods, "active" (non-terminated) pods, or None
    create: bool = False  # create the pods of the current placement that are missing
    event: tuple[str, str] | None = None  # (reason, message) for a Kubernetes Event
    # Terminating pods bound to a node that no longer exists: no kubelet will ever confirm
    # their end, and pod GC would take ~40 s more, so they are deleted at once (grace 0).
    force: tuple[str, ...] = ()
    # Why the deleted pods stop, written into each pod (file /etc/shipyard/stop-reason)
    # before its SIGTERM: "<cause>: <details>", cause one of core.lifecycle.STOP_CAUSES.
    stop_reason: str | None = None


def reconcile(
    exp: ExperimentView,
    status: Mapping[str, Any],
    pods: Sequence[PodView],
    nodes: Mapping[str, Node],
    now: float,
    stalled: str | None = None,
) -> Decision:
    """`stalled`: why the gang counts as hung (no progress report for its hang_timeout;
    the progress receiver's finding), or None."""
    phase = status.get("phase")
    if not phase:
        return Decision(next_status(status, phase=Phase.QUEUED, restarts=0, attempt=0, message="queued",
                                    submittedAt=format_time(exp.created_at)))
    if phase in TERMINAL:
        active = [p for p in pods if p.phase not in ("Succeeded", "Failed") and not p.terminating]
        return Decision(delete="active") if active else Decision()
    if exp.spec is None:
        return Decision(next_status(status, phase=Phase.FAILED, message=f"invalid spec: {exp.error}",
                                    finishedAt=format_time(now), position=None),
                        delete="active", event=("InvalidSpec", exp.error or ""))
    if exp.cancel_requested:
        return Decision(next_status(status, phase=Phase.CANCELLED, message="cancelled", position=None,
                                    finishedAt=format_time(now)),
                        delete="active", event=("Cancelled", "cancelled; pods removed"),
                        stop_reason=CANCELLED_REASON)
    if exp.held or phase in HELD:
        return _hold(exp, status, pods)
    if phase in STOPPING:
        if pods:
            return _delete_all(pods, nodes)
        cause = "preemption" if phase == Phase.PREEMPTED else "failure"
        return Decision(next_status(status, phase=Phase.QUEUED, placement=None,
                                    message=f"requeued after {cause}"))
    if phase == Phase.ADMITTED:
        # A pod still terminating (of a creation rolled back half-way, say) holds its
        # name: create the gang once it is gone, or the new gang would count it deleted.
        if any(p.terminating for p in pods):
            return Decision(force=_stuck(pods, nodes))
        return Decision(create=True)
    if phase in (Phase.STARTING, Phase.RUNNING):
        decision = _watch_gang(exp, status, pods, nodes, now)
        if decision == Decision() and phase == Phase.RUNNING:
            return _hang(exp, status, stalled, now)
        return decision
    # Queued: the scheduler's business, once no pod is left (say, of an admission whose
    # rollback could not delete them all): a queued gang holds no nodes.
    return _delete_all(pods, nodes)


def _stuck(pods: Sequence[PodView], nodes: Mapping[str, Node]) -> tuple[str, ...]:
    return tuple(p.name for p in pods if p.terminating and p.node and p.node not in nodes)


def _delete_all(pods: Sequence[PodView], nodes: Mapping[str, Node]) -> Decision:
    return Decision(delete="all" if any(not p.terminating for p in pods) else None,
                    force=_stuck(pods, nodes))


def _watch_gang(exp: ExperimentView, status: Mapping[str, Any], pods: Sequence[PodView],
                nodes: Mapping[str, Node], now: float) -> Decision:
    spec = exp.spec
    if spec is None:  # checked by the caller
        return Decision()
    placement: Mapping[str, str] = status.get("placement") or {}
    by_member = {p.member: p for p in pods if p.member}
    admitted = parse_time(status.get("admittedAt")) or now
    problem = None
    for member, node_name in sorted(placement.items()):
        pod = by_member.get(member)
        if pod is None and status.get("phase") == Phase.STARTING and now - admitted < POD_VISIBLE_S:
            # Created, but the watch has not shown it yet (a big gang on a busy server).
            return Decision()
        if pod is None or pod.terminating:
            problem = f"pod {spec.name}-{member} was deleted"
            break
        if pod.phase == "Failed":
            code = f" with exit code {pod.exit_code}" if pod.exit_code is not None else ""
            problem = f"pod {pod.name} failed{code}"
            break
        node = nodes.get(node_name)
        if pod.phase == "Succeeded":
            continue  # a finished rank's node may be gone or sick: it no longer matters
        if node is None or not node.ready:
            problem = f"node {node_name} of pod {pod.name} is {'gone' if node is None else 'NotReady'}"
            break
        sick = next((t for t in node.taints if t.key == TAINT_UNHEALTHY), None)
        if sick is not None:
            problem = f"node {node_name} of pod {pod.name} is unhealthy: {sick.value or 'tainted'}"
            break
    started = status.get("startedAt")
    if problem is None and started:
        problem = time_limit_exceeded(spec.time_limit, parse_time(started) or now, now)
    if problem is not None:
        return _fail(spec, status, problem, now)

    roles = success_roles(spec)
    needed = [m for m in placement if m.rsplit("-", 1)[0] in roles]
    if needed and all(by_member[m].phase == "Succeeded" for m in needed):
        return Decision(next_status(status, phase=Phase.SUCCEEDED, position=None, finishedAt=format_time(now),
                                    message=success_message(roles, "pod", "succeeded")),
                        delete="active", event=("Succeeded", "experiment succeeded"),
                        stop_reason="finished: every pod of the success roles succeeded")
    running = sum(1 for m in placement if by_member[m].phase in ("Running", "Succeeded"))
    pods_text = f"{running}/{len(placement)}"
    if status.get("phase") == Phase.STARTING and running == len(placement):
        return Decision(next_status(status, phase=Phase.RUNNING, pods=pods_text, startedAt=format_time(now),
                                    message=f"{len(placement)} pod(s) running"))
    if status.get("pods") != pods_text:
        return Decision(next_status(status, pods=pods_text))
    return Decision()


def _stalled_condition(status: Mapping[str, Any]) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == STALLED), None)


def _hang(exp: ExperimentView, status: Mapping[str, Any], stalled: str | None, now: float) -> Decision:
    """A Running gang that went silent: the condition Stalled, then the spec's on_hang
    (restart: the whole gang, as after a failure; fail: Failed at once; notify: only
    the condition and an Event). Reports again: the condition goes False."""
    spec = exp.spec
    current = _stalled_condition(status)
    others = [c for c in status.get("conditions") or [] if c.get("type") != STALLED]
    if stalled is None or spec is None:
        if current is None or current.get("status") != "True":
            return Decision()
        # Set before this attempt began: it was restarted for it, and is not stalled yet.
        earlier = (parse_time(current.get("lastTransitionTime")) or 0) < (
            parse_time(status.get("startedAt")) or 0)
        reason, message = (("Restarted", "a new attempt began") if earlier
                           else ("ProgressResumed", "a rank reports or logs again"))
        cleared = {**current, "status": "False", "reason": reason, "message": message,
                   "lastTransitionTime": format_time(now)}
        return Decision(next_status(status, conditions=[*others, cleared]),
                        event=None if earlier else (reason, message))
    if current is not None and current.get("status") == "True" and spec.on_hang == "notify":
        return Decision()  # said once
    condition = {"type": STALLED, "status": "True", "reason": "NoProgress", "message": stalled[:1000],
                 "lastTransitionTime": format_time(now)}
    marked = {**status, "conditions": [*others, condition]}
    if spec.on_hang == "notify":
        return Decision(next_status(marked), event=(STALLED, stalled))
    decision = _fail(spec, marked, f"stalled: {stalled}", now, retry=spec.on_hang == "restart")
    return replace(decision, event=(STALLED, f"{stalled}; {spec.on_hang}"))


def _hold(exp: ExperimentView, status: Mapping[str, Any], pods: Sequence[PodView]) -> Decision:
    """Holding (pods being deleted) -> Held (none left); released: back to the queue."""
    phase = status.get("phase")
    if not exp.held:
        return Decision(next_status(status, phase=Phase.QUEUED, placement=None, message="released from hold"))
    live = [p for p in pods if not p.terminating]
    if pods:
        new = None if phase == Phase.HOLDING else next_status(
            status, phase=Phase.HOLDING, position=None, message=f"held: stopping {len(pods)} pod(s)")
        return Decision(new, delete="all" if live else None,
                        stop_reason="held: held, or moving to another cluster" if live else None)
    if phase == Phase.HELD:
        return Decision()
    return Decision(next_status(status, phase=Phase.HELD, placement=None, position=None, pods=None,
                                message=f"held: not scheduled until the {ANNOTATION_HOLD} annotation "
                                        "is removed"),
                    event=("Held", "stopped and kept out of scheduling"))


def _fail(spec: Any, status: Mapping[str, Any], problem: str, now: float,
          retry: bool = True) -> Decision:
    after = after_failure(spec.retry, int(status.get("restarts", 0)), problem, may_retry=retry)
    if after.restart:
        return Decision(
            next_status(status, phase=after.phase, restarts=after.restarts, failedPod=problem,
                        nextAttemptAt=format_time(now + after.delay), message=after.message),
            delete="all", event=("Restarting", problem), stop_reason=after.stop_reason,
        )
    return Decision(
        next_status(status, phase=after.phase, failedPod=problem, finishedAt=format_time(now), position=None,
                    message=after.message),
        delete="active", event=("Failed", problem), stop_reason=after.stop_reason,
    )
