"""Kubernetes resource quantities ("500m", "16Gi") parsed to plain integers.

The core works on integers (millicores, bytes) so comparisons are exact and fast;
users write whatever Kubernetes accepts.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from shipyard.spec.inputs import short

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


# Every amount fits Kubernetes' int64 quantities; every duration, ten years.
MAX_INT64 = 2**63 - 1
MAX_SECONDS = 10 * 365 * 86400
_CPU_EXAMPLE = "expected a CPU amount like 2, 0.5 or '500m'"
_MEMORY_EXAMPLE = "expected a memory amount like '16Gi' or '512Mi'"
_DURATION_EXAMPLE = "expected a duration like 3600, '30m' or '2h'"


def _amount(number: float | int | Fraction, factor: int, value: object, unit: str) -> int:
    """number * factor as a whole amount in 0..MAX_INT64, or ValueError naming `value`."""
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"must be a finite number, got {short(value)}")
    if number < 0:
        raise ValueError(f"must be >= 0, got {short(value)}")
    if isinstance(number, Fraction):  # written digits: exact, so int64's edge is where it is
        amount: int | None = round(number * factor)
    else:
        # Compare before multiplying: a float past 1e308 / factor would overflow to inf.
        amount = None if number > MAX_INT64 / factor else round(number * factor)
    if amount is None or amount > MAX_INT64:
        raise ValueError(f"must be at most {MAX_INT64} {unit}, got {short(value)}")
    return amount


def _quantity(value: object, example: str) -> tuple[float | Fraction, str | None]:
    match = _QUANTITY.match(str(value).strip()) if isinstance(value, str | float) else None
    if not match:
        raise ValueError(f"{example}, got {short(value)}")
    digits = match.group(1)  # forty digits are past every limit (and cheap to refuse)
    return (Fraction(digits) if len(digits) <= 40 else 1e300), match.group(2)


def parse_cpu_milli(value: object) -> int:
    """CPU cores ("2", 2, 0.5, "500m") -> millicores."""
    if isinstance(value, bool):
        raise ValueError(f"{_CPU_EXAMPLE}, got {short(value)}")
    if isinstance(value, int | float):
        return _amount(value, 1000, value, "millicores")
    number, suffix = _quantity(value, _CPU_EXAMPLE)
    if suffix not in (None, "m"):
        raise ValueError(f"{_CPU_EXAMPLE}, got {short(value)}")
    return _amount(number, 1 if suffix == "m" else 1000, value, "millicores")


def parse_memory_bytes(value: object) -> int:
    """Memory ("16Gi", "512Mi", "1G", 1073741824) -> bytes."""
    if isinstance(value, bool):
        raise ValueError(f"{_MEMORY_EXAMPLE}, got {short(value)}")
    if isinstance(value, int):
        return _amount(value, 1, value, "bytes")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {short(value)}")
    number, suffix = _quantity(value, _MEMORY_EXAMPLE)
    if suffix == "m":
        raise ValueError(f"{_MEMORY_EXAMPLE}, got {short(value)}")
    factor = _BINARY.get(suffix or "", _DECIMAL.get(suffix or "", 1))
    return _amount(number, factor, value, "bytes")


def format_cpu(milli: int) -> str:
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def format_memory(num_bytes: int) -> str:
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        factor = _BINARY[suffix]
        if num_bytes % factor == 0 and num_bytes >= factor:
            return f"{num_bytes // factor}{suffix}"
    return str(num_bytes)


def parse_duration_seconds(value: object) -> float:
    """A duration: seconds as a number, or '90s', '30m', '2h', '1d', '1h30m'; above 0 and
    at most ten years."""
    if isinstance(value, bool):
        raise ValueError(f"{_DURATION_EXAMPLE}, got {short(value)}")
    if isinstance(value, int | float):
        total = value
    else:
        text = str(value).strip() if isinstance(value, str) else ""
        if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", text):
            text += "s"  # "3600": seconds, as the number 3600 is
        parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)([smhd])", text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{_DURATION_EXAMPLE}, got {short(value)}")
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        total = sum(float(n) * unit[u] if len(n) <= 40 else math.inf for n, u in parts)
    if isinstance(total, float) and math.isnan(total):
        raise ValueError(f"must be a finite number, got {short(value)}")
    if total <= 0:
        raise ValueError(f"must be > 0, got {short(value)}")
    if total > MAX_SECONDS:
        raise ValueError(f"must be at most {MAX_SECONDS} seconds (10 years), got {short(value)}")
    return float(total)


def bounded_number(
    value: object, *, integer: bool = False, low: float | None = None, above: float | None = None,
    high: float | None = None,
) -> float:
    """A finite number (from text, or a number) within the bounds, or ValueError saying which
    bound it breaks; for every number that comes from a trace, a flag or a setting."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {short(value)}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{short(value)} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{short(value)} is not a finite number")
    if integer and not number.is_integer():
        raise ValueError(f"{short(value)} must be a whole number")
    if low is not None and number < low:
        raise ValueError(f"must be at least {low:g}, got {short(value)}")
    if above is not None and number <= above:
        raise ValueError(f"must be above {above:g}, got {short(value)}")
    if high is not None and number > high:
        raise ValueError(f"must be at most {high:g}, got {short(value)}")
    return number
