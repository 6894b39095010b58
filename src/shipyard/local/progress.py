"""A local run's progress: each rank's file (written by shipyard.progress through
SHIPYARD_PROGRESS_FILE) read into the same shape as an Experiment's status.progress."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from shipyard.core.progress import Summary, Window, keep_metrics, status_fields, summarize

PROGRESS_DIR = "progress"  # in the run's folder: <rank>.json


def rank_file(run_dir: Path, rank: str) -> Path:
    return run_dir / PROGRESS_DIR / f"{rank}.json"


def _format_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def read(run_dir: Path) -> dict[str, Any] | None:
    """The run's progress, or None if no rank has reported."""
    summary = _summary(run_dir)
    return status_fields(summary, _format_time) if summary else None


def eta(run_dir: Path) -> float | None:
    """When the run's progress says it ends (None: no report, or no total steps)."""
    summary = _summary(run_dir)
    return summary.eta if summary else None


def _summary(run_dir: Path) -> Summary | None:
    windows: list[Window] = []
    total: int | None = None
    metrics: dict[str, float] = {}
    for path in sorted((run_dir / PROGRESS_DIR).glob("*.json")):
        # A file cut short or edited by hand: that rank is left out, not the run.
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            data = json.loads(path.read_text())
            window = Window()
            for t, step in data["samples"]:
                window.add(float(t), int(step))
            windows.append(window)
            total = data.get("total_steps") or total
            metrics = keep_metrics(metrics, data.get("metrics") or {})
    return summarize(windows, total, metrics, time.time())
