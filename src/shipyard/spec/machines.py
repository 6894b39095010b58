"""Machine types: what one replica of a role asks for, and what a node offers."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shipyard.spec.inputs import clip
from shipyard.spec.k8s_names import LabelValue, QualifiedName, label_value, qualified_name
from shipyard.spec.quantity import format_cpu, format_memory, parse_cpu_milli, parse_memory_bytes

# Users write "500m" or 2 for CPU and "16Gi" for memory; the model keeps integers.
CpuMilli = Annotated[
    int, BeforeValidator(parse_cpu_milli), PlainSerializer(format_cpu, return_type=str)
]
MemoryBytes = Annotated[
    int, BeforeValidator(parse_memory_bytes), PlainSerializer(format_memory, return_type=str)
]

LABEL_INSTANCE_TYPE = "node.kubernetes.io/instance-type"
LABEL_GPU_PRODUCT = "nvidia.com/gpu.product"
RESOURCE_GPU = "nvidia.com/gpu"
MAX_PRICE = 1_000_000.0  # $/h of one node: anything above is a typo


_NUMBERS = (int, float, int | None, float | None)


class StrictModel(BaseModel):
    """Unknown fields are errors: a typo must never be silently dropped."""

    # inf and nan are never a valid number of anything.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: object, info: ValidationInfo) -> object:
        # `replicas: true` is a slip, not 1 (pydantic would take it as 1).
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and field.annotation in _NUMBERS:
            raise ValueError(f"expected a number, got {value!r}")
        return value


class Taint(StrictModel):
    key: QualifiedName
    value: LabelValue = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class MachineType(StrictModel):
    """One kind of machine: its size, its GPUs, how nodes of it are labelled, its price."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=63)
    cpu: CpuMilli = Field(gt=0)
    memory: MemoryBytes = Field(gt=0)
    gpus: int = Field(default=0, ge=0, le=64)
    gpu_model: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    cost_per_hour: float = Field(default=0.0, ge=0, le=MAX_PRICE)
    # What the kubelet and system daemons keep back on every node of this type: a pod
    # that takes "the whole machine" asks for the rest (the node's allocatable).
    # Defaults in the model's units (not parsed again as user input), made by a factory
    # so that the CRD's schema has none: the API server must not fill in what the client parses.
    reserved_cpu: CpuMilli = Field(default_factory=lambda: parse_cpu_milli("100m"), ge=0,
                                   validate_default=False)
    reserved_memory: MemoryBytes = Field(default_factory=lambda: parse_memory_bytes("512Mi"), ge=0,
                                         validate_default=False)

    @property
    def allocatable_cpu(self) -> int:
        return max(self.cpu - self.reserved_cpu, 0)

    @property
    def allocatable_memory(self) -> int:
        return max(self.memory - self.reserved_memory, 0)

    @model_validator(mode="after")
    def _labels_kubernetes_accepts(self) -> MachineType:
        # Nodes carry these labels and pods select on them: Kubernetes' label rules.
        problems = [f"labels.{clip(k, 60)}: the key {p}" for k in self.labels if (p := qualified_name(k))]
        problems += [f"labels.{k}: the value {p}" for k, v in self.labels.items()
                     if not qualified_name(k) and (p := label_value(v))]
        if self.gpu_model is not None and (p := label_value(self.gpu_model)):
            problems.append(f"gpu_model: it is the {LABEL_GPU_PRODUCT} label's value, so it {p}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def node_labels(self) -> dict[str, str]:
        """Labels every node of this type carries (and a pod of it selects on)."""
        labels = {LABEL_INSTANCE_TYPE: self.name, **self.labels}
        if self.gpu_model:
            labels.setdefault(LABEL_GPU_PRODUCT, self.gpu_model)
        return labels


def _gpu_taints() -> tuple[Taint, ...]:
    return (Taint(key=RESOURCE_GPU, value="present", effect="NoSchedule"),)


# A starting catalog with shapes close to common cloud offerings; an experiment (or
# the cluster config) can add or override entries by name.
DEFAULT_MACHINE_TYPES: dict[str, MachineType] = {
    m.name: m
    for m in (
        MachineType(name="cpu-small", cpu=2, memory="8Gi", cost_per_hour=0.10),
        MachineType(name="cpu-large", cpu=32, memory="128Gi", cost_per_hour=1.50),
        MachineType(
            name="gpu-t4", cpu=8, memory="32Gi", gpus=1, gpu_model="Tesla-T4",
            taints=_gpu_taints(), cost_per_hour=0.55,
        ),
        MachineType(
            name="gpu-a100", cpu=96, memory="1152Gi", gpus=8, gpu_model="NVIDIA-A100-SXM4-80GB",
            taints=_gpu_taints(), cost_per_hour=32.77,
        ),
        MachineType(
            name="gpu-h100", cpu=192, memory="2048Gi", gpus=8, gpu_model="NVIDIA-H100-80GB-HBM3",
            taints=_gpu_taints(), cost_per_hour=98.32,
        ),
    )
}
