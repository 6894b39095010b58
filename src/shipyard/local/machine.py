"""This machine as a one-node snapshot: CPUs, memory and NVIDIA GPUs."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import psutil

from shipyard.core.model import Node, Resources
from shipyard.spec.quantity import parse_cpu_milli, parse_memory_bytes

LOCAL_NODE = "local"


@dataclass(frozen=True, slots=True)
class LocalMachine:
    cpu_milli: int
    memory: int
    gpus: tuple[int, ...]  # device indices
    gpu_names: tuple[str, ...] = ()

    def node(self, used: Resources = Resources()) -> Node:
        return Node(LOCAL_NODE, Resources(self.cpu_milli, self.memory, len(self.gpus)), used=used)


def detect_gpus() -> tuple[tuple[int, ...], tuple[str, ...]]:
    """GPU indices and names via NVML if installed, else nvidia-smi; none if neither works."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            names = tuple(
                str(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)))
                for i in range(count)
            )
            return tuple(range(count)), names
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        pass
    smi = shutil.which("nvidia-smi")
    if not smi:
        return (), ()
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return (), ()
    rows = [line.split(",", 1) for line in out.strip().splitlines() if "," in line]
    return tuple(int(i) for i, _ in rows), tuple(n.strip() for _, n in rows)


def detect_machine() -> LocalMachine:
    """What this machine offers. SHIPYARD_LOCAL_CPUS / _MEMORY / _GPUS override the
    detected values (to share a box with other work, or to test queueing)."""
    cpus = os.environ.get("SHIPYARD_LOCAL_CPUS")
    cpu_milli = parse_cpu_milli(cpus) if cpus else len(os.sched_getaffinity(0)) * 1000
    memory_env = os.environ.get("SHIPYARD_LOCAL_MEMORY")
    memory = parse_memory_bytes(memory_env) if memory_env else psutil.virtual_memory().total
    gpus_env = os.environ.get("SHIPYARD_LOCAL_GPUS")
    if gpus_env is not None:
        return LocalMachine(cpu_milli, memory, tuple(range(int(gpus_env))))
    gpus, names = detect_gpus()
    return LocalMachine(cpu_milli, memory, gpus, names)
