"""`shipyard logs` over ranks (cli/rank_logs.py): the first failure, --grep, --tail, layout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.cli.rank_logs import (
    LAST_LINES,
    Failure,
    LineFilter,
    first_failure,
    layout,
    pod_failure,
)
from shipyard.render.objects import LABEL_INDEX, LABEL_ROLE

ranks = st.sampled_from([f"worker-{i}" for i in range(5)])
lines = st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12), max_size=30)
rank_lines = st.dictionaries(ranks, lines, min_size=1)


def _pod(name: str, index: int, code: int | None, finished: str | None, reason: str = "Error") -> dict:
    state = {"running": {}} if code is None else {
        "terminated": {"exitCode": code, "finishedAt": finished, "reason": reason}}
    return {"metadata": {"name": name, "labels": {LABEL_ROLE: "worker", LABEL_INDEX: str(index)}},
            "status": {"containerStatuses": [{"name": "main", "state": state}]}}


def test_the_earliest_non_zero_exit_is_the_first_failure():
    pods = [_pod("x-worker-0", 0, 137, "2026-01-01T10:00:05Z", "OOMKilled"),
            _pod("x-worker-1", 1, 3, "2026-01-01T10:00:02Z"),
            _pod("x-worker-2", 2, 0, "2026-01-01T10:00:01Z"),
            _pod("x-worker-3", 3, None, None)]
    found = [f for p in pods if (f := pod_failure(p)) is not None]
    assert [f.rank for f in found] == ["worker-0", "worker-1"]  # exit 0 and running are no failure
    first = first_failure(found)
    assert (first.rank, first.exit_code) == ("worker-1", 3)
    assert first.describe() == "rank worker-1 failed first: exited with code 3 at 10:00:02Z"
    assert "(OOMKilled)" in found[0].describe()


def test_a_tie_goes_to_the_rank_the_controller_blamed():
    a, b = Failure("worker-0", 1, 100.0), Failure("worker-1", 1, 100.0)
    assert first_failure([a, b], named="worker-1") == b
    assert first_failure([a, b]) == a
    assert first_failure([Failure("worker-0", 1), Failure("worker-1", 2)], "worker-1").rank == "worker-1"
    assert first_failure([]) is None


@given(rank_lines, st.one_of(st.none(), st.integers(0, 40)), st.sampled_from([None, "a", "^b", "[0-9]"]))
def test_layout_keeps_matching_lines_and_at_most_tail_of_each_rank(data, tail, grep):
    filt = LineFilter.parse(grep, tail)
    out = layout(data, None, filt)
    for rank, text in data.items():
        mine = [o[len(rank) + 3:] for o in out if o.startswith(f"[{rank}] ")]
        kept = [t for t in text if filt.keeps(t)]
        assert mine == (kept[-tail:] if tail else [] if tail == 0 else kept)


@given(rank_lines, ranks)
def test_the_failed_rank_comes_first_with_its_last_lines(data, failed):
    data = {**data, failed: data.get(failed, ["boom"])}
    out = layout(data, Failure(failed, 3), LineFilter())
    assert out[0] == f"== rank {failed} failed first: exited with code 3"
    marker = out.index("== every rank")
    shown = out[1:marker]
    assert shown == ([f"[{failed}] {t}" for t in data[failed][-LAST_LINES:]]
                     or [f"[{failed}] (no log lines)"])
    body = out[marker + 1:]
    if data[failed]:
        assert body[0].startswith(f"[{failed}] ")  # the failed rank's lines lead the rest too
    assert len(body) == sum(len(v) for v in data.values())


@pytest.mark.parametrize(("grep", "tail"), [("(", None), (None, -1)])
def test_bad_filters_are_refused(grep, tail):
    with pytest.raises(ValueError):
        LineFilter.parse(grep, tail)


def test_a_failed_init_container_is_the_failure_and_named():
    pod = _pod("job-worker-2", 2, None, None)
    pod["status"] = {
        "initContainerStatuses": [{"name": "shipyard-unpack", "state": {"terminated": {
            "exitCode": 2, "finishedAt": "2026-01-01T10:00:01Z", "reason": "Error"}}}],
        "containerStatuses": [{"name": "main", "state": {"waiting": {"reason": "PodInitializing"}}}]}
    failure = pod_failure(pod)
    assert failure is not None
    assert (failure.rank, failure.exit_code, failure.init_container) == ("worker-2", 2, "shipyard-unpack")
    assert failure.describe() == ("rank worker-2 failed first in init container shipyard-unpack: "
                                  "exited with code 2 at 10:00:01Z")
    assert pod_failure(_pod("job-worker-0", 0, 3, None)).init_container == ""
