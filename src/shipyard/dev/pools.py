"""Node pools on a dev cluster: machine types -> kwok Node objects, created in bulk.

`gpu-a100:2000` on the command line, or a YAML file for richer shapes:

    pools:
      - name: a100                 # defaults to the machine type's name
        machineType: gpu-a100      # from shipyard's catalog ...
        count: 2000
        zones: [us-central1-a, us-central1-b]
        nodesPerRack: 8
        racksPerBlock: 16
        labels: {team: research}
      - name: l4
        machine:                   # ... or inline, same fields as spec.MachineType
          {name: g2-standard-24, cpu: 24, memory: 96Gi, gpus: 2, gpu_model: NVIDIA-L4}
        count: 10

Every node carries the labels a cloud node has (instance type, region, zone,
hostname, os/arch), the NVIDIA GPU-feature-discovery labels, shipyard's pool and
rack/block topology labels, capacity and allocatable (with `nvidia.com/gpu`),
and the machine type's taints.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shipyard.api.vocab import LABEL_BLOCK, LABEL_NODE_KIND, LABEL_POOL, LABEL_RACK
from shipyard.dev.client import RawClient
from shipyard.dev.stages import KWOK_NODE_ANNOTATION
from shipyard.spec.machines import DEFAULT_MACHINE_TYPES, RESOURCE_GPU, MachineType

LABEL_ZONE = "topology.kubernetes.io/zone"
LABEL_REGION = "topology.kubernetes.io/region"

# Short names the dev CLI accepts besides the catalog's.
ALIASES = {"cpu": "cpu-large", "a100": "gpu-a100", "h100": "gpu-h100", "t4": "gpu-t4"}

# GPU memory per model, for the nvidia.com/gpu.memory label.
_GPU_MEMORY_MIB = {"A100-SXM4-80GB": 81920, "A100-SXM4-40GB": 40960, "H100": 81920, "T4": 15360}


class PoolSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(default="", pattern=r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    machine_type: str | None = Field(default=None, alias="machineType")
    machine: MachineType | None = None
    count: int = Field(ge=0, le=100_000)
    region: str = "us-central1"
    zones: list[str] = Field(
        default_factory=lambda: ["us-central1-a", "us-central1-b", "us-central1-c"], min_length=1
    )
    nodes_per_rack: int = Field(default=16, ge=1, alias="nodesPerRack")
    racks_per_block: int = Field(default=8, ge=1, alias="racksPerBlock")
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _resolve(self) -> PoolSpec:
        if (self.machine is None) == (self.machine_type is None):
            raise ValueError("give exactly one of machineType (a catalog name) or machine")
        if self.machine is None:
            key = ALIASES.get(self.machine_type or "", self.machine_type or "")
            if key not in DEFAULT_MACHINE_TYPES:
                known = ", ".join(sorted([*DEFAULT_MACHINE_TYPES, *ALIASES]))
                raise ValueError(f"unknown machineType {self.machine_type!r}; known: {known}")
            self.machine = DEFAULT_MACHINE_TYPES[key]
        if not self.name:
            self.name = self.machine_type or self.machine.name
        return self

    @property
    def mt(self) -> MachineType:
        if self.machine is None:  # resolved by the validator; kept for the type checker
            raise ValueError("pool has no machine type")
        return self.machine


def parse_pool_arg(arg: str) -> PoolSpec:
    """`gpu-a100:2000` or `train=gpu-a100:2000` (pool name `train`)."""
    name, _, rest = arg.rpartition("=")
    mtype, sep, count = rest.partition(":")
    if not sep or not count.isdigit():
        raise ValueError(f"bad --pool {arg!r}: expected MACHINE_TYPE:COUNT, e.g. gpu-a100:2000")
    return PoolSpec(name=name, machine_type=mtype, count=int(count))


def load_pools_file(path: Path) -> list[PoolSpec]:
    data = yaml.safe_load(path.read_text()) or {}
    items = data.get("pools") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a `pools:` list")
    return [PoolSpec.model_validate(i) for i in items]


def _fmt_mem(b: int) -> str:
    return f"{b // 2**20}Mi" if b % 2**30 else f"{b // 2**30}Gi"


def node_object(pool: PoolSpec, index: int, kube_version: str = "v1.36.3") -> dict[str, Any]:
    """The Node for machine number `index` of `pool` (a pure function of its inputs)."""
    name = f"{pool.name}-{index:05d}"
    rack_global = index // pool.nodes_per_rack
    zone = pool.zones[rack_global % len(pool.zones)]  # racks, not nodes, live in a zone
    block = rack_global // pool.racks_per_block
    topology = {
        LABEL_REGION: pool.region,
        LABEL_ZONE: zone,
        LABEL_POOL: pool.name,
        LABEL_BLOCK: f"{pool.name}-b{block:03d}",
        LABEL_RACK: f"{pool.name}-r{rack_global:04d}",
    }
    return machine_node(pool.mt, name, topology=topology, labels=pool.labels, kube_version=kube_version)


def machine_node(
    mt: MachineType,
    name: str,
    *,
    topology: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    kube_version: str = "v1.36.3",
) -> dict[str, Any]:
    """A kwok Node of machine type `mt`: labels, capacity, allocatable and taints.

    Label precedence (later wins): the basics, `topology`, the machine type's labels,
    `labels`, the GPU-feature-discovery labels. Node providers use this too."""
    all_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        # Real dev nodes say "real" (and are tainted): see dev/realnode.py.
        LABEL_NODE_KIND: "kwok",
        **(topology or {}),
        **mt.node_labels(),
        **(labels or {}),
    }
    capacity = {
        "cpu": f"{mt.cpu}m" if mt.cpu % 1000 else str(mt.cpu // 1000),
        "memory": _fmt_mem(mt.memory),
        "ephemeral-storage": "500Gi",
        "pods": "110",
    }
    allocatable = {
        **capacity,
        "cpu": f"{mt.allocatable_cpu}m",
        "memory": f"{mt.allocatable_memory // 2**20}Mi",
    }
    if mt.gpus:
        capacity[RESOURCE_GPU] = allocatable[RESOURCE_GPU] = str(mt.gpus)
        product = mt.gpu_model or "NVIDIA-GPU"
        all_labels.update({
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.count": str(mt.gpus),
            "nvidia.com/gpu.product": product,
            "nvidia.com/gpu.memory": str(
                next((v for k, v in _GPU_MEMORY_MIB.items() if k in product), 16384)
            ),
        })
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": all_labels,
            "annotations": {
                KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1],
                "node.alpha.kubernetes.io/ttl": "0",
                **(annotations or {}),
            },
        },
        "spec": {"taints": [t.model_dump() for t in mt.taints]} if mt.taints else {},
        "status": {
            "capacity": capacity,
            "allocatable": allocatable,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": kube_version,
                "containerRuntimeVersion": "kwok",
                "kernelVersion": "kwok",
                "kubeProxyVersion": kube_version,
                "osImage": "kwok",
                "machineID": "", "bootID": "", "systemUUID": "",
            },
        },
    }


def nodes_for(pools: list[PoolSpec], start: dict[str, int] | None = None) -> Iterator[dict]:
    for p in pools:
        first = (start or {}).get(p.name, 0)
        for i in range(first, first + p.count):
            yield node_object(p, i)


Progress = Callable[[int, int], None]


class NodeCreateError(RuntimeError):
    """The API server refused a node for a reason retrying will not fix."""


def create_nodes(
    api: RawClient,
    nodes: list[dict[str, Any]],
    *,
    workers: int = 24,
    progress: Progress | None = None,
) -> int:
    """POST every node, `workers` at a time; an existing node counts as created."""
    done = 0
    total = len(nodes)

    def post(body: dict[str, Any]) -> None:
        for attempt in range(8):
            status, data = api.request("POST", "/api/v1/nodes", body)
            if status in (200, 201, 409):  # 409: already there (idempotent re-run)
                return
            if status in (429, 500, 503, 504) and attempt < 7:
                time.sleep(0.2 * 2**attempt)
                continue
            raise NodeCreateError(
                f"creating node {body['metadata']['name']}: HTTP {status}: {data[:300]!r}")

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mknode") as ex:
        for _ in ex.map(post, nodes):
            done += 1
            if progress and (done % 100 == 0 or done == total):
                progress(done, total)
    return done


def ready_count(api: RawClient, label_selector: str = "type=kwok") -> tuple[int, int]:
    """(Ready nodes, all nodes) among those matching the selector, from the watch cache."""
    q = urllib.parse.urlencode({"labelSelector": label_selector, "resourceVersion": "0"})
    items = api.get_json(f"/api/v1/nodes?{q}")["items"]
    ready = 0
    for n in items:
        for c in (n.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready" and c.get("status") == "True":
                ready += 1
                break
    return ready, len(items)
