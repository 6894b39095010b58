"""Invariants of the scheduler, sampled from the API server itself (never from the
controller's own view), for the fault suite.

A `Sampler` thread lists nodes and pods every `interval_s` and counts, per sample:
- over capacity: a node whose non-terminal pods (terminating ones included: they
  still hold it) request more cpu, memory or GPUs than it has;
- duplicates: two live pods for one (experiment, role, replica index);
- partial gangs: an experiment with a live pod holding a node while some member has
  no pod at all (finished pods count as present: a gang whose ranks end a little
  apart is finishing, not partial), outside the phases that delete pods on purpose
  (Restarting, Preempted, Holding, and the terminal ones). Timed to the event by
  watches (`partial_watch.PartialWatch`), not by the samples: a window runs from the
  event that made the gang partial to the one that made it whole, less the time no
  controller could act: the API server not answering the sampler, and the intervals the fault
  runner excuses (`excuse`: a leader paused or killed, until a new one holds the lease;
  a lone controller killed, until its replacement has filled its caches).
  So the bound is "this long while a leader acts and the API server answers".
`final_check` then looks for orphans (live pods of a missing or finished
experiment), lost experiments and wrong restart counts: every restart must be one the
faults explain (its reason names a node a fault hit), no gang restarted more often
than faults hit it, and none less often than the faults it could not have outlived.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from shipyard.api.vocab import LABEL_ATTEMPT, LABEL_EXPERIMENT, LABEL_INDEX, LABEL_ROLE, TERMINAL, Phase
from shipyard.dev.client import RawClient
from shipyard.dev.partial_watch import PartialWatchProcess, Window
from shipyard.spec.machines import RESOURCE_GPU
from shipyard.spec.quantity import parse_cpu_milli, parse_memory_bytes

EXPERIMENTS_PATH = "/apis/shipyard.dev/v1alpha1/namespaces/{ns}/experiments"


def _amounts(values: Mapping[str, Any] | None) -> tuple[int, int, int]:
    values = values or {}
    return (parse_cpu_milli(values["cpu"]) if "cpu" in values else 0,
            parse_memory_bytes(values["memory"]) if "memory" in values else 0,
            int(values.get(RESOURCE_GPU, 0)))


def live(pod: Mapping[str, Any]) -> bool:
    return (not pod["metadata"].get("deletionTimestamp")
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))


@dataclass
class Violations:
    samples: int = 0
    unavailable_s: float = 0.0  # time the API server did not answer the sampler
    over_capacity: int = 0  # samples with a node over capacity
    duplicates: int = 0  # samples with two live pods for one member
    partial_windows: list[tuple[str, float]] = field(default_factory=list)  # (experiment, s)
    longest_partial_unexcused: float = 0.0  # the same, counting the excused time too
    examples: list[str] = field(default_factory=list)  # the first few, for the report

    def note(self, text: str) -> None:
        if len(self.examples) < 10:
            self.examples.append(text)

    def longest_partial(self) -> float:
        return max((s for _, s in self.partial_windows), default=0.0)

    def partial_over(self, bound_s: float) -> int:
        return sum(1 for _, s in self.partial_windows if s > bound_s)


class Sampler(threading.Thread):
    def __init__(self, api: RawClient, namespace: str, *, server: str, certs_dir: Path,
                 interval_s: float = 0.5, bound_s: float = 5.0) -> None:
        super().__init__(name="invariant-sampler", daemon=True)
        self.api, self.namespace, self.interval_s = api, namespace, interval_s
        self.bound_s = bound_s  # a partial window longer than this gets its trace noted
        self.violations = Violations()
        self._stop_event = threading.Event()
        self.partial = PartialWatchProcess(server, certs_dir, namespace)
        self.watch_lag_s = 0.0  # how far behind the API server the pod watch ran at most
        # (from, to) monotonic: nobody could act; to=inf while it lasts
        self._excused: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self.crashed = ""

    def excuse(self, start: float, end: float = float("inf")) -> int:
        """Mark a time nobody could act (open-ended until `end_excuse`); its index."""
        with self._lock:
            self._excused.append((start, end))
            return len(self._excused) - 1

    def end_excuse(self, index: int, end: float) -> None:
        with self._lock:
            self._excused[index] = (self._excused[index][0], end)

    def excused_within(self, start: float, end: float) -> float:
        """How much of [start, end] (monotonic) nobody could act."""
        with self._lock:
            spans = sorted((max(a, start), min(b, end)) for a, b in self._excused)
        total, reach = 0.0, start
        for a, b in spans:  # union of the overlaps
            a = max(a, reach)
            if b > a:
                total, reach = total + b - a, b
        return total

    def _list(self, path: str) -> list[dict[str, Any]]:
        status, body = self.api.request("GET", path)
        if status != 200:
            raise OSError(f"GET {path}: HTTP {status}")
        # orjson: a list of every pod of a 1,000-experiment burst is megabytes, and the
        # stdlib's decode of it stretched the sample period to ~3 s on two busy cores,
        # which is the error of every window measured.
        return orjson.loads(body)["items"]

    def sample_once(self) -> bool:
        """One sample; False when the API server did not answer."""
        try:
            nodes = self._list("/api/v1/nodes")
            pods = self._list("/api/v1/pods")
        except (OSError, ValueError):
            return False
        self.violations.samples += 1
        self._check_capacity(nodes, pods)
        self._check_duplicates(pods)
        return True

    def _check_capacity(self, nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        used: dict[str, list[int]] = {}
        for pod in pods:
            node = (pod.get("spec") or {}).get("nodeName")
            if not node or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            total = used.setdefault(node, [0, 0, 0])
            for c in (pod.get("spec") or {}).get("containers") or []:
                for i, amount in enumerate(_amounts((c.get("resources") or {}).get("requests"))):
                    total[i] += amount
        over = []
        for node in nodes:
            name = node["metadata"]["name"]
            have = _amounts((node.get("status") or {}).get("allocatable"))
            if name in used and any(u > h for u, h in zip(used[name], have, strict=True)):
                over.append(f"{name} uses {used[name]} of {list(have)}")
        if over:
            self.violations.over_capacity += 1
            self.violations.note("over capacity: " + "; ".join(over[:3]))

    def _check_duplicates(self, pods: list[dict[str, Any]]) -> None:
        members: dict[tuple[str, str, str], int] = {}
        for pod in pods:
            labels = pod["metadata"].get("labels") or {}
            exp = labels.get(LABEL_EXPERIMENT)
            if pod["metadata"].get("namespace") != self.namespace or not exp or not live(pod):
                continue
            member = (exp, labels.get(LABEL_ROLE, ""), labels.get(LABEL_INDEX, ""))
            members[member] = members.get(member, 0) + 1
        dup = [m for m, n in members.items() if n > 1]
        if dup:
            self.violations.duplicates += 1
            self.violations.note(f"two live pods for {dup[:3]}")

    def _count_window(self, window: Window) -> None:
        name, since, until, trace = window
        seconds = max(0.0, until - since - self.excused_within(since, until))
        v = self.violations
        v.longest_partial_unexcused = max(v.longest_partial_unexcused, until - since)
        v.partial_windows.append((name, seconds))
        if seconds > self.bound_s and trace:
            v.note(f"{name} partial {seconds:.1f}s: " + "; ".join(trace))

    def start(self) -> None:
        self.partial.start()  # following before the first sample, so before the burst
        super().start()

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug here must fail the suite, not stop sampling quietly
            self.crashed = f"{type(exc).__name__}: {exc}"
            raise

    def _run(self) -> None:
        down_since: float | None = None
        while not self._stop_event.is_set():
            started = time.monotonic()
            if not self.sample_once():
                down_since = started if down_since is None else down_since
                self._stop_event.wait(self.interval_s)
                continue
            if down_since is not None:  # from the first failed sample to this answer
                self.excuse(down_since, started)
                self.violations.unavailable_s += started - down_since
                down_since = None
            self._stop_event.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def stop(self) -> Violations:
        self._stop_event.set()
        self.join(timeout=30)
        windows, self.watch_lag_s, crashed = self.partial.stop()
        crashed = self.crashed or crashed
        if crashed:
            raise RuntimeError(f"the invariant sampler crashed: {crashed}")
        for window in windows:
            self._count_window(window)
        return self.violations


@dataclass
class Outcome:
    lost: list[str]  # submitted, and missing or not in the phase expected
    orphans: list[str]  # live pods of a missing or finished experiment
    wrong_restarts: list[str]  # "<exp>: N restarts, expected M"
    # Per gang attempt still there, its first and last pod's creationTimestamp (wall
    # time, 1 s resolution): how long its creation took by the API server's own clock,
    # whatever a watch's lag.
    creation_spans: list[tuple[str, float, float]] = field(default_factory=list)


@dataclass
class Restarts:
    """What the faults allow: per experiment, at least `low` and at most `high`
    restarts, each for a reason naming one of `nodes` (none: no restart allowed)."""

    low: dict[str, int] = field(default_factory=dict)
    high: dict[str, int] = field(default_factory=dict)
    nodes: set[str] = field(default_factory=set)

    def problem(self, name: str, count: int, reason: str) -> str | None:
        low, high = self.low.get(name, 0), self.high.get(name, 0)
        if not low <= count <= high:
            want = f"{low}" if low == high else f"{low}-{high}"
            return f"{name}: {count} restarts, expected {want} ({reason})"
        if count and not any(f"node {n} " in reason for n in self.nodes):
            return f"{name}: restarted for a reason no fault explains ({reason})"
        return None


def _restart_events(api: RawClient, namespace: str) -> dict[str, list[str]]:
    """experiment -> what its "Restarting" Events said, and the kube-controller-manager's
    evictions of its pods (a NoExecute taint), oldest first, each with its time."""
    told: dict[str, list[tuple[str, str]]] = {}
    for reason in ("Restarting", "TaintManagerEviction"):
        status, body = api.request(
            "GET", f"/api/v1/namespaces/{namespace}/events?fieldSelector=reason%3D{reason}")
        for e in json.loads(body)["items"] if status == 200 else []:
            at = e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp") or ""
            name = e["involvedObject"]["name"]
            if reason == "Restarting":
                told.setdefault(name, []).append((at, f"{at[11:19]} {e.get('message', '')}"))
            else:  # on a pod: <experiment>-<role>-<index>
                told.setdefault(name.rsplit("-", 2)[0], []).append(
                    (at, f"{at[11:19]} pod {name} evicted: {e.get('message', '')}"))
    return {name: [m for _, m in sorted(events)] for name, events in told.items()}


def final_check(api: RawClient, namespace: str, expected_phase: Mapping[str, str],
                restarts: Restarts) -> Outcome:
    """After convergence: every submitted experiment in its expected phase with a
    restart count the faults explain, and no live pod outside a running gang."""
    status, body = api.request("GET", EXPERIMENTS_PATH.format(ns=namespace))
    if status != 200:
        raise OSError(f"listing experiments: HTTP {status}")
    exps = {e["metadata"]["name"]: e for e in json.loads(body)["items"]}
    lost: list[str] = []
    wrong: list[str] = []
    wrong_of: dict[str, str] = {}  # experiment -> its wrong restart count
    for name, want in expected_phase.items():
        st = (exps.get(name) or {}).get("status") or {}
        if name not in exps or st.get("phase") != want:
            lost.append(f"{name}: {st.get('phase') if name in exps else 'missing'}, expected {want}"
                        f" ({st.get('message', '')})")
        problem = restarts.problem(name, int(st.get("restarts", 0)), st.get("failedPod", ""))
        if name in exps and problem:
            wrong_of[name] = problem
    if wrong_of:  # the status keeps the last reason only; the Events say what each was for
        told = _restart_events(api, namespace)
        wrong = [f"{problem}; restarts: {'; '.join(told.get(name, ['no Event']))}"
                 for name, problem in wrong_of.items()]
    status, body = api.request("GET", f"/api/v1/namespaces/{namespace}/pods")
    orphans = []
    created: dict[tuple[str, str], list[float]] = {}
    for pod in json.loads(body)["items"] if status == 200 else []:
        labels = pod["metadata"].get("labels") or {}
        exp = labels.get(LABEL_EXPERIMENT)
        phase = ((exps.get(exp or "") or {}).get("status") or {}).get("phase")
        if exp and live(pod) and (exp not in exps or phase in TERMINAL or phase == Phase.QUEUED):
            orphans.append(f"{pod['metadata']['name']} ({phase or 'no experiment'})")
        if exp and pod["metadata"].get("creationTimestamp"):
            created.setdefault((exp, labels.get(LABEL_ATTEMPT, "")), []).append(
                datetime.fromisoformat(pod["metadata"]["creationTimestamp"]).timestamp())
    spans = [(exp, min(ts), max(ts)) for (exp, _), ts in created.items()]
    return Outcome(lost, orphans, wrong, spans)
