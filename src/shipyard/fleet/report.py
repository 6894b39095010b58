"""`shipyard clusters`: every cluster's capacity summary as rows a person can read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shipyard.core.cluster_summary import LEVELS, MachineCapacity
from shipyard.fleet.capacity_reader import ClusterReading


def free_amount(mc: MachineCapacity) -> tuple[int, str]:
    """What is surely free, in the unit that matters for the type: GPUs on GPU machines,
    else CPUs (a lower bound: each bucket counts at its lower edge)."""
    if mc.node.gpus:
        return sum(k * mc.node.gpus // LEVELS * n for k, n in enumerate(mc.free_levels)), "GPU"
    cpus = sum(k * mc.node.cpu_milli // LEVELS * n for k, n in enumerate(mc.free_levels)) // 1000
    return cpus, "CPU"


def machine_row(reading: ClusterReading, mc: MachineCapacity) -> dict[str, Any]:
    amount, unit = free_amount(mc)
    whole = mc.free_levels[LEVELS]
    queued = f"{mc.queued_gangs}: {mc.queued.describe()}" if mc.queued_gangs else "-"
    coming = f" ({mc.provisioning_nodes} coming)" if mc.provisioning_nodes else ""
    headroom = f"+{mc.headroom_nodes}{coming}"
    nodes = str(mc.nodes)
    if mc.static_nodes:
        nodes += " static" if mc.static_nodes == mc.nodes else f" ({mc.static_nodes} static)"
    price = mc.cost_per_hour * reading.ref.cost_factor
    return {
        "cluster": reading.ref.name, "location": reading.ref.location, "machine_type": mc.machine_type,
        "nodes": nodes, "free": f"{whole} ({amount} {unit})", "queued": queued,
        "headroom": headroom, "cost_per_hour": f"{price:.2f}",
        "detail": {"nodes": mc.nodes, "static_nodes": mc.static_nodes, "free_nodes": whole,
                   f"free_{unit.lower()}s": amount, "free_levels": list(mc.free_levels),
                   "queued_gangs": mc.queued_gangs, "provisioning_nodes": mc.provisioning_nodes,
                   "headroom_nodes": mc.headroom_nodes, "cost_per_hour": price},
    }


def capacity_rows(readings: Sequence[ClusterReading]) -> list[dict[str, Any]]:
    """One row per cluster and machine type; one row saying why for a cluster without a summary."""
    rows: list[dict[str, Any]] = []
    for r in readings:
        if r.capacity is None:
            rows.append({"cluster": r.ref.name, "location": r.ref.location, "machine_type": None,
                         "nodes": "unreachable", "free": "", "queued": "", "headroom": "",
                         "cost_per_hour": "", "detail": {"unreachable": r.problem}})
            continue
        rows.extend(machine_row(r, mc) for mc in r.capacity.machines)
        if not r.capacity.machines:
            rows.append({"cluster": r.ref.name, "location": r.ref.location, "machine_type": None,
                         "nodes": 0, "free": "no nodes or node pools", "queued": "", "headroom": "",
                         "cost_per_hour": "", "detail": {}})
    return rows
