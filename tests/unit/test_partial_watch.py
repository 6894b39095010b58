"""The fault suite's partial-gang timing: windows opened and closed event by event must
be exactly the gangs a from-scratch look at the same objects calls partial."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shipyard.api.vocab import LABEL_EXPERIMENT, Phase
from shipyard.dev.partial_watch import PartialWatch

EXPS = ("a", "b", "c")
PHASES = (Phase.ADMITTED, Phase.RUNNING, Phase.RESTARTING, Phase.SUCCEEDED, None)


def pod(name: str, exp: str, *, deleting: bool = False, phase: str = "Running") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {LABEL_EXPERIMENT: exp}}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase}}


def exp(name: str, replicas: int, phase: str | None) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"roles": [{"replicas": replicas}]},
            "status": {"phase": phase} if phase else {}}


def watcher() -> tuple[PartialWatch, list[tuple[str, str, float, float]]]:
    log: list[tuple[str, str, float, float]] = []
    w = PartialWatch(None, "ns", on_close=lambda win: log.append(("window", *win[:3])))
    return w, log


def partial_from_scratch(pods: dict[str, dict[str, Any]], exps: dict[str, dict[str, Any]]) -> set[str]:
    out = set()
    for name, e in exps.items():
        if e["status"].get("phase") in ("Restarting", "Preempted", "Holding", "Held",
                                        "Succeeded", "Failed", "Cancelled"):
            continue
        mine = [p for p in pods.values() if p["metadata"]["labels"][LABEL_EXPERIMENT] == name]
        present = [p for p in mine if "deletionTimestamp" not in p["metadata"]]
        live = [p for p in present if p["status"]["phase"] not in ("Succeeded", "Failed")]
        if live and len(present) < e["spec"]["roles"][0]["replicas"]:
            out.add(name)
    return out


def test_a_gang_is_partial_from_its_first_live_pod_until_its_last_member_exists() -> None:
    w, log = watcher()
    w._apply("experiments", "ADDED", exp("a", 3, Phase.ADMITTED), 0.0)
    w._apply("pods", "ADDED", pod("a-0", "a", phase="Pending"), 1.0)
    w._apply("pods", "ADDED", pod("a-1", "a"), 2.0)
    w._apply("pods", "ADDED", pod("a-2", "a"), 4.5)
    assert log == [("window", "a", 1.0, 4.5)]


def test_what_happened_while_partial_is_handed_over_with_the_close() -> None:
    traces: list[list[str]] = []
    w = PartialWatch(None, "ns", on_close=lambda win: traces.append(win[3]))
    w._apply("experiments", "ADDED", exp("a", 2, Phase.ADMITTED), 0.0)
    w._apply("pods", "ADDED", pod("a-0", "a"), 1.0)
    w._apply("pods", "ADDED", pod("a-1", "a", phase="Pending"), 3.0)
    assert traces == [["+0.0s a-0 ADDED Running", "+2.0s a-1 ADDED Pending"]]


def test_a_pod_counts_from_its_creation_whenever_a_lagging_watch_shows_it() -> None:
    w, log = watcher()
    w._apply("experiments", "ADDED", exp("a", 2, Phase.ADMITTED), 0.0)
    created = time.time() - 30  # the watch shows both pods 30 s after the server made them
    first, second = pod("a-0", "a"), pod("a-1", "a")
    first["metadata"]["creationTimestamp"] = datetime.fromtimestamp(created, UTC).isoformat()
    second["metadata"]["creationTimestamp"] = datetime.fromtimestamp(created + 2, UTC).isoformat()
    now = time.monotonic()
    w._apply("pods", "ADDED", first, now)
    w._apply("pods", "ADDED", second, now + 5)
    (_, name, since, until), = log
    assert name == "a" and abs((until - since) - 2) < 1.01  # the server's 2 s, not the 5 s seen
    assert until < now - 20


def test_a_restart_deleting_pods_on_purpose_is_not_partial_nor_are_finished_ranks() -> None:
    w, log = watcher()
    w._apply("experiments", "ADDED", exp("a", 2, Phase.RUNNING), 0.0)
    w._apply("pods", "ADDED", pod("a-1", "a", phase="Succeeded"), 0.0)
    w._apply("pods", "ADDED", pod("a-0", "a"), 0.0)
    w._apply("experiments", "MODIFIED", exp("a", 2, Phase.RESTARTING), 1.0)
    w._apply("pods", "MODIFIED", pod("a-0", "a", deleting=True), 1.5)
    w._apply("pods", "DELETED", pod("a-0", "a"), 2.0)
    assert log == []


def test_a_relist_drops_what_vanished_while_the_watch_was_away() -> None:
    w, log = watcher()
    w._apply("experiments", "ADDED", exp("a", 2, Phase.RUNNING), 0.0)
    w._apply("pods", "ADDED", pod("a-0", "a"), 0.0)
    assert log == [] and set(w._partial) == {"a"}
    w._replace("pods", [], 3.0)  # both gone: a rollback the watch missed
    assert log == [("window", "a", 0.0, 3.0)]


event = st.one_of(
    st.tuples(st.just("pods"), st.sampled_from(EXPS), st.integers(0, 3), st.booleans(),
              st.sampled_from(("Pending", "Running", "Succeeded", "Failed")), st.booleans()),
    st.tuples(st.just("experiments"), st.sampled_from(EXPS), st.integers(1, 4),
              st.sampled_from(PHASES), st.booleans()),
    st.tuples(st.just("relist"), st.booleans()))


@given(st.lists(event, max_size=60))
def test_open_windows_are_exactly_the_partial_gangs_after_any_events(events: list[tuple]) -> None:
    w, log = watcher()
    pods: dict[str, dict[str, Any]] = {}
    exps: dict[str, dict[str, Any]] = {}
    was: set[str] = set()
    opened: dict[str, int] = {}
    expected: list[tuple[str, str, float, float]] = []
    for t, ev in enumerate(events):
        if ev[0] == "pods":
            _, e, index, deleting, phase, gone = ev
            name = f"{e}-{index}"
            if gone:
                pods.pop(name, None)
                w._apply("pods", "DELETED", {"metadata": {"name": name}}, t)
            else:
                pods[name] = pod(name, e, deleting=deleting, phase=phase)
                w._apply("pods", "MODIFIED", pods[name], t)
        elif ev[0] == "experiments":
            _, e, replicas, phase, gone = ev
            if gone:
                exps.pop(e, None)
                w._apply("experiments", "DELETED", {"metadata": {"name": e}}, t)
            else:
                exps[e] = exp(e, replicas, phase)
                w._apply("experiments", "MODIFIED", exps[e], t)
        else:
            kind = "pods" if ev[1] else "experiments"
            w._replace(kind, list((pods if ev[1] else exps).values()), t)
        now = partial_from_scratch(pods, exps)
        assert set(w._partial) == now
        for name in now - was:
            opened[name] = t
        for name in was - now:  # each run of steps partial is one window, timed to them
            expected.append(("window", name, opened.pop(name), t))
        was = now
    assert sorted(log) == sorted(expected)
