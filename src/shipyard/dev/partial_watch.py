"""Partial gangs timed to the event, from watches on the API server.

A list of every pod of a big burst costs the API server seconds of encoding on two
cores, so a sampler that lists can look only every few seconds, and each window it
times is that many seconds wrong (at 1,000 experiments the sample period was 3 to 9
s, against a 5 s bound). `PartialWatch` follows one namespace's pods and Experiments
by watch instead (the API server's own events, never the controller's view) and
re-judges an experiment on every event of its own: partial while one of its pods is
live (holds a node) and some member has no pod at all, outside the phases that delete
pods on purpose. A pod counts from its creationTimestamp, not from when the watch showed
it: on two overloaded cores the API server delivered watch events up to a minute
late, while it created the pods on time. A watch that ends or expires (410) is listed
again and resumed; the time the API server does not answer is the sampler's to excuse.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import queue
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from shipyard.api.vocab import DELETING, LABEL_EXPERIMENT
from shipyard.dev.client import RawClient, tls_context

PODS = "/api/v1/namespaces/{ns}/pods"
EXPERIMENTS = "/apis/shipyard.dev/v1alpha1/namespaces/{ns}/experiments"
# The server ends a watch after this long, and it is listed again and resumed.
WATCH_S = 25  # under the client socket timeout (30 s)


def replicas(exp: Mapping[str, Any]) -> int:
    return sum(int(r.get("replicas", 1)) for r in (exp.get("spec") or {}).get("roles") or [])


def pod_state(pod: Mapping[str, Any]) -> tuple[str, bool, bool] | None:
    """(experiment, present, live) of a shipyard pod; None for any other pod.
    Present: not being deleted (a finished pod counts: its gang is finishing, not
    partial). Live: present and not finished, so it holds a node."""
    meta = pod["metadata"]
    exp = (meta.get("labels") or {}).get(LABEL_EXPERIMENT)
    if not exp:
        return None
    present = not meta.get("deletionTimestamp")
    phase = (pod.get("status") or {}).get("phase")
    return exp, present, present and phase not in ("Succeeded", "Failed")


Window = tuple[str, float, float, list[str]]  # (experiment, since, until, trace)


def server_time(obj: Mapping[str, Any], default: float) -> float:
    """An object's creationTimestamp (1 s resolution) on the time.monotonic clock."""
    created = obj["metadata"].get("creationTimestamp")
    if not created:
        return default
    return datetime.fromisoformat(created).timestamp() + time.monotonic() - time.time()


