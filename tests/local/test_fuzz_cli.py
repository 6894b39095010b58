"""Fuzz the commands as a person runs them: `shipyard` verbs and bench scripts as
subprocesses, fed hostile files, settings, run references and flags. Oracle: a non-zero
exit with one message naming the input, no traceback, no hang (a subprocess timeout),
and nothing changed under SHIPYARD_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from ..unit.fuzzing import (
    BAD_NUMBERS_YAML,
    HOSTILE_DOCUMENTS,
    NUMERIC_FIELDS,
    VALID_CLUSTERS,
    VALID_SPEC,
    byte_edits,
    check_message,
    deep_or_exploding,
    examples,
    mutate_bytes,
    tree_state,
    tried,
    yaml_with,
)

ROOT = Path(__file__).parents[2]
HANG_S = 60  # a guard, not a measurement: a command that hangs fails the test


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=HANG_S, cwd=ROOT,
                          env={**os.environ, **(env or {})}, errors="replace")


def shipyard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "shipyard.cli", *args], env)


def a_home_with_one_run(home: Path) -> dict[str, tuple[int, int]]:
    """SHIPYARD_HOME holding one finished run, and its state to compare with afterwards."""
    spec = home.parent / "ok.yaml"
    spec.write_text(yaml.safe_dump(VALID_SPEC))
    if not (home / "runs").exists():
        result = shipyard("launch", str(spec))
        assert result.returncode == 0, result.stdout + result.stderr
    return tree_state(home)


def refused(result: subprocess.CompletedProcess[str], names: str, home: Path,
            before: dict[str, tuple[int, int]]) -> None:
    assert result.returncode != 0, f"accepted: {result.stdout[-500:]}"
    check_message(result.stderr, names)
    assert "Traceback" not in result.stdout
    assert tree_state(home) == before, "something changed under SHIPYARD_HOME"


def hostile_spec(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["number", "document", "bytes", "py"]))
    if kind == "number":
        field, bad = draw(st.sampled_from(NUMERIC_FIELDS)), draw(st.sampled_from(BAD_NUMBERS_YAML))
        if (field, bad) in {("priority", "-1"), ("time_limit", "null")}:
            bad = ".nan"
        return ".yaml", yaml_with(VALID_SPEC, field, bad).encode()
    if kind == "document":
        return ".yaml", draw(st.one_of(HOSTILE_DOCUMENTS, deep_or_exploding())).encode()
    if kind == "bytes":  # stray bytes that break the encoding, wherever they land
        data = mutate_bytes(yaml.safe_dump(VALID_SPEC).encode(), draw(byte_edits))
        return ".yaml", data[:draw(st.integers(0, len(data)))] + b"\xff\xfe" + data
    return ".py", draw(st.sampled_from([
        b"import sys\nprint('noise')\nsys.exit(0)\n", b"raise RuntimeError('boom')\n", b"x = (\n",
        b"print('only noise')\n", b"\xff\n",
    ]))


@examples(12, subprocess=True)
@given(data=st.data(), verb=st.sampled_from(["render", "launch-d", "launch"]))
def test_verbs_refuse_hostile_specs(shipyard_home, tmp_path_factory, data, verb):
    tried(f"CLI {verb} (hostile spec)")
    before = a_home_with_one_run(shipyard_home)
    suffix, content = data.draw(st.composite(hostile_spec)())
    path = tmp_path_factory.mktemp("spec") / f"hostile{suffix}"
    path.write_bytes(content)
    args = {"render": ["render"], "launch-d": ["launch", "-d"], "launch": ["launch"]}[verb]
    result = shipyard(*args, str(path))
    refused(result, str(path), shipyard_home, before)
    assert result.stdout == "", "a refused spec prints nothing on stdout (it may be piped)"


BAD_SETTINGS = st.one_of(
    st.tuples(st.sampled_from(["SHIPYARD_LOCAL_CPUS", "SHIPYARD_LOCAL_MEMORY"]),
              st.sampled_from(["abc", "-1", "0", "1e400", "nan", "inf", "9" * 400, "1" * 5000, "2 cores",
                               "0.0001m", "-0"])),
    st.tuples(st.just("SHIPYARD_LOCAL_GPUS"), st.sampled_from(["abc", "-1", "1e18", "1.5", "9" * 400, "two"])),
)


@examples(10, subprocess=True)
@given(setting=BAD_SETTINGS)
def test_launch_refuses_bad_settings(shipyard_home, setting):
    tried("CLI launch (bad environment setting)")
    name, value = setting
    before = a_home_with_one_run(shipyard_home)
    spec = shipyard_home.parent / "ok.yaml"
    refused(shipyard("launch", "-d", str(spec), env={name: value}), name, shipyard_home, before)


@examples(4, subprocess=True)
@given(where=st.sampled_from(["file", "below-file"]), verb=st.sampled_from(["list", "launch", "status"]))
def test_verbs_refuse_a_home_that_is_a_file(tmp_path_factory, where, verb):
    tried("CLI (SHIPYARD_HOME is a file)")
    tmp = tmp_path_factory.mktemp("home")
    (tmp / "a-file").write_text("not a folder")
    home = tmp / "a-file" if where == "file" else tmp / "a-file" / "home"
    spec = tmp / "ok.yaml"
    spec.write_text(yaml.safe_dump(VALID_SPEC))
    args = {"list": ["list"], "launch": ["launch", "-d", str(spec)], "status": ["status", "x"]}[verb]
    result = shipyard(*args, env={"SHIPYARD_HOME": str(home)})
    assert result.returncode == 2
    check_message(result.stderr, "SHIPYARD_HOME")
    assert (tmp / "a-file").read_text() == "not a folder"


@examples(12, subprocess=True)
@given(ref=st.one_of(st.sampled_from(["../outside", "../../outside", "runs/../../outside", "/tmp", "..",
                                      "fuzz-1/../fuzz-1", "~", "FUZZ-1", "x" * 3000]),
                     st.text(alphabet="./-_aZ0", min_size=1, max_size=12)),
       verb=st.sampled_from(["cancel", "status", "logs"]))
def test_run_refs_never_leave_the_home(shipyard_home, ref, verb):
    tried(f"CLI {verb} (run reference)")
    before = a_home_with_one_run(shipyard_home)
    outside = shipyard_home.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "status.json").write_text('{"not": "a run"}')
    if ref in ("fuzz", "fuzz-1"):
        return
    result = shipyard(verb, "--", ref)
    refused(result, "no run or experiment named", shipyard_home, before)
    assert (outside / "status.json").read_text() == '{"not": "a run"}'


BENCH_FLAGS = {
    "bench/autoscale_trace.py": {
        "--speedup": ["0", "-1", "nan", "inf", "1e400"], "--failure-rate": ["2", "-0.1", "nan"],
        "--warm-buffer": ["-3", "1.5", "x", "1e400"], "--provisioning-delay": ["-1", "nan", "1e400"],
        "--idle-timeout": ["-5", "inf"], "--nodes": ["0", "-1", "1e400"], "--latency-runs": ["0", "nan"],
        "--seed": ["-1", "1.5"], "--pending": ["-1"],
    },
    "bench/multicluster.py": {
        "--speedup": ["0", "nan"], "--days": ["0", "-2", "1e9"], "--warm-buffer": ["-3"],
        "--onprem-nodes": ["-1", "nan"], "--cloud-max-nodes": ["-1", "1e400"], "--seed": ["x"],
    },
    "bench/local_launch.py": {"--ranks": ["0", "1,x", "-4", "", "1e400"], "--repeat": ["0", "nan"]},
    "bench/policy_cycle.py": {"--nodes": ["0", "nan"], "--gangs": ["-1"], "--repeat": ["0"]},
}
BENCH_CASES = [(script, flag, value) for script, flags in BENCH_FLAGS.items()
               for flag, values in flags.items() for value in values]


@examples(10, subprocess=True)
@given(case=st.sampled_from(BENCH_CASES))
def test_bench_flags_refuse_bad_values(case):
    script, flag, value = case
    tried("bench flags")
    result = run([sys.executable, script, f"{flag}={value}"])
    assert result.returncode == 2, result.stdout[-300:] + result.stderr[-300:]
    check_message(result.stderr, f"argument {flag}")


BAD_TRACES = st.sampled_from([
    b"submit_s,gpus,duration_s\n0,1e18,10\n", b"submit_s,gpus,duration_s\n0,1,nan\n",
    b"submit_s,gpus,duration_s\n0,1,10\n\xff,1,1\n", b"submit_s,gpus,duration_s\n" + b"9" * 400 + b",1,1\n",
    b"submit_s,gpus,duration_s\n0,1," + b"1" * 5000 + b"\n", b"\x00\x01\x02", b"", b"submit_s,gpus\n0,1\n",
    b'submit_s,gpus,duration_s\n"0,1,1\n', b"submit_s,gpus,duration_s\n-1,8,10\n",
])


@examples(6, subprocess=True)
@given(trace=BAD_TRACES, script=st.sampled_from(["bench/autoscale_trace.py", "bench/multicluster.py"]))
def test_bench_traces_refuse_bad_rows(tmp_path_factory, trace, script):
    tried("bench --trace (bad CSV)")
    path = tmp_path_factory.mktemp("trace") / "bad.csv"
    path.write_bytes(trace)
    result = run([sys.executable, script, "--trace", str(path)])
    assert result.returncode != 0
    check_message(result.stderr, str(path))


@examples(8, subprocess=True)
@given(data=st.data())
def test_clusters_verb_refuses_a_bad_config(shipyard_home, tmp_path_factory, data):
    tried("CLI clusters (bad clusters.yaml)")
    path = tmp_path_factory.mktemp("clusters") / "clusters.yaml"
    choice = data.draw(st.sampled_from(["number", "document", "bytes"]))
    if choice == "number":
        field = data.draw(st.sampled_from(["clusters.0.cost_factor", "redispatch_after"]))
        bad = data.draw(st.sampled_from([b for b in BAD_NUMBERS_YAML if b != "null"]))
        path.write_text(yaml_with(VALID_CLUSTERS, field, bad))
    elif choice == "document":
        path.write_text(data.draw(HOSTILE_DOCUMENTS))
    else:
        path.write_bytes(b"\xff" + yaml.safe_dump(VALID_CLUSTERS).encode())
    result = shipyard("clusters", "--clusters", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    check_message(result.stderr, str(path))


@examples(4, subprocess=True)
@given(case=st.sampled_from([("fleet", "redispatch", "--interval", "nan"), ("fleet", "redispatch", "--interval", "-1"),
                             ("move", "x", "--to", "y", "--hold-timeout", "inf"),
                             ("move", "x", "--to", "y", "--hold-timeout", "0")]))
def test_verb_flags_refuse_bad_numbers(tmp_path_factory, case):
    tried("CLI flags (numbers)")
    path = tmp_path_factory.mktemp("clusters") / "clusters.yaml"
    path.write_text(yaml.safe_dump(VALID_CLUSTERS))
    result = shipyard(*case, "--clusters", str(path))
    assert result.returncode == 2
    check_message(result.stderr, case[-2])


@examples(8, subprocess=True)
@given(target=st.sampled_from(["status.json", "experiment.json"]), edits=byte_edits,
       verb=st.sampled_from(["status", "logs", "cancel", "list"]))
def test_verbs_refuse_damaged_run_files(shipyard_home, target, edits, verb):
    tried(f"CLI {verb} (run files damaged by hand)")
    a_home_with_one_run(shipyard_home)
    path = next((shipyard_home / "runs").glob(f"*/{target}"))
    original = path.read_bytes()
    path.write_bytes(mutate_bytes(original, edits))
    try:
        before = tree_state(shipyard_home)
        result = shipyard(*([verb] if verb == "list" else [verb, path.parent.name]))
        assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
        if result.returncode != 0:
            check_message(result.stderr, str(path))
        assert tree_state(shipyard_home) == before
    finally:
        path.write_bytes(original)
