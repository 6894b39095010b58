"""Fast checks of shipyard.dev's pure parts (no cluster, no Go): go.mod generation,
pool parsing and node shapes, the kwok configuration."""

from __future__ import annotations

import pytest
import yaml

from shipyard.dev import gomod, pools, stages

UPSTREAM = """module k8s.io/kubernetes

go 1.26.0

godebug default=go1.26

require (
	k8s.io/api v0.0.0
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go // comment
)

replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY
replace example.com/x v1.0.0 => example.com/y v1.2.0
"""


def test_wrapper_gomod_replaces_every_local_path() -> None:
    text = gomod.wrapper_gomod(
        module="shipyard.dev/controlplane/kubernetes",
        upstream_module="k8s.io/kubernetes",
        upstream_version="v1.36.3",
        upstream_gomod=UPSTREAM,
        local_version=gomod.kubernetes_staging_version("v1.36.3"),
    )
    assert "\tk8s.io/api => k8s.io/api v0.36.3" in text
    assert "\tk8s.io/client-go => k8s.io/client-go v0.36.3" in text
    assert "FORBIDDEN" not in text and "example.com" not in text
    assert "go 1.26.0" in text and "godebug default=go1.26" in text
    assert "\tk8s.io/kubernetes v1.36.3" in text


def test_staging_version_rejects_non_v1() -> None:
    with pytest.raises(ValueError):
        gomod.kubernetes_staging_version("v2.0.0")


def test_pool_arg_and_node_shape() -> None:
    p = pools.parse_pool_arg("train=gpu-a100:20")
    assert (p.name, p.count, p.mt.gpus) == ("train", 20, 8)
    n = pools.node_object(p, 17)
    assert n["metadata"]["name"] == "train-00017"
    assert n["status"]["capacity"]["nvidia.com/gpu"] == "8"
    assert n["metadata"]["labels"]["nvidia.com/gpu.product"].startswith("NVIDIA-A100")
    assert n["spec"]["taints"][0]["key"] == "nvidia.com/gpu"
    assert n["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    # Nodes of one rack share a zone.
    z = {pools.node_object(p, i)["metadata"]["labels"][pools.LABEL_ZONE] for i in range(16)}
    assert len(z) == 1


@pytest.mark.parametrize("bad", ["gpu-a100", "gpu-a100:x", "nosuch:3"])
def test_pool_arg_errors(bad: str) -> None:
    with pytest.raises(ValueError):
        pools.parse_pool_arg(bad)


def test_pools_file(tmp_path) -> None:
    f = tmp_path / "pools.yaml"
    f.write_text(yaml.safe_dump({"pools": [
        {"machineType": "cpu", "count": 3, "zones": ["z1"]},
        {"name": "l4", "count": 2,
         "machine": {"name": "g2-standard-24", "cpu": 24, "memory": "96Gi", "gpus": 2,
                     "gpu_model": "NVIDIA-L4"}},
    ]}))
    a, b = pools.load_pools_file(f)
    assert a.name == "cpu" and a.zones == ["z1"]
    assert pools.node_object(b, 0)["status"]["capacity"]["nvidia.com/gpu"] == "2"


def test_kwok_config_has_every_stage() -> None:
    docs = list(yaml.safe_load_all(stages.kwok_config(stages.KwokOptions(), "127.0.0.1:1")))
    assert docs[0]["kind"] == "KwokConfiguration"
    names = {d["metadata"]["name"] for d in docs[1:]}
    assert {"shipyard-pod-succeed", "shipyard-pod-fail", "shipyard-node-not-ready"} <= names


def test_each_build_writes_into_its_own_partial_directory_and_clears_dead_ones(tmp_path) -> None:
    import os
    import subprocess

    from shipyard.dev.build import _partial_dir

    out = tmp_path / "k8s-v1_linux-amd64"
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    left = [out.with_name(f"{out.name}.partial"), out.with_name(f"{out.name}.partial-{dead.pid}")]
    other = out.with_name(f"{out.name}.partial-1")  # pid 1 runs: another build in progress
    for d in (*left, other):
        d.mkdir()
    mine = _partial_dir(out)
    assert mine == out.with_name(f"{out.name}.partial-{os.getpid()}") and mine.is_dir()
    assert not any(d.exists() for d in left) and other.is_dir()
