"""docs/pods.md's example is the same experiment in its Python and its YAML form, and it
renders what the page says."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from shipyard.render import render_experiment
from shipyard.spec import Experiment, experiment_from_data

DOC = Path(__file__).parents[2] / "docs" / "pods.md"


def _block(lang: str) -> str:
    match = re.search(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"no {lang} block in {DOC}"
    return match.group(1)


def test_the_python_and_yaml_forms_are_the_same_experiment():
    namespace: dict[str, object] = {}
    exec(compile(_block("python"), str(DOC), "exec"), namespace)
    from_python = namespace["experiment"]
    assert isinstance(from_python, Experiment)
    assert from_python == experiment_from_data(yaml.safe_load(_block("yaml")), str(DOC))


def test_the_example_renders_as_described():
    exp = experiment_from_data(yaml.safe_load(_block("yaml")))
    pods = {o["metadata"]["name"]: o for o in render_experiment(exp) if o["kind"] == "Pod"}
    worker, tb = pods["llm-worker-0"]["spec"], pods["llm-tb-0"]["spec"]
    assert {v["name"] for v in worker["volumes"]} >= {"data", "scratch", "gcs-key", "shipyard-shm"}
    assert "datasets" not in {v["name"] for v in worker["volumes"]}  # nobody mounts it
    assert worker["hostNetwork"] and worker["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert {v["name"] for v in tb["volumes"]} >= {"home"} and "hostNetwork" not in tb