class PartialWatch:
    """Report each partial window, once it closes, through `on_close(window)`: since
    and until are when the events that opened and closed it arrived (time.monotonic,
    the same clock in every process), the trace what happened to the gang meanwhile
    ("+2.1s worker-3 ADDED Pending", ...: the evidence for a window over the bound)."""

    def __init__(self, api: RawClient | None, namespace: str, *,
                 on_close: Callable[[Window], None]) -> None:
        self.api, self.namespace = api, namespace
        self.on_close = on_close
        self._lock = threading.Lock()
        self._pods: dict[str, tuple[str, bool, bool]] = {}  # pod -> (experiment, present, live)
        self._members: dict[str, set[str]] = {}  # experiment -> its pods
        self._exps: dict[str, tuple[str | None, int]] = {}  # experiment -> (phase, replicas)
        self._partial: dict[str, tuple[float, list[str]]] = {}  # -> (since, trace)
        self._stop = threading.Event()
        self.synced = threading.Event()  # both kinds listed once
        self._listed: set[str] = set()
        # How far behind the API server the pod watch ran: now - creationTimestamp at
        # each pod's ADDED (1 s resolution); a lagging watch would stretch windows.
        self.max_add_lag_s = 0.0
        self.crashed = ""
        self._threads = [threading.Thread(target=self._follow, args=(kind,), daemon=True,
                                          name=f"partial-watch-{kind}")
                         for kind in ("pods", "experiments")]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop following; the windows still open close now."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=WATCH_S + 10)
        with self._lock:
            now = time.monotonic()
            for name, (since, trace) in list(self._partial.items()):
                self.on_close((name, since, now, trace))
            self._partial.clear()

    # -- state ------------------------------------------------------------------------

    def _judge(self, name: str, now: float, what: str = "") -> None:
        phase, want = self._exps.get(name, (None, 0))
        partial = False
        if name in self._exps and phase not in DELETING:
            states = [self._pods[p] for p in self._members.get(name, ())]
            partial = (any(live for _, _, live in states)
                       and sum(present for _, present, _ in states) < want)
        if name in self._partial and what:
            since, trace = self._partial[name]
            if len(trace) < 40:
                trace.append(f"+{now - since:.1f}s {what}")
        if partial and name not in self._partial:
            self._partial[name] = (now, [f"+0.0s {what}"] if what else [])
        elif not partial and name in self._partial:
            since, trace = self._partial.pop(name)
            self.on_close((name, since, max(since, now), trace))

    def _set_pod(self, key: str, state: tuple[str, bool, bool] | None, now: float,
                 what: str = "") -> None:
        old = self._pods.pop(key, None)
        if old is not None:
            self._members.get(old[0], set()).discard(key)
        if state is not None:
            self._pods[key] = state
            self._members.setdefault(state[0], set()).add(key)
        for name in {s[0] for s in (old, state) if s is not None}:
            self._judge(name, now, what)

    def _set_exp(self, name: str, exp: Mapping[str, Any] | None, now: float,
                 what: str = "") -> None:
        if exp is None:
            self._exps.pop(name, None)
        else:
            self._exps[name] = ((exp.get("status") or {}).get("phase"), replicas(exp))
        self._judge(name, now, what)

    def _apply(self, kind: str, event: str, obj: Mapping[str, Any], now: float) -> None:
        name = obj["metadata"]["name"]
        gone = event == "DELETED"
        phase = (obj.get("status") or {}).get("phase")
        if kind == "pods" and not gone and name not in self._pods:
            # A pod exists from its creation, not from when a (lagging, or relisted)
            # watch showed it: time its first sighting by the API server's clock.
            now = min(now, server_time(obj, now))
        if kind == "pods":
            deleting = " deleting" if obj["metadata"].get("deletionTimestamp") else ""
            self._set_pod(name, None if gone else pod_state(obj), now,
                          f"{name} {event} {phase}{deleting}")
        else:
            self._set_exp(name, None if gone else obj, now, f"experiment {event} {phase}")

    def _replace(self, kind: str, items: list[dict[str, Any]], now: float) -> None:
        """A relist: what the list does not hold any more is gone."""
        names = {i["metadata"]["name"] for i in items}
        held = self._pods if kind == "pods" else self._exps
        for name in [n for n in held if n not in names]:
            self._apply(kind, "DELETED", {"metadata": {"name": name}}, now)
        for item in items:
            self._apply(kind, "ADDED", item, now)

    # -- the watches ------------------------------------------------------------------

    def _follow(self, kind: str) -> None:
        path = (PODS if kind == "pods" else EXPERIMENTS).format(ns=self.namespace)
        try:
            while not self._stop.is_set():
                try:
                    version = self._relist(kind, path)
                    self._watch(kind, path, version)
                except (OSError, ValueError):
                    self._stop.wait(0.5)  # the API server is away: the sampler excuses it
        except Exception as exc:  # a bug here must fail the suite, not stop timing quietly
            self.crashed = f"{type(exc).__name__}: {exc}"
            raise

    def _relist(self, kind: str, path: str) -> str:
        assert self.api is not None
        status, body = self.api.request("GET", path)
        if status != 200:
            raise OSError(f"GET {path}: HTTP {status}")
        doc = orjson.loads(body)
        with self._lock:
            self._replace(kind, doc["items"], time.monotonic())
            self._listed.add(kind)
            if len(self._listed) == 2:
                self.synced.set()
        return str(doc["metadata"]["resourceVersion"])

    def _watch(self, kind: str, path: str, version: str) -> None:
        assert self.api is not None
        query = f"?watch=1&resourceVersion={version}&timeoutSeconds={WATCH_S}"
        for line in self.api.stream(path + query):
            if self._stop.is_set():
                return
            event = orjson.loads(line)
            if event["type"] == "ERROR":  # 410 Gone, mostly: list again
                return
            if event["type"] == "BOOKMARK":
                continue
            created = event["object"]["metadata"].get("creationTimestamp")
            if kind == "pods" and event["type"] == "ADDED" and created:
                lag = time.time() - datetime.fromisoformat(created).timestamp()
                self.max_add_lag_s = max(self.max_add_lag_s, lag)
            with self._lock:
                self._apply(kind, event["type"], event["object"], time.monotonic())


class PartialWatchProcess:
    """A `PartialWatch` in a process of its own. In the fault runner's process the
    invariant lists (megabytes of pods, decoded and summed every half second) held
    the GIL so long on two busy cores that the watch fell up to 23 s behind the API
    server, and windows were timed by when it caught up."""

    def __init__(self, server: str, certs_dir: Path, namespace: str) -> None:
        ctx = multiprocessing.get_context("spawn")  # the runner has threads: no fork
        self._stop, self._ready = ctx.Event(), ctx.Event()
        self._out: multiprocessing.queues.Queue[tuple[list[Window], float, str]] = ctx.Queue()
        self._proc = ctx.Process(target=_follow_in_child, daemon=True,
                                 args=(server, str(certs_dir), namespace, self._stop,
                                       self._ready, self._out),
                                 name="partial-watch")

    def start(self, timeout_s: float = 120.0) -> None:
        """Start it, and return once it follows both kinds."""
        self._proc.start()
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.2):
            if not self._proc.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the partial-gang watcher did not start "
                                   f"(exit {self._proc.exitcode})")

    def stop(self) -> tuple[list[Window], float, str]:
        """(windows, how far behind the pod watch ran at most, crash text or "")."""
        self._stop.set()
        try:
            return self._out.get(timeout=WATCH_S + 60)
        except queue.Empty:
            return [], 0.0, f"the partial-gang watcher sent nothing (exit {self._proc.exitcode})"
        finally:
            self._proc.join(timeout=10)


def _follow_in_child(server: str, certs_dir: str, namespace: str, stop: Any, ready: Any,
                     out: Any) -> None:
    windows: list[Window] = []
    watch = PartialWatch(RawClient(server, tls_context(Path(certs_dir))), namespace,
                         on_close=windows.append)
    watch.start()
    while not (watch.synced.wait(0.2) or stop.is_set()):
        pass
    ready.set()
    stop.wait()
    watch.stop()
    out.put((windows, watch.max_add_lag_s, watch.crashed))
