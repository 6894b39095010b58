"""The cluster side of the verbs: the same output as the local backend, from Experiments."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shipyard.api.vocab import Phase
from shipyard.cli import cluster_logs, output
from shipyard.cli.output import (
    Format,
    age,
    console,
    dump,
    fail,
    phase,
    progress_cells,
    progress_line,
    table,
)
from shipyard.cli.rank_logs import LineFilter, layout
from shipyard.controller.views import parse_rfc3339, parse_time
from shipyard.kube import experiments as kexp
from shipyard.kube import workdir
from shipyard.kube.api import ApiClient
from shipyard.kube.client import KubeClient
from shipyard.kube.errors import ApiError, NotFound
from shipyard.spec import Experiment

T = TypeVar("T")
ACTIVE_PHASES = (Phase.ADMITTED, Phase.RUNNING)  # where an ETA means something


def run(context: str, work: Callable[[ApiClient], Awaitable[T]]) -> T:
    """Connect to the kubeconfig context, run `work`, turn API errors into clear exits."""

    async def main() -> T:
        async with KubeClient.from_kubeconfig(context=context) as client:
            return await work(client)

    try:
        return asyncio.run(main())
    except NotFound as exc:
        fail(f"not found in cluster {context}: {exc.message}")
    except ApiError as exc:
        fail(f"cluster {context}: {exc}")
    except (kexp.ExperimentExists, workdir.WorkdirError) as exc:
        fail(str(exc))
    except Exception as exc:
        if type(exc).__name__ == "ConfigException":  # kubernetes' kubeconfig loader
            fail(f"kubeconfig: {exc}", 2)
        raise


def summary(obj: dict[str, Any]) -> dict[str, Any]:
    """The same keys as the local backend's summary."""
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    return {
        "id": meta["name"], "name": meta["name"], "namespace": meta.get("namespace"),
        "queue": spec.get("queue"), "priority": spec.get("priority"),
        "phase": status.get("phase", Phase.QUEUED.value), "position": status.get("position"),
        "restarts": status.get("restarts", 0), "message": status.get("message", ""),
        "pods": status.get("pods"), "placement": status.get("placement"),
        "submitted_at": parse_time(meta.get("creationTimestamp")),
        "started_at": parse_time(status.get("startedAt")),
        "finished_at": parse_time(status.get("finishedAt")),
        "start_estimate": status.get("startEstimate") if status.get("phase", Phase.QUEUED) == Phase.QUEUED
        else None,
        "progress": status.get("progress"),
    }


def start_cells(est: dict[str, Any] | None, now: float | None = None) -> tuple[str, str]:
    """(START for `list`, the line for `status`) from a status.startEstimate."""
    if not est:
        return "", ""
    return output.start_cells(parse_rfc3339(est.get("at")), str(est.get("reason", "")), now)


def launch(context: str, exp: Experiment) -> None:
    obj = run(context, lambda c: kexp.submit(c, exp))
    console.print(f"experiment {obj['metadata']['namespace']}/{obj['metadata']['name']} created "
                  f"in {context}; follow it with: shipyard status --cluster {context} {exp.name}")


def list_experiments(context: str, namespace: str | None, output: Format) -> None:
    items = [summary(o) for o in run(context, lambda c: kexp.list_experiments(c, namespace))]
    if output is not Format.table:
        return dump(items, output)
    rows = [(s["id"], s["namespace"], s["queue"], phase(s["phase"]), s["pods"] or "", s["restarts"],
             *progress_cells(s["progress"], s["phase"] in ACTIVE_PHASES), age(s["submitted_at"]),
             start_cells(s["start_estimate"])[0], s["message"]) for s in items]
    table(("ID", "NAMESPACE", "QUEUE", "PHASE", "PODS", "RESTARTS", "PROGRESS", "ETA", "AGE", "START",
           "MESSAGE"), rows)


def status(context: str, name: str, namespace: str, output: Format) -> None:
    async def work(c: ApiClient) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return await kexp.get_experiment(c, name, namespace), await kexp.pods_of(c, name, namespace)

    obj, pods = run(context, work)
    s = summary(obj)
    ranks = {
        p["metadata"]["name"]: {"state": (p.get("status") or {}).get("phase", "Pending"),
                                "node": (p.get("spec") or {}).get("nodeName"),
                                "exit_code": _exit_code(p)}
        for p in pods
    }
    if output is not Format.table:
        return dump(s | {"ranks": ranks}, output)
    console.print(f"[bold]{s['namespace']}/{s['id']}[/bold]  {phase(s['phase'])}  queue {s['queue']}"
                  f"  priority {s['priority']}  restarts {s['restarts']}")
    if s["position"]:
        console.print(f"position {s['position']} in scheduling order")
    console.print(s["message"], highlight=False)
    if s["start_estimate"]:
        console.print(f"estimated start: {start_cells(s['start_estimate'])[1]}", highlight=False)
    if s["progress"]:
        console.print(progress_line(s["progress"], s["phase"] in ACTIVE_PHASES), highlight=False)
    if ranks:
        table(("POD", "STATE", "NODE", "EXIT"),
              [(k, v["state"], v["node"], "" if v["exit_code"] is None else v["exit_code"])
               for k, v in ranks.items()])


def _exit_code(pod: dict[str, Any]) -> int | None:
    """The (first) container's exit code once it has terminated; else that of an init
    container that failed (`shipyard-unpack` on a bad archive), which stops the pod
    before its command ever runs. An init container that succeeded says nothing."""
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated is not None:
            return terminated.get("exitCode")
    for cs in status.get("initContainerStatuses") or []:
        terminated = (cs.get("state") or {}).get("terminated") or {}
        if terminated.get("exitCode"):
            return int(terminated["exitCode"])
    return None


def logs(context: str, name: str, namespace: str, rank: str | None, follow: bool = False,
         since_s: float | None = None, filt: LineFilter = LineFilter()) -> None:
    """Every rank's lines with its prefix; with `follow`, printed as they are written
    (--grep applied); without, the rank that failed first comes before the rest."""
    def emit(pod_rank: str, line: str) -> None:
        if filt.keeps(line):
            print(f"[{pod_rank}] {line}", flush=True)

    # The kubelet cuts to the last N lines itself, unless --grep must see them all.
    tail = filt.tail if filt.grep is None else None
    if follow:
        run(context, lambda c: cluster_logs.follow(c, name, namespace, rank, since_s, emit, tail))
        return
    lines, failure = run(context, lambda c: cluster_logs.collect(c, name, namespace, rank,
                                                                 since_s, tail))
    for line in layout(lines, failure, filt):
        print(line)


def cancel(context: str, name: str, namespace: str) -> None:
    obj = run(context, lambda c: kexp.cancel(c, name, namespace))
    console.print(f"{name}: {phase((obj.get('status') or {}).get('phase', 'Queued'))}")
