"""`shipyard install` and `shipyard controller run`."""

from __future__ import annotations

import asyncio
import logging
import shlex
import signal
from dataclasses import replace
from functools import partial
from typing import Annotated

import typer
import yaml

from shipyard.cli.output import console, errors
from shipyard.controller.settings import (
    ControllerSettings,
    LeaderSettings,
    PreflightSettings,
    ProgressSettings,
    QuarantineSettings,
)
from shipyard.core.model import AutoscaleSettings, Policy
from shipyard.kube.client import KubeClient, load_connection

app = typer.Typer(help="The scheduling controller that runs in (or next to) a cluster.",
                  no_args_is_help=True)

Context = Annotated[str | None, typer.Option("--cluster", "-c", help="kubeconfig context.")]
# The flags' defaults are the settings tree's (controller/settings.py).
DEFAULT_POLICY = Policy()
AUTOSCALE, QUARANTINE, LEADER = AutoscaleSettings(), QuarantineSettings(), LeaderSettings()
PROGRESS_INTERVAL_S = ProgressSettings(0).interval_s


def policy_of(starvation_bound: float, estimates: bool, estimate_order_after: float) -> Policy:
    """The controller's scheduling policy from its flags (ControllerSettings.policy): the
    Policy tree the simulator takes too (SimConfig.policy), estimator settings included;
    the rest as Policy()."""
    return replace(DEFAULT_POLICY, starvation_bound_s=starvation_bound or None, estimates=estimates,
                   estimate_order_after_s=estimate_order_after)


