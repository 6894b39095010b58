"""Validation of the Queue spec and an Experiment's topology field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shipyard.core.from_spec import gang_for, queue_for
from shipyard.core.model import UNLIMITED, Resources, Topology
from shipyard.spec import Queue, SpecError, experiment_from_data


def spec(**extra) -> dict:
    return {"name": "exp", "roles": [{"name": "w", "replicas": 2, "machine_type": "gpu-a100",
                                      "command": "python train.py"}], **extra}


def test_topology_reaches_the_gang():
    exp = experiment_from_data(spec(topology={"key": "topology.shipyard.dev/block",
                                              "required": True}))
    assert gang_for(exp, "ns/exp", 0).topology == Topology("topology.shipyard.dev/block", True)


@pytest.mark.parametrize("topology, field", [
    ({"key": ""}, "topology.key"),
    ({"key": "not a label!"}, "topology.key"),
    ({"key": "topology.shipyard.dev/block", "strict": True}, "topology.strict"),
])
def test_bad_topology_names_the_field(topology, field):
    with pytest.raises(SpecError) as err:
        experiment_from_data(spec(topology=topology))
    assert field in str(err.value)


def test_queue_quota_units_and_unlimited_resources():
    q = queue_for(Queue(name="team-a", weight=2, nominal={"gpus": 64, "cpu": 512},
                        borrowing_limit={"gpus": 16}))
    assert q.nominal == Resources(512_000, UNLIMITED, 64)
    assert q.borrowing_limit == Resources(UNLIMITED, UNLIMITED, 16)
    assert q.limit.gpus == 80
    assert queue_for(Queue(name="q")).limit.gpus == UNLIMITED


@pytest.mark.parametrize("data, field", [
    ({"name": "Team_A"}, "name"),
    ({"name": "a", "weight": 0}, "weight"),
    ({"name": "a", "nominal": {"gpus": -1}}, "nominal.gpus"),
    ({"name": "a", "nominal": {"tpus": 4}}, "nominal.tpus"),
    ({"name": "a", "borrowing_limit": {"memory": "lots"}}, "borrowing_limit.memory"),
    ({"name": "a", "quota": {}}, "quota"),
])
def test_bad_queue_names_the_field(data, field):
    with pytest.raises(ValidationError) as err:
        Queue.model_validate(data)
    locs = {".".join(map(str, e["loc"])) for e in err.value.errors()}
    assert field in locs
