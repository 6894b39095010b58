"""The clusters config: every field rejects bad input with its path, the bad value and a fix;
the file is found where the user expects it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from shipyard.spec import (
    ClusterRef,
    ClustersConfig,
    ClustersConfigMissing,
    SpecError,
    clusters_config_from_data,
    load_clusters_config,
)

VALID = {
    "clusters": [
        {"name": "onprem", "context": "shipyard-onprem", "location": "onprem", "prefer": "gpu",
         "cost_factor": 0.4, "machine_types": {"gpu-a100": "a100-80g"}},
        {"name": "cloud", "context": "shipyard-cloud", "location": "cloud", "prefer": "cpu"},
    ],
    "redispatch_after": "30m",
}


def problems_for(patch: dict[str, object]) -> list[str]:
    data = copy.deepcopy(VALID)
    for path, value in patch.items():
        *parents, last = path.split(".")
        target: object = data
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]  # type: ignore[index]
        target[last] = value  # type: ignore[index]
    with pytest.raises(SpecError) as info:
        clusters_config_from_data(data, "clusters.yaml")
    assert "problem(s) in the clusters config" in str(info.value)
    return info.value.problems


def test_a_valid_config_reads_with_defaults():
    cfg = clusters_config_from_data(VALID)
    onprem, cloud = cfg.clusters
    assert cfg.names == ["onprem", "cloud"] and cfg.redispatch_after == 1800.0
    assert onprem.local_machine_type("gpu-a100") == "a100-80g"
    assert onprem.local_machine_type("cpu-small") == "cpu-small"
    assert (cloud.cost_factor, cloud.machine_types) == (1.0, {})
    minimal = clusters_config_from_data({"clusters": [{"name": "c", "context": "kind-c"}]})
    assert minimal.clusters[0] == ClusterRef(name="c", context="kind-c", location="cloud", prefer="any")
    assert minimal.redispatch_after is None
    assert cfg.cluster("cloud") is cloud


def test_an_unknown_cluster_name_says_which_exist():
    with pytest.raises(KeyError, match="use one of onprem, cloud"):
        clusters_config_from_data(VALID).cluster("nowhere")


CASES = [
    ({"clusters.0.name": "On_Prem"}, "clusters[0].name: must be lowercase", "'On_Prem'"),
    ({"clusters.0.context": ""}, "clusters[0].context: must not be empty", "''"),
    ({"clusters.0.location": "aws"}, "clusters[0].location: input should be 'onprem' or 'cloud'", "'aws'"),
    ({"clusters.1.prefer": "gpus"}, "clusters[1].prefer: input should be 'gpu', 'cpu' or 'any'", "'gpus'"),
    ({"clusters.0.cost_factor": -1}, "clusters[0].cost_factor: must be >= 0", "got -1"),
    ({"clusters.0.machine_types": {"gpu-a100": "A100 80G"}}, "clusters[0].machine_types: gpu-a100: "
     "this cluster's name 'A100 80G' is not a machine type name", "e.g. {gpu-a100: a100-80g}"),
    ({"clusters.0.machine_types": ["gpu-a100"]}, "clusters[0].machine_types: input should be a valid "
     "dictionary", "['gpu-a100']"),
    ({"clusters.1.zone": "eu"}, "clusters[1].zone: unknown field", "allowed fields: context, cost_factor"),
    ({"clusters.1.contxt": "x"}, "clusters[1].contxt: unknown field", "did you mean 'context'?"),
    ({"redispatch_after": "soon"}, "redispatch_after: expected a duration", "'soon'"),
    ({"redispatch_after": 0}, "redispatch_after: must be > 0", "0"),
    ({"clusters": []}, "clusters: must not be empty", "[]"),
    ({"clusters.1.name": "onprem"}, "clusters[1].name: duplicate name 'onprem' (also clusters[0])",
     "give each cluster its own name"),
    ({"clusters.1.context": "shipyard-onprem"}, "clusters[1].context: duplicate context", "keep one"),
    ({"extra": 1}, "extra: unknown field", "allowed fields: clusters, redispatch_after"),
]


@pytest.mark.parametrize(("patch", "path_and_what", "value_or_fix"), CASES)
def test_each_bad_field_is_named_with_its_value_or_fix(patch, path_and_what, value_or_fix):
    problems = problems_for(patch)
    assert len(problems) == 1, problems
    assert problems[0].startswith(path_and_what), problems[0]
    assert value_or_fix in problems[0]


def test_a_missing_cluster_list_or_a_non_mapping_is_one_clear_problem():
    with pytest.raises(SpecError) as info:
        clusters_config_from_data({}, "c.yaml")
    assert info.value.problems == ["clusters: required field is missing; add it"]
    with pytest.raises(SpecError) as info:
        clusters_config_from_data(["onprem"], "c.yaml")
    assert info.value.problems[0].startswith("(top level): expected a mapping with a `clusters:` list, got list")


def test_every_problem_is_reported_at_once():
    problems = problems_for({"clusters.0.location": "aws", "clusters.1.prefer": "x", "redispatch_after": "x"})
    assert [p.split(":")[0] for p in problems] == ["clusters[0].location", "clusters[1].prefer",
                                                   "redispatch_after"]


# -- loading --------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SHIPYARD_CLUSTERS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path


YAML = """\
clusters:
  - name: onprem
    context: shipyard-onprem
    location: onprem
    prefer: gpu
    machine_types: {gpu-a100: a100-80g}
  - name: cloud
    context: shipyard-cloud
