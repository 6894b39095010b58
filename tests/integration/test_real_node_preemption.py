"""A preempted gang resumes from its checkpoint on real nodes (issue 10: "a preempted run
resuming from its step, not from 0"). The local backend never preempts: preemption is
the controller's, so this is where a preempted job's own code runs again.

The real-node cluster and helpers are tests/integration/test_real_node.py's (skipped,
with the reason, where a real node cannot start).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shipyard.api.vocab import LABEL_NODE_KIND
from shipyard.spec import Experiment
from shipyard.spec.quantity import parse_cpu_milli
from tests.integration.test_real_node import (  # noqa: F401 (real_cluster is a fixture)
    assert_succeeded,
    experiment_namespace,
    logs,
    real_cluster,
    sleeper,
)

pytestmark = pytest.mark.integration

STEPS = 600
# Steps to a checkpoint file per rank; the first attempt is slow (it is preempted long
# before it could finish), the next ones are not.
TRAIN = ("import os, pathlib, time\n"
         "rank, restart = os.environ['RANK'], os.environ['SHIPYARD_RESTART_COUNT']\n"
         "ckpt = pathlib.Path(os.environ['SHIPYARD_CHECKPOINT_DIR']) / f'rank-{rank}'\n"
         "start = int(ckpt.read_text()) if ckpt.exists() else 0\n"
         "print(f'attempt {restart} starts at step {start}', flush=True)\n"
         f"for step in range(start, {STEPS}):\n"
         "    ckpt.with_suffix('.tmp').write_text(str(step + 1))\n"
         "    os.replace(ckpt.with_suffix('.tmp'), ckpt)\n"
         "    time.sleep(0.2 if restart == '0' else 0.001)\n"
         f"print('trained to step {STEPS}', flush=True)")
def _one_per_node(exp: Experiment, node_cpu: int) -> Experiment:
    """`exp` with each replica asking for three quarters of a real node's CPUs (the host's
    cores): one replica per node, so two fill both real nodes and a third must preempt."""
    data = exp.model_dump(mode="json", exclude_none=True)
    data["machine_types"][0]["cpu"] = f"{node_cpu + 1000}m"  # room for the kubelet's reserve
    data["roles"][0]["resources"] = {"cpu": f"{node_cpu * 3 // 4}m", "memory": "256Mi"}
    return Experiment.model_validate(data)


def _steps(folder: Path) -> dict[str, int]:
    return {p.name: int(p.read_text() or 0) for p in folder.glob("rank-*")}


def test_a_preempted_gang_resumes_from_its_checkpoint_step(
        real_cluster, request, tmp_path: Path) -> None:  # noqa: F811 (the fixture imported above)
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    with experiment_namespace(real_cluster, request.node.name) as api:
        node_cpu = min(parse_cpu_milli(n.status.allocatable["cpu"]) for n in api.core.list_node(
            label_selector=f"{LABEL_NODE_KIND}=real").items)
        low = _one_per_node(sleeper("low", script=TRAIN, volumes=[{"name": "ckpt", "host_path": str(folder)}],
                                    checkpoint={"volume": "ckpt", "path": "/ckpt"}), node_cpu)
        high = _one_per_node(sleeper("high", replicas=1, script="import time; time.sleep(3)", priority=100),
                             node_cpu)
        api.launch(low)
        deadline = time.monotonic() + 180
        while not (len(s := _steps(folder)) == 2 and min(s.values()) >= 5):
            assert time.monotonic() < deadline, f"low made no progress: {_steps(folder)}"
            time.sleep(0.2)
        api.launch(high)
        api.wait("low", lambda s: "preempt" in s.get("message", ""), timeout=120)
        at_preemption = _steps(folder)
        assert_succeeded(api.wait("high", lambda s: s.get("phase") in ("Succeeded", "Failed"),
                                  timeout=180), api, "high")
        status = api.wait("low", lambda s: s.get("phase") in ("Succeeded", "Failed"), timeout=240)
        assert_succeeded(status, api, "low")
        # Preemption is not a failure: a second attempt, no restart counted against retry.
        assert (status["attempt"], status["restarts"]) == (2, 0), status
        for rank in ("0", "1"):
            second = logs(api, f"low-worker-{rank}")  # the pods of the last attempt
            start = next(int(line.rsplit(" ", 1)[1]) for line in second.splitlines()
                         if line.startswith("attempt "))
            # SHIPYARD_RESTART_COUNT is 1 and the step is where the first attempt stopped.
            assert f"attempt 1 starts at step {start}" in second, second
            assert start >= at_preemption[f"rank-{rank}"] >= 5, (start, at_preemption)
            assert f"trained to step {STEPS}" in second
        assert _steps(folder) == {"rank-0": STEPS, "rank-1": STEPS}
