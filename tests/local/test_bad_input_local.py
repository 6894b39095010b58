"""Bad input on the local backend: refused before a run is recorded, or (a rank that
cannot start after all) the run Failed at once with no process left. And the `.py` spec:
it is code, its output goes to stderr, its errors name its file and line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shipyard.local import RunNotFound, Store, cancel, launch
from shipyard.local.machine import SettingError
from shipyard.local.preflight import LaunchError
from shipyard.spec import load_experiment

from .conftest import Recorder, assert_all_gone, script_experiment

ROOT = Path(__file__).parents[2]


def spec_file(tmp_path: Path, **role: object) -> Path:
    base = {"name": "w", "machine_type": "cpu-small", "resources": {"cpu": "100m", "memory": "64Mi"},
            "command": ["python", "-c", "print(1)"]}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "exp", "roles": [{**base, **role}]}))
    return path


@pytest.mark.parametrize(("role", "problem"), [
    ({"command": ["no-such-program-xyz"]},
     "roles[0].command[0]: 'no-such-program-xyz' not found on PATH; install it or give its path"),
    ({"command": ["./missing.sh"]},
     "roles[0].command[0]: './missing.sh' not found (looked for '{dir}/missing.sh'); fix the path, "
     "relative to the working directory"),
    ({"command": ["./plain.txt"]},
     "roles[0].command[0]: './plain.txt' is not executable; make it so (chmod +x) or run it through its "
     "interpreter, e.g. [python, './plain.txt']"),
    ({"working_dir": "nowhere"}, "roles[0].working_dir: '{dir}/nowhere' does not exist; create it or fix the path"),
])
def test_launch_checks_the_gang_can_start_before_recording_it(tmp_path, role, problem):
    (tmp_path / "plain.txt").write_text("echo hi\n")
    path = spec_file(tmp_path, **role)
    with pytest.raises(LaunchError) as info:
        launch(load_experiment(path), path)
    assert info.value.problems == [problem.format(dir=tmp_path)]
    assert str(info.value).startswith("experiment exp cannot start on this machine (1 problem(s)); "
                                      "nothing was queued:\n  - roles[0]")
    assert Store().all() == []


@pytest.mark.parametrize(("name", "value", "message"), [
    ("SHIPYARD_LOCAL_CPUS", "abc", "SHIPYARD_LOCAL_CPUS='abc': expected a CPU amount like 2, 0.5 or '500m', "
     "got 'abc'; set it to e.g. 8 or 500m, or unset it to use what this machine has"),
    ("SHIPYARD_LOCAL_MEMORY", "lots", "SHIPYARD_LOCAL_MEMORY='lots': expected a memory amount like '16Gi' or "
     "'512Mi', got 'lots'; set it to e.g. 16Gi, or unset it to use what this machine has"),
    ("SHIPYARD_LOCAL_GPUS", "1e18", "SHIPYARD_LOCAL_GPUS='1e18': expected a whole number of GPUs from 0 to "
     "1024; set it to e.g. 0 or 2, or unset it to use what this machine has"),
    ("SHIPYARD_LOCAL_CPUS", "0", "SHIPYARD_LOCAL_CPUS='0': must be above 0; set it to e.g. 8 or 500m, or unset it"),
])
def test_bad_machine_settings_are_refused_before_anything_is_queued(tmp_path, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    path = spec_file(tmp_path)
    with pytest.raises(SettingError) as info:
        launch(load_experiment(path), path, detach=True)
    assert str(info.value) == message
    assert Store().all() == []


def test_a_home_that_is_a_file_is_a_setting_error(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("")
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "f"))
    with pytest.raises(SettingError) as info:
        Store()
    assert str(info.value) == (f"SHIPYARD_HOME='{tmp_path}/f': cannot keep runs there (it, or a folder above "
                               "it, is a file); point SHIPYARD_HOME at a directory you can write, or unset it")


def test_a_rank_that_cannot_start_fails_the_run_at_once_with_no_process_left(tmp_path, store):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x01 not a program")
    bad.chmod(0o755)
    exp = script_experiment("startfail", "import time; time.sleep(600)", replicas=2)
    data = exp.model_dump()
    data["roles"].append({**data["roles"][0], "name": "z", "replicas": 1, "command": [str(bad)]})
    exp = type(exp).model_validate(data)
    recorder = Recorder()
    status = launch(exp, tmp_path / "spec.yaml", reporter=recorder, store=store)
    assert status.phase == "Failed"
    assert status.message == f"rank z-0 could not start: [Errno 8] Exec format error: '{bad}'"
    assert store.load(status.id).phase == "Failed"
    assert_all_gone([r.pid for r in status.ranks.values() if r.pid])
    assert {r.state for r in status.ranks.values()} <= {"stopped", "failed"}


@pytest.mark.parametrize("ref", ["../outside", "../../etc", "/tmp", "runs/../x", "..", "a/b"])
def test_run_references_never_leave_the_home(store, tmp_path, ref):
    with pytest.raises(RunNotFound):
        cancel(ref, store=store)


# -- the .py spec ----------------------------------------------------------------------


def shipyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shipyard.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=os.environ.copy())


PY_SPEC = """\
from shipyard import Experiment, Role
print("building the experiment")
experiment = Experiment(name="py", roles=[Role(name="w", machine_type="cpu-small", command=["a"])])
"""


def test_py_spec_output_goes_to_stderr_and_render_stays_pure_yaml(tmp_path):
    path = tmp_path / "exp.py"
    path.write_text(PY_SPEC)
    result = shipyard("render", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "building the experiment\n"
    assert [o["kind"] for o in yaml.safe_load_all(result.stdout)] == ["Service", "Pod"]


@pytest.mark.parametrize(("body", "problem"), [
    ("import sys\nsys.exit(0)\n", "line 2: it called sys.exit(0); a spec file must define an Experiment, not exit"),
    ("def helper():\n    raise RuntimeError('no data dir')\n\nhelper()\n", "line 2: RuntimeError: no data dir"),
    ("x = (\n", "line 1: SyntaxError: '(' was never closed"),
])
def test_py_spec_errors_name_the_file_and_line(tmp_path, body, problem):
    path = tmp_path / "exp.py"
    path.write_text(body)
    result = shipyard("render", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"error in spec file {path} {problem} (run with --debug for its traceback)\n"


def test_debug_shows_the_spec_files_own_traceback(tmp_path):
    path = tmp_path / "exp.py"
    path.write_text("def helper():\n    raise RuntimeError('no data dir')\n\nhelper()\n")
    result = shipyard("render", "--debug", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith("Traceback (most recent call last):\n"
                                    f'  File "{path}", line 4, in <module>\n')
    assert "shipyard/spec/load.py" not in result.stderr
    assert result.stderr.endswith(f"RuntimeError: no data dir\nerror in spec file {path} line 2: "
                                  "RuntimeError: no data dir\n")


def test_a_run_file_damaged_by_hand_is_named_with_the_fix(tmp_path, store):
    path = spec_file(tmp_path)
    status = launch(load_experiment(path), path, store=store)
    state = store.run_dir(status.id) / "status.json"
    state.write_text('{"id": 3')
    result = shipyard("status", status.id)
    assert result.returncode == 1
    assert result.stderr == (f"error: {state}: the run's state cannot be read (Expecting ',' delimiter: line 1 "
                             f"column 9 (char 8)); remove {state.parent} to forget the run\n")
    assert shipyard("list", "-o", "json").stdout.strip() == "[]"
