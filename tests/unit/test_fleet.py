"""The pure parts of fleet/: demand, placement from one reading, the ledger, machine
type names, the moved copy, re-dispatch choice, the `clusters` rows."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from typer.testing import CliRunner

from shipyard.cli.main import app
from shipyard.controller.views import ANNOTATION_HOLD as CONTROLLER_HOLD
from shipyard.core.cluster_summary import LEVELS
from shipyard.core.clusters import ClusterCapacity, MachineCapacity, RoleDemand, choose_cluster
from shipyard.core.model import Resources
from shipyard.fleet import NoClusterFits, capacity_rows, demand_for, pick, pick_many
from shipyard.fleet.capacity_reader import ClusterReading, read_capacities
from shipyard.fleet.ledger import Ledger
from shipyard.fleet.machines import between, for_cluster, from_cluster
from shipyard.fleet.move import ANNOTATION_HOLD, ANNOTATION_MOVED_FROM, copy_of
from shipyard.fleet.redispatch import better_cluster, stuck
from shipyard.kube.objects import experiment_resource
from shipyard.spec import DEFAULT_MACHINE_TYPES, Experiment, Role
from shipyard.spec import Resources as SpecResources
from shipyard.spec.clusters import ClusterRef

GIB = 2**30
A100 = Resources(95_900, 1151 * GIB + GIB // 2, 8)  # gpu-a100 allocatable
CPU_LARGE = Resources(31_900, 127 * GIB + GIB // 2, 0)


def job(name: str, machine: str = "gpu-a100", replicas: int = 1, gpus: int = 1, cpu: str = "8",
        memory: str = "64Gi") -> Experiment:
    resources = SpecResources(cpu=cpu, memory=memory, gpus=gpus)
    return Experiment(name=name, roles=[Role(name="w", replicas=replicas, machine_type=machine,
                                             command=["python", "t.py"], resources=resources)])


def machine(name: str, node: Resources, free: int = 0, busy: int = 0, headroom: int = 0,
            cost: float = 1.0) -> MachineCapacity:
    levels = [0] * (LEVELS + 1)
    levels[0], levels[LEVELS] = busy, free
    return MachineCapacity(name, node, free + busy, tuple(levels), 0, Resources(), 0, headroom, cost)


def reading(name: str, *machines: MachineCapacity, prefer: str = "any", location: str = "cloud",
            **ref: object) -> ClusterReading:
    r = ClusterRef(name=name, context=f"ctx-{name}", prefer=prefer, location=location, **ref)
    return ClusterReading(r, ClusterCapacity(tuple(machines), 0, 0))


def onprem_and_cloud() -> list[ClusterReading]:
    return [reading("onprem", machine("gpu-a100", A100, free=4, cost=0.0), prefer="gpu", location="onprem"),
            reading("cloud", machine("gpu-a100", A100, headroom=8, cost=32.0),
                    machine("cpu-large", CPU_LARGE, free=2, headroom=8), prefer="cpu")]


def test_demand_for_uses_each_roles_request_and_machine_type() -> None:
    exp = Experiment(name="two", roles=[
        Role(name="a", replicas=3, machine_type="gpu-a100", command=["x"]),
        Role(name="b", machine_type="cpu-small", command=["y"], resources=SpecResources(cpu="500m",
                                                                                         memory="1Gi")),
    ])
    a100 = DEFAULT_MACHINE_TYPES["gpu-a100"]
    assert demand_for(exp) == [
        RoleDemand("gpu-a100", 3, Resources(a100.allocatable_cpu, a100.allocatable_memory, 8)),
        RoleDemand("cpu-small", 1, Resources(500, GIB, 0)),
    ]


def test_ledger_packs_the_fullest_nodes_first() -> None:
    mc = dataclasses.replace(machine("gpu-a100", A100), nodes=3, free_levels=(0, 0, 0, 0, 1, 0, 0, 0, 2))
    ledger = Ledger(ClusterCapacity((mc,), 0, 0))
    ledger.charge([RoleDemand("gpu-a100", 6, Resources(8_000, 64 * GIB, 1))], tier=0)
    # Four fit on the half-free node (it fills up), two go on one empty node.
    after = ledger.capacity().machine("gpu-a100")
    assert after is not None and after.free_levels == (1, 0, 0, 0, 0, 0, 1, 0, 1)


def test_ledger_charges_small_replicas_exactly_not_a_rounding_step_each() -> None:
    ledger = Ledger(ClusterCapacity((machine("cpu-large", CPU_LARGE, free=1),), 0, 0))
    for _ in range(30):
        ledger.charge([RoleDemand("cpu-large", 1, Resources(1_000, 2 * GIB, 0))], tier=0)
    after = ledger.capacity().machine("cpu-large")
    assert after is not None and after.free_levels[0] == 1  # 30 of 31.9 CPUs used
    assert sum(after.free_levels) == 1


def test_batch_placement_fills_onprem_then_overflows_to_cloud_scale_up() -> None:
    exps = [job(f"g{i}") for i in range(40)]
    placements = pick_many(exps, onprem_and_cloud())
    where = [p.cluster.name for p in placements]  # type: ignore[union-attr]
    assert where == ["onprem"] * 32 + ["cloud"] * 8  # 4 nodes x 8 GPUs on-prem
    assert placements[0].chosen.tier == 0 and placements[-1].chosen.tier == 1  # type: ignore[union-attr]


def test_cpu_work_prefers_cloud_while_both_fit_now() -> None:
    readings = onprem_and_cloud()
    readings[0] = reading("onprem", machine("gpu-a100", A100, free=4), machine("cpu-large", CPU_LARGE, free=1),
                          prefer="gpu", location="onprem")
    placements = pick_many([job(f"c{i}", "cpu-large", gpus=0, cpu="1", memory="2Gi") for i in range(100)],
                           readings)
    where = [p.cluster.name for p in placements]  # type: ignore[union-attr]
    # The cloud's two free nodes, then the on-prem one (fits now beats scale-up), then
    # the cloud's pool grows. A node counts as full once less than 1/8 of it is free
    # (the summary's lower bound): 28 one-CPU replicas of 31.9 CPUs.
    assert where == ["cloud"] * 56 + ["onprem"] * 28 + ["cloud"] * 16


def test_ledger_queues_waiting_work() -> None:
    cap = onprem_and_cloud()[1].capacity
    assert cap is not None
    ledger = Ledger(cap)
    ledger.charge([RoleDemand("gpu-a100", 2, Resources(1, 1, 8))], tier=1)
    after = ledger.capacity()
    a100 = after.machine("gpu-a100")
    assert a100 is not None and a100.queued_gangs == 1 and a100.queued == Resources(2, 2, 16)
    assert after.machine("cpu-large") == cap.machine("cpu-large")


def test_no_cluster_fits_names_every_clusters_reason() -> None:
    readings = [*onprem_and_cloud(), ClusterReading(ClusterRef(name="gone", context="x"), None, "refused")]
    with pytest.raises(NoClusterFits) as info:
        pick(job("h", "gpu-h100", gpus=8, cpu="1", memory="1Gi"), readings)
    text = str(info.value)
    assert "no cluster can run h" in text
    for name in ("onprem", "cloud", "gone"):
        assert f"  {name}: " in text
    assert "unreachable" in text and "no gpu-h100 nodes" in text


def test_machine_type_names_per_cluster_round_trip() -> None:
    ref = ClusterRef(name="dc", context="c", machine_types={"gpu-a100": "dgx-a100"})
    exp = job("m")
    there = for_cluster(exp, ref)
    assert there.roles[0].machine_type == "dgx-a100"
    dgx = there.machine(there.roles[0])
    assert dgx.name == "dgx-a100" and dgx.gpus == 8 and dgx.node_labels()[
        "node.kubernetes.io/instance-type"] == "dgx-a100"
    assert from_cluster(there, ref).roles[0].machine_type == "gpu-a100"
    assert for_cluster(exp, ClusterRef(name="plain", context="p")) is exp
    assert between(there, ref, ClusterRef(name="b", context="b")).roles[0].machine_type == "gpu-a100"


def test_mapped_machine_types_are_judged_by_the_clusters_name() -> None:
    r = reading("dc", machine("dgx-a100", A100, free=1), machine_types={"gpu-a100": "dgx-a100"})
    p = pick(job("m"), [r])
    assert p.cluster.name == "dc" and p.chosen.tier == 0


def test_moved_copy_has_the_spec_and_a_new_identity() -> None:
    obj = experiment_resource(job("mv").model_copy(update={"namespace": "team"}))
    obj["metadata"] |= {"uid": "u1", "resourceVersion": "7",
                        "annotations": {ANNOTATION_HOLD: "true", "shipyard.dev/moving-to": "b"}}
    obj["status"] = {"phase": "Held"}
    a, b = ClusterRef(name="a", context="a"), ClusterRef(name="b", context="b")
    copy = copy_of(obj, a, b)
    assert copy["spec"] == obj["spec"] and "status" not in copy
    assert copy["metadata"] == {"name": "mv", "namespace": "team", "labels": {},
                                "annotations": {ANNOTATION_MOVED_FROM: "a"}}
    dgx = ClusterRef(name="dc", context="dc", machine_types={"gpu-a100": "dgx-a100"})
    assert copy_of(obj, a, dgx)["spec"]["roles"][0]["machine_type"] == "dgx-a100"


def test_hold_annotation_is_the_controllers() -> None:
    assert ANNOTATION_HOLD == CONTROLLER_HOLD


def _queued(name: str, submitted: str, phase: str = "Queued", **annotations: str) -> dict:
    obj = experiment_resource(job(name))
    obj["metadata"]["annotations"] = annotations
    obj["status"] = {"phase": phase, "submittedAt": submitted}
    return obj


def test_redispatch_moves_only_long_waits_to_a_cluster_where_they_fit_now() -> None:
    now = 1_700_000_600.0  # 2023-11-14T22:23:20Z
    listed = {"cloud": [_queued("old", "2023-11-14T22:00:00Z"), _queued("new", "2023-11-14T22:23:00Z"),
                        _queued("running", "2023-11-14T22:00:00Z", phase="Running"),
                        _queued("held", "2023-11-14T22:00:00Z", **{ANNOTATION_HOLD: "true"})]}
    readings = onprem_and_cloud()
    refs = {r.ref.name: r.ref for r in readings}
    found = stuck(listed, refs, after_s=300, now=now)
    assert [s.exp.name for s in found] == ["old"]
    best = better_cluster(found[0], readings)
    assert best is not None and best.cluster == "onprem" and best.tier == 0
    # Where it already fits now, it stays.
    assert better_cluster(found[0].__class__("onprem", found[0].exp, 0.0), readings) is None
    full = [reading("onprem", machine("gpu-a100", A100, busy=4), prefer="gpu"), readings[1]]
    assert better_cluster(found[0], full) is None  # nowhere fits now: no move


def test_clusters_rows_show_capacity_and_unreachable_clusters() -> None:
    readings = [*onprem_and_cloud(), ClusterReading(ClusterRef(name="gone", context="x"), None, "refused")]
    rows = capacity_rows(readings)
    assert [(r["cluster"], r["machine_type"]) for r in rows] == [
        ("onprem", "gpu-a100"), ("cloud", "gpu-a100"), ("cloud", "cpu-large"), ("gone", None)]
    assert rows[0]["free"] == "4 (32 GPU)" and rows[0]["location"] == "onprem"
    assert rows[2]["free"] == "2 (63 CPU)" and rows[2]["headroom"] == "+8"
    assert rows[3]["nodes"] == "unreachable" and rows[3]["detail"] == {"unreachable": "refused"}


def test_a_context_missing_from_the_kubeconfig_is_unreachable_not_a_crash(tmp_path, monkeypatch) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    refs = [ClusterRef(name="nowhere", context="no-such-context")]
    (r,) = asyncio.run(read_capacities(refs, timeout_s=2))
    assert r.capacity is None and "no-such-context" in (r.problem or "")
    config = tmp_path / "clusters.yaml"
    config.write_text("clusters:\n  - {name: nowhere, context: no-such-context}\n")
    result = CliRunner().invoke(app, ["clusters", "--clusters", str(config)])
    assert result.exit_code == 0, result.output
    assert "nowhere" in result.output and "unreachable" in result.output


def test_every_new_command_has_an_example_in_its_help() -> None:
    runner = CliRunner()
    for args in (["clusters"], ["move"], ["fleet", "redispatch"], ["launch"]):
        out = runner.invoke(app, [*args, "--help"], terminal_width=200).output
        assert "Example:" in out, args
    assert "auto" in runner.invoke(app, ["launch", "--help"], terminal_width=200).output


def test_choose_cluster_agrees_with_the_ledger() -> None:
    # A reading charged with a placement judges the next gang like a fresh summary
    # in which that placement happened would: here, the node it took is full.
    r = reading("one", machine("gpu-a100", A100, free=1))
    demand = [RoleDemand("gpu-a100", 8, Resources(8_000, 64 * GIB, 1))]
    assert r.capacity is not None
    ledger = Ledger(r.capacity)
    ledger.charge(demand, tier=0)
    (score,) = choose_cluster(demand, [r.__class__(r.ref, ledger.capacity()).option()])
    assert score.tier == 2
