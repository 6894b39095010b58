"""The `shipyard` command end to end, as a person would run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from shipyard.local.store import Store

from .conftest import assert_all_gone, wait_for

ROOT = Path(__file__).parents[2]
SHIPYARD = [sys.executable, "-m", "shipyard.cli"]


def shipyard(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SHIPYARD, *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, **kwargs)


def test_readme_first_command_launches_the_allreduce_example():
    result = shipyard("launch", "examples/allreduce/experiment.py")
    assert result.returncode == 0, result.stdout + result.stderr
    for rank in range(4):
        assert f"[worker-{rank}] rank {rank}: allreduce OK" in result.stdout
    assert "Succeeded" in result.stdout

    listed = json.loads(shipyard("list", "-o", "json").stdout)
    assert [(r["name"], r["phase"]) for r in listed] == [("allreduce", "Succeeded")]
    status = yaml.safe_load(shipyard("status", "allreduce", "-o", "yaml").stdout)
    assert set(status["ranks"]) == {f"worker-{i}" for i in range(4)}
    logs = shipyard("logs", "allreduce", "--rank", "worker-2").stdout.splitlines()
    assert logs and all(line.startswith("[worker-2] ") for line in logs)
    assert "already finished" in shipyard("cancel", "allreduce").stdout


def test_bad_spec_exits_2_with_every_problem_and_changes_nothing(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\nroles: [{name: w, replicas: 0, machine_type: cpu-small, command: [a]}]\n")
    result = shipyard("launch", str(spec))
    assert result.returncode == 2
    assert "roles[0].replicas: must be >= 1, got 0" in result.stderr
    assert json.loads(shipyard("list", "-o", "json").stdout) == []


def test_render_json_is_a_kubernetes_list():
    result = shipyard("render", "examples/ddp/experiment.py", "-o", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["kind"] == "List"
    kinds = [o["kind"] for o in data["items"]]
    assert kinds == ["Service", "Pod", "Pod"]
    env = {e["name"]: e["value"] for e in data["items"][2]["spec"]["containers"][0]["env"]}
    assert (env["PET_NODE_RANK"], env["PET_NPROC_PER_NODE"], env["WORLD_SIZE"]) == ("1", "8", "16")


def test_unknown_run_is_a_clear_error():
    result = shipyard("status", "nope")
    assert result.returncode == 1
    assert "no run or experiment named 'nope'" in result.stderr


def test_every_verb_has_help_with_an_example():
    for verb in ("launch", "render", "list", "status", "logs", "cancel"):
        result = shipyard(verb, "--help")
        assert result.returncode == 0
        assert "Example" in result.stdout, verb


def test_ctrl_c_stops_every_rank_and_leaves_no_orphan(tmp_path):
    spec = tmp_path / "sleepy.yaml"
    spec.write_text(
        "name: sleepy\nroles:\n- name: w\n  replicas: 3\n  machine_type: cpu-small\n"
        "  resources: {cpu: 100m, memory: 64Mi}\n"
        "  command: [python, -c, 'import time; time.sleep(600)']\n"
    )
    process = subprocess.Popen([*SHIPYARD, "launch", str(spec)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=os.environ.copy())
    store = Store()
    deadline = time.monotonic() + 30
    while not list(store.runs.glob("sleepy-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    status = wait_for(store, "sleepy-1", lambda s: s.phase == "Running")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    final = store.load(status.id)
    assert final.phase == "Cancelled"
    assert_all_gone([r.pid for r in final.ranks.values() if r.pid])
