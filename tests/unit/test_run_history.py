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
