"""Several clusters: `shipyard clusters`, `launch --cluster auto`, `move`, `fleet redispatch`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli.flags import check
from shipyard.cli.options import ClustersFile
from shipyard.cli.output import Format, console, dump, errors, fail, table
from shipyard.core.clusters import ClusterScore, Tier
from shipyard.fleet import (
    ClusterReading,
    MoveError,
    NoClusterFits,
    Placement,
    Unreachable,
    capacity_rows,
    move,
    pick,
    read_capacities,
    redispatch_once,
    submit,
)
from shipyard.kube.errors import ApiError
from shipyard.kube.experiments import ExperimentExists
from shipyard.kube.workdir import WorkdirError
from shipyard.spec import Experiment, SpecError
from shipyard.spec.clusters import ClustersConfig, load_clusters_config
from shipyard.spec.quantity import MAX_SECONDS

app = typer.Typer(help="Work across the configured clusters (see `shipyard clusters`).",
                  no_args_is_help=True)

# Short names for tables (choose_cluster says the long ones in each reason).
TIERS = {Tier.FITS_NOW: "fits now", Tier.SCALE_UP: "after scale-up", Tier.WAIT: "waits",
         Tier.CANNOT: "cannot run", Tier.UNREACHABLE: "unreachable"}


def load_config(path: Path | None) -> ClustersConfig:
    try:
        return load_clusters_config(path)
    except (SpecError, FileNotFoundError) as exc:
        fail(str(exc), 2)


def _progress(text: str) -> None:
    console.print(text, highlight=False)


def _warn(text: str) -> None:
    errors.print(f"[yellow]warning:[/yellow] {text}", highlight=False)


def warn_unreachable(readings: Sequence[ClusterReading]) -> None:
    for r in readings:
        if r.problem:
            _warn(f"cluster {r.ref.name} skipped: {r.problem}")


def clusters(output: Annotated[Format, typer.Option("--output", "-o", help="table, json or yaml.")]
             = Format.table, clusters_file: ClustersFile = None) -> None:
    """Show every configured cluster's capacity, one row per machine type: its nodes; what
    is free now (FREE: wholly free nodes, and in brackets the free GPUs, or CPUs on CPU
    machines); the gangs queued for it and what they ask; how many more nodes its pools
    may add (HEADROOM); the price of a new node. A cluster that does not answer is shown
    as unreachable, with the reason below the table.

    Example:  shipyard clusters -o yaml
    """
    config = load_config(clusters_file)
    readings = asyncio.run(read_capacities(list(config.clusters)))
    rows = capacity_rows(readings)
    if output is not Format.table:
        return dump(rows, output)
    # QUEUED: gangs waiting for the type, and what they ask; HEADROOM: nodes the pools may add.
    table(("CLUSTER", "LOCATION", "MACHINE", "NODES", "FREE", "QUEUED", "HEADROOM", "$/H"),
          [(r["cluster"], r["location"], r["machine_type"] or "-", r["nodes"], r["free"], r["queued"],
            r["headroom"], r["cost_per_hour"]) for r in rows])
    warn_unreachable(readings)


def _explain(p: Placement | None, scores: Sequence[ClusterScore]) -> None:
    table(("CLUSTER", "TIER", "$/H", "WAIT", "REASON"),
          [(s.cluster, f"{s.tier} {TIERS.get(s.tier, '')}", f"{s.cost_per_hour:.2f}",
            "" if s.wait_s is None else f"{s.wait_s:.0f}s", s.reason) for s in scores])
    if p is not None:
        console.print(f"chosen: [bold]{p.chosen.cluster}[/bold] ({TIERS.get(p.chosen.tier, '')}: "
                      f"{p.chosen.reason})", highlight=False)


def launch_auto(exp: Experiment, explain: bool, clusters_file: Path | None) -> None:
    """`shipyard launch --cluster auto`: place by capacity, then launch there."""
    config = load_config(clusters_file)
    readings = asyncio.run(read_capacities(list(config.clusters)))
    warn_unreachable(readings)
    try:
        p = pick(exp, readings)
    except NoClusterFits as exc:
        if explain:
            _explain(None, exc.scores)
        errors.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    if explain:
        _explain(p, p.scores)
    try:
        obj = asyncio.run(submit(p.cluster, exp))
    except (Unreachable, ApiError, ExperimentExists, WorkdirError) as exc:
        errors.print(f"[red]error:[/red] launching in {p.cluster.name}: {exc}", highlight=False)
        raise typer.Exit(1) from None
    meta = obj["metadata"]
    console.print(f"experiment {meta['namespace']}/{meta['name']} created in {p.cluster.name}; follow "
                  f"it with: shipyard status --cluster {p.cluster.context} {exp.name}", highlight=False)


def move_cmd(
    name: Annotated[str, typer.Argument(help="Experiment name.")],
    to: Annotated[str, typer.Option("--to", help="Cluster (name in the clusters config) to move it to; "
                                    "its own cluster releases a held experiment.")],
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Namespace.")] = "default",
    source: Annotated[str | None, typer.Option(
        "--from", help="Cluster it is in (default: looked up in every configured cluster).")] = None,
    hold_timeout: Annotated[float, typer.Option(
        help="Seconds to wait for the source to stop the experiment.",
        callback=check(above=0, high=MAX_SECONDS))] = 300.0,
    clusters_file: ClustersFile = None,
) -> None:
    """Move an experiment to another cluster: hold it where it is (its pods stop), wait
    until no pod is left, create it on the target, delete the original. It never runs in
    two clusters at once; if anything fails, re-run the same command to resume, or
    release the hold with `--to` the cluster it is in.

    Example:  shipyard move bert-large --to cloud -n team-a
    """
    config = load_config(clusters_file)
    try:
        result = asyncio.run(move(name, namespace, to, config, source=source, progress=_progress,
                                  warn=_warn, hold_timeout_s=hold_timeout))
    except MoveError as exc:
        errors.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    text = {
        "moved": f"moved {namespace}/{name} from {result.source} to {result.target}",
        "already-moved": f"{namespace}/{name} was already moved from {result.source} to {result.target}",
        "released": f"released {namespace}/{name} in {result.target}",
        "already-there": f"{namespace}/{name} is already in {result.target}; nothing to do",
    }[result.outcome]
    console.print(text + (f" ({result.note})" if result.note else ""), highlight=False)


@app.command("redispatch")
def redispatch_cmd(
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between passes.",
                                            callback=check(above=0, high=MAX_SECONDS))] = 30.0,
    clusters_file: ClustersFile = None,
) -> None:
    """Move experiments that have waited in one cluster's queue longer than the config's
    `redispatch_after` seconds to a cluster where they fit now (an Event on each says so).
    Off unless `redispatch_after` is set.

    Example:  shipyard fleet redispatch --once
    """
    config = load_config(clusters_file)
    if config.redispatch_after is None:
        errors.print("[red]error:[/red] redispatch_after is not set in the clusters config; "
                     "set it (seconds) to turn re-dispatch on")
        raise typer.Exit(2)
    while True:
        for m in asyncio.run(redispatch_once(config, progress=_progress, warn=_warn)):
            console.print(f"moved {m.namespace}/{m.name} from {m.source} to {m.target}", highlight=False)
        if once:
            return
        time.sleep(interval)