redispatch_after: 600
"""


def test_loads_from_the_default_place(home: Path):
    path = home / "config" / "shipyard" / "clusters.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(YAML)
    cfg = load_clusters_config()
    assert isinstance(cfg, ClustersConfig) and cfg.names == ["onprem", "cloud"]
    assert cfg.redispatch_after == 600.0


def test_the_environment_overrides_the_default_and_a_given_path_overrides_both(home: Path,
                                                                              monkeypatch: pytest.MonkeyPatch):
    env_file, flag_file = home / "env.yaml", home / "flag.yaml"
    env_file.write_text(YAML)
    flag_file.write_text("clusters: [{name: only, context: kind-only}]\n")
    monkeypatch.setenv("SHIPYARD_CLUSTERS", str(env_file))
    assert load_clusters_config().names == ["onprem", "cloud"]
    assert load_clusters_config(flag_file).names == ["only"]
    assert load_clusters_config(str(flag_file)).names == ["only"]


def test_a_missing_file_says_where_it_looked_and_shows_an_example(home: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(ClustersConfigMissing) as info:
        load_clusters_config()
    text = str(info.value)
    default = home / "config" / "shipyard" / "clusters.yaml"
    assert f"looked for {default} (the default; $SHIPYARD_CLUSTERS is not set" in text
    assert "clusters:\n  - name: onprem\n    context: shipyard-onprem" in text
    assert isinstance(info.value, FileNotFoundError)
    monkeypatch.setenv("SHIPYARD_CLUSTERS", str(home / "nope.yaml"))
    with pytest.raises(ClustersConfigMissing, match=r"nope.yaml \(from \$SHIPYARD_CLUSTERS\)"):
        load_clusters_config()
    with pytest.raises(ClustersConfigMissing, match=r"looked for .*given\.yaml; create it"):
        load_clusters_config(home / "given.yaml")


def test_the_example_in_the_message_is_itself_a_valid_config(home: Path, tmp_path: Path):
    with pytest.raises(ClustersConfigMissing) as info:
        load_clusters_config()
    example = tmp_path / "example.yaml"
    example.write_text(str(info.value).split("A minimal one:\n\n", 1)[1])
    assert load_clusters_config(example).names == ["onprem", "cloud"]


@pytest.mark.parametrize(("text", "problem"), [
    ("clusters: [\n", "not valid YAML"),
    ("", "got nothing (an empty file)"),
    ("clusters:\n  - name: x\n", "clusters[0].context: required field is missing"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path: Path, text: str, problem: str):
    path = tmp_path / "clusters.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_clusters_config(path)
    assert str(info.value).startswith(f"{path}: 1 problem(s) in the clusters config")
    assert problem in info.value.problems[0]
