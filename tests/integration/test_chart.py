"""The Helm chart renders exactly what `shipyard install --dry-run` prints, and a real
helm (built from the Go module proxy by `shipyard dev build`) installs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipyard.dev import build
from shipyard.kube.crds import all_crds

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "shipyard"


@pytest.fixture(scope="module")
def helm() -> Path:
    bins = build.cached_tool_binaries()
    if bins is None:
        build.build_tools(log=lambda m: None)  # `shipyard dev build` does it first
        bins = build.cached_tool_binaries()
    assert bins is not None
    return bins["helm"]


def _by_key(docs: list[Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs if d}


def _template(helm: Path, *sets: str) -> dict[tuple[str, str], dict[str, Any]]:
    args = [str(helm), "template", "shipyard", str(CHART), "--include-crds"]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return _by_key(list(yaml.safe_load_all(out)))


def _dry_run(*args: str) -> dict[tuple[str, str], dict[str, Any]]:
    out = subprocess.run([sys.executable, "-m", "shipyard.cli", "install", "--dry-run", *args],
                         capture_output=True, text=True, check=True).stdout
    return _by_key(list(yaml.safe_load_all(out)))


def _assert_same(chart: dict, install: dict) -> None:
    assert sorted(chart) == sorted(install)
    for key, obj in install.items():
        assert chart[key] == obj, f"{key}: chart and `shipyard install` differ"


def test_chart_crds_are_the_generated_ones() -> None:
    on_disk = [d for d in yaml.safe_load_all((CHART / "crds" / "shipyard-crds.yaml").read_text())
               if d]
    assert on_disk == all_crds(), "regenerate charts/shipyard/crds/ from shipyard.kube.crds"


def test_chart_renders_the_same_objects_as_install_dry_run(helm: Path) -> None:
    _assert_same(_template(helm), _dry_run())
    _assert_same(_template(helm, "image=registry.example/shipyard:9", "replicas=3"),
                 _dry_run("--image", "registry.example/shipyard:9", "--replicas", "3"))
    # The receiver behind its Service: the in-cluster controller's progress endpoint.
    _assert_same(_template(helm, "progressPort=8088"), _dry_run("--progress-port", "8088"))
    # The controller's monitoring flags, as values.
    _assert_same(_template(helm, "metricsPort=9090", "quarantineAfter=3", "quarantineWindow=1800",
                           "preflightImage=registry.example/check:1",
                           "preflightCommand=nvidia-smi -L"),
                 _dry_run("--metrics-port", "9090", "--quarantine-after", "3",
                          "--quarantine-window", "1800",
                          "--preflight-image", "registry.example/check:1",
                          "--preflight-command", "nvidia-smi -L"))


def test_chart_values_for_metrics_and_log_level(helm: Path) -> None:
    objs = _template(helm, "metricsPort=9090", "logLevel=debug")
    command = objs[("Deployment", "shipyard-controller")]["spec"]["template"]["spec"][
        "containers"][0]["command"]
    assert command[-3:] == ["--metrics-port=9090", "--metrics-address=0.0.0.0", "--verbose"]


def test_helm_installs_the_chart_into_a_cluster(helm: Path, dev_cluster_factory) -> None:
    c = dev_cluster_factory("helm")
    subprocess.run([str(helm), "install", "shipyard", str(CHART), "--kubeconfig",
                    str(c.kubeconfig), "--kube-context", c.context, "--set", "replicas=0",
                    "--wait", "--timeout", "120s"], capture_output=True, text=True, check=True)
    api = c.raw_client()
    crd = api.get_json("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                       "experiments.shipyard.dev")
    assert any(x["type"] == "Established" and x["status"] == "True"
               for x in crd["status"]["conditions"])
    dep = api.get_json("/apis/apps/v1/namespaces/shipyard-system/deployments/shipyard-controller")
    assert dep["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    role = api.get_json("/apis/rbac.authorization.k8s.io/v1/clusterroles/shipyard-controller")
    assert role["rules"] == _dry_run()[("ClusterRole", "shipyard-controller")]["rules"]


def test_chart_progress_port_serves_the_receiver_behind_a_service(helm: Path) -> None:
    objs = _template(helm, "progressPort=8088")
    command = objs[("Deployment", "shipyard-controller")]["spec"]["template"]["spec"][
        "containers"][0]["command"]
    assert command[-3:] == ["--progress-port=8088", "--progress-address=0.0.0.0",
                            "--progress-url=http://shipyard-controller.shipyard-system.svc:8088"]
    service = objs[("Service", "shipyard-controller")]
    assert service["spec"]["ports"] == [{"name": "progress", "port": 8088, "targetPort": 8088}]
    assert service["spec"]["selector"] == objs[("Deployment", "shipyard-controller")]["spec"][
        "selector"]["matchLabels"]
    assert ("Service", "shipyard-controller") not in _template(helm)  # off by default
