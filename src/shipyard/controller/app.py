"""`shipyard controller run`: caches, leader election and the scheduling loop."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

from shipyard.controller.controller import Controller
from shipyard.kube.client import KubeClient
from shipyard.kube.informer import cancel_all
from shipyard.kube.install import CONTROLLER, SYSTEM_NAMESPACE
from shipyard.kube.leader import LeaderElector

log = logging.getLogger(__name__)


async def run_controller(client: KubeClient, *, leader_elect: bool = True,
                         namespace: str = SYSTEM_NAMESPACE, identity: str | None = None,
                         autoscale: Mapping[str, Any] | None = None,
                         metrics_port: int | None = None) -> None:
    identity = identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    elector = LeaderElector(client, namespace, CONTROLLER, identity) if leader_elect else None
    if elector is not None:
        await elector.acquire()
    controller = Controller(client, autoscale=autoscale)
    if metrics_port is not None:
        controller.autoscaler.metrics.serve(metrics_port)
    tasks = [asyncio.create_task(controller.run(), name="controller")]
    if elector is not None:
        tasks.append(asyncio.create_task(elector.hold(), name="lease"))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # re-raise LostLeadership or a crash
    finally:
        await cancel_all(tasks)
        if elector is not None:
            await elector.release()
