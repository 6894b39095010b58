"""Each family of bad input from issue 11 gets one clear error of an exact shape: the
input, the place in it, what is wrong and the fix."""

from __future__ import annotations

import argparse
import os

import pytest

from shipyard.cli.flags import arg, counts
from shipyard.sim.trace import TraceError, load_csv
from shipyard.spec import NodePool, Queue, SpecError, load_clusters_config, load_experiment
from shipyard.spec.errors import spec_error
from shipyard.spec.inputs import MAX_SPEC_BYTES, short
from shipyard.spec.quantity import parse_cpu_milli, parse_duration_seconds, parse_memory_bytes

from .fuzzing import alias_bomb, nested

SPEC = """\
name: exp
roles:
- name: w
  machine_type: cpu-small
  command: [python, t.py]
"""


def problems(tmp_path, text: str | bytes, name: str = "spec.yaml") -> tuple[str, list[str]]:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SpecError) as info:
        load_experiment(path)
    assert str(info.value).startswith(f"{path}: ")
    return str(path), info.value.problems


# -- 1. encoding -------------------------------------------------------------------


def test_a_non_utf8_byte_in_a_spec_names_the_file_offset_and_line(tmp_path):
    _, got = problems(tmp_path, SPEC.encode() + b"labels: {a: caf\xe9}\n")
    assert got == [f"not UTF-8 text: byte 0xe9 at offset {len(SPEC) + 15} (line 6); save the file as UTF-8"]


def test_a_non_utf8_byte_in_clusters_yaml(tmp_path):
    path = tmp_path / "clusters.yaml"
    path.write_bytes(b"clusters:\n- {name: a, context: \xff}\n")
    with pytest.raises(SpecError) as info:
        load_clusters_config(path)
    assert str(info.value) == (f"{path}: 1 problem(s) in the clusters config:\n"
                               "  - not UTF-8 text: byte 0xff at offset 31 (line 2); save the file as UTF-8")


def test_a_non_utf8_byte_in_a_trace(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"submit_s,gpus,duration_s\n0,1,\x80\n")
    with pytest.raises(TraceError) as info:
        load_csv(path)
    assert str(info.value) == (f"{path}: cannot read the trace: not UTF-8 text: byte 0x80 at offset 29 "
                               "(line 2); save the file as UTF-8")


# -- 2. numbers beyond float / int64 --------------------------------------------------


@pytest.mark.parametrize(("line", "problem"), [
    ("roles: [{name: w, machine_type: cpu-small, command: [a], resources: {cpu: .inf, memory: 1Gi}}]",
     "roles[0].resources.cpu: must be a finite number, got inf"),
    (f"time_limit: {'9' * 400}\n" + SPEC.split("\n", 1)[1],
     "time_limit: must be at most 315360000 seconds (10 years), got <an integer of about 400 digits>"),
    ("time_limit: .nan\n" + SPEC.split("\n", 1)[1], "time_limit: must be a finite number, got nan"),
    ("priority: .inf\n" + SPEC.split("\n", 1)[1], "priority: input should be a finite number, got inf"),
    ("retry: {backoff_seconds: .inf}\n" + SPEC.split("\n", 1)[1],
     "retry.backoff_seconds: input should be a finite number, got inf"),
    ("roles: [{name: w, machine_type: cpu-small, command: [a], replicas: true}]",
     "roles[0].replicas: expected a number, got True"),
])
def test_numbers_must_be_finite_and_in_range(tmp_path, line, problem):
    text = "name: exp\n" + line + "\n" if line.startswith("roles") else line
    assert problem in problems(tmp_path, text)[1]


def test_a_5000_digit_integer_is_a_yaml_error_with_its_place(tmp_path):
    _, got = problems(tmp_path, SPEC + f"priority: {'1' * 5000}\n")
    assert got == ["not valid YAML: line 6, column 11: integer of 5000 characters is out of range"]


def test_a_5000_digit_integer_in_json(tmp_path):
    _, got = problems(tmp_path, '{"name": "x", "priority": ' + "1" * 5000 + "}", "spec.json")
    assert got == ["a number has more than 4,300 digits; no field takes one so large"]


def test_redispatch_after_of_400_digits(tmp_path):
    path = tmp_path / "clusters.yaml"
    path.write_text(f"clusters: [{{name: a, context: c}}]\nredispatch_after: {'9' * 400}\n")
    with pytest.raises(SpecError) as info:
        load_clusters_config(path)
    assert info.value.problems == [
        "redispatch_after: must be at most 315360000 seconds (10 years), got <an integer of about 400 digits>"]


@pytest.mark.parametrize(("parse", "value", "message"), [
    (parse_cpu_milli, float("inf"), "must be a finite number, got inf"),
    (parse_cpu_milli, "9" * 400, f"must be at most 9223372036854775807 millicores, got {short('9' * 400)}"),
    (parse_memory_bytes, "8Ei", "must be at most 9223372036854775807 bytes, got '8Ei'"),
    (parse_memory_bytes, 10**5000, "must be at most 9223372036854775807 bytes, got <an integer of about 5001 digits>"),
    (parse_duration_seconds, float("nan"), "must be a finite number, got nan"),
    (parse_duration_seconds, "9" * 400 + "s", f"must be at most 315360000 seconds (10 years), got {short('9' * 400 + 's')}"),
], ids=lambda v: short(v, 20))
def test_quantity_and_duration_bounds(parse, value, message):
    with pytest.raises(ValueError) as info:
        parse(value)
    assert str(info.value) == message


