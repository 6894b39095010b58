"""The rules every backend applies to a started gang, with the words it says: when it
has succeeded, when its time is up, and whether a stopped gang restarts or fails.
The cluster controller (controller/lifecycle.py) and the local backend
(local/supervisor.py) both decide through these. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from shipyard.api.vocab import Phase
from shipyard.spec import Experiment, RetryPolicy

# Why a gang's processes stop, the first word of the stop reason each one is told
# ("<cause>: <details>", in the pod's /etc/shipyard/stop-reason or the run's file).
STOP_CAUSES = ("cancelled", "preempted", "time-limit", "failure", "held", "finished")
CANCELLED_REASON = "cancelled: shipyard cancel"


def success_roles(exp: Experiment) -> tuple[str, ...]:
    """The roles whose every replica must succeed for the experiment to (all, unset)."""
    return tuple(sorted(set(exp.success_roles or [r.name for r in exp.roles])))


def success_message(roles: tuple[str, ...], unit: str, done: str) -> str:
    """E.g. "every pod of worker succeeded", "every rank of a, b exited 0"."""
    return f"every {unit} of {', '.join(roles)} {done}"


def time_limit_exceeded(limit: float | None, started: float | None, now: float) -> str | None:
    """The problem when this attempt (started at `started`) has run past `limit` seconds."""
    if limit is None or started is None or now - started <= limit:
        return None
    return f"time limit of {limit:g}s exceeded"


def stop_cause(problem: str) -> str:
    """The cause of a stop for `problem` (a failure, a lost node, the time limit...)."""
    return "time-limit" if problem.startswith("time limit") else "failure"


@dataclass(frozen=True, slots=True)
class AfterFailure:
    """What a gang stopped for a problem comes to under its retry policy."""

    restart: bool  # True: back to the queue after `delay`; False: Failed
    restarts: int  # the restart count once this is done
    delay: float  # seconds to wait before the next attempt (0 when not restarting)
    message: str  # the status message
    stop_reason: str  # what each stopped process is told

    @property
    def phase(self) -> Phase:
        return Phase.RESTARTING if self.restart else Phase.FAILED


def after_failure(retry: RetryPolicy, restarts: int, problem: str, may_retry: bool = True) -> AfterFailure:
    """`restarts`: how many restarts came before. `may_retry` False: Failed whatever the
    policy (a hang whose on_hang is fail)."""
    stop_reason = f"{stop_cause(problem)}: {problem}"
    if may_retry and restarts < retry.max_restarts:
        restart = restarts + 1
        delay = retry.backoff(restart)
        return AfterFailure(True, restart, delay,
                            f"{problem}; restart {restart}/{retry.max_restarts} in {delay:g}s", stop_reason)
    tried = f" after {restarts} restart(s)" if restarts else ""
    return AfterFailure(False, restarts, 0.0, f"{problem}{tried}", stop_reason)
