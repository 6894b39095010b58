"""Command-line options shared by commands of several modules (kept light to import:
the top-level command builds its signatures at every start)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ClustersFile = Annotated[
    Path | None,
    typer.Option("--clusters", help="Clusters config (default: $SHIPYARD_CLUSTERS, else "
                 "~/.config/shipyard/clusters.yaml)."),
]
