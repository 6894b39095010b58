"""This machine as a one-node snapshot: CPUs, memory and NVIDIA GPUs."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from shipyard.core.model import Node, Resources
from shipyard.spec.inputs import short
from shipyard.spec.quantity import parse_cpu_milli, parse_memory_bytes

LOCAL_NODE = "local"
MAX_LOCAL_GPUS = 1024


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


class SettingError(ValueError):
    """An environment setting shipyard cannot use; the message names it and the fix."""


def setting(name: str, parse: Callable[[str], int], example: str, least: int = 1) -> int | None:
    """The environment variable `name` parsed (at least `least`), None when unset or empty."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = parse(text)
    except ValueError as exc:
        raise SettingError(f"{name}={short(text)}: {exc}; set it to e.g. {example}, or unset it "
                           "to use what this machine has") from None
    if value < least:
        bound = "above 0" if least == 1 else f"at least {least}"
        raise SettingError(f"{name}={short(text)}: must be {bound}; set it to e.g. {example}, or unset it")
    return value


def _gpu_count(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_LOCAL_GPUS:
        raise ValueError(f"expected a whole number of GPUs from 0 to {MAX_LOCAL_GPUS}")
    return int(text)


def detect_machine() -> LocalMachine:
    """What this machine offers. SHIPYARD_LOCAL_CPUS / _MEMORY / _GPUS override the
    detected values (to share a box with other work, or to test queueing); a value that
    is not an amount is a SettingError."""
    cpu_milli = setting("SHIPYARD_LOCAL_CPUS", parse_cpu_milli, "8 or 500m")
    memory = setting("SHIPYARD_LOCAL_MEMORY", parse_memory_bytes, "16Gi")
    cpu_milli = cpu_milli or len(os.sched_getaffinity(0)) * 1000
    memory = memory or psutil.virtual_memory().total
    count = setting("SHIPYARD_LOCAL_GPUS", _gpu_count, "0 or 2", least=0)
    if count is not None:
        return LocalMachine(cpu_milli, memory, tuple(range(count)))
    gpus, names = detect_gpus()
    return LocalMachine(cpu_milli, memory, gpus, names)
