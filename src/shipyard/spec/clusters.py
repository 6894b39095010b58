"""The user's clusters: which kubeconfig contexts shipyard may launch on, and how to weigh them.

    # ~/.config/shipyard/clusters.yaml (or $SHIPYARD_CLUSTERS, or the CLI's --clusters)
    clusters:
      - name: onprem
        context: shipyard-onprem
        location: onprem
        prefer: gpu
        machine_types: {gpu-a100: a100-80g}
      - name: cloud
        context: shipyard-cloud
        location: cloud
        prefer: cpu
    redispatch_after: null
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from shipyard.spec.errors import SpecError, spec_error
from shipyard.spec.experiment import DNS_LABEL, OptionalSeconds
from shipyard.spec.inputs import InputError, parse_yaml, read_text, short
from shipyard.spec.machines import StrictModel

ENV_CLUSTERS = "SHIPYARD_CLUSTERS"
WHAT = "the clusters config"
MACHINE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # as MachineType.name

EXAMPLE = """\
clusters:
  - name: onprem
    context: shipyard-onprem   # a context in your kubeconfig
    location: onprem           # onprem | cloud
    prefer: gpu                # gpu | cpu | any
  - name: cloud
    context: shipyard-cloud
    location: cloud
    prefer: cpu
"""


class ClusterRef(StrictModel):
    """One cluster shipyard may launch on."""

    name: str = Field(pattern=DNS_LABEL, max_length=63)
    context: str = Field(min_length=1)  # kubeconfig context
    location: Literal["onprem", "cloud"] = "cloud"
    # The kind of work this cluster is preferred for, when several could run it.
    prefer: Literal["gpu", "cpu", "any"] = "any"
    # Multiplies node prices in this cluster's summary (e.g. an amortised on-prem rate).
    cost_factor: float = Field(default=1.0, ge=0, le=1000)
    # Spec machine type -> this cluster's name for it; a type left out keeps its name.
    machine_types: dict[str, str] = Field(default_factory=dict)

    @field_validator("machine_types")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for spec_name, local in value.items():
            for text, side in ((spec_name, "spec machine type"), (local, "this cluster's name")):
                if not MACHINE_NAME.match(text):
                    raise ValueError(
                        f"{spec_name}: {side} {short(text)} is not a machine type name; use lowercase "
                        "letters, digits, '-' and '.', e.g. {gpu-a100: a100-80g}"
                    )
        return value

    def local_machine_type(self, spec_name: str) -> str:
        """This cluster's name for the spec's machine type `spec_name`."""
        return self.machine_types.get(spec_name, spec_name)


class ClustersConfig(StrictModel):
    clusters: list[ClusterRef] = Field(min_length=1)
    # Seconds an experiment may wait in one cluster before it moves to one that could
    # start it now; None: never moved.
    redispatch_after: OptionalSeconds = None

    @model_validator(mode="after")
    def _unique(self) -> ClustersConfig:
        problems: list[str] = []
        for field in ("name", "context"):
            seen: dict[str, int] = {}
            for i, c in enumerate(self.clusters):
                value = getattr(c, field)
                if value in seen:
                    fix = ("give each cluster its own name" if field == "name"
                           else "both entries are the same cluster; keep one")
                    problems.append(f"clusters[{i}].{field}: duplicate {field} {short(value)} "
                                    f"(also clusters[{seen[value]}]); {fix}")
                seen.setdefault(value, i)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def cluster(self, name: str) -> ClusterRef:
        for c in self.clusters:
            if c.name == name:
                return c
        known = ", ".join(c.name for c in self.clusters)
        raise KeyError(f"no cluster named {short(name)} in the clusters config; use one of {known}")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.clusters]


class ClustersConfigMissing(FileNotFoundError):
    """No clusters config where one was looked for; the message says where and shows one."""


def default_clusters_path() -> Path:
    """$XDG_CONFIG_HOME/shipyard/clusters.yaml, else ~/.config/shipyard/clusters.yaml."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "shipyard" / "clusters.yaml"


def clusters_config_path(path: Path | str | None = None) -> tuple[Path, str]:
    """The file to read and how it was chosen: `path`, else $SHIPYARD_CLUSTERS, else the default."""
    if path is not None:
        return Path(path).expanduser(), "given"
    env = os.environ.get(ENV_CLUSTERS)
    if env:
        return Path(env).expanduser(), f"from ${ENV_CLUSTERS}"
    return default_clusters_path(), "the default"


def load_clusters_config(path: Path | str | None = None) -> ClustersConfig:
    """Read the clusters config; SpecError with every problem, or ClustersConfigMissing."""
    where, how = clusters_config_path(path)
    if not where.is_file():
        raise ClustersConfigMissing(_missing_text(where, how))
    try:
        data = parse_yaml(read_text(where), str(where))
    except InputError as exc:
        raise SpecError(exc.source, [exc.problem], WHAT) from None
    return clusters_config_from_data(data, str(where))


def clusters_config_from_data(data: Any, source: str = "<data>") -> ClustersConfig:
    if not isinstance(data, dict):
        kind = "nothing (an empty file)" if data is None else type(data).__name__
        raise SpecError(source, [f"(top level): expected a mapping with a `clusters:` list, got {kind}; "
                                 "e.g. clusters: [{name: onprem, context: shipyard-onprem}]"], WHAT)
    try:
        return ClustersConfig.model_validate(data)
    except ValidationError as exc:
        raise spec_error(source, exc, ClustersConfig, WHAT) from None


def _missing_text(where: Path, how: str) -> str:
    if how == "the default":
        looked = (f"{where} (the default; ${ENV_CLUSTERS} is not set and no --clusters "
                  "file was given)")
    elif how.startswith("from"):
        looked = f"{where} ({how})"
    else:
        looked = str(where)
    return (f"no clusters config: looked for {looked}; create it, or point ${ENV_CLUSTERS} or "
            f"--clusters at one. A minimal one:\n\n{EXAMPLE}")
