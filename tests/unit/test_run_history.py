"""The controller's run-time history: what it learns from succeeded experiments."""

from __future__ import annotations

from shipyard.controller.run_history import RunHistory, kind_of
from shipyard.controller.views import experiment_view, format_time
from shipyard.kube.objects import experiment_resource
from shipyard.spec import Experiment, Role


def view(name: str, uid: str, status: dict | None = None, namespace: str = "team"):
    exp = Experiment(name=name, namespace=namespace,
                     roles=[Role(name="trainer", replicas=2, machine_type="gpu-a100", command=["x"])])
    obj = experiment_resource(exp)
    obj["metadata"]["uid"] = uid
    obj["status"] = status or {}
    return experiment_view(obj)


def done(name: str, uid: str, run_s: float, ended: float):
    return view(name, uid, {"phase": "Succeeded", "startedAt": format_time(ended - run_s),
                            "finishedAt": format_time(ended)})


def test_runs_of_one_name_stem_and_shape_are_one_kind():
    a, b = view("bert-ft-3", "u1"), view("bert-ft-a1b2c3d", "u2")
    assert a.spec is not None and b.spec is not None
    assert kind_of(a.spec, a.namespace) == kind_of(b.spec, b.namespace) == "team/bert-ft/2xgpu-a100"
    other = view("bert-ft-3", "u3", namespace="other")
    assert other.spec is not None and kind_of(other.spec, other.namespace) != kind_of(a.spec, a.namespace)


def test_succeeded_runs_give_a_confident_estimate_once_enough_agree():
    h = RunHistory()
    t = 1_800_000_000.0
    for i in range(5):
        exp = done(f"bert-ft-{i}", f"u{i}", 600.0, t + i * 1000)
        h.finished(exp, exp.status)
        h.finished(exp, exp.status)  # seen again next cycle: counted once
    est = h.estimate(view("bert-ft-9", "new"), t + 10_000)
    assert est is not None and est.confident and est.run_s == 600.0 and est.samples == 5
    # A kind never seen: the queue and size's runs, never confident; a run with no
    # start time teaches nothing.
    fallback = h.estimate(view("resnet-1", "r"), t)
    assert fallback is not None and not fallback.confident
    h.finished(view("resnet-2", "r2", {"phase": "Succeeded"}), {"phase": "Succeeded"})
    assert h.history.runs.get("k:team/resnet/2xgpu-a100") is None


def test_the_controllers_snapshot_carries_what_it_learnt_whatever_the_listing_order():
    from shipyard.controller.controller import Controller

    c = Controller(client=None, coalesce_s=0)  # type: ignore[arg-type]  # no I/O: snapshot only
    t = 1_800_000_000.0
    queued = view("bert-ft-9", "new")
    c.experiments.items[queued.key] = queued  # listed before the runs it learns from
    for i in range(5):
        exp = done(f"bert-ft-{i}", f"u{i}", 600.0, t + i * 1000)
        c.experiments.items[exp.key] = exp
    snap = c.snapshot(t + 10_000)
    assert [g.key for g in snap.pending] == ["team/bert-ft-9"]
    est = snap.estimates["team/bert-ft-9"]
    assert est.confident and est.run_s == 600.0


def test_the_controller_and_the_simulator_take_one_policy_tree_from_the_flags():
    from dataclasses import replace

    from shipyard.cli.controller_cmd import policy_of
    from shipyard.controller.controller import Controller
    from shipyard.controller.settings import ControllerSettings
    from shipyard.core.estimate import EstimateSettings
    from shipyard.core.model import Policy
    from shipyard.sim import SimConfig, SimPool
    from shipyard.sim.engine import Simulation
    from shipyard.spec import DEFAULT_MACHINE_TYPES

    flags = policy_of(starvation_bound=0.0, estimates=True, estimate_order_after=600.0)
    assert flags.starvation_bound_s is None and flags.estimate_order_after_s == 600.0
    assert replace(flags, starvation_bound_s=Policy().starvation_bound_s,
                   estimate_order_after_s=Policy().estimate_order_after_s) == Policy()
    tree = replace(flags, estimate=EstimateSettings(min_samples=1, confident_samples=1))
    c = Controller(client=None, coalesce_s=0,  # type: ignore[arg-type]  # no I/O
                   settings=ControllerSettings(policy=tree))
    pool = SimPool("fixed", DEFAULT_MACHINE_TYPES["gpu-a100"], max_nodes=1, static=True, start_nodes=1)
    sim = Simulation([], [pool], SimConfig(policy=tree))
    assert c.policy is c.autoscaler.policy is sim.policy is tree
    assert c.history.history.settings is sim.history.settings is tree.estimate
    # One succeeded run is enough under these settings, and the snapshot carries it.
    t = 1_800_000_000.0
    exp = done("bert-ft-0", "u0", 600.0, t)
    queued = view("bert-ft-9", "new")
    c.experiments.items[exp.key], c.experiments.items[queued.key] = exp, queued
    assert c.snapshot(t + 10).estimates["team/bert-ft-9"].confident
    off = Controller(client=None, coalesce_s=0,  # type: ignore[arg-type]
                     settings=ControllerSettings(policy=policy_of(
                         starvation_bound=3600.0, estimates=False, estimate_order_after=0.0)))
    off.experiments.items[exp.key], off.experiments.items[queued.key] = exp, queued
    assert off.policy.starvation_bound_s == 3600.0 and off.snapshot(t + 10).estimates == {}
