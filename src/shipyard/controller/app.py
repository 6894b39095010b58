"""`shipyard controller run`: caches, leader election and the scheduling loop.

With leader election the controller writes through a fenced client: every write
first checks that this replica's last lease renewal began within the renew deadline
(kube/leader.py), so a leader paused past its lease writes nothing when it resumes.
A standby fills its caches while it waits for the lease, so it acts within a cycle
of taking over. Losing the lease stops the loop; if the loop has not stopped within
`stop_bound_s` (a cancellation swallowed somewhere, a blocked event loop) a watchdog
thread ends the process with EXIT_STUCK. Either way the process exits non-zero and its supervisor (the
Deployment) restarts it as a fresh candidate.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from typing import Any

from shipyard.controller.controller import Controller
from shipyard.controller.settings import ControllerSettings
from shipyard.kube.client import KubeClient
from shipyard.kube.informer import cancel_all
from shipyard.kube.install import CONTROLLER, SYSTEM_NAMESPACE
from shipyard.kube.leader import LeaderElector, LostLeadership

log = logging.getLogger(__name__)
EXIT_STUCK = 3


def _watchdog(bound_s: float) -> threading.Timer:
    def stuck() -> None:
        log.critical("the controller did not stop within %gs of losing leadership; exiting", bound_s)
        logging.shutdown()
        os._exit(EXIT_STUCK)

    timer = threading.Timer(bound_s, stuck)
    timer.daemon = True
    timer.start()
    return timer


async def run_controller(client: KubeClient, settings: ControllerSettings | None = None, *,
                         namespace: str = SYSTEM_NAMESPACE, identity: str | None = None,
                         stop_bound_s: float = 5.0) -> None:
    """Run until cancelled; raises LostLeadership when the lease is lost. `settings`:
    the tree `shipyard controller run`'s flags fill (None: the defaults)."""
    settings = ControllerSettings() if settings is None else settings
    identity = identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    election = settings.leader
    elector = (LeaderElector(client, namespace, CONTROLLER, identity, lease_s=election.lease_s,
                             renew_deadline_s=election.renew_deadline_s, retry_s=election.retry_s)
               if election.elect else None)
    controller = Controller(client.fenced(elector.check) if elector else client, settings=settings)
    if settings.preflight is not None:
        controller.preflight.image = settings.preflight.image
        command = settings.preflight.command
        controller.preflight.command = list(command) if command is not None else None
    if settings.metrics_port is not None:
        controller.autoscaler.metrics.serve(settings.metrics_port, settings.metrics_address)
    leading = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(controller.run(leading), name="controller")]
    receiver = None
    progress = settings.progress
    if progress is not None:
        address = progress.address
        receiver = controller.enable_progress(None, progress.interval_s)
        port = await receiver.serve_http(progress.port, address)
        controller.writer.progress_url = progress.url or f"http://{address}:{port}"
        if progress.grpc_port is not None:
            grpc_port = await receiver.serve_grpc(progress.grpc_port, address)
            log.info("progress receiver (gRPC) on %s:%d", address, grpc_port)
        log.info("progress receiver on %s:%d; ranks report to %s", address, port,
                 controller.writer.progress_url)

        receiver.leading = elector is None

        async def write_progress() -> None:
            await leading.wait()  # a standby refuses reports (503): ranks reconnect elsewhere
            receiver.leading = True
            await receiver.run_writes()

        tasks.append(asyncio.create_task(write_progress(), name="progress-writes"))
    if elector is None:
        leading.set()
    else:
        async def lead() -> None:
            await elector.acquire()
            leading.set()
            await elector.hold()

        tasks.append(asyncio.create_task(lead(), name="lease"))
        tasks.append(asyncio.create_task(elector.lost.wait(), name="fence"))
    watchdog = None
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if elector is not None and elector.lost.is_set():
            watchdog = _watchdog(stop_bound_s)
            raise LostLeadership(f"{identity}: {elector.lost_reason}")
        for task in done:
            task.result()  # re-raise a crash
    finally:
        await cancel_all(tasks)
        if receiver is not None:
            await receiver.close()
        if watchdog is not None:
            watchdog.cancel()
        if elector is not None:
            await elector.release()
