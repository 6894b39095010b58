"""Kubernetes resource quantities ("500m", "16Gi") parsed to plain integers.

The core works on integers (millicores, bytes) so comparisons are exact and fast;
users write whatever Kubernetes accepts.
"""

from __future__ import annotations

import re

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


def parse_cpu_milli(value: object) -> int:
    """CPU cores ("2", 2, 0.5, "500m") -> millicores."""
    if isinstance(value, bool):
        raise ValueError(f"expected a CPU amount like 2, 0.5 or '500m', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"must be >= 0, got {value!r}")
        return round(value * 1000)
    match = _QUANTITY.match(str(value).strip())
    if not match or match.group(2) not in (None, "m"):
        raise ValueError(f"expected a CPU amount like 2, 0.5 or '500m', got {value!r}")
    number = float(match.group(1))
    return round(number) if match.group(2) == "m" else round(number * 1000)


def parse_memory_bytes(value: object) -> int:
    """Memory ("16Gi", "512Mi", "1G", 1073741824) -> bytes."""
    if isinstance(value, bool):
        raise ValueError(f"expected a memory amount like '16Gi' or '512Mi', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must be >= 0, got {value!r}")
        return value
    match = _QUANTITY.match(str(value).strip())
    if not match or match.group(2) == "m":
        raise ValueError(f"expected a memory amount like '16Gi' or '512Mi', got {value!r}")
    number = float(match.group(1))
    suffix = match.group(2)
    factor = _BINARY.get(suffix or "", _DECIMAL.get(suffix or "", 1))
    return round(number * factor)


def format_cpu(milli: int) -> str:
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def format_memory(num_bytes: int) -> str:
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        factor = _BINARY[suffix]
        if num_bytes % factor == 0 and num_bytes >= factor:
            return f"{num_bytes // factor}{suffix}"
    return str(num_bytes)


def parse_duration_seconds(value: object) -> float:
    """A duration: seconds as a number, or '90s', '30m', '2h', '1d', '1h30m'."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 3600, '30m' or '2h', got {value!r}")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError(f"must be > 0, got {value!r}")
        return float(value)
    text = str(value).strip()
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"expected a duration like 3600, '30m' or '2h', got {value!r}")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    total = sum(float(n) * unit[u] for n, u in parts)
    if total <= 0:
        raise ValueError(f"must be > 0, got {value!r}")
    return total
