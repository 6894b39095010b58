"""The time index beside a local rank's log: `--since` at one second's resolution."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from shipyard.local.logtimes import RESOLUTION_S, TimeIndex, offset_since


def _write(log: Path, times: list[float]) -> list[int]:
    """Lines `line N` written at `times` through the index; their offsets."""
    clock = iter(times)
    index = TimeIndex(log, clock=lambda: next(clock))
    offsets, offset = [], 0
    with log.open("wb") as handle:
        for i, _ in enumerate(times):
            index.line(offset)
            raw = f"line {i}\n".encode()
            handle.write(raw)
            offsets.append(offset)
            offset += len(raw)
    index.close()
    return offsets


@given(gaps=st.lists(st.floats(0, 5, allow_nan=False), min_size=1, max_size=40),
       cutoff=st.floats(-1, 120, allow_nan=False))
def test_since_never_leaves_out_a_newer_line_nor_takes_one_much_older(tmp_path_factory, gaps, cutoff):
    log = tmp_path_factory.mktemp("logs") / "worker-0.log"
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    offsets = _write(log, times)
    start = offset_since(log, cutoff)
    shown = [t for t, o in zip(times, offsets, strict=True) if o >= start]
    hidden = [t for t, o in zip(times, offsets, strict=True) if o < start]
    assert all(t < cutoff for t in hidden)  # nothing at or after the cutoff is left out
    assert all(t > cutoff - RESOLUTION_S for t in shown if t < cutoff)  # at most a second older


def test_an_entry_a_second_at_most(tmp_path):
    log = tmp_path / "worker-0.log"
    _write(log, [0.0, 0.2, 0.9, 1.0, 1.5, 7.0])
    entries = [float(line.split()[1]) for line in log.with_suffix(".times").read_text().splitlines()]
    assert entries == [0.0, 1.0, 7.0]


def test_a_log_without_an_index_is_shown_whole(tmp_path):
    log = tmp_path / "worker-0.log"
    log.write_text("old run\n")
    assert offset_since(log, 1e12) == 0
