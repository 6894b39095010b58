"""Storage, credentials, hardware and Kubernetes' own name rules: every field's error names
the field, the bad value and the rule (tests/unit/test_spec_validation.py's style)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.spec import experiment_from_data
from shipyard.spec import k8s_names as k
from tests.unit.test_spec_validation import VALID, problems_for

DATA = [{"name": "data", "pvc": "imagenet"}]
M = {"name": "m", "cpu": 1, "memory": "1Gi"}

CASES = [
    # volumes
    ({"volumes": [{"name": "Data", "pvc": "x"}]}, "volumes[0].name: must be a DNS-1123 label", "'Data'"),
    ({"volumes": [{"name": "data"}]}, "volumes[0]: give exactly one of pvc, nfs, host_path, empty_dir, secret", "got none"),
    ({"volumes": [{"name": "data", "pvc": "x", "host_path": "/d"}]}, "volumes[0]: give exactly one of", "got pvc, host_path"),
    ({"volumes": [{"name": "data", "pvc": "X_1"}]}, "volumes[0].pvc: must be a DNS-1123 subdomain", "'X_1'"),
    ({"volumes": [{"name": "data", "host_path": "rel"}]}, "volumes[0].host_path: must be an absolute path", "'rel'"),
    ({"volumes": [{"name": "data", "host_path": "/a/../b"}]}, "volumes[0].host_path: must be an absolute path without '..'", "'/a/../b'"),
    ({"volumes": [{"name": "data", "nfs": {"server": "a b", "path": "/x"}}]}, "volumes[0].nfs.server: must be a host name", "'a b'"),
    ({"volumes": [{"name": "data", "nfs": {"server": "nfs", "path": "x"}}]}, "volumes[0].nfs.path: must be an absolute path", "'x'"),
    ({"volumes": [{"name": "data", "empty_dir": {"size_limit": "0"}}]}, "volumes[0].empty_dir.size_limit: must be > 0", "'0'"),
    ({"volumes": [{"name": "data", "empty_dir": {"size_limit": "lots"}}]}, "volumes[0].empty_dir.size_limit: expected a memory amount", "'lots'"),
    ({"volumes": [{"name": "shipyard-x", "empty_dir": {}}]}, "volumes[0]: volume names starting with 'shipyard-' are shipyard's own", "'shipyard-x'"),
    # its container would share the init container's name (render/runtime.py)
    ({"roles.0.name": "shipyard-unpack"}, "roles[0].name: role names starting with 'shipyard-' are shipyard's own", "'shipyard-unpack'"),
    ({"volumes": [{"name": "data", "secret": "bad/name"}]}, "volumes[0].secret: must be a DNS-1123 subdomain", "'bad/name'"),
    ({"volumes": [{"name": "d", "pvc": "a"}, {"name": "d", "pvc": "b"}]}, "volumes[1].name: duplicate volume name", "'d'"),
    # mounts and /dev/shm
    ({"volumes": DATA, "roles.0.mounts": [{"volume": "nope", "path": "/d"}]}, "roles[0].mounts[0].volume: no volume named", "'nope'; use one of data"),
    ({"volumes": DATA, "roles.0.mounts": [{"volume": "data", "path": "d"}]}, "roles[0].mounts[0].path: must be an absolute path", "'d'"),
    ({"volumes": DATA, "roles.0.mounts": [{"volume": "data", "path": "/a:b"}]}, "roles[0].mounts[0].path: must be an absolute path without '..' elements, ':'", "'/a:b'"),
    ({"volumes": DATA, "roles.0.mounts": [{"volume": "data", "path": "/d", "sub_path": "/abs"}]}, "roles[0].mounts[0].sub_path: must be a relative path", "'/abs'"),
    ({"volumes": DATA, "roles.0.mounts": [{"volume": "data", "path": "/d", "sub_path": "a/../.."}]}, "roles[0].mounts[0].sub_path: must be a relative path without '..'", "'a/../..'"),
    ({"volumes": DATA, "roles.0.mounts": [{"volume": "data", "path": "/d"}, {"volume": "data", "path": "/d/"}]}, "roles[0].mounts[1].path: '/d/' is also mounts[0]'s", "'/d/'"),
    ({"volumes": DATA, "roles.0.mounts": [{"volume": "data", "path": "/dev/shm"}]}, "roles[0].mounts[0].path: '/dev/shm' is where shipyard mounts its own", "(or set shm_size)"),
    ({"volumes": DATA, "roles.0.mounts": [{"volume": "data", "path": "/etc/shipyard"}]}, "roles[0].mounts[0].path: '/etc/shipyard' is where shipyard", "'/etc/shipyard'"),
    ({"volumes": DATA, "roles.0.mounts": [{"volume": "data", "path": "/d", "read_only": "maybe"}]}, "roles[0].mounts[0].read_only: input should be a valid boolean", "'maybe'"),
    ({"roles.0.shm_size": "lots"}, "roles[0].shm_size: expected a memory amount", "'lots'"),
    ({"roles.1.shm_size": "100Gi"}, "roles[1].shm_size: /dev/shm is memory the replica uses", "got 107374182400"),
    # credentials and identity
    ({"roles.0.env_from": [{"secret": "s", "config_map": "c"}]}, "roles[0].env_from[0]: give exactly one of secret, config_map", "got secret, config_map"),
    ({"roles.0.env_from": [{}]}, "roles[0].env_from[0]: give exactly one of secret, config_map", "got none"),
    ({"roles.0.env_from": [{"secret": "S"}]}, "roles[0].env_from[0].secret: must be a DNS-1123 subdomain", "'S'"),
    ({"roles.0.env_from": [{"secret": "s", "prefix": "1X"}]}, "roles[0].env_from[0].prefix: must be an environment variable name", "'1X'"),
    ({"roles.0.env_keys": {"TOKEN": {"secret": "s", "key": "a/b"}}}, "roles[0].env_keys.TOKEN.key: must be a Secret or ConfigMap key", "'a/b'"),
    ({"roles.0.env_keys": {"TOKEN": {"secret": "s"}}}, "roles[0].env_keys.TOKEN.key: required field is missing", "add it"),
    ({"roles.0.env_keys": {"1TOKEN": {"secret": "s", "key": "k"}}}, "roles[0].env_keys.1TOKEN: must be an environment variable name", "'1TOKEN'"),
    ({"roles.0.env_keys": {"T": {"secret": "s", "key": "k"}}, "roles.0.env": {"T": "1"}}, "roles[0].env_keys.T: also set in env", "one place"),
    ({"roles.0.env_keys": {"T": {"config_map": "c", "secret": "s", "key": "k"}}}, "roles[0].env_keys.T: give exactly one of", "got secret, config_map"),
    ({"service_account": "Bad"}, "service_account: must be a DNS-1123 subdomain", "'Bad'"),
    ({"image_pull_secrets": ["ok", "not ok"]}, "image_pull_secrets[1]: must be a DNS-1123 subdomain", "'not ok'"),
    ({"roles.0.image_pull_policy": "Sometimes"}, "roles[0].image_pull_policy: input should be 'Always', 'IfNotPresent' or 'Never'", "'Sometimes'"),
    ({"security_context": {"run_as_user": -1}}, "security_context.run_as_user: must be >= 0", "got -1"),
    ({"security_context": {"run_as_group": 2**31}}, "security_context.run_as_group: must be <= 2147483647", "2147483648"),
    ({"security_context": {"fs_group": True}}, "security_context.fs_group: expected a number", "True"),
    # hardware
    ({"roles.0.resources": {"extra": {"rdma": 1}}}, "roles[0].resources.extra.rdma: must be an extended resource name", "'rdma'"),
    ({"roles.0.resources": {"extra": {"kubernetes.io/x": 1}}}, "roles[0].resources.extra.kubernetes.io/x: must be an extended resource name", "'kubernetes.io/x'"),
    ({"roles.0.resources": {"extra": {"nvidia.com/gpu": 1}}}, "roles[0].resources.extra.nvidia.com/gpu: GPUs are asked for with resources.gpus", "move it"),
    ({"roles.0.resources": {"extra": {"rdma/hca": -1}}}, "roles[0].resources.extra.rdma/hca: must be a whole number in 0..", "got -1"),
    ({"roles.0.resources": {"extra": {"rdma/hca": 1.5}}}, "roles[0].resources.extra.rdma/hca: input should be a valid integer", "1.5"),
    ({"roles.0.resources": {"cpu": 1}}, "roles[0].resources: give both cpu and memory, or neither", "whole machine"),
    ({"roles.0.host_network": True, "roles.0.resources": {"cpu": 1, "memory": "1Gi"}}, "roles[0].host_network: a host-network replica must take the whole machine", "leave out resources.cpu"),
    # the checkpoint volume's path is mounted in every container too
    ({"volumes": DATA, "checkpoint": {"volume": "data", "path": "/etc/shipyard"}}, "checkpoint.path: '/etc/shipyard' is where shipyard mounts", "another path"),
    ({"volumes": [*DATA, {"name": "s", "empty_dir": {}}], "checkpoint": {"volume": "data", "path": "/ckpt"},
      "roles.0.mounts": [{"volume": "s", "path": "/ckpt"}]}, "roles[0].mounts[0].path: '/ckpt' is checkpoint.path", "'data'"),
    # Kubernetes' name rules everywhere a spec value lands in an object
    ({"name": "1st"}, "name: must be a DNS-1035 label", "'1st'"),
    ({"name": "a.b"}, "name: must be a DNS-1035 label", "'a.b'"),
    ({"queue": "Q"}, "queue: must be a DNS-1123 label", "'Q'"),
    ({"labels": {"bad key": "v"}}, "labels.bad key: the key must be a qualified name", "'bad key'"),
    ({"labels": {"a/b/c": "v"}}, "labels.a/b/c: the key must be a qualified name", "'a/b/c'"),
    ({"labels": {"k": "bad value"}}, "labels.k: the value must be a label value", "'bad value'"),
    ({"roles.0.annotations": {"Bad Key": "v"}}, "roles[0].annotations.Bad Key: the key must be a qualified name", "'Bad Key'"),
    ({"roles.0.annotations": {"k": "x" * 300_000}}, "roles[0].annotations: must be at most 258,048 bytes", "got 300,001"),
    ({"roles.0.env": {"A=B": "1"}}, "roles[0].env.A=B: must be an environment variable name", "'A=B'"),
    ({"roles.0.env": {"..x": "1"}}, "must be an environment variable name", "'..x'"),
    ({"roles.0.image": " python"}, "roles[0].image: must be an image reference without leading or trailing spaces", "' python'"),
    ({"topology": {"key": "a//b"}}, "topology.key: must be a qualified name", "'a//b'"),
    ({"machine_types": [{**M, "labels": {"bad key": "v"}}]}, "machine_types[0]: labels.bad key: the key must be a qualified name", "'bad key'"),
    ({"machine_types": [{**M, "labels": {"k": "v v"}}]}, "machine_types[0]: labels.k: the value must be a label value", "'v v'"),
    ({"machine_types": [{**M, "gpu_model": "A100 80GB"}]}, "machine_types[0]: gpu_model: it is the nvidia.com/gpu.product label's value", "'A100 80GB'"),
    ({"machine_types": [{**M, "taints": [{"key": "bad key"}]}]}, "machine_types[0].taints[0].key: must be a qualified name", "'bad key'"),
    ({"machine_types": [{**M, "taints": [{"key": "k", "value": "v v"}]}]}, "machine_types[0].taints[0].value: must be a label value", "'v v'"),
]


@pytest.mark.parametrize(("patch", "message", "value"), CASES, ids=[c[1].split(":")[0] for c in CASES])
def test_each_new_field_error_names_path_value_and_rule(patch, message, value):
    problems = problems_for(patch)
    assert any(message in p and value in p for p in problems), problems


def test_the_new_fields_load_from_yaml_shaped_data():
    exp = experiment_from_data({
        **VALID,
        "volumes": [{"name": "data", "pvc": "imagenet"}, {"name": "scratch", "empty_dir": {"size_limit": "100Gi"}},
                    {"name": "home", "nfs": {"server": "nfs.lab", "path": "/export/home"}},
                    {"name": "ds", "host_path": "/datasets"}, {"name": "creds", "secret": "wandb"}],
        "service_account": "trainer", "image_pull_secrets": ["regcred"],
        "security_context": {"run_as_user": 1000, "run_as_group": 1000, "fs_group": 1000},
        "roles": [{**VALID["roles"][0], "mounts": [{"volume": "data", "path": "/data", "read_only": True,
                                                     "sub_path": "train"}],
                   "shm_size": "32Gi", "env_from": [{"secret": "wandb", "prefix": "WANDB_"}],
                   "env_keys": {"HF_TOKEN": {"secret": "hf", "key": "token"}},
                   "image_pull_policy": "Always", "host_network": True,
                   "resources": {"extra": {"rdma/hca": 1}}}, VALID["roles"][1]],
    })
    role = exp.roles[0]
    assert [v.kind for v in exp.volumes] == ["pvc", "empty_dir", "nfs", "host_path", "secret"]
    assert role.shm_size == 32 << 30 and role.mounts[0].sub_path == "train"
    request = exp.request(role)  # no cpu/memory: the whole machine, its GPUs, plus the extra
    assert (request.gpus, request.extra) == (8, {"rdma/hca": 1})
    assert experiment_from_data(exp.model_dump(mode="json")) == exp  # round trip (the CRD's form)


def test_partial_resources_keep_their_meaning():
    exp = experiment_from_data({**VALID, "roles": [{**VALID["roles"][0], "resources": {"cpu": 1, "memory": "1Gi"}}]})
    assert exp.request(exp.roles[0]).gpus == 0  # cpu and memory given: no GPUs unless asked


# -- the rules themselves, against the API server's own examples ---------------------

@pytest.mark.parametrize(("check", "good", "bad"), [
    (k.dns1123_label, ["a", "0", "a-1", "a" * 63], ["", "A", "-a", "a-", "a.b", "a" * 64, "a_b"]),
    (k.dns1123_subdomain, ["a", "a.b", "0.a-b.c", "a" * 253], ["", "a..b", ".a", "a.", "A.b", "a" * 254, "a_b"]),
    (k.dns1035_label, ["a", "a-1", "a" * 63], ["", "1a", "-a", "a-", "a.b", "a" * 64]),
    (k.qualified_name, ["a", "A_b.c-D", "example.com/x", "a/" + "x" * 63],
     ["", "/a", "a/", "a/b/c", "-a", "a_", "A.com/x", "x" * 64, "a..b/x", "a b"]),
    (k.label_value, ["", "a", "A_b.c-1", "x" * 63], ["-a", "a_", "a b", "x" * 64, "a/b"]),
    (k.env_name, ["A", "my.env-name", "MY_ENV.NAME", "MyEnvName1", "_x", "-x", ".x"],
     ["", "1a", "a=b", ".", "..", "..x", "a b", "é"]),
    (k.config_key, ["key.name", "KEY_NAME", "key-name", "1"], ["", "a/b", ".", "..", "..a", "a b", "x" * 254]),
    (k.extended_resource, ["rdma/hca", "vpc.amazonaws.com/efa", "example.com/gpu"],
     ["cpu", "kubernetes.io/x", "requests.a/b", "a/b/c", "A.com/x", "example.com/" + "x" * 64]),
    (k.absolute_path, ["/", "/data", "/a/b.c/..d"], ["", "data", "/a/../b", "/a:b", " /a", "/a\0"]),
    (k.relative_path, ["a", "a/b", "..a"], ["", "/a", "..", "a/../b"]),
])
def test_rules_agree_with_the_api_servers_examples(check, good, bad):
    assert [v for v in good if check(v) is not None] == []
    assert [v for v in bad if check(v) is None] == []


def test_annotation_keys_are_checked_lowercased_as_the_server_does():
    assert k.annotation_key("Example.COM/Key") is None
    assert k.annotation_key("Example.COM/Key ") is not None


@given(st.text(max_size=70))
def test_a_valid_subdomain_is_made_of_valid_labels(value):
    if k.dns1123_subdomain(value) is None:
        assert all(k.dns1123_label(part) is None for part in value.split("."))
    if k.dns1035_label(value) is None:
        assert k.dns1123_label(value) is None and k.qualified_name(value) is None