def test_nodepool_and_queue_numbers_are_bounded():
    for model, data, problem in (
        (NodePool, {"name": "p", "machine_type": "m", "max_nodes": 10**30}, "max_nodes: must be <= 100000, got "
         "1000000000000000000000000000000"),
        (NodePool, {"name": "p", "machine_type": "m", "cost_per_hour": float("nan")},
         "cost_per_hour: input should be a finite number, got nan"),
        (NodePool, {"name": "p", "machine_type": "m", "idle_timeout": "9" * 400},
         f"idle_timeout: must be at most 315360000 seconds (10 years), got {short('9' * 400)}"),
        (Queue, {"name": "q", "weight": float("inf")}, "weight: input should be a finite number, got inf"),
        (Queue, {"name": "q", "nominal": {"gpus": 10**20}}, "nominal.gpus: must be <= 10000000, got "
         "100000000000000000000"),
    ):
        with pytest.raises(ValueError) as info:
            model.model_validate(data)
        assert spec_error("obj", info.value, model).problems == [problem]  # type: ignore[arg-type]


# -- 3, 4. depth, aliases, size ---------------------------------------------------------


def test_yaml_nested_a_thousand_levels(tmp_path):
    assert problems(tmp_path, "name: " + nested(1000))[1] == ["line 1: nested more than 64 levels deep; flatten it"]


def test_json_nested_a_thousand_levels(tmp_path):
    got = problems(tmp_path, '{"name": ' + nested(1000) + "}", "spec.json")[1]
    assert got == ["nested more than 64 levels deep; flatten it"]


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    text = alias_bomb()
    assert len(text) < 6000
    assert problems(tmp_path, text)[1] == [
        "expands (through aliases) to more than 100,000 values; write it out without alias chains"]


def test_duplicate_keys_are_refused(tmp_path):
    assert problems(tmp_path, SPEC + "name: other\n")[1] == [
        "not valid YAML: line 6, column 1: duplicate key 'name' (first at line 1); keep one"]
    assert problems(tmp_path, '{"name": "a", "name": "b"}', "spec.json")[1] == [
        "not valid JSON: duplicate key 'name'; keep one"]


def test_a_huge_file_is_refused_by_size(tmp_path):
    got = problems(tmp_path, SPEC + "labels: {a: " + "x" * MAX_SPEC_BYTES + "}\n")[1]
    assert got == ["larger than the limit of 1,048,576 bytes; is this the right file?"]


def test_a_large_bad_value_is_quoted_short(tmp_path):
    _, got = problems(tmp_path, SPEC.replace("name: exp", "name: " + "X" * 500_000))
    assert got == [f"name: must be at most 40 long, got {short('X' * 500_000)}"]
    assert len(got[0]) < 200


def test_many_problems_are_counted_not_all_listed(tmp_path):
    roles = "".join(f"- {{name: w{i}, machine_type: cpu-small, command: [a], replicas: 0}}\n" for i in range(50))
    path = tmp_path / "many.yaml"
    path.write_text("name: exp\nroles:\n" + roles)
    with pytest.raises(SpecError) as info:
        load_experiment(path)
    assert len(info.value.problems) == 50
    assert str(info.value).endswith("  - roles[19].replicas: must be >= 1, got 0\n  ... and 30 more")


# -- local commands that cannot run: caught by the spec where any backend would fail -------


@pytest.mark.parametrize(("role", "problem"), [
    ("command: ['']", "roles[0].command[0]: the program to run is empty; name one, e.g. [python, train.py]"),
    ('command: [a]\n  env: {X: "a\\0b"}',
     "roles[0].env.X: the value contains a NUL byte, which no process can be given; remove it"),
    ('command: [a, "b\\0"]', "roles[0].command[1]: contains a NUL byte, which no process can be given; remove it"),
])
def test_commands_no_process_can_take(tmp_path, role, problem):
    text = f"name: exp\nroles:\n- name: w\n  machine_type: cpu-small\n  {role}\n"
    assert problems(tmp_path, text)[1] == [problem]


# -- traces and bench flags ---------------------------------------------------------------


@pytest.mark.parametrize(("row", "message"), [
    ("0,1e18,10", "row 2, column gpus: must be at most 65536, got '1e18'"),
    ("0,1,nan", "row 2, column duration_s: 'nan' is not a finite number"),
    (f"{'9' * 400},1,1", f"row 2, column submit_s: {short('9' * 400)} is not a finite number"),
    ("0,1,1e12", "row 2, column duration_s: must be at most 3.1536e+08, got '1e12'"),
], ids=lambda v: short(v, 20))
def test_trace_numbers_are_bounded(tmp_path, row, message):
    path = tmp_path / "t.csv"
    path.write_text("submit_s,gpus,duration_s\n" + row + "\n")
    with pytest.raises(TraceError) as info:
        load_csv(path)
    assert str(info.value) == f"{path}: {message}"


@pytest.mark.parametrize(("parse", "text", "message"), [
    (arg(low=0, high=1), "2", "must be at most 1, got '2'"),
    (arg(integer=True, low=0), "-3", "must be at least 0, got '-3'"),
    (arg(above=0), "nan", "'nan' is not a finite number"),
    (arg(above=0), "0", "must be above 0, got '0'"),
    (arg(integer=True), "1.5", "'1.5' must be a whole number"),
    (counts(high=16), "1,x", "'x' in '1,x': 'x' is not a number"),
])
def test_bench_flag_types(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse(text)
    assert str(info.value) == message


def test_a_pipe_is_refused_instead_of_waited_on(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SpecError) as info:
        load_experiment(fifo)
    assert info.value.problems == ["is not a regular file (a pipe or a device); save it to a file first"]
