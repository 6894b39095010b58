from __future__ import annotations

import os

import pytest
from hypothesis import settings

# The test command runs with HYPOTHESIS_PROFILE=ci: the same examples every run, so a
# red CI run means a regression, not a new random draw. Run without it (the default
# profile) to search afresh while developing.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
# Search longer (properties that do not pin max_examples): HYPOTHESIS_PROFILE=dev.
settings.register_profile("dev", max_examples=2000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def shipyard_home(tmp_path, monkeypatch):
    """Every test gets its own local-backend state directory."""
    home = tmp_path / "shipyard-home"
    monkeypatch.setenv("SHIPYARD_HOME", str(home))
    return home
