"""Hostile inputs for the bad-input fuzz suite, and its oracle.

Shared by tests/unit/test_fuzz_inputs.py (loaders in process) and
tests/local/test_fuzz_cli.py (the `shipyard` verbs and bench scripts as subprocesses).
The CI profile (HYPOTHESIS_PROFILE=ci) runs `examples(n)` of each; `python
bench/fuzz_inputs.py` raises SHIPYARD_FUZZ_EXAMPLES and records how many inputs of each
family were tried in $SHIPYARD_FUZZ_COUNTS (a JSON file, added to).
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import string
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

COUNTS: collections.Counter[str] = collections.Counter()
FINDINGS: list[str] = []


def examples(ci: int, *, subprocess: bool = False) -> settings:
    """`ci` examples per property in CI; in the long run SHIPYARD_FUZZ_EXAMPLES of them
    (SHIPYARD_FUZZ_CLI_EXAMPLES for a property that starts a process per example)."""
    n = int(os.environ.get("SHIPYARD_FUZZ_CLI_EXAMPLES" if subprocess else "SHIPYARD_FUZZ_EXAMPLES") or ci)
    return settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck))


def tried(family: str) -> None:
    COUNTS[family] += 1


@atexit.register
def _write_counts() -> None:
    target = os.environ.get("SHIPYARD_FUZZ_COUNTS")
    if not target or not COUNTS:
        return
    path = Path(target)
    old = json.loads(path.read_text()) if path.exists() else {}
    for family, n in COUNTS.items():
        old[family] = old.get(family, 0) + n
    path.write_text(json.dumps(old, indent=2, sort_keys=True))


# -- the oracle ----------------------------------------------------------------

MAX_MESSAGE = 8000  # one clear error: at most 20 problems of a few hundred characters


def check_message(message: str, names: str) -> None:
    """One clear error: it names the input, carries no traceback, and stays short."""
    assert names in message, f"the message does not name {names!r}: {message[:500]!r}"
    assert "Traceback" not in message, message[-2000:]
    assert len(message) <= MAX_MESSAGE, f"{len(message)}-character message: {message[:300]!r}..."


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root`: size and mtime, to prove nothing changed."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


# -- hostile values ------------------------------------------------------------

BIG_DIGITS = "9" * 400
HUGE_INT_TEXT = "1" * 5000

# Values no numeric field may accept, as YAML text.
BAD_NUMBERS_YAML = [
    ".inf", "-.inf", ".nan", "1e400", "-1", BIG_DIGITS, HUGE_INT_TEXT, "-" + BIG_DIGITS,
    f"'{BIG_DIGITS}'", f"'{BIG_DIGITS}s'", f"'{BIG_DIGITS}Gi'", "'1e400'", "'nan'", "'inf'",
    "true", "[]", "{}", "null", "''", "'abc'",
]
# Fields of a spec that take a number (dotted paths into VALID_SPEC), and what must hold.
NUMERIC_FIELDS = [
    "roles.0.replicas", "roles.0.resources.cpu", "roles.0.resources.memory", "roles.0.resources.gpus",
    "roles.0.port", "roles.0.procs_per_replica", "priority", "time_limit", "retry.max_restarts",
    "retry.backoff_seconds", "retry.max_backoff_seconds", "machine_types.0.cpu",
    "machine_types.0.memory", "machine_types.0.gpus", "machine_types.0.cost_per_hour",
]

VALID_SPEC: dict[str, Any] = {
    "name": "fuzz",
    "roles": [{
        "name": "worker", "replicas": 2, "machine_type": "box",
        "resources": {"cpu": "100m", "memory": "64Mi", "gpus": 0},
        "command": ["python", "-c", "print(1)"], "env": {"A": "1"},
    }],
    "priority": 0, "time_limit": "10m",
    "retry": {"max_restarts": 0, "backoff_seconds": 1, "max_backoff_seconds": 2},
    "machine_types": [{"name": "box", "cpu": 4, "memory": "8Gi", "gpus": 0, "cost_per_hour": 1.0}],
}

VALID_CLUSTERS = {
    "clusters": [{"name": "onprem", "context": "ctx-a", "location": "onprem", "cost_factor": 1.0},
                 {"name": "cloud", "context": "ctx-b"}],
    "redispatch_after": "10m",
}
CLUSTER_NUMERIC_FIELDS = ["clusters.0.cost_factor", "redispatch_after"]


def yaml_with(data: dict[str, Any], path: str, value_yaml: str) -> str:
    """`data` as YAML with the field at dotted `path` replaced by the raw YAML `value_yaml`."""
    marker = "__FUZZ_VALUE__"
    copy = json.loads(json.dumps(data))
    target: Any = copy
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = marker
    return yaml.safe_dump(copy, sort_keys=False).replace(f"{marker}", value_yaml.replace("\n", " "))


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def alias_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + f"\nname: *a{levels - 1}\n"


# Whole documents that are wrong in shape, size or encoding.
HOSTILE_DOCUMENTS = st.sampled_from([
    nested(1000), "x: " + nested(1000), alias_bomb(), "name: a\nname: b\n", "a: &a [*a]\n",
    "name: " + "x" * 2_000_000 + "\n", "\ufeffname: [", "- 1\n- 2\n", "", "null", "42",
    "name: x\nroles: " + nested(70, "{}") + "\n",
])

_text = st.text(alphabet=string.printable + "\x00\u00e9\u2603\U0001f600", max_size=40)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**310),
    st.floats(allow_nan=True, allow_infinity=True), _text,
    st.sampled_from([BIG_DIGITS, "1e400", "nan", "-inf", "500m", "16Gi", "1h30m", "../../x", "[/x]"]),
)


def mutate_bytes(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """Apply (position, delete count, inserted bytes) edits: stray bytes, cuts, non-UTF-8."""
    out = bytearray(data)
    for pos, delete, insert in edits:
        at = pos % (len(out) + 1)
        out[at:at + delete] = insert
    return bytes(out)


byte_edits = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 8),
              st.one_of(st.binary(max_size=6), st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\t", b":",
                                                                  b"&a ", b"*a", b"- ", b"{", b"'"]))),
    min_size=1, max_size=6,
)


# -- generated documents and .py specs ---------------------------------------------------


@st.composite
def deep_or_exploding(draw: st.DrawFn) -> str:
    """YAML (and JSON-like flow YAML) nested past the limit, or aliases past the limit."""
    if draw(st.booleans()):
        opener = draw(st.sampled_from(["[", '{"a": ']))
        closer = "]" if opener == "[" else "}"
        depth = draw(st.integers(65, 5000))
        return "name: " + opener * depth + "1" + closer * depth + "\n"
    fan, levels = draw(st.integers(5, 12)), draw(st.integers(6, 12))
    if fan**levels <= 100_000:
        levels = 12
    lines = [f"a0: &a0 [{', '.join(['lol'] * fan)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nname: *a{levels - 1}\n"


_EXCEPTIONS = ["RuntimeError", "ValueError", "KeyError", "OSError", "ZeroDivisionError", "RecursionError",
               "MemoryError", "ImportError", "AssertionError", "Exception", "StopIteration"]


@st.composite
def py_specs(draw: st.DrawFn) -> bytes:
    """A .py spec that prints (to stdout too), then raises, exits, breaks or builds a bad
    (sometimes a good) experiment."""
    text = draw(_text)
    lines = ["import sys", "from shipyard import Experiment, Resources, Role"]
    for _ in range(draw(st.integers(0, 3))):
        lines.append(draw(st.sampled_from([
            f"print({text!r})", f"print({text!r} * 1000, file=sys.stderr)", f"sys.stdout.write({text!r})",
            f"x = {draw(scalars)!r}" if not isinstance(draw(scalars), float) else "x = float('nan')",
            "import os", "def helper():\n    return 1",
        ])))
    replicas = draw(st.one_of(st.integers(-2, 3), st.sampled_from([10**400, "'2'", "True", "float('inf')"])))
    name = draw(st.one_of(st.just("'ok'"), st.just(repr(text)), st.just("'x' * 10**6")))
    cpu = draw(st.sampled_from(["'100m'", "float('inf')", "float('nan')", "10**30", "'9' * 400", "-1"]))
    lines.append(draw(st.sampled_from([
        f"raise {draw(st.sampled_from(_EXCEPTIONS))}({text!r})",
        f"sys.exit({draw(st.integers(-3, 300))})", f"sys.exit({text!r})", "raise SystemExit",
        "def broken(:\n    pass", "experiment = 1", "", "import no_such_module_xyz",
        "def f():\n    return f()\nf()",
        f"experiment = Experiment(name={name}, roles=[Role(name='w', machine_type='cpu-small', "
        f"command=['python'], replicas={replicas}, resources=Resources(cpu={cpu}, memory='64Mi'))])",
    ])))
    data = "\n".join(lines).encode() + b"\n"
    if draw(st.integers(0, 9)) == 0:
        data = mutate_bytes(data, draw(byte_edits))
    return data
