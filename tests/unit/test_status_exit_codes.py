"""`shipyard status -c`'s EXIT column: the command's exit code, or that of the init
container (`shipyard-unpack`) that failed before the command could start."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shipyard.cli.cluster import _exit_code


def terminated(name: str, code: int) -> dict[str, Any]:
    return {"name": name, "state": {"terminated": {"exitCode": code, "reason": "Error"}}}


def waiting(name: str, reason: str = "PodInitializing") -> dict[str, Any]:
    return {"name": name, "state": {"waiting": {"reason": reason}}}


def pod(init: list[dict[str, Any]], main: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": "p"},
            "status": {"phase": "Failed", "initContainerStatuses": init, "containerStatuses": main}}


def test_a_failed_unpack_shows_its_code_while_the_command_never_started() -> None:
    assert _exit_code(pod([terminated("shipyard-unpack", 1)], [waiting("main")])) == 1


def test_nothing_terminated_yet_shows_no_code() -> None:
    running = {"name": "main", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}
    assert _exit_code(pod([terminated("shipyard-unpack", 0)], [running])) is None
    assert _exit_code({"metadata": {"name": "p"}}) is None


@given(unpack=st.integers(0, 255), command=st.integers(0, 255))
def test_the_commands_code_wins_once_it_ran_and_a_succeeded_unpack_says_nothing(
        unpack: int, command: int) -> None:
    init = [terminated("shipyard-unpack", unpack)]
    assert _exit_code(pod(init, [terminated("main", command)])) == command
    assert _exit_code(pod(init, [waiting("main")])) == (unpack or None)
