"""Storage, credentials, identity, extended resources and host networking in rendered pods,
and rendering that stays linear in the number of replicas."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shipyard.render import env as render_env
from shipyard.render import render_experiment
from shipyard.render.objects import render_pod, to_yaml
from shipyard.spec import experiment_from_data

SPEC: dict[str, Any] = {
    "name": "llm",
    "volumes": [
        {"name": "data", "pvc": "imagenet"},
        {"name": "scratch", "empty_dir": {"size_limit": "100Gi"}},
        {"name": "home", "nfs": {"server": "nfs.lab", "path": "/export/home"}},
        {"name": "creds", "secret": "wandb-files"},
        {"name": "unused", "host_path": "/datasets"},
    ],
    "service_account": "trainer",
    "image_pull_secrets": ["regcred"],
    "security_context": {"run_as_user": 1000, "fs_group": 2000},
    "roles": [
        {"name": "worker", "replicas": 2, "machine_type": "gpu-h100", "command": ["torchrun", "t.py"],
         "image_pull_policy": "Always", "host_network": True,
         "resources": {"extra": {"rdma/hca": 2}},
         "mounts": [{"volume": "data", "path": "/data", "read_only": True, "sub_path": "train"},
                    {"volume": "scratch", "path": "/scratch"},
                    {"volume": "data", "path": "/data-val", "sub_path": "val"}],
         "env_from": [{"secret": "wandb", "prefix": "WANDB_"}, {"config_map": "settings", "optional": True}],
         "env_keys": {"HF_TOKEN": {"secret": "hf", "key": "token"}, "MASTER_PORT": {"config_map": "c", "key": "p"}}},
        {"name": "tb", "machine_type": "cpu-small", "command": ["tensorboard"], "distributed": False,
         "resources": {"cpu": 1, "memory": "1Gi"}, "shm_size": "256Mi",
         "mounts": [{"volume": "home", "path": "/home/me"}, {"volume": "creds", "path": "/etc/creds"}]},
    ],
}


def _pods() -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in render_experiment(experiment_from_data(SPEC)) if o["kind"] == "Pod"}


def test_volumes_and_mounts_render_only_what_the_role_mounts():
    pods = _pods()
    worker, tb = pods["llm-worker-0"], pods["llm-tb-0"]
    by_name = {v["name"]: v for v in worker["spec"]["volumes"]}
    assert by_name["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": "imagenet"}}
    assert by_name["scratch"] == {"name": "scratch", "emptyDir": {"sizeLimit": "100Gi"}}
    assert "unused" not in by_name and "home" not in by_name  # a claim nobody mounts must not hold the pod
    mounts = worker["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "data", "mountPath": "/data", "readOnly": True, "subPath": "train"} in mounts
    assert {"name": "data", "mountPath": "/data-val", "subPath": "val"} in mounts
    tb_volumes = {v["name"]: v for v in tb["spec"]["volumes"]}
    assert tb_volumes["home"]["nfs"] == {"server": "nfs.lab", "path": "/export/home"}
    assert tb_volumes["creds"]["secret"] == {"secretName": "wandb-files"}
    env = {e["name"]: e.get("value") for e in worker["spec"]["containers"][0]["env"]}
    assert env["SHIPYARD_MOUNT_DATA"] == "/data" and env["SHIPYARD_MOUNT_SCRATCH"] == "/scratch"


def test_shm_defaults_to_a_quarter_of_a_gpu_replicas_memory_and_is_memory_backed():
    pods = _pods()
    worker, tb = pods["llm-worker-0"], pods["llm-tb-0"]
    shm = {v["name"]: v for v in worker["spec"]["volumes"]}["shipyard-shm"]
    memory = worker["spec"]["containers"][0]["resources"]["requests"]["memory"]
    assert memory == "2096640Mi" and shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "524160Mi"}
    assert {"name": "shipyard-shm", "mountPath": "/dev/shm"} in worker["spec"]["containers"][0]["volumeMounts"]
    tb_shm = {v["name"]: v for v in tb["spec"]["volumes"]}["shipyard-shm"]
    assert tb_shm["emptyDir"]["sizeLimit"] == "256Mi"  # a CPU role only when asked

    spec = {**SPEC, "roles": [{**SPEC["roles"][0], "shm_size": 0}]}
    pod = render_experiment(experiment_from_data(spec))[1]
    assert all(v["name"] != "shipyard-shm" for v in pod["spec"].get("volumes", []))


def test_credentials_identity_and_pull_settings():
    worker = _pods()["llm-worker-0"]
    spec, container = worker["spec"], worker["spec"]["containers"][0]
    assert spec["serviceAccountName"] == "trainer"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["securityContext"] == {"runAsUser": 1000, "fsGroup": 2000}
    assert container["imagePullPolicy"] == "Always"
    assert container["envFrom"] == [{"secretRef": {"name": "wandb"}, "prefix": "WANDB_"},
                                    {"configMapRef": {"name": "settings", "optional": True}}]
    env = container["env"]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}} in env
    # A key that names one of shipyard's own variables replaces it: one MASTER_PORT, from the key.
    ports = [e for e in env if e["name"] == "MASTER_PORT"]
    assert ports == [{"name": "MASTER_PORT", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "p"}}}]


def test_extra_resources_and_host_network():
    worker = _pods()["llm-worker-0"]
    spec, container = worker["spec"], worker["spec"]["containers"][0]
    resources = container["resources"]
    assert resources["requests"]["rdma/hca"] == resources["limits"]["rdma/hca"] == "2"
    assert resources["requests"]["nvidia.com/gpu"] == "8"  # the whole machine, and its GPUs
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert container["ports"] == [{"name": "rdzv", "containerPort": 29500, "hostPort": 29500}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MASTER_ADDR"] == "llm-worker-0.llm"  # the Service name still resolves (to the node)
    tb = _pods()["llm-tb-0"]["spec"]
    assert "hostNetwork" not in tb and "dnsPolicy" not in tb


def test_the_rank_layout_is_computed_once_per_experiment(monkeypatch):
    calls = []
    original = render_env._compute_layout
    monkeypatch.setattr(render_env, "_compute_layout", lambda exp: calls.append(1) or original(exp))
    exp = experiment_from_data({"name": "big", "roles": [
        {"name": "w", "replicas": 2000, "machine_type": "gpu-a100", "command": ["x"]}]})
    objects = render_experiment(exp)
    assert len(objects) == 2001 and len(calls) == 1
    render_pod(exp, exp.roles[0], 7)  # the controller renders pod by pod: still cached
    assert len(calls) == 1


@given(first=st.integers(1, 5), second=st.integers(1, 5))
def test_a_changed_copy_never_reuses_a_stale_layout(first, second):
    exp = experiment_from_data({"name": "e", "roles": [
        {"name": "w", "replicas": first, "machine_type": "cpu-small", "command": ["x"]}]})
    render_experiment(exp)
    changed = exp.model_copy(update={"roles": [exp.roles[0].model_copy(update={"replicas": second})]})
    env = {e["name"]: e["value"] for e in render_pod(changed, changed.roles[0], 0)["spec"]["containers"][0]["env"]}
    assert env["WORLD_SIZE"] == str(second)


def test_to_yaml_reads_back_as_the_objects():
    import yaml

    objects = render_experiment(experiment_from_data(SPEC))
    assert list(yaml.safe_load_all(to_yaml(objects))) == objects


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(),
                     st.sampled_from(["yes", "No", "on", "null", "None", "~", "1e3", "0x1", ".inf", "a: b",
                                      "- x", "#c", "12:30", "2026-01-01", "", " ", "x\n", "<<", "=", "'", '"']))
_data = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.text(), _scalars.filter(
        lambda v: isinstance(v, str))), inner, max_size=3)), max_leaves=12)


@given(st.lists(_data, min_size=1, max_size=3))
def test_the_fast_writer_writes_yaml_that_reads_back_equal(documents):
    import yaml

    from shipyard.render.dump import dump_all

    assert list(yaml.safe_load_all(dump_all(documents))) == documents
