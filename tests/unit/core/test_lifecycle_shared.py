"""The lifecycle rules both backends apply (core/lifecycle.py), and the vocabulary and
status update they share (api/)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from shipyard.api import vocab
from shipyard.api.status import next_status
from shipyard.api.vocab import ACTIVE, DELETING, HELD, HOLDING, STOPPING, TERMINAL, Phase
from shipyard.core.lifecycle import (
    STOP_CAUSES,
    after_failure,
    stop_cause,
    success_message,
    success_roles,
    time_limit_exceeded,
)
from shipyard.spec import Experiment, RetryPolicy, Role

SRC = Path(__file__).parents[3] / "src" / "shipyard"

policies = st.builds(
    RetryPolicy,
    max_restarts=st.integers(0, 20),
    backoff_seconds=st.floats(0, 1e4, allow_nan=False),
    max_backoff_seconds=st.floats(0, 1e5, allow_nan=False),
)
problems = st.one_of(
    st.just("time limit of 60s exceeded"),
    st.from_regex(r"pod job-w-[0-9] failed with exit code [0-9]{1,3}", fullmatch=True),
    st.from_regex(r"node n[0-9] of pod job-w-0 is (gone|NotReady)", fullmatch=True),
    st.from_regex(r"stalled: no progress from [a-z ]{0,20}", fullmatch=True),
)


@given(policies, st.data(), problems, st.booleans())
def test_a_stopped_gang_restarts_while_the_policy_allows_else_fails(retry, data, problem, may_retry):
    restarts = data.draw(st.integers(0, retry.max_restarts))
    after = after_failure(retry, restarts, problem, may_retry)
    assert after.restart == (may_retry and restarts < retry.max_restarts)
    assert after.stop_reason == f"{stop_cause(problem)}: {problem}"
    assert after.stop_reason.split(":")[0] in STOP_CAUSES
    if after.restart:
        assert after.phase == Phase.RESTARTING
        assert after.restarts == restarts + 1 <= retry.max_restarts
        assert after.delay == retry.backoff(restarts + 1) <= retry.max_backoff_seconds
        assert after.message == (f"{problem}; restart {restarts + 1}/{retry.max_restarts} "
                                 f"in {after.delay:g}s")
    else:
        assert after.phase == Phase.FAILED
        assert (after.restarts, after.delay) == (restarts, 0.0)
        assert after.message.startswith(problem)
        assert after.message.endswith(f" after {restarts} restart(s)") == (restarts > 0)


@given(policies, problems)
def test_failing_every_attempt_restarts_exactly_max_restarts_times_with_growing_waits(retry, problem):
    restarts, waits = 0, []
    while (after := after_failure(retry, restarts, problem)).restart:
        restarts, waits = after.restarts, [*waits, after.delay]
        assert restarts <= retry.max_restarts  # the loop ends
    assert restarts == len(waits) == retry.max_restarts
    assert waits == sorted(waits)  # doubling, then capped: never shorter
    assert after.message == problem + (f" after {restarts} restart(s)" if restarts else "")


def test_a_hang_that_says_fail_fails_even_with_restarts_left():
    after = after_failure(RetryPolicy(max_restarts=3), 0, "stalled: silent", may_retry=False)
    assert (after.phase, after.message, after.stop_reason) == ("Failed", "stalled: silent",
                                                               "failure: stalled: silent")


@given(st.none() | st.floats(0, 1e6), st.none() | st.floats(0, 1e9), st.floats(0, 2e9))
def test_the_time_limit_is_up_only_after_more_than_the_limit_since_the_start(limit, started, now):
    problem = time_limit_exceeded(limit, started, now)
    over = limit is not None and started is not None and now - started > limit
    assert (problem is not None) == over
    if over:
        assert problem == f"time limit of {limit:g}s exceeded"
        assert stop_cause(problem) == "time-limit"


def test_the_time_limit_boundary_is_not_yet_over():
    assert time_limit_exceeded(10, 100, 110) is None
    assert time_limit_exceeded(10, 100, 110.5) == "time limit of 10s exceeded"


def _exp(roles: list[str], success: list[str] | None) -> Experiment:
    return Experiment(name="job", success_roles=success,
                      roles=[Role(name=r, machine_type="cpu-small", command=["x"]) for r in roles])


def test_success_roles_default_to_every_role_and_read_the_same_on_both_backends():
    assert success_roles(_exp(["worker", "ps", "chief"], None)) == ("chief", "ps", "worker")
    assert success_roles(_exp(["worker", "ps"], ["worker"])) == ("worker",)
    roles = success_roles(_exp(["b", "a"], None))
    assert success_message(roles, "pod", "succeeded") == "every pod of a, b succeeded"
    assert success_message(roles, "rank", "exited 0") == "every rank of a, b exited 0"


statuses = st.dictionaries(st.sampled_from(["phase", "message", "restarts", "placement"]),
                           st.text(max_size=5), max_size=4)


@given(statuses, st.integers(0, 10**6) | st.none(), st.sampled_from(list(Phase)), st.text(max_size=5))
def test_every_status_update_bumps_the_revision_once_and_leaves_the_old_status_alone(
        status, rev, phase, message):
    if rev is not None:
        status = {**status, "revision": rev}
    before = dict(status)
    new = next_status(status, phase=phase, message=message)
    assert status == before
    assert new["revision"] == (rev or 0) + 1
    assert new == {**before, "phase": phase, "message": message, "revision": (rev or 0) + 1}
    assert type(new["phase"]) is str  # as the watch gives it back: yaml and orjson take it


def test_the_phase_groups_split_the_phases_as_the_lifecycle_reads_them():
    assert all(isinstance(p, str) for p in Phase) and Phase.QUEUED == "Queued"
    assert set(ACTIVE) == set(Phase) - set(TERMINAL)
    for a, b in [(TERMINAL, HOLDING), (TERMINAL, STOPPING), (TERMINAL, HELD), (HOLDING, STOPPING),
                 (HOLDING, HELD), (STOPPING, HELD)]:
        assert not set(a) & set(b), (a, b)
    assert set(DELETING) == set(STOPPING) | set(HELD) | set(TERMINAL)
    assert Phase.QUEUED not in HOLDING + STOPPING + HELD + TERMINAL  # waits, holds nothing


KEY = re.compile(r"^(topology\.)?shipyard\.dev/[a-z-]+$")
# The kwok stage knobs of the dev cluster: documented and read beside stages.yaml.
KWOK_STAGES = SRC / "dev" / "stages.py"


def test_every_label_annotation_and_taint_key_is_written_once_in_the_vocabulary():
    defined = {v for k, v in vars(vocab).items() if k.isupper() and isinstance(v, str)}
    assert len(defined) == len([k for k, v in vars(vocab).items() if k.isupper() and isinstance(v, str)])
    elsewhere = []
    for path in sorted(SRC.rglob("*.py")):
        if path in (SRC / "api" / "vocab.py", KWOK_STAGES):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and KEY.match(node.value):
                elsewhere.append(f"{path.relative_to(SRC)}:{node.lineno} {node.value}")
    assert elsewhere == [], "use shipyard.api.vocab's constant instead"
