"""The fault suite's notes name what a run's controller logged going wrong, including
the warnings a late gang waited on (a failed write, an outage), so that a failure says why."""

from __future__ import annotations

import logging
from pathlib import Path

from shipyard.controller.writer import log_write_failure
from shipyard.dev.faults import log_errors
from shipyard.kube.errors import ApiError
from shipyard.kube.outage import Outage

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # the controller's (controller_cmd)


def _logger(path: Path) -> tuple[logging.Logger, logging.Handler]:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(FORMAT))
    logger = logging.getLogger(f"test-fault-notes-{path.name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger, handler


def test_notes_carry_failed_writes_and_outages_but_not_other_warnings(tmp_path: Path) -> None:
    path = tmp_path / "controller.log"
    logger, handler = _logger(path)
    logger.info("caches synced in 0.4s")
    logger.warning("a gang waits longer than usual")  # a warning of no interest here
    Outage("API server writes", logger=logger).failed(TimeoutError("read timed out"))
    log_write_failure(logger, "default/x0035", ApiError(422, "Invalid", "pod spec refused"))
    logger.error("cycle failed")
    handler.close()

    notes = log_errors(path, 0)

    assert any(n.startswith("WARNING") and "API server writes: failing (read timed out)" in n
               for n in notes), notes
    assert any("default/x0035: write failed" in n for n in notes), notes
    assert any(n.startswith("ERROR") and "cycle failed" in n for n in notes), notes
    assert not any("longer than usual" in n or "caches synced" in n for n in notes), notes
