"""Progress on a cluster: the controller's receiver takes a rank's report only with its
own experiment's token (from the Secret created with the gang and mounted into its
pods) and writes status.progress with the ETA, shown by kubectl's columns.

Ranks on kwok nodes do not run, so the test process posts as a rank would, with the
token read from the Secret (what the pod's mounted file holds).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shipyard.controller.views import parse_time
from shipyard.spec import Experiment, Resources, RetryPolicy, Role
from tests.integration.controller_harness import (
    GROUP,
    VERSION,
    experiment_namespace,
    start_controller,
    stop_controller,
)
from tests.integration.test_devcluster import eventually

TOTAL = 1_000_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def receiving(dev_cluster_factory) -> Iterator[Any]:
    cluster = dev_cluster_factory("ctl", ("cpu-small:2",))
    cluster.progress_port, cluster.metrics_port = _free_port(), _free_port()
    controller = start_controller(cluster, "--progress-port", str(cluster.progress_port),
                                  "--progress-interval", "1", "--metrics-port", str(cluster.metrics_port))
    yield cluster
    stop_controller(controller)


def _metric(cluster: Any, name: str, **labels: str) -> float:
    """The sum of every series of `name` whose labels include `labels`, scraped now."""
    text = httpx.get(f"http://127.0.0.1:{cluster.metrics_port}/metrics", timeout=10).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and set(labels.items()) <= set(s.labels.items()))


def _job(name: str) -> Experiment:
    return Experiment(name=name, retry=RetryPolicy(max_restarts=0, backoff_seconds=0), roles=[
        Role(name="worker", replicas=2, machine_type="cpu-small", command=["python", "train.py"],
             resources=Resources(cpu="100m", memory="64Mi"))])


def _remove(api, *names: str) -> None:
    """Delete the experiments and wait for their pods to go (garbage collection deletes
    them; the namespace's cleanup would race it for pods still there)."""
    for name in names:
        api.delete(name)
    api.wait_no_pods()


def _token(api, name: str) -> str:
    secret = eventually(lambda: next((s for s in api.core.list_namespaced_secret(api.ns).items
                                      if s.metadata.name == f"{name}-progress"), None),
                        60, f"{name}-progress Secret")
    assert secret.metadata.owner_references[0].name == name  # deleted with the experiment
    return base64.b64decode(secret.data["token"]).decode()


def test_a_rank_report_shows_in_status_with_eta_and_a_wrong_token_is_refused(receiving, request):
    with experiment_namespace(receiving, request.node.name) as api:
        for name in ("train", "other"):
            api.launch(_job(name))
        for name in ("train", "other"):
            api.wait(name, lambda s: s.get("phase") == "Running", 90)
        token, other = _token(api, "train"), _token(api, "other")
        assert token != other

        pod = api.pods("train")[0]
        env = {e.name: e.value for e in pod.spec.containers[0].env}
        url = env["SHIPYARD_PROGRESS_URL"]
        assert url == f"http://127.0.0.1:{receiving.progress_port}/v1/progress/{api.ns}/train"
        assert env["SHIPYARD_PROGRESS_TOKEN"] == "/var/run/shipyard/progress/token"
        mounted = {v.name: v.secret.secret_name for v in pod.spec.volumes if v.secret}
        assert mounted["shipyard-progress"] == "train-progress"

        with httpx.Client(timeout=10) as http:
            def post(step: int, tok: str, target: str = url, **extra: Any) -> int:
                # A long run: the ETA stays far ahead whatever the rate measured (and the
                # list below still shows one, not "due").
                body = {"rank": "0", "pod": pod.metadata.name, "step": step, "total_steps": TOTAL,
                        "metrics": {"loss": 2.5 - step / 1000, **extra}}
                return http.post(target, json=body, headers={"Authorization": f"Bearer {tok}"}).status_code

            # Another experiment's token, a made-up one and none at all: refused.
            assert post(999, other) == 403
            assert post(999, "not-a-token") == 403
            assert http.post(url, json={"step": 1}).status_code == 403
            auth = {"Authorization": f"Bearer {token}"}
            assert http.post(url, content=b"not json", headers=auth).status_code == 400
            assert http.post(url, json={"step": "ten"}, headers=auth).status_code == 400
            assert http.post(url.replace("/v1/progress/", "/v1/other/"), json={}, headers=auth
                             ).status_code == 404
            assert post(10, token) == 204
            steps = iter(range(11, 1000))

            def reported() -> Any:
                # A step every poll (a fifth of a second): later on the receiver's clock.
                assert post(next(steps), token) == 204
                return (api.status("train").get("progress") or {}).get("eta")

            eventually(reported, 60, "status.progress with an ETA")
        progress = api.status("train")["progress"]
        assert 10 < progress["step"] < 1000 and progress["totalSteps"] == TOTAL
        assert progress["percent"] == round(100 * progress["step"] / TOTAL, 2)
        assert progress["stepsPerSecond"] > 0
        # The ETA: the steps left at the measured rate, after the last report (to the second).
        left = parse_time(progress["eta"]) - parse_time(progress["updatedAt"])
        assert abs(left - (TOTAL - progress["step"]) / progress["stepsPerSecond"]) <= 1.0, progress
        assert progress["metrics"] == {"loss": 2.5 - progress["step"] / 1000}
        assert "progress" not in api.status("other")  # the refused reports wrote nothing
        assert _metric(receiving, "shipyard_progress_refused_reports_total", transport="http") >= 3
        assert _metric(receiving, "shipyard_progress_reports_total", transport="http") >= 2
        assert _metric(receiving, "shipyard_progress_status_writes_total") >= 1

        # kubectl get experiments: the PROGRESS and ETA columns.
        method, url, headers, _, _ = api.api.param_serialize(
            "GET", f"/apis/{GROUP}/{VERSION}/namespaces/{api.ns}/experiments/train",
            header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
        response = api.api.call_api(method, url, headers)
        response.read()
        table = json.loads(response.data)
        names = [c["name"] for c in table["columnDefinitions"]]
        cells = dict(zip(names, table["rows"][0]["cells"], strict=True))
        # (a report posted last may have been written since the read above)
        assert cells["Progress"] >= progress["percent"] and cells["ETA"] >= progress["updatedAt"]

        # shipyard list/status --cluster: the same columns and the same status.progress.
        env = {**os.environ, "KUBECONFIG": str(receiving.kubeconfig), "COLUMNS": "250"}
        cli = [sys.executable, "-m", "shipyard.cli"]
        out = subprocess.run([*cli, "list", "--cluster", receiving.context, "-n", api.ns], env=env,
                             capture_output=True, text=True, check=True).stdout.splitlines()
        header = out[0].split()
        row = next(line for line in out if line.startswith("train ")).split()
        assert header[6:8] == ["PROGRESS", "ETA"]
        # The last report may have been written since: at least what was read above.
        assert float(row[6].rstrip("%")) >= progress["percent"] and row[7] == "in"
        shown = json.loads(subprocess.run(
            [*cli, "status", "train", "--cluster", receiving.context, "-n", api.ns, "-o", "json"],
            env=env, capture_output=True, text=True, check=True).stdout)
        assert shown["progress"]["step"] >= progress["step"]

        # The SDK itself, in a process given what a pod of "other" gets (its URL, its token
        # file, RANK, HOSTNAME): calls every step, sends batched, flushes at exit.
        other_pod = api.pods("other")[0]
        other_env = {e.name: e.value for e in other_pod.spec.containers[0].env}
        token_file = receiving.state_dir / f"{api.ns}-other-token"
        token_file.write_text(other)
        rank = subprocess.run([sys.executable, "-c", (
            "import time, shipyard\n"
            "for step in range(1, 301):\n"
            "    shipyard.progress(step, total_steps=1_000_000, loss=1 / step)\n"
            "    time.sleep(0.01)\n")], env={
            "PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join(sys.path),
            "SHIPYARD_PROGRESS_URL": other_env["SHIPYARD_PROGRESS_URL"],
            "SHIPYARD_PROGRESS_TOKEN": str(token_file), "SHIPYARD_PROGRESS_INTERVAL": "0.5",
            "RANK": "0", "HOSTNAME": other_pod.metadata.name}, capture_output=True, text=True,
            timeout=120)
        assert rank.returncode == 0 and rank.stderr == "", rank.stderr  # nothing failed, said once
        sent = api.wait("other", lambda s: (s.get("progress") or {}).get("step") == 300, 60)["progress"]
        assert sent["eta"] and sent["metrics"] == {"loss": 1 / 300}

        # "other" deleted and made again at once: a new token (the old Secret replaced,
        # even if not yet collected), taken although the receiver cached the old one.
        first_uid = api.get("other")["metadata"]["uid"]
        api.delete("other")
        api.wait_no_pods("other")
        api.launch(_job("other"))
        api.wait("other", lambda s: s.get("phase") == "Running", 90)
        uid = api.get("other")["metadata"]["uid"]
        assert uid != first_uid
        secret = eventually(lambda: next((s for s in api.core.list_namespaced_secret(api.ns).items
                                          if s.metadata.name == "other-progress"
                                          and s.metadata.owner_references[0].uid == uid), None),
                            60, "the new experiment's own Secret")
        renewed = base64.b64decode(secret.data["token"]).decode()
        assert renewed != other
        with httpx.Client(timeout=10) as http:
            target = other_env["SHIPYARD_PROGRESS_URL"]
            assert http.post(target, json={"step": 1}, headers={"Authorization": f"Bearer {renewed}"}
                             ).status_code == 204
            assert http.post(target, json={"step": 2}, headers={"Authorization": f"Bearer {other}"}
                             ).status_code == 403
        _remove(api, "train", "other")


def _events(api, name: str, reason: str) -> list[str]:
    return [e.message for e in api.core.list_namespaced_event(
        api.ns, field_selector=f"involvedObject.name={name}").items if e.reason == reason]


def _stalled(status: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == "Stalled"), None)


def test_a_silent_gang_turns_stalled_and_on_hang_restart_restarts_it_then_fails(receiving, request):
    with experiment_namespace(receiving, request.node.name) as api:
        exp = _job("hung").model_copy(update={"hang_timeout": 3, "on_hang": "restart",
                                              "retry": RetryPolicy(max_restarts=1, backoff_seconds=0)})
        api.launch(exp)
        # Nothing reports (kwok runs no process): stalled, restarted whole, stalled again, Failed.
        final = api.wait("hung", lambda s: s.get("phase") == "Failed", 120)
        assert final["restarts"] == 1
        assert final["failedPod"].startswith("stalled: no progress report or log line for 3s from any rank: ")
        assert _stalled(final)["status"] == "True"
        placement = final["placement"]
        # One Event per stall (best effort, so waited for), each naming every silent pod
        # and its node, then the action taken.
        eventually(lambda: len(_events(api, "hung", "Stalled")) == 2, 30, "two Stalled Events")
        told = _events(api, "hung", "Stalled")
        assert all(m.endswith("; restart") for m in told)
        for member, node in placement.items():
            assert f"hung-{member} on {node}" in told[-1]
        # Each stall was judged after its pods' logs were read (kwok's nodes serve none).
        assert _metric(receiving, "shipyard_hang_log_reads_total") >= 2 * len(placement)


def test_notify_marks_stalled_until_a_report_comes_and_a_slow_rank_is_a_straggler(receiving, request):
    with experiment_namespace(receiving, request.node.name) as api:
        exp = _job("quiet").model_copy(update={
            "hang_timeout": 3, "roles": [_job("quiet").roles[0].model_copy(update={"replicas": 3})]})
        api.launch(exp)
        status = api.wait("quiet", lambda s: (_stalled(s) or {}).get("status") == "True", 90)
        assert status["phase"] == "Running"  # notify: only told
        assert eventually(lambda: _metric(receiving, "shipyard_experiments_stalled", queue="default") >= 1,
                          30, "the stalled gauge")
        assert _metric(receiving, "shipyard_stalls_total", queue="default", action="notify") >= 1
        token = _token(api, "quiet")
        url = f"http://127.0.0.1:{receiving.progress_port}/v1/progress/{api.ns}/quiet"
        pods = {p.metadata.name: p.spec.node_name for p in api.pods("quiet")}
        steps = [0, 0, 0]
        with httpx.Client(timeout=10) as http:
            def report() -> Any:
                # Ranks 0 and 1 make ten steps a poll, rank 2 one: it is the straggler.
                for rank in range(3):
                    steps[rank] += 1 if rank == 2 else 10
                    body = {"rank": str(rank), "pod": f"quiet-worker-{rank}", "step": steps[rank]}
                    assert http.post(url, json=body, headers={"Authorization": f"Bearer {token}"}
                                     ).status_code == 204
                s = api.status("quiet")
                return (_stalled(s) or {}).get("status") == "False" and _events(api, "quiet", "Straggler")

            eventually(report, 90, "the Stalled condition cleared and a Straggler Event")
        assert api.status("quiet")["phase"] == "Running"
        assert _events(api, "quiet", "ProgressResumed")
        (straggler,) = _events(api, "quiet", "Straggler")
        assert _metric(receiving, "shipyard_stragglers_total", queue="default") >= 1
        assert straggler.startswith(f"rank 2 (pod quiet-worker-2 on node {pods['quiet-worker-2']}) makes ")
        _remove(api, "quiet")
