"""Preflight's plan: which tainted nodes get a check pod, which are untainted, which
failed (pure), and the check pod itself."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shipyard.controller.preflight import TAINT_PREFLIGHT, check_pod, check_pod_name, plan
from shipyard.controller.views import PodView
from shipyard.core.model import Node, Resources, Taint
from shipyard.kube.install import SYSTEM_NAMESPACE

PHASES = ("Pending", "Running", "Succeeded", "Failed")


def node(name: str, *keys: str) -> Node:
    return Node(name, Resources(1000, 2**30), taints=tuple(Taint(k) for k in keys))


def check(on: str, phase: str, exit_code: int | None = None, terminating: bool = False) -> PodView:
    return PodView(namespace=SYSTEM_NAMESPACE, name=check_pod_name(on), node=on, request=Resources(),
                   phase=phase, experiment=None, member=None, attempt=0, exit_code=exit_code,
                   terminating=terminating)


def test_each_tainted_node_is_checked_then_untainted_or_reported():
    nodes = [node("new", TAINT_PREFLIGHT), node("ok", TAINT_PREFLIGHT, "other"),
             node("bad", TAINT_PREFLIGHT), node("busy", TAINT_PREFLIGHT), node("plain", "other"),
             node("done")]
    checks = {"ok": check("ok", "Succeeded"), "bad": check("bad", "Failed", 3),
              "busy": check("busy", "Running"), "done": check("done", "Succeeded"),
              "plain": check("plain", "Failed", 1)}
    p = plan(nodes, checks)
    assert p.create == ("new",)
    assert p.passed == ("ok",)
    assert p.failed == (("bad", 3),)
    # A node already untainted: its succeeded check pod is collected; a failed one is kept.
    assert p.collect == (check_pod_name("done"),)


def test_a_succeeded_check_being_deleted_is_not_acted_on_twice():
    p = plan([node("n")], {"n": check("n", "Succeeded", terminating=True)})
    assert p.collect == () and p.passed == ()


@given(st.dictionaries(st.sampled_from([f"n{i}" for i in range(6)]),
                       st.tuples(st.booleans(), st.none() | st.sampled_from(PHASES)), max_size=6))
def test_only_tainted_nodes_are_acted_on_and_each_in_one_way(world):
    nodes = [node(name, TAINT_PREFLIGHT) if tainted else node(name) for name, (tainted, _) in world.items()]
    checks = {name: check(name, phase) for name, (_, phase) in world.items() if phase is not None}
    p = plan(nodes, checks)
    acted = [*p.create, *p.passed, *(n for n, _ in p.failed)]
    assert len(acted) == len(set(acted))
    tainted = {name for name, (t, _) in world.items() if t}
    assert set(acted) <= tainted
    assert set(p.create) == {n for n in tainted if n not in checks}
    assert set(p.passed) == {n for n in tainted if world[n][1] == "Succeeded"}


def test_the_check_pod_runs_on_its_node_through_every_taint():
    pod = check_pod("real-1", "img:1", ["python", "-c", "print(1)"])
    spec = pod["spec"]
    assert pod["metadata"]["namespace"] == SYSTEM_NAMESPACE
    assert spec["nodeName"] == "real-1" and spec["restartPolicy"] == "Never"
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["containers"][0]["command"] == ["python", "-c", "print(1)"]
    assert "command" not in check_pod("real-1", "img:1", None)["spec"]["containers"][0]