@app.command("run")
def run(
    context: Context = None,
    in_cluster: Annotated[bool, typer.Option(help="Use the pod's service account.")] = False,
    leader_elect: Annotated[bool, typer.Option(help="Hold a Lease so only one replica acts.")]
    = LEADER.elect,
    metrics_port: Annotated[int | None, typer.Option(
        help="Serve Prometheus metrics on --metrics-address:PORT.")] = None,
    metrics_address: Annotated[str, typer.Option(
        help="Address the metrics endpoint listens on (0.0.0.0 in a cluster's pod, so "
        "Prometheus can scrape it).")] = "127.0.0.1",
    scale_down_confirm: Annotated[float, typer.Option(
        help="Seconds a scale-down candidate must stay idle before its node is removed "
        "(AutoscaleSettings.confirm_s).")]
    = AUTOSCALE.confirm_s,
    pool_backoff: Annotated[float, typer.Option(
        help="Seconds a NodePool is skipped after it failed to provision "
        "(AutoscaleSettings.backoff_s).")] = AUTOSCALE.backoff_s,
    look_ahead_gangs: Annotated[bool, typer.Option(
        help="Give a waiting gang no new nodes when running work stopped by its time limit "
        "(or, with --estimates, a confident run-time estimate) frees room for it before a "
        "new node could be Ready: fewer nodes bought, but the nodes not bought often served "
        "the next arrival (AutoscaleSettings.look_ahead_gangs; docs/cluster.md).")]
    = AUTOSCALE.look_ahead_gangs,
    lease_duration: Annotated[float, typer.Option(
        "--leader-elect-lease-duration", min=2,
        help="Seconds a standby waits, seeing the lease unrenewed, before taking over.")]
    = LEADER.lease_s,
    renew_deadline: Annotated[float, typer.Option(
        "--leader-elect-renew-deadline", min=1,
        help="Seconds the leader may go without renewing before it stops writing and exits; "
             "must be below the lease duration (the gap is the safety margin).")]
    = LEADER.renew_deadline_s,
    retry_period: Annotated[float, typer.Option(
        "--leader-elect-retry-period", min=0.1,
        help="Seconds between renewals (and between a standby's tries).")] = LEADER.retry_s,
    quarantine_after: Annotated[int, typer.Option(
        min=0, help="Quarantine (taint shipyard.dev/quarantined:NoSchedule) a node on which "
        "this many different experiments failed within --quarantine-window; 0: never.")]
    = QUARANTINE.after,
    quarantine_window: Annotated[float, typer.Option(
        min=1, help="Seconds over which --quarantine-after counts a node's failed experiments.")]
    = QUARANTINE.window_s,
    progress_port: Annotated[int | None, typer.Option(
        help="Receive ranks' shipyard.progress reports on --progress-address:PORT (HTTP).")] = None,
    progress_address: Annotated[str, typer.Option(
        help="Address the progress receiver listens on (0.0.0.0 in a cluster's pod).")]
    = "127.0.0.1",
    progress_url: Annotated[str | None, typer.Option(
        help="Where ranks reach the receiver, e.g. http://shipyard-controller.shipyard-system:8088 "
             "(default: http://ADDRESS:PORT).")] = None,
    progress_grpc_port: Annotated[int | None, typer.Option(
        help="Also receive reports over gRPC on this port (needs grpcio; for measuring, "
             "shipyard.progress sends HTTP).")] = None,
    progress_interval: Annotated[float, typer.Option(
        min=1, help="Seconds between two status.progress writes of an experiment.")]
    = PROGRESS_INTERVAL_S,
    preflight_image: Annotated[str | None, typer.Option(
        help="Run a check pod of this image on every node tainted shipyard.dev/preflight; "
             "its exit 0 removes the taint (docs/monitoring.md).")] = None,
    preflight_command: Annotated[str | None, typer.Option(
        help="The check pod's command, split as a shell would (default: the image's own).")] = None,
    starvation_bound: Annotated[float, typer.Option(
        min=0, help="Seconds a gang may wait before it goes first among its priority and keeps "
        "what frees on its nodes (Policy.starvation_bound_s); 0: no bound.")]
    = DEFAULT_POLICY.starvation_bound_s or 0.0,
    estimates: Annotated[bool, typer.Option(
        help="Run times learnt from the experiments that succeeded order the queues and end "
        "gangs without a time limit for backfill (Policy.estimates).")] = DEFAULT_POLICY.estimates,
    estimate_order_after: Annotated[float, typer.Option(
        min=0, help="Seconds a queue's oldest waiting gang must have waited before estimates "
        "order that queue shortest first (Policy.estimate_order_after_s).")]
    = DEFAULT_POLICY.estimate_order_after_s or 0.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the controller: gang admission, fair share, preemption, lifecycle, and the
    autoscaler of the cluster's NodePools (none defined: nothing is scaled).

    With --leader-elect (the default) replicas share a Lease and one acts; the leader
    writes only while its renewal is fresh and exits with status 1 when it loses the
    lease (3 if it could not stop), so its supervisor restarts it as a standby.

    Example:  shipyard controller run --cluster shipyard-dev --metrics-port 9090
    """
    from shipyard.controller.app import run_controller
    from shipyard.controller.controller import InformerStopped
    from shipyard.kube.leader import LostLeadership

    if not retry_period < renew_deadline < lease_duration:
        errors.print("[red]error:[/red] leader election needs --leader-elect-retry-period < "
                     "--leader-elect-renew-deadline < --leader-elect-lease-duration, got "
                     f"{retry_period:g}, {renew_deadline:g}, {lease_duration:g}")
        raise typer.Exit(2)
    if progress_grpc_port is not None:
        from shipyard.cli.lazy import available

        if not available("grpc"):
            errors.print("[red]error:[/red] --progress-grpc-port needs grpcio: pip install grpcio")
            raise typer.Exit(2)
    settings = ControllerSettings(
        policy=policy_of(starvation_bound, estimates, estimate_order_after),
        autoscale=replace(AUTOSCALE, confirm_s=scale_down_confirm, backoff_s=pool_backoff,
                          look_ahead_gangs=look_ahead_gangs),
        quarantine=QuarantineSettings(quarantine_after, quarantine_window),
        leader=LeaderSettings(leader_elect, lease_duration, renew_deadline, retry_period),
        progress=None if progress_port is None else ProgressSettings(
            progress_port, progress_address, progress_url, progress_interval, progress_grpc_port),
        preflight=None if preflight_image is None else PreflightSettings(
            preflight_image, tuple(shlex.split(preflight_command)) if preflight_command else None),
        metrics_port=metrics_port, metrics_address=metrics_address)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp").setLevel(logging.DEBUG if verbose else logging.WARNING)

    async def main() -> None:
        # SIGTERM (a pod being stopped) ends the loop like Ctrl-C, so the lease is released.
        task = asyncio.current_task()
        if task is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        async with KubeClient(load_connection(context=context, in_cluster=in_cluster)) as client:
            await run_controller(client, settings)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except asyncio.CancelledError:  # SIGTERM: stopped on purpose, lease released
        raise typer.Exit(0) from None
    except (LostLeadership, InformerStopped) as exc:
        errors.print(f"controller stopped: {exc}")
        raise typer.Exit(1) from None


def install(
    context: Context = None,
    image: Annotated[str | None, typer.Option(
        help="Controller image (default: shipyard/controller:0.1.0; on a dev cluster with "
        "real nodes, the shipyard image that cluster built).")] = None,
    replicas: Annotated[int, typer.Option(help="Controller replicas (0: run it yourself).")] = 1,
    progress_port: Annotated[int | None, typer.Option(
        help="The controller receives ranks' shipyard.progress reports on this port, behind "
             "the Service shipyard-controller.shipyard-system, and tells pods its URL "
             "(the chart's progressPort).")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        help="The controller serves Prometheus metrics on 127.0.0.1:PORT in its pod "
             "(the chart's metricsPort).")] = None,
    quarantine_after: Annotated[int, typer.Option(
        min=0, help="The controller quarantines a node on which this many different "
        "experiments failed within --quarantine-window; 0: never (quarantineAfter).")] = 0,
    quarantine_window: Annotated[float | None, typer.Option(
        min=1, help="Seconds over which --quarantine-after counts (default: the controller's, "
        f"{QUARANTINE.window_s:g}; quarantineWindow).")] = None,
    preflight_image: Annotated[str | None, typer.Option(
        help="The controller runs a check pod of this image on every node tainted "
             "shipyard.dev/preflight (preflightImage; docs/monitoring.md).")] = None,
    preflight_command: Annotated[str | None, typer.Option(
        help="The check pod's command, split as a shell would (preflightCommand).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the manifests instead.")] = False,
) -> None:
    """Install shipyard in a cluster: CRDs (Experiment, Queue, NodePool), RBAC, controller.

    Example:  shipyard install --cluster shipyard-dev --replicas 0
    """
    from shipyard.kube.install import DEFAULT_IMAGE, manifests
    from shipyard.kube.install import install as apply_all

    if preflight_command is not None and preflight_image is None:
        errors.print("[red]error:[/red] --preflight-command needs --preflight-image")
        raise typer.Exit(2)
    build = partial(manifests, progress_port=progress_port, metrics_port=metrics_port,
                    quarantine_after=quarantine_after, quarantine_window=quarantine_window,
                    preflight_image=preflight_image, preflight_command=preflight_command)
    placement = _dev_real_node_placement(context) if context else None
    if placement is not None:
        objects = build(image or placement.pop("image"), replicas, **placement)
    else:
        objects = build(image or DEFAULT_IMAGE, replicas)
    if dry_run:
        print(yaml.safe_dump_all(objects, sort_keys=False), end="")
        return
    if context is None:
        errors.print("[red]error:[/red] name the cluster: --cluster CONTEXT (or --dry-run)")
        raise typer.Exit(2)

    async def main() -> None:
        async with KubeClient.from_kubeconfig(context=context) as client:
            await apply_all(client, objects)

    asyncio.run(main())
    console.print(f"installed shipyard in {context}: {len(objects)} objects applied")


def _dev_real_node_placement(context: str) -> dict | None:
    """On a dev cluster with real nodes: its own shipyard image, on a real node, small."""
    from shipyard.dev.cluster import list_clusters

    for c in list_clusters():
        if c.context == context and c.real_nodes:
            from shipyard.dev import images, realnode

            return {"image": images.shipyard_image_name(), "cpu": "100m", "memory": "256Mi",
                    "memory_limit": "512Mi",
                    "node_selector": {realnode.LABEL_NODE_KIND: "real"},
                    "tolerations": [{"key": realnode.LABEL_NODE_KIND, "operator": "Equal",
                                     "value": "real", "effect": "NoSchedule"}]}
    return None
