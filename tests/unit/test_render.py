"""Rendered objects checked by meaning against a hand-written expectation."""

from __future__ import annotations

from pathlib import Path

import yaml

from shipyard.render import render_experiment
from shipyard.render.env import replica_env
from shipyard.spec import load_experiment

GOLDEN = Path(__file__).parents[1] / "golden"


def _pod_view(pod: dict) -> dict:
    container = pod["spec"]["containers"][0]
    return {
        "hostname": pod["spec"]["hostname"],
        "subdomain": pod["spec"]["subdomain"],
        "nodeSelector": pod["spec"]["nodeSelector"],
        "tolerations": pod["spec"].get("tolerations"),
        "requests": container["resources"]["requests"],
        "limits": container["resources"]["limits"],
        "labels": pod["metadata"]["labels"],
        "env": {e["name"]: e.get("value") for e in container["env"]},
        # The memory-backed /dev/shm: its size, or None when the runtime's 64 MiB is kept.
        "shm": next((v["emptyDir"]["sizeLimit"] for v in pod["spec"].get("volumes", [])
                     if v["name"] == "shipyard-shm"), None),
    }


def test_multirole_experiment_renders_as_expected():
    exp = load_experiment(GOLDEN / "multirole.yaml")
    expected = yaml.safe_load((GOLDEN / "multirole.expected.yaml").read_text())
    service, *pods = render_experiment(exp)

    want = expected["service"]
    assert service["kind"] == "Service"
    assert service["metadata"]["name"] == want["name"]
    assert service["metadata"]["namespace"] == want["namespace"]
    for key in ("clusterIP", "publishNotReadyAddresses", "selector"):
        assert service["spec"][key] == want[key]
    assert [p["port"] for p in service["spec"]["ports"]] == want["ports"]

    by_name = {p["metadata"]["name"]: p for p in pods}
    assert list(by_name) == ["mr-trainer-0", "mr-trainer-1", "mr-ps-0", "mr-tb-0"]
    for name, fields in expected["pods"].items():
        view = _pod_view(by_name[name])
        assert by_name[name]["metadata"]["namespace"] == "team-a"
        assert by_name[name]["spec"]["restartPolicy"] == "Never"
        for key, value in fields.items():
            if key == "env":
                for var, val in value.items():
                    assert view["env"].get(var) == val, f"{name}: {var}"
            else:
                assert view[key] == value, f"{name}: {key}"


def test_every_distributed_replica_has_a_distinct_rank_covering_the_world():
    exp = load_experiment(GOLDEN / "multirole.yaml")
    ranks: list[int] = []
    for role in exp.roles:
        for i in range(role.replicas):
            env = replica_env(exp, role, i, lambda r, k: ("h", 1))
            if "RANK" in env:
                first = int(env["RANK"])
                ranks.extend(range(first, first + int(env["NPROC_PER_NODE"])))
    world = int(replica_env(exp, exp.roles[0], 0, lambda r, k: ("h", 1))["WORLD_SIZE"])
    assert sorted(ranks) == list(range(world))


def test_user_env_overrides_shipyard_env():
    exp = load_experiment(GOLDEN / "multirole.yaml")
    exp = exp.model_copy(
        update={"roles": [exp.roles[0].model_copy(update={"env": {"MASTER_PORT": "1234"}})]}
    )
    env = replica_env(exp, exp.roles[0], 0, lambda r, k: ("h", 29500))
    assert env["MASTER_PORT"] == "1234"


def test_host_pattern_names_every_replica_and_big_gangs_skip_the_lists():
    from shipyard.render.env import HOST_LISTS_MAX_REPLICAS
    from shipyard.render.objects import render_pod
    from shipyard.spec import Experiment, Role

    def env_of(replicas: int, index: int) -> dict[str, str]:
        exp = Experiment(name="big", roles=[Role(name="worker", replicas=replicas,
                                                 machine_type="gpu-a100", command=["x"])])
        pod = render_pod(exp, exp.roles[0], index)
        assert pod["spec"]["hostname"] == f"big-worker-{index}"
        return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}

    small = env_of(HOST_LISTS_MAX_REPLICAS, 3)
    pattern = small["SHIPYARD_HOST_PATTERN_WORKER"]
    assert small["SHIPYARD_HOSTS_WORKER"].split(",") == [
        pattern.format(index=i) for i in range(HOST_LISTS_MAX_REPLICAS)]

    big = env_of(HOST_LISTS_MAX_REPLICAS + 1, 0)
    assert "SHIPYARD_HOSTS_WORKER" not in big and "SHIPYARD_MPI_HOSTS" not in big
    assert big["SHIPYARD_HOST_PATTERN_WORKER"] == pattern
    assert big["WORLD_SIZE"] == str(HOST_LISTS_MAX_REPLICAS + 1)
    # Constant size per pod, whatever the gang's size.
    assert sum(len(v) for v in env_of(512, 511).values()) < 1000
