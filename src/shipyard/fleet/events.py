"""Kubernetes Events written by the client side (moves, re-dispatch), so `kubectl
describe experiment` tells the experiment's whole story in the cluster it is in."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from shipyard.kube.api import ApiClient
from shipyard.kube.errors import ApiError
from shipyard.kube.resources import EVENTS

COMPONENT = "shipyard-fleet"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


async def record_event(client: ApiClient, obj: dict[str, Any], reason: str, message: str) -> None:
    """A Normal Event about `obj`; best effort: a lost event never fails the move."""
    meta = obj["metadata"]
    body = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta.get("uid", "")},
        "reason": reason, "message": message[:1000], "type": "Normal",
        "firstTimestamp": _now(), "lastTimestamp": _now(), "count": 1,
        "source": {"component": COMPONENT},
    }
    with contextlib.suppress(ApiError):
        await client.create(EVENTS, body)
