"""The `shipyard` command. Thin: parse, call the packages, print.

Start-up matters (people run it in loops and scripts): this module imports only typer
and the output helpers. Each command imports what it needs when it runs, and the
commands of other modules are registered lazily (cli/lazy.py), so `shipyard --help`
loads neither kubernetes nor pydantic nor the local backend. Help is click's plain text
(`rich_markup_mode=None`): typer's rich help formatter imports markdown-it, pygments and
attrs, which cost more than the rest of `--help` together (bench/cli_startup.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shipyard.api.vocab import Phase
from shipyard.cli.lazy import Entry, available, lazy_group
from shipyard.cli.options import ClustersFile
from shipyard.cli.output import (
    Format,
    age,
    console,
    dump,
    fail,
    phase,
    progress_cells,
    progress_line,
    start_cells,
    table,
)

if TYPE_CHECKING:
    from shipyard.core.start_estimate import StartEstimate
    from shipyard.local import RunStatus, Store
    from shipyard.spec import Experiment

SETTINGS: dict[str, Any] = dict(
    name="shipyard",
    help=(
        "Describe deep-learning experiments in Python or YAML and run them: on this "
        "machine (the embedded local backend), or on Kubernetes.\n\n"
        "Start with:  shipyard launch examples/allreduce/experiment.py"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
# Listed in this order: these commands, then the ones defined below, then the groups.
LAZY = {
    "install": Entry("shipyard.cli.controller_cmd:install", group=False),
    "clusters": Entry("shipyard.cli.fleet_cmd:clusters", group=False),
    "move": Entry("shipyard.cli.fleet_cmd:move_cmd", group=False),
    "usage": Entry("shipyard.cli.usage_cmd:usage", group=False),
    "dashboard": Entry("shipyard.cli.dashboard_cmd:dashboard", group=False),
    **({"dev": Entry("shipyard.cli.dev:app", group=True)} if available("shipyard.cli.dev") else {}),
    "controller": Entry("shipyard.cli.controller_cmd:app", group=True),
    "fleet": Entry("shipyard.cli.fleet_cmd:app", group=True),
}
app = typer.Typer(cls=lazy_group(SETTINGS, LAZY), **SETTINGS)

SpecFile = Annotated[
    Path, typer.Argument(help="Experiment file: a .py module defining an Experiment, or YAML.")
]
Output = Annotated[Format, typer.Option("--output", "-o", help="table, json or yaml.")]
Cluster = Annotated[
    str | None,
    typer.Option("--cluster", "-c", help="kubeconfig context of a cluster running shipyard; "
                 "left out: this machine (the local backend)."),
]
Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Namespace (cluster only).")]
RunRef = Annotated[str, typer.Argument(help="Run id (e.g. allreduce-3) or experiment name (its latest run).")]
Debug = Annotated[
    bool, typer.Option("--debug", help="When a .py spec raises, also show its traceback.")
]


def _load(path: Path, debug: bool = False) -> Experiment:
    from shipyard.spec import SpecError, load_experiment

    try:
        return load_experiment(path)
    except SpecError as exc:
        details = getattr(exc, "details", None)
        if details and debug:
            print(details.rstrip(), file=sys.stderr)
        hint = " (run with --debug for its traceback)" if details and not debug else ""
        fail(f"{exc}{hint}", 2, prefix="" if details else "error: ")  # it says "error in spec file"
    except FileNotFoundError as exc:
        fail(str(exc), 2)


def _store() -> Store:
    from shipyard.local import Store
    from shipyard.local.machine import SettingError

    try:
        return Store()
    except SettingError as exc:
        fail(str(exc), 2)


def _resolve(store: Store, ref: str) -> RunStatus:
    from shipyard.local import RunNotFound
    from shipyard.local.store import RunDamaged
    from shipyard.spec.inputs import short

    try:
        return store.resolve(ref)
    except RunDamaged as exc:
        fail(str(exc))
    except RunNotFound:
        fail(f"no run or experiment named {short(ref)} in {store.runs}; see `shipyard list`")


@app.command("launch")
def launch_cmd(
    file: SpecFile,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Queue it and return; follow with `shipyard logs -f`.")
    ] = False,
    cluster_context: Annotated[
        str | None,
        typer.Option("--cluster", "-c", help="kubeconfig context of a cluster running shipyard, or "
                     "`auto`: the configured cluster with capacity for it (see `shipyard clusters`); "
                     "left out: this machine (the local backend)."),
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="With --cluster auto: show how every cluster was judged.")
    ] = False,
    clusters_file: ClustersFile = None,
    debug: Debug = False,
) -> None:
    """Launch an experiment on this machine (every replica of every role as a process),
    or with `--cluster` on a Kubernetes cluster running the shipyard controller;
    `--cluster auto` picks, among the configured clusters, the one that can start it
    soonest (and cheapest, and preferred for its kind of work).

    The whole gang starts together or waits in the local queue until this machine has
    the CPUs, memory and GPUs for all of it. Output of every rank is shown with its
    name in front and kept on disk. Ctrl-C stops every process of the experiment.

    Example:  shipyard launch examples/allreduce/experiment.py

    Example:  shipyard launch --cluster auto --explain examples/ddp/experiment.py
    """
    exp = _load(file, debug)
    if cluster_context:
        from shipyard.kube.workdir import resolve_workdir

        exp = resolve_workdir(exp, file)  # what the replicas need, shipped with it
    if cluster_context == "auto":
        from shipyard.cli import fleet_cmd

        return fleet_cmd.launch_auto(exp, explain, clusters_file)
    if cluster_context:
        from shipyard.cli import cluster

        return cluster.launch(cluster_context, exp)
    from shipyard.cli.reporter import ConsoleReporter
    from shipyard.local import launch
    from shipyard.local.machine import SettingError
    from shipyard.local.preflight import LaunchError

    try:
        if detach:
            status = launch(exp, file, detach=True)
            console.print(f"{status.id} queued; follow it with: shipyard logs -f {status.id}")
            return
        status = launch(exp, file, reporter=ConsoleReporter(console))
    except (SettingError, LaunchError) as exc:
        fail(str(exc), 2)
    exit_codes: dict[str, int] = {Phase.SUCCEEDED: 0, Phase.CANCELLED: 130}
    code = exit_codes.get(status.phase, 1)
    raise typer.Exit(code)


@app.command()
def render(
    file: SpecFile,
    output: Annotated[Format, typer.Option("--output", "-o", help="yaml or json.")] = Format.yaml,
    debug: Debug = False,
) -> None:
    """Print the Kubernetes objects the experiment becomes (a dry run; needs no cluster).

    A headless Service for rendezvous and one Pod per replica, with resource requests,
    node selectors, tolerations and the torchrun/MPI environment.

    Example:  shipyard render examples/ddp/experiment.py -o json
    """
    import json

    from shipyard.kube.workdir import resolve_workdir
    from shipyard.render import render_experiment
    from shipyard.render.objects import to_yaml

    objects = render_experiment(resolve_workdir(_load(file, debug), file))
    if output is Format.json:
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2))
    else:
        print(to_yaml(objects), end="")


def _summary(s: RunStatus) -> dict[str, object]:
    return {
        "id": s.id, "name": s.name, "queue": s.queue, "priority": s.priority,
        "phase": s.phase, "position": s.position, "restarts": s.restarts,
        "message": s.message, "source": s.source,
        "submitted_at": s.submitted_at, "started_at": s.started_at, "finished_at": s.finished_at,
    }


def _starts(store: Store, runs: list[RunStatus]) -> dict[str, StartEstimate]:
    """Queued run id -> its estimated start (none when nothing waits, or when a
    SHIPYARD_LOCAL_* setting is bad: a launch says why)."""
    if not any(s.phase == Phase.QUEUED for s in runs):
        return {}
    import time

    from shipyard.local.machine import SettingError, detect_machine
    from shipyard.local.start import start_estimates

    try:
        machine = detect_machine()
    except SettingError:
        return {}
    return start_estimates(store, machine, time.time())


def _start_json(est: StartEstimate | None) -> dict[str, Any] | None:
    if est is None:
        return None
    return {"at": est.at, "after": list(est.after), "basis": est.basis, "reason": est.reason}


def _start_cells(est: StartEstimate | None) -> tuple[str, str]:
    return start_cells(est.at, est.reason) if est is not None else ("", "")


def _progress(store: Store, s: RunStatus) -> dict[str, Any] | None:
    from shipyard.local import progress

    return progress.read(store.run_dir(s.id))


@app.command("list")
def list_cmd(
    output: Output = Format.table,
    all_runs: Annotated[bool, typer.Option("--all/--active", help="Include finished runs.")] = True,
    cluster_context: Cluster = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Namespace (cluster only; default: all).")
    ] = None,
) -> None:
    """List experiments run on this machine (or in a cluster), oldest first.

    Example:  shipyard list -o json
    """
    if cluster_context:
        from shipyard.cli import cluster

        return cluster.list_experiments(cluster_context, namespace, output)
    store = _store()
    everything = store.all()
    starts = _starts(store, everything)
    runs = [s for s in everything if all_runs or s.active]
    if output is not Format.table:
        return dump([_summary(s) | {"progress": _progress(store, s),
                                    "start_estimate": _start_json(starts.get(s.id))} for s in runs],
                    output)
    rows = [
        (s.id, s.queue, phase(s.phase), len(s.ranks) or "", s.restarts,
         *progress_cells(_progress(store, s), s.active), age(s.submitted_at),
         _start_cells(starts.get(s.id))[0], s.message)
        for s in runs
    ]
    table(("ID", "QUEUE", "PHASE", "RANKS", "RESTARTS", "PROGRESS", "ETA", "AGE", "START", "MESSAGE"),
          rows)


@app.command()
def status(ref: RunRef, output: Output = Format.table, cluster_context: Cluster = None,
           namespace: Namespace = "default") -> None:
    """Show one experiment: phase, why it waits, every rank's process (or pod) and exit code.

    Example:  shipyard status allreduce
    """
    if cluster_context:
        from shipyard.cli import cluster

        return cluster.status(cluster_context, ref, namespace, output)
    store = _store()
    s = _resolve(store, ref)
    progress = _progress(store, s)
    start = _starts(store, store.all()).get(s.id) if s.phase == Phase.QUEUED else None
    if output is not Format.table:
        data = _summary(s) | {"progress": progress, "start_estimate": _start_json(start),
                              "ranks": {k: vars(v) for k, v in s.ranks.items()}}
        return dump(data, output)
    console.print(f"[bold]{s.id}[/bold]  {phase(s.phase)}  queue {s.queue}  priority {s.priority}"
                  f"  restarts {s.restarts}")
    if progress:
        console.print(progress_line(progress, s.active), highlight=False)
    if s.position:
        console.print(f"position {s.position} in the local queue")
    console.print(s.message, highlight=False)
    if start is not None:
        console.print(f"estimated start: {_start_cells(start)[1]}", highlight=False)
    rows = [(name, r.state, r.pid, r.exit_code) for name, r in s.ranks.items()]
    if rows:
        table(("RANK", "STATE", "PID", "EXIT"), rows)


@app.command()
def logs(
    ref: RunRef,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")] = False,
    rank: Annotated[str | None, typer.Option("--rank", "-r", help="Only this rank, e.g. worker-0.")] = None,
    cluster_context: Cluster = None,
    namespace: Namespace = "default",
    since: Annotated[str | None, typer.Option(
        "--since", help="Only lines of the last DURATION, e.g. 30s, 10m.")] = None,
    grep: Annotated[str | None, typer.Option(
        "--grep", help="Only lines matching this regular expression (Python syntax).")] = None,
    tail: Annotated[int | None, typer.Option(
        "--tail", help="Only the last N lines of each rank (after --grep).")] = None,
) -> None:
    """Print the logs of every rank, each line prefixed with its rank. Without -f, the
    rank that failed first is named first, with its exit code and last lines.

    Example:  shipyard logs allreduce --grep 'loss|error' --tail 50
    """
    from shipyard.cli.rank_logs import LineFilter, layout, local_failure

    try:
        filt = LineFilter.parse(grep, tail)
    except ValueError as exc:
        fail(str(exc), 2)
    since_s = None
    if since is not None:
        from shipyard.spec.quantity import parse_duration_seconds

        try:
            since_s = parse_duration_seconds(since)
        except ValueError as exc:
            fail(f"--since: {exc}")
    if cluster_context:
        from shipyard.cli import cluster

        return cluster.logs(cluster_context, ref, namespace, rank, follow, since_s, filt)
    import time

    from shipyard.local import read_logs
    from shipyard.local.store import RunDamaged
    from shipyard.spec.inputs import short

    store = _store()
    s = _resolve(store, ref)
    cutoff = time.time() - since_s if since_s is not None else None
    try:
        if follow:
            for name, line in read_logs(s.id, follow=True, rank=rank, store=store, since=cutoff,
                                        backlog=filt.apply):
                if filt.keeps(line):
                    print(f"[{name}] {line}", flush=True)
            return
        lines: dict[str, list[str]] = {}
        for name, line in read_logs(s.id, rank=rank, store=store, since=cutoff):
            lines.setdefault(name, []).append(line)
        ranks = {k: v for k, v in store.load(s.id).ranks.items() if rank is None or k == rank}
        for out in layout(lines, local_failure(ranks), filt):
            print(out)
    except RunDamaged as exc:
        fail(str(exc))
    except KeyError:
        fail(f"{s.id} has no rank {short(rank)}")
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command("cancel")
def cancel_cmd(ref: RunRef, cluster_context: Cluster = None, namespace: Namespace = "default") -> None:
    """Cancel an experiment: stop every process (or pod) of it, or take it out of the queue.

    Example:  shipyard cancel allreduce-2
    """
    if cluster_context:
        from shipyard.cli import cluster

        return cluster.cancel(cluster_context, ref, namespace)
    from shipyard.local import cancel

    store = _store()
    s = _resolve(store, ref)
    if not s.active:
        console.print(f"{s.id} already finished: {s.phase}")
        return
    s = cancel(s.id, store=store)
    console.print(f"{s.id}: {phase(s.phase)}")


def main() -> None:
    app()
