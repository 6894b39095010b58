"""The Experiment CRD keeps every status field the controller writes.

The API server prunes what a structural schema does not name. `revision` was once pruned
this way: every status came back as revision 0, so the watch never caught up with the
controller's overlay and a status read back from the server never counted as newer."""

from __future__ import annotations

from typing import get_type_hints

from shipyard.api.status import StatusFields, next_status
from shipyard.kube.crds import EXPERIMENT_STATUS, all_crds


def test_every_status_field_and_the_revision_are_in_the_schema() -> None:
    written = set(get_type_hints(StatusFields)) | set(next_status({}, message="x"))
    assert written <= set(EXPERIMENT_STATUS["properties"]), \
        f"pruned by the API server: {sorted(written - set(EXPERIMENT_STATUS['properties']))}"


def test_the_installed_crd_carries_that_status_schema() -> None:
    experiments = next(c for c in all_crds() if c["spec"]["names"]["kind"] == "Experiment")
    schema = experiments["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["properties"]["status"] == EXPERIMENT_STATUS
