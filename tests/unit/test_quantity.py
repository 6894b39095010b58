from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shipyard.spec.quantity import (
    format_cpu,
    format_memory,
    parse_cpu_milli,
    parse_duration_seconds,
    parse_memory_bytes,
)


@pytest.mark.parametrize(("text", "milli"), [("500m", 500), ("2", 2000), (2, 2000), (0.25, 250), ("1.5", 1500)])
def test_cpu(text, milli):
    assert parse_cpu_milli(text) == milli


@pytest.mark.parametrize(("text", "num"), [("1Gi", 2**30), ("512Mi", 2**29), ("1G", 10**9), (1024, 1024), ("1.5Ki", 1536)])
def test_memory(text, num):
    assert parse_memory_bytes(text) == num


@pytest.mark.parametrize("bad", ["", "abc", "1Gb", "-1Gi", True, "5m"])
def test_bad_memory(bad):
    with pytest.raises(ValueError):
        parse_memory_bytes(bad)


@pytest.mark.parametrize(("text", "seconds"), [(90, 90), ("90s", 90), ("30m", 1800), ("1h30m", 5400), ("1d", 86400)])
def test_duration(text, seconds):
    assert parse_duration_seconds(text) == seconds


@pytest.mark.parametrize("bad", ["", "1x", "h", 0, -3, "1h 30m"])
def test_bad_duration(bad):
    with pytest.raises(ValueError):
        parse_duration_seconds(bad)


@given(st.integers(min_value=0, max_value=10**9))
def test_cpu_round_trips(milli):
    assert parse_cpu_milli(format_cpu(milli)) == milli


@given(st.integers(min_value=0, max_value=2**50))
def test_memory_round_trips(num):
    assert parse_memory_bytes(format_memory(num)) == num


def test_int64s_edge_is_exact_in_written_digits():
    # As text the digits are exact: int64's largest amount is taken, one more is not
    # (read through a float, 2**63 - 1 rounded up past the limit and was refused).
    assert parse_memory_bytes(str(2**63 - 1)) == 2**63 - 1
    assert parse_cpu_milli(f"{2**63 - 1}m") == 2**63 - 1
    assert parse_cpu_milli("9223372036854775") == 9223372036854775000
    for bad in (str(2**63), f"{2**63}m", "8Ei"):
        with pytest.raises(ValueError, match="must be at most 9223372036854775807"):
            (parse_cpu_milli if bad.endswith("m") else parse_memory_bytes)(bad)
