"""Load an Experiment from a .py module or a YAML/JSON file; both give the same object."""

from __future__ import annotations

import json
import runpy
import traceback
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from shipyard.spec.errors import SpecError, spec_error
from shipyard.spec.experiment import Experiment


def load_experiment(path: str | Path) -> Experiment:
    """Read one experiment; raise SpecError with every problem found, or FileNotFoundError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".py":
        return _from_python(path)
    if suffix in (".yaml", ".yml", ".json"):
        return experiment_from_data(_read_data(path), str(path))
    raise SpecError(str(path), [f"unsupported file type {suffix!r}; use .py, .yaml, .yml or .json"])


def experiment_from_data(data: Any, source: str = "<data>") -> Experiment:
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise SpecError(source, [f"(top level): expected a mapping of experiment fields, got {kind}"])
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise spec_error(source, exc, Experiment) from None


def _read_data(path: Path) -> Any:
    text = path.read_text()
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise SpecError(str(path), [f"not valid {path.suffix[1:].upper()}: {exc}"]) from None


def _from_python(path: Path) -> Experiment:
    try:
        namespace = runpy.run_path(str(path), run_name="__shipyard_spec__")
    except ValidationError as exc:
        # Point at the line of the spec file that built the bad object.
        lines = [n for f, n in traceback.walk_tb(exc.__traceback__) if f.f_code.co_filename == str(path)]
        source = f"{path}:{lines[-1]}" if lines else str(path)
        raise spec_error(source, exc, Experiment) from None
    found = {k: v for k, v in namespace.items() if isinstance(v, Experiment)}
    if "experiment" in found:
        return found["experiment"]
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise SpecError(
            str(path), ["(module): defines no Experiment; assign one, e.g. experiment = Experiment(...)"]
        )
    names = ", ".join(sorted(found))
    raise SpecError(
        str(path), [f"(module): defines several experiments ({names}); name the one to run `experiment`"]
    )
