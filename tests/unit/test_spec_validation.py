"""Every field of the spec rejects bad input with its path, the bad value and a fix."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from shipyard.spec import Experiment, SpecError, experiment_from_data, load_experiment

EXAMPLES = Path(__file__).parents[2] / "examples"

VALID = {
    "name": "exp",
    "roles": [
        {"name": "trainer", "replicas": 2, "machine_type": "gpu-a100", "command": ["python", "t.py"]},
        {"name": "eval", "replicas": 1, "machine_type": "cpu-small", "command": "python e.py"},
    ],
}


def problems_for(patch: dict[str, object]) -> list[str]:
    data = copy.deepcopy(VALID)
    for path, value in patch.items():
        target: object = data
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target.setdefault(part, {})  # type: ignore[index]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value  # type: ignore[index]
    with pytest.raises(SpecError) as info:
        experiment_from_data(data, "test")
    return info.value.problems


CKPT_VOLUME = [{"name": "data", "pvc": "ckpt"}]

CASES = [
    ({"name": "Bad_Name"}, "name: must be a DNS-1035 label", "'Bad_Name'"),
    ({"name": "1st"}, "name: must be a DNS-1035 label: lowercase letters, digits and '-', starting with a letter", "'1st'"),
    ({"name": "x" * 41}, "name: must be at most 40", "xxxx"),
    ({"namespace": "NS"}, "namespace: must be a DNS-1123 label", "'NS'"),
    ({"queue": ""}, "queue: must be a DNS-1123 label", "''"),
    ({"priority": 5000}, "priority: must be <= 1000", "got 5000"),
    ({"priority": "high"}, "priority: input should be a valid integer", "'high'"),
    ({"time_limit": "2x"}, "time_limit: expected a duration", "'2x'"),
    ({"time_limit": -5}, "time_limit: must be > 0", "-5"),
    ({"retry": {"max_restarts": -1}}, "retry.max_restarts: must be >= 0", "got -1"),
    ({"retry": {"backoff_seconds": -1}}, "retry.backoff_seconds: must be >= 0", "got -1"),
    ({"retry": {"max_backoff_seconds": -2}}, "retry.max_backoff_seconds: must be >= 0", "got -2"),
    ({"roles": []}, "roles: must not be empty", "[]"),
    ({"roles.1.replicas": 0}, "roles[1].replicas: must be >= 1", "got 0"),
    ({"roles.0.name": "Trainer"}, "roles[0].name: must be a DNS-1123 label", "'Trainer'"),
    ({"roles.0.machine_type": ""}, "roles[0].machine_type: must not be empty", "''"),
    ({"roles.0.machine_type": "gpu-zz"}, "roles[0].machine_type: unknown machine type", "'gpu-zz'"),
    ({"roles.0.command": []}, "roles[0].command: must not be empty", "[]"),
    ({"roles.0.image": ""}, "roles[0].image: must be an image reference without leading or trailing spaces", "''"),
    ({"roles.0.env": {"1BAD": "x"}}, "roles[0].env.1BAD: must be an environment variable name", "1BAD"),
    ({"roles.0.env": {"OK": 3}}, "roles[0].env.OK: input should be a valid string", "3"),
    ({"roles.0.working_dir": 5}, "roles[0].working_dir: input should be a valid string", "5"),
    ({"roles.0.procs_per_replica": 0}, "roles[0].procs_per_replica: must be >= 1", "got 0"),
    ({"roles.0.port": 80}, "roles[0].port: must be >= 1024", "got 80"),
    ({"roles.0.distributed": "maybe"}, "roles[0].distributed: input should be a valid boolean", "'maybe'"),
    ({"roles.0.resources": {"cpu": "lots", "memory": "1Gi"}}, "roles[0].resources.cpu: expected a CPU", "'lots'"),
    ({"roles.0.resources": {"cpu": 1, "memory": "1Gb"}}, "roles[0].resources.memory: expected a memory", "'1Gb'"),
    ({"roles.0.resources": {"cpu": 1, "memory": "1Gi", "gpus": -1}}, "roles[0].resources.gpus: must be >= 0", "-1"),
    ({"roles.0.resources": {"cpu": 1, "memory": "1Gi", "gpus": 9}}, "roles[0].resources.gpus: asks for more than one gpu-a100", "9 > 8"),
    ({"roles.1.name": "trainer"}, "roles[1].name: duplicate role name", "'trainer'"),
    ({"success_roles": ["nope"]}, "success_roles[0]: no role named", "'nope'"),
    ({"labels": {"a": 1}}, "labels.a: input should be a valid string", "1"),
    ({"machine_types": [{"name": "m", "cpu": 0, "memory": "1Gi"}]}, "machine_types[0].cpu: must be > 0", "got 0"),
    ({"machine_types": [{"name": "m", "cpu": 1, "memory": "1Gi", "gpus": -1}]}, "machine_types[0].gpus: must be >= 0", "-1"),
    ({"machine_types": [{"name": "m", "cpu": 1, "memory": "1Gi", "cost_per_hour": -1}]}, "machine_types[0].cost_per_hour: must be >= 0", "-1"),
    ({"machine_types": [{"name": "m", "cpu": 1, "memory": "1Gi", "taints": [{"key": "k", "effect": "Never"}]}]},
     "machine_types[0].taints[0].effect: input should be 'NoSchedule'", "'Never'"),
    ({"machine_types": [{"name": "M!", "cpu": 1, "memory": "1Gi"}]}, "machine_types[0].name: must be lowercase", "'M!'"),
    ({"stop_grace_seconds": -1}, "stop_grace_seconds: must be >= 0", "got -1"),
    ({"stop_grace_seconds": 86401}, "stop_grace_seconds: must be <= 86400", "got 86401"),
    ({"stop_grace_seconds": "30s"}, "stop_grace_seconds: input should be a valid integer", "'30s'"),
    ({"stop_grace_seconds": 1.5}, "stop_grace_seconds: input should be a valid integer", "1.5"),
    ({"workdir": True}, "workdir: must be a folder's path, or false to ship nothing", "got True"),
    ({"workdir": 3}, "workdir: must be a folder's path, or false to ship nothing", "got 3"),
    ({"workdir": ""}, "workdir: must be a folder's path without NUL bytes", "''"),
    ({"volumes": CKPT_VOLUME, "checkpoint": {"volume": "data", "path": "ckpt"}},
     "checkpoint.path: must be an absolute path", "'ckpt'"),
    ({"volumes": CKPT_VOLUME, "checkpoint": {"volume": "data", "path": "/a/../b"}},
     "checkpoint.path: must be an absolute path without '..' elements", "'/a/../b'"),
    ({"volumes": CKPT_VOLUME, "checkpoint": {"volume": "data", "path": "/a:b"}},
     "checkpoint.path: must be an absolute path without '..' elements, ':'", "'/a:b'"),
    ({"volumes": CKPT_VOLUME, "checkpoint": {"volume": "data", "path": "/" + "x" * 4096}},
     "checkpoint.path: must be at most 4096", "'/xxx"),
    ({"volumes": CKPT_VOLUME, "checkpoint": {"volume": "data", "path": 3}},
     "checkpoint.path: input should be a valid string", "3"),
    ({"volumes": CKPT_VOLUME, "checkpoint": {"volume": "Data"}}, "checkpoint.volume: must be a DNS-1123 label", "'Data'"),
    ({"volumes": CKPT_VOLUME, "checkpoint": {"volume": "nope"}}, "checkpoint.volume: no volume named", "'nope'; use one of data"),
    ({"volumes": CKPT_VOLUME, "checkpoint": {"path": "/c"}}, "checkpoint.volume: required field is missing", "add it"),
]


@pytest.mark.parametrize(("patch", "message", "value"), CASES, ids=[c[1].split(":")[0] for c in CASES])
def test_each_field_error_names_path_value_and_fix(patch, message, value):
    problems = problems_for(patch)
    assert any(message in p and value in p for p in problems), problems


def test_unknown_fields_are_errors_with_a_suggestion():
    problems = problems_for({"roles.0.replcas": 3, "qeue": "a"})
    assert "roles[0].replcas: unknown field; did you mean 'replicas'?" in problems
    assert "qeue: unknown field; did you mean 'queue'?" in problems


def test_unknown_field_without_a_close_match_lists_the_allowed_ones():
    (problem,) = problems_for({"retry.zzz": 1})
    assert problem.startswith("retry.zzz: unknown field; allowed fields: backoff_seconds")


def test_missing_required_fields_are_named():
    with pytest.raises(SpecError) as info:
        experiment_from_data({"roles": [{"name": "w"}]}, "test")
    assert set(info.value.problems) >= {
        "name: required field is missing; add it",
        "roles[0].machine_type: required field is missing; add it",
        "roles[0].command: required field is missing; add it",
    }


def test_hostname_too_long_is_caught():
    problems = problems_for({"name": "a" * 40, "roles.0.name": "b" * 30})
    assert any("longer than 63" in p for p in problems)


def test_all_problems_are_reported_at_once():
    problems = problems_for({"priority": 5000, "roles.1.replicas": 0, "name": "BAD"})
    assert len(problems) == 3


def test_yaml_and_python_give_the_same_experiment():
    from_python = load_experiment(EXAMPLES / "allreduce" / "experiment.py")
    from_yaml = load_experiment(EXAMPLES / "allreduce" / "experiment.yaml")
    assert isinstance(from_python, Experiment)
    assert from_python == from_yaml
    assert from_python.model_dump() == from_yaml.model_dump()


def test_dumped_spec_loads_back_identically():
    exp = load_experiment(EXAMPLES / "ddp" / "experiment.py")
    assert experiment_from_data(exp.model_dump(mode="json")) == exp


def test_python_file_with_a_bad_experiment_reports_like_yaml(tmp_path):
    spec = tmp_path / "bad.py"
    spec.write_text(
        "from shipyard import Experiment, Role\n"
        "experiment = Experiment(name='x', roles=[Role(name='w', replicas=0,"
        " machine_type='cpu-small', command=['true'])])\n"
    )
    with pytest.raises(SpecError) as info:
        load_experiment(spec)
    assert info.value.problems == ["Role.replicas: must be >= 1, got 0"]
    assert info.value.source == f"{spec}:2"  # the line that built the bad Role


def test_python_file_without_an_experiment(tmp_path):
    spec = tmp_path / "empty.py"
    spec.write_text("x = 1\n")
    with pytest.raises(SpecError, match="defines no Experiment"):
        load_experiment(spec)


def test_broken_yaml_and_wrong_shapes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_experiment(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_experiment(bad)
    toml = tmp_path / "x.toml"
    toml.write_text("")
    with pytest.raises(SpecError, match="unsupported file type"):
        load_experiment(toml)
    with pytest.raises(FileNotFoundError):
        load_experiment(tmp_path / "missing.yaml")


def test_defaults_and_derived_values():
    exp = experiment_from_data(VALID)
    assert exp.queue == "default" and exp.priority == 0 and exp.retry.max_restarts == 0
    assert exp.roles[1].command == ["python", "e.py"]  # a string is split like a shell would
    request = exp.request(exp.roles[0])
    assert (request.gpus, request.cpu) == (8, 95_900)  # the machine less the kubelet's reserve
    assert exp.total_replicas == 3


def test_retry_backoff_doubles_and_caps():
    exp = experiment_from_data({**VALID, "retry": {"backoff_seconds": 10, "max_backoff_seconds": 35}})
    assert [exp.retry.backoff(n) for n in (1, 2, 3, 4)] == [10, 20, 35, 35]
