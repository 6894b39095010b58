from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def shipyard_home(tmp_path, monkeypatch):
    """Every test gets its own local-backend state directory."""
    home = tmp_path / "shipyard-home"
    monkeypatch.setenv("SHIPYARD_HOME", str(home))
    return home
