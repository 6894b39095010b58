"""The one way an Experiment's status changes: a new dict with the changes and the
revision one higher.

The controller keeps what it wrote in an overlay until the watch shows an object of that
revision or later, so every write must bump it, and by exactly one step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict, Unpack

from shipyard.api.vocab import Phase


class StatusFields(TypedDict, total=False):
    """status's fields (the CRD's schema, kube/crds.py); None: cleared (a merge patch
    stores a null)."""

    phase: Phase
    message: str
    position: int | None
    startEstimate: dict[str, Any] | None
    restarts: int
    attempt: int
    pods: str | None
    placement: Mapping[str, str] | None
    submittedAt: str
    admittedAt: str
    startedAt: str
    finishedAt: str
    nextAttemptAt: str | None
    failedPod: str
    progress: dict[str, Any] | None
    conditions: list[dict[str, Any]]


def revision(status: Mapping[str, Any]) -> int:
    return int(status.get("revision", 0))


def next_status(status: Mapping[str, Any], **changes: Unpack[StatusFields]) -> dict[str, Any]:
    """`status` with `changes`, its revision bumped; `status` itself is left as it is."""
    out = dict(status)
    out.update(changes)
    if "phase" in changes:  # the plain string, as the watch gives it back
        out["phase"] = str(changes["phase"])
    out["revision"] = revision(status) + 1
    return out
