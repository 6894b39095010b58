"""Experiments on a real node: kubelet + containerd + CoreDNS + kube-proxy in the dev
cluster's network namespace, the shipyard controller as a subprocess.

Skipped, with the reason, where a real node cannot start (not root, no network
namespaces, packages that cannot be installed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from shipyard.dev import build, netns, realnode
from shipyard.dev import cluster as devcluster
from shipyard.dev.pools import parse_pool_arg
from shipyard.spec import Experiment, load_experiment
from shipyard.spec.machines import DEFAULT_MACHINE_TYPES
from tests.integration.controller_harness import GROUP, VERSION, Api, start_controller, stop_controller
from tests.integration.leftovers import leftovers

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "allreduce" / "experiment.py"
HARNESS: dict[str, subprocess.Popen[bytes]] = {}  # the controller subprocess
REAL_CPU_SMALL = realnode.real_machine_type(DEFAULT_MACHINE_TYPES["cpu-small"])


def _skip_reason() -> str | None:
    why = netns.unavailable_reason()
    if why:
        return why
    missing = realnode.host_deps_missing()
    if missing and os.geteuid() != 0:
        return f"missing packages {missing} and not root to install them"
    return None


@pytest.fixture(scope="module")
def real_cluster() -> Iterator[devcluster.DevCluster]:
    why = _skip_reason()
    if why:
        print(f"SKIP real-node tests: {why}", file=sys.stderr)
        pytest.skip(f"real node cannot start here: {why}")
    build.build(log=lambda m: None)
    build.build_node(log=lambda m: None)  # both no-ops when cached
    for old in devcluster.list_clusters():  # left by a pytest that was killed
        pid = old.name.split("-")[1] if old.name.startswith("pytest-") else ""
        if old.real_nodes and pid.isdigit() and not psutil.pid_exists(int(pid)):
            devcluster.down(old.name)
    # Two real nodes on one machine (one namespace, a pod bridge each): gangs cross them.
    spec = parse_pool_arg("real-cpu-small=cpu-small:2")
    c = devcluster.up(f"pytest-{os.getpid()}-real", real_specs=[spec], merge_kubeconfig=False)
    HARNESS["controller"] = start_controller(c)
    try:
        yield c
    finally:
        stop_controller(HARNESS["controller"])  # a test may have restarted it
        ran = devcluster.DevCluster.load(c.name)  # with the processes restarted since
        devcluster.down(c.name)
    # `dev down` left nothing: no process, cgroup, mount or path of the cluster.
    assert leftovers(ran) == []


@contextlib.contextmanager
def experiment_namespace(cluster: devcluster.DevCluster, test_name: str) -> Iterator[Api]:
    """A fresh namespace; afterwards its experiments, pods and the namespace are gone
    (the controller may delete pods at the same time: a 404 is fine)."""
    from kubernetes.client import ApiException

    name = f"t-{test_name[5:30].replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}".lower()
    a = Api(cluster, name)
    a.core.create_namespace({"metadata": {"name": name}})
    try:
        yield a
    finally:
        for item in a.custom.list_namespaced_custom_object(GROUP, VERSION, name,
                                                          "experiments")["items"]:
            with contextlib.suppress(ApiException):
                a.delete(item["metadata"]["name"])
        for pod in a.pods():
            with contextlib.suppress(ApiException):
                a.core.delete_namespaced_pod(pod.metadata.name, name, grace_period_seconds=0)
        a.wait_no_pods(timeout=90)
        a.core.delete_namespace(name)
        a.api.close()


def for_real(exp: Experiment, **role_changes: object) -> Experiment:
    """`exp` with its machine type made the real node's, and role fields changed."""
    data = exp.model_dump(mode="json", exclude_none=True)
    data["machine_types"] = [REAL_CPU_SMALL.model_dump(mode="json")]
    for role in data["roles"]:
        role.update(role_changes)
    return Experiment.model_validate(data)


# Python as a container's PID 1 ignores SIGTERM unless it says otherwise, and the
# kubelet would wait the whole grace period (30 s) before SIGKILL.
ON_TERM = "import signal, sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"


def sleeper(name: str, replicas: int = 2, script: str = "import time; time.sleep(600)",
            **fields: object) -> Experiment:
    script = ON_TERM + script
    return Experiment.model_validate({
        "name": name, **fields,
        "machine_types": [REAL_CPU_SMALL.model_dump(mode="json")],
        "roles": [{"name": "worker", "replicas": replicas, "machine_type": "cpu-small",
                   "resources": {"cpu": "100m", "memory": "64Mi"},
                   "command": ["python", "-c", script]}],
    })


def containers(c: devcluster.DevCluster, namespace: str) -> list[str]:
    """Containers the nodes' containerds hold for pods of `namespace` (sandboxes too)."""
    out = []
    for node in realnode.from_json(c.real_nodes):
        out += subprocess.run(
            [*node.ctr(), "-n", "k8s.io", "containers", "ls", "-q",
             f'labels."io.kubernetes.pod.namespace"=={namespace}'],
            capture_output=True, text=True, check=True).stdout.split()
    return out


def wait_no_containers(c: devcluster.DevCluster, namespace: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while (left := containers(c, namespace)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"containers left in containerd: {left}"


def logs(api: Api, pod: str) -> str:
    return api.core.read_namespaced_pod_log(pod, api.ns)


def rank_logs(api: Api, name: str) -> dict[str, str]:
    """Every pod's last lines, for a failure message that says why."""
    out = {}
    for pod in api.pods(name):
        try:
            out[pod.metadata.name] = logs(api, pod.metadata.name)[-1500:]
        except Exception as exc:  # a pod already gone: say so rather than hide the failure
            out[pod.metadata.name] = f"(no log: {exc})"
    return out


def assert_succeeded(status: dict, api: Api, name: str) -> None:
    """pytest.fail rather than assert: pytest cuts a long assertion message, and the
    rank logs are the part that says why."""
    if status.get("phase") != "Succeeded":
        ranks = "\n".join(f"--- {pod}:\n{text}" for pod, text in rank_logs(api, name).items())
        pytest.fail(f"{name} ended {status.get('phase')}: {status}\n{ranks}", pytrace=False)


def test_allreduce_example_succeeds_with_every_rank_checked(real_cluster, request) -> None:
    exp = for_real(load_experiment(EXAMPLE), working_dir="/opt/shipyard/examples/allreduce")
    with experiment_namespace(real_cluster, request.node.name) as api:
        api.launch(exp)
        status = api.wait(exp.name, lambda s: s.get("phase") in ("Succeeded", "Failed"),
                          timeout=240)
        assert_succeeded(status, api, exp.name)
        pods = {p.metadata.name: p for p in api.pods(exp.name)}
        assert len(pods) == 4
        assert {p.spec.node_name for p in pods.values()} <= {
            "real-cpu-small-00000", "real-cpu-small-00001"}
        for rank in range(4):
            assert f"allreduce-worker-{rank}" in pods, sorted(pods)
            text = logs(api, f"allreduce-worker-{rank}")
            assert f"rank {rank}: allreduce OK" in text, text
            # MASTER_ADDR is the headless Service's name for rank 0, resolved by CoreDNS.
            assert "rendezvous at allreduce-worker-0.allreduce:" in text


def test_allreduce_across_two_real_nodes(real_cluster, request) -> None:
    # 1.5 CPUs a rank on 2-CPU nodes: one rank per node, rendezvous crosses nodes.
    exp = for_real(load_experiment(EXAMPLE), working_dir="/opt/shipyard/examples/allreduce",
                   replicas=2, resources={"cpu": "1500m", "memory": "256Mi"})
    with experiment_namespace(real_cluster, request.node.name) as api:
        api.launch(exp)
        status = api.wait(exp.name, lambda s: s.get("phase") in ("Succeeded", "Failed"),
                          timeout=240)
        assert_succeeded(status, api, exp.name)
        pods = api.pods(exp.name)
        assert {p.spec.node_name for p in pods} == {"real-cpu-small-00000",
                                                     "real-cpu-small-00001"}
        assert "rank 0: got array from rank 1" in logs(api, "allreduce-worker-0")
        assert "rank 1: allreduce OK" in logs(api, "allreduce-worker-1")


def test_failing_rank_restarts_whole_gang_then_fails_naming_it(real_cluster, request) -> None:
    script = ("import os, sys, time\n"
              "print('attempt', flush=True)\n"
              "sys.exit(3) if os.environ['RANK'] == '1' else time.sleep(600)")
    exp = sleeper("flaky", script=script,
                  retry={"max_restarts": 1, "backoff_seconds": 1})
    with experiment_namespace(real_cluster, request.node.name) as api:
        api.launch(exp)
        status = api.wait("flaky", lambda s: s.get("phase") == "Failed", timeout=180)
        assert status["restarts"] == 1
        assert "flaky-worker-1 failed with exit code 3" in status["message"], status
        # The healthy rank was stopped too, each time: nothing of the gang runs on.
        wait_no_containers_running(real_cluster, api.ns)
        # `status -c` shows the failed rank's own non-zero code, read from its pod.
        out, _ = _cli(real_cluster, "status", "-c", real_cluster.context, "-n", api.ns,
                      "flaky", "-o", "json").communicate(timeout=60)
        ranks = json.loads(out)["ranks"]
        assert ranks["flaky-worker-1"]["exit_code"] == 3, ranks


def wait_no_containers_running(c: devcluster.DevCluster, namespace: str,
                               timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        ids = containers(c, namespace)
        tasks = "".join(subprocess.run([*n.ctr(), "-n", "k8s.io", "tasks", "ls"],
                                       capture_output=True, text=True, check=True).stdout
                        for n in realnode.from_json(c.real_nodes))
        running = [i for i in ids if any(line.startswith(i) and "RUNNING" in line
                                         for line in tasks.splitlines())]
        if not running:
            return
        assert time.monotonic() < deadline, f"containers still running: {running}"
        time.sleep(0.5)


def test_cancel_leaves_no_container(real_cluster, request) -> None:
    from shipyard.controller.views import ANNOTATION_CANCEL

    with experiment_namespace(real_cluster, request.node.name) as api:
        api.launch(sleeper("cancelme"))
        api.wait("cancelme", lambda s: s.get("phase") == "Running", timeout=120)
        assert containers(real_cluster, api.ns)  # the gang really runs in containerd
        api.custom.patch_namespaced_custom_object(
            "shipyard.dev", "v1alpha1", api.ns, "experiments", "cancelme",
            {"metadata": {"annotations": {ANNOTATION_CANCEL: "true"}}})
        api.wait("cancelme", lambda s: s.get("phase") == "Cancelled", timeout=60)
        api.wait_no_pods("cancelme", timeout=90)
        wait_no_containers(real_cluster, api.ns)


def test_time_limit_leaves_no_container(real_cluster, request) -> None:
    exp = sleeper("slow", time_limit="8s", retry={"max_restarts": 0})
    with experiment_namespace(real_cluster, request.node.name) as api:
        api.launch(exp)
        status = api.wait("slow", lambda s: s.get("phase") == "Failed", timeout=120)
        assert "time limit of 8s exceeded" in status["message"], status
        api.wait_no_pods("slow", timeout=90)
        # Stopped sandboxes stay as records until the kubelet's container GC (each
        # minute); the cancel test waits for those, this one for nothing running.
        wait_no_containers_running(real_cluster, api.ns)


def test_real_node_is_tainted_and_kwok_work_stays_off(real_cluster) -> None:
    api = real_cluster.raw_client()
    node = api.get_json("/api/v1/nodes/real-cpu-small-00000")
    assert node["metadata"]["labels"][realnode.LABEL_NODE_KIND] == "real"
    assert node["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "cpu-small"
    assert {"key": realnode.LABEL_NODE_KIND, "value": "real", "effect": "NoSchedule"} in [
        {k: t[k] for k in ("key", "value", "effect")} for t in node["spec"]["taints"]]
    # Capacity is the machine's own, not the catalog's.
    assert int(node["status"]["capacity"]["cpu"]) == os.cpu_count()
    info = json.dumps(node["status"]["nodeInfo"])
    assert "containerd://" in info


def test_work_without_the_real_machine_type_stays_off_the_real_node(real_cluster, request) -> None:
    plain = sleeper("kwokonly").model_dump(mode="json", exclude_none=True)
    plain.pop("machine_types")
    with experiment_namespace(real_cluster, request.node.name) as api:
        api.launch(Experiment.model_validate(plain))
        time.sleep(3)  # give the scheduler its chance to (wrongly) place it
        assert api.status("kwokonly").get("phase") in (None, "Queued")
        assert api.pods("kwokonly") == []


def test_shipyard_image_entrypoint_runs_on_the_real_node(real_cluster, request) -> None:
    from shipyard.dev import images

    with experiment_namespace(real_cluster, request.node.name) as api:
        api.core.create_namespaced_pod(api.ns, {
            "metadata": {"name": "cli"},
            "spec": {"restartPolicy": "Never", "nodeName": "real-cpu-small-00000",
                     "tolerations": [{"key": realnode.LABEL_NODE_KIND, "operator": "Exists"}],
                     "containers": [{"name": "cli", "image": images.shipyard_image_name(),
                                     "imagePullPolicy": "Never", "args": ["--help"]}]}})
        deadline = time.monotonic() + 120
        while (phase := api.core.read_namespaced_pod("cli", api.ns).status.phase) not in (
                "Succeeded", "Failed"):
            assert time.monotonic() < deadline, phase
            time.sleep(0.5)
        text = logs(api, "cli")
        assert phase == "Succeeded", text
        assert "launch" in text and "Usage" in text


def _cli(c: devcluster.DevCluster, *args: str, **kw: object) -> subprocess.Popen[str]:
    env = {**os.environ, "KUBECONFIG": str(c.kubeconfig), "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "shipyard.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)  # type: ignore[call-overload]


def test_logs_follow_streams_lines_while_written_and_status_shows_exit_codes(
        real_cluster, request) -> None:
    script = ("import os, time\n"
              "print('tick', os.environ['RANK'], flush=True)\n"
              "time.sleep(6)\n"
              "print('done', os.environ['RANK'], flush=True)")
    exp = sleeper("chatty", script=script)
    with experiment_namespace(real_cluster, request.node.name) as api:
        api.launch(exp)
        api.wait("chatty", lambda s: s.get("phase") in ("Starting", "Running"), timeout=60)
        follow = _cli(real_cluster, "logs", "-c", real_cluster.context, "-n", api.ns,
                      "chatty", "-f")
        assert follow.stdout is not None
        first = follow.stdout.readline()
        assert first.strip() in ("[worker-0] tick 0", "[worker-1] tick 1"), first
        # Printed while the ranks still run: streamed, not gathered at the end.
        assert api.status("chatty").get("phase") in ("Starting", "Running")
        rest, _ = follow.communicate(timeout=120)
        assert follow.returncode == 0, rest
        lines = {first.strip(), *rest.splitlines()}
        assert {"[worker-0] tick 0", "[worker-1] tick 1", "[worker-0] done 0",
                "[worker-1] done 1"} <= lines
        assert api.status("chatty")["phase"] == "Succeeded"

        one, _ = _cli(real_cluster, "logs", "-c", real_cluster.context, "-n", api.ns, "chatty",
                      "--rank", "worker-1", "--since", "1h").communicate(timeout=60)
        assert one.splitlines() == ["[worker-1] tick 1", "[worker-1] done 1"]

        out, _ = _cli(real_cluster, "status", "-c", real_cluster.context, "-n", api.ns,
                      "chatty", "-o", "json").communicate(timeout=60)
        ranks = json.loads(out)["ranks"]
        assert {k: v["exit_code"] for k, v in ranks.items()} == {
            "chatty-worker-0": 0, "chatty-worker-1": 0}
        table, _ = _cli(real_cluster, "status", "-c", real_cluster.context, "-n", api.ns,
                        "chatty").communicate(timeout=60)
        assert "EXIT" in table



def _node_state(cluster: devcluster.DevCluster, node: str) -> str:
    """The node's Ready condition, its Lease's last renewal and its kubelet's processes."""
    raw = cluster.raw_client()
    obj = raw.get_json(f"/api/v1/nodes/{node}")
    ready = next((c for c in obj["status"].get("conditions") or [] if c["type"] == "Ready"), {})
    lease = raw.get_json(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}")
    kubelets = [p.info["pid"] for p in psutil.process_iter(["pid", "cmdline"])
                if "kubelet" in " ".join(p.info["cmdline"] or []) and node in " ".join(p.info["cmdline"] or [])]
    return (f"node {node}: Ready={ready.get('status')} ({ready.get('reason')}, since "
            f"{ready.get('lastTransitionTime')}); lease renewed {lease['spec'].get('renewTime')}; "
            f"kubelet processes {kubelets}; now {time.strftime('%H:%M:%S', time.gmtime())}")


def test_stopped_kubelet_turns_node_not_ready_and_restarts_the_gang(real_cluster, request) -> None:
    # One rank per node (1.5 CPUs each): the gang needs both nodes.
    exp = sleeper("nodeloss", retry={"max_restarts": 1, "backoff_seconds": 1})
    exp = for_real(exp, resources={"cpu": "1500m", "memory": "64Mi"})
    victim = "real-cpu-small-00001"
    with experiment_namespace(real_cluster, request.node.name) as api:
        api.launch(exp)
        api.wait("nodeloss", lambda s: s.get("phase") == "Running", timeout=120)
        real_cluster.stop_kubelet(victim)
        try:
            try:
                status = api.wait("nodeloss", lambda s: s.get("restarts", 0) >= 1, timeout=150)
            except AssertionError as exc:  # say what the node and its kubelet were doing
                raise AssertionError(f"{exc}; {_node_state(real_cluster, victim)}") from None
            assert f"node {victim} of pod" in status.get("failedPod", status["message"]), status
            assert "NotReady" in status.get("failedPod", status["message"]), status
            # The survivor's rank was stopped too: the whole gang restarts, and with one
            # node left it cannot be placed again.
            api.wait("nodeloss", lambda s: s.get("phase") in ("Queued", "Restarting"),
                     timeout=60)
        finally:
            real_cluster.start_kubelet(victim)
        deadline = time.monotonic() + 120
        while not realnode.node_ready(real_cluster.raw_client().get_json(
                f"/api/v1/nodes/{victim}")):
            assert time.monotonic() < deadline, "node did not come back"
            time.sleep(1)


def test_launch_ships_the_spec_folder_and_a_script_not_in_the_image_runs(
        real_cluster, request, tmp_path: Path) -> None:
    import yaml

    folder = tmp_path / "project"
    (folder / "pkg").mkdir(parents=True)
    (folder / "pkg" / "__init__.py").write_text("")
    (folder / "pkg" / "helper.py").write_text("MESSAGE = 'shipped code runs'\n")
    (folder / "main.py").write_text(
        "import os\nfrom pkg.helper import MESSAGE\n"
        "print(MESSAGE, os.getcwd(), os.path.exists('secret.txt'),\n"
        "      'restart', os.environ['SHIPYARD_RESTART_COUNT'], flush=True)\n")
    (folder / "secret.txt").write_text("never shipped")
    (folder / ".shipyardignore").write_text("secret.txt\n")
    with experiment_namespace(real_cluster, request.node.name) as api:
        spec = {"name": "shipped", "namespace": api.ns,
                "machine_types": [REAL_CPU_SMALL.model_dump(mode="json")],
                "roles": [{"name": "worker", "machine_type": "cpu-small",
                           "resources": {"cpu": "100m", "memory": "64Mi"},
                           "command": ["python", "main.py"]}]}
        (folder / "experiment.yaml").write_text(yaml.safe_dump(spec))
        out, _ = _cli(real_cluster, "launch", "-c", real_cluster.context,
                      str(folder / "experiment.yaml")).communicate(timeout=60)
        assert "created" in out, out
        status = api.wait("shipped", lambda s: s.get("phase") in ("Succeeded", "Failed"),
                          timeout=120)
        assert status["phase"] == "Succeeded", (status, logs(api, "shipped-worker-0"))
        assert logs(api, "shipped-worker-0").split() == [
            "shipped", "code", "runs", "/shipyard/workdir", "False", "restart", "0"]
        owner = api.get("shipped")["metadata"]["uid"]
        cm = api.core.read_namespaced_config_map("shipped-workdir", api.ns)
        assert [r.uid for r in cm.metadata.owner_references] == [owner]
        api.delete("shipped")  # the garbage collector takes the ConfigMap with it
        deadline = time.monotonic() + 60
        while any(c.metadata.name == "shipped-workdir"
                  for c in api.core.list_namespaced_config_map(api.ns).items):
            assert time.monotonic() < deadline, "the workdir ConfigMap outlived its Experiment"
            time.sleep(0.5)


def test_a_restarted_gang_resumes_from_its_checkpoint_on_the_volume(
        real_cluster, request, tmp_path: Path) -> None:
    """Rank 1 fails at step 10 of the first attempt; the whole gang restarts and each
    rank goes on from the step in SHIPYARD_CHECKPOINT_DIR (a hostPath volume here)."""
    script = ("import os, pathlib, sys, time\n"
              "rank, restart = os.environ['RANK'], os.environ['SHIPYARD_RESTART_COUNT']\n"
              "ckpt = pathlib.Path(os.environ['SHIPYARD_CHECKPOINT_DIR']) / f'rank-{rank}'\n"
              "start = int(ckpt.read_text()) if ckpt.exists() else 0\n"
              "print(f'attempt {restart} starts at step {start}', flush=True)\n"
              "for step in range(start, 20):\n"
              "    if (rank, restart, step) == ('1', '0', 10):\n"
              "        sys.exit(1)\n"
              "    ckpt.with_suffix('.tmp').write_text(str(step + 1))\n"
              "    os.replace(ckpt.with_suffix('.tmp'), ckpt)\n"
              "    time.sleep(0.05)\n"
              "print('trained to step 20', flush=True)")
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    exp = sleeper("resume", script=script, retry={"max_restarts": 1, "backoff_seconds": 1},
                  volumes=[{"name": "ckpt", "host_path": str(folder)}],
                  checkpoint={"volume": "ckpt", "path": "/ckpt"})
    with experiment_namespace(real_cluster, request.node.name) as api:
        api.launch(exp)
        status = api.wait("resume", lambda s: s.get("phase") in ("Succeeded", "Failed"),
                          timeout=240)
        assert status["phase"] == "Succeeded", status
        assert status["restarts"] == 1
        second = logs(api, "resume-worker-1")  # the pods of the last attempt
        assert "attempt 1 starts at step 10" in second, second
        assert "trained to step 20" in second
        assert "attempt 1 starts at step 0" not in logs(api, "resume-worker-0")
        assert sorted(p.name for p in folder.iterdir()) == ["rank-0", "rank-1"]
        assert {p.read_text() for p in folder.iterdir()} == {"20"}


def _stream_logs(api: Api, pod: str) -> tuple[threading.Thread, list[str]]:
    """Follow a pod's log in a thread until its container ends."""
    out: list[str] = []

    def read() -> None:
        response = api.core.read_namespaced_pod_log(pod, api.ns, follow=True,
                                                    _preload_content=False)
        out.extend(response.read().decode().splitlines())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, out


def test_cancel_sigterms_the_command_which_reads_why_and_a_plain_python_exits(
        real_cluster, request) -> None:
    """Rank 0 has a SIGTERM handler that prints the stop-reason file; rank 1 is a plain
    Python with none, which as a container's PID 1 would ignore SIGTERM and be killed only
    after the grace period (10 minutes here): it goes, so it was not PID 1."""
    from shipyard.controller.views import ANNOTATION_CANCEL

    script = ("import os, signal, sys, time\n"
              "def on_term(*_):\n"
              "    print('stop reason:', open(os.environ['SHIPYARD_STOP_REASON']).read(), flush=True)\n"
              "    sys.exit(0)\n"
              "if os.environ['RANK'] == '0':\n"
              "    signal.signal(signal.SIGTERM, on_term)\n"
              "print('ready', flush=True)\n"
              "time.sleep(3600)")
    exp = Experiment.model_validate({
        "name": "term", "stop_grace_seconds": 600,
        "machine_types": [REAL_CPU_SMALL.model_dump(mode="json")],
        "roles": [{"name": "worker", "replicas": 2, "machine_type": "cpu-small",
                   "resources": {"cpu": "100m", "memory": "64Mi"},
                   "command": ["python", "-c", script]}]})
    with experiment_namespace(real_cluster, request.node.name) as api:
        api.launch(exp)
        api.wait("term", lambda s: s.get("phase") == "Running", timeout=120)
        pod = api.core.read_namespaced_pod("term-worker-0", api.ns)
        assert pod.spec.termination_grace_period_seconds == 600
        deadline = time.monotonic() + 60
        while "ready" not in logs(api, "term-worker-0"):
            assert time.monotonic() < deadline, "rank 0 never started"
            time.sleep(0.5)
        thread, lines = _stream_logs(api, "term-worker-0")
        api.custom.patch_namespaced_custom_object(
            GROUP, VERSION, api.ns, "experiments", "term",
            {"metadata": {"annotations": {ANNOTATION_CANCEL: "true"}}})
        api.wait("term", lambda s: s.get("phase") == "Cancelled", timeout=60)
        # Far less than the 600 s grace: both commands ended on the SIGTERM itself.
        api.wait_no_pods("term", timeout=90)
        thread.join(timeout=30)
        assert "stop reason: cancelled: shipyard cancel" in lines, lines


def _stalled(status: dict) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == "Stalled"), None)


# Rank 0 prints a line every half second for 12 s, rank 1 never; then both are silent.
PRINTS_THEN_QUIET = ("import os, time\n"
                     "if os.environ['SHIPYARD_REPLICA_INDEX'] == '0':\n"
                     "    for i in range(24):\n"
                     "        print('tick', i, flush=True)\n"
                     "        time.sleep(0.5)\n"
                     "time.sleep(600)\n")


def test_log_lines_are_activity_and_a_gang_silent_for_its_hang_timeout_is_stalled(
        real_cluster, request) -> None:
    """The subprocess controller has no progress receiver: the ranks' log lines are the
    only sign of life. One rank printing keeps the gang from Stalled for three times its
    hang_timeout; once it stops, the gang is Stalled, naming both pods and nodes, and
    on_hang: fail fails it and stops both processes."""
    from shipyard.controller.hangs import line_time
    from shipyard.controller.views import parse_time

    with experiment_namespace(real_cluster, request.node.name) as api:
        api.launch(sleeper("quiet", script=PRINTS_THEN_QUIET, hang_timeout=4, on_hang="fail"))
        text, read_at = "", 0.0

        def stalled(s: dict) -> bool:
            nonlocal text, read_at
            if (_stalled(s) or {}).get("status") == "True":
                return True
            # The last lines, while the pod is there to be read (the failed gang's go).
            if time.monotonic() - read_at > 0.5:
                read_at = time.monotonic()
                with contextlib.suppress(Exception):
                    text = api.core.read_namespaced_pod_log("quiet-worker-0", api.ns,
                                                            timestamps=True)
            return False

        status = api.wait("quiet", stalled, timeout=120)
        condition = _stalled(status)
        message = condition["message"]
        assert message.startswith("no progress report or log line for 4s from any rank: "), message
        for member, node in status["placement"].items():
            assert f"quiet-{member} on {node}" in message, message
        status = api.wait("quiet", lambda s: s.get("phase") == "Failed", timeout=60)
        assert status["failedPod"].startswith("stalled: no progress report or log line"), status
        wait_no_containers_running(real_cluster, api.ns)
        assert "tick 23" in text, text
        # Judged silent only hang_timeout after rank 0's last line (times to the second),
        # not hang_timeout after the start, while it was still printing.
        last_line = line_time(text)
        assert last_line is not None
        assert parse_time(condition["lastTransitionTime"]) >= int(last_line) + 4, (condition, text)
        assert parse_time(status["startedAt"]) + 4 < last_line  # it printed past the timeout


# The check: exit 0 on one node, 3 on the other.
PREFLIGHT = "import os, sys; sys.exit(3 if os.environ['SHIPYARD_NODE_NAME'].endswith('1') else 0)"


def test_preflight_untaints_a_node_whose_check_passes_and_keeps_one_whose_check_fails(
        real_cluster) -> None:
    """Both real nodes tainted shipyard.dev/preflight, as new nodes would register; the
    controller, restarted with a check, runs its pod on each: the node where it exits 0
    loses the taint, the other keeps it, and Events say which and why."""
    from shipyard.controller.preflight import TAINT_PREFLIGHT, check_pod_name
    from shipyard.dev import images
    from shipyard.kube.install import SYSTEM_NAMESPACE

    ok, bad = "real-cpu-small-00000", "real-cpu-small-00001"
    api = Api(real_cluster, SYSTEM_NAMESPACE)

    def taints(node: str) -> list[dict]:
        return api.api.sanitize_for_serialization(api.core.read_node(node).spec.taints or [])

    def set_preflight(node: str, on: bool) -> None:
        kept = [t for t in taints(node) if t["key"] != TAINT_PREFLIGHT]
        api.core.patch_node(node, {"spec": {"taints": [
            *kept, *([{"key": TAINT_PREFLIGHT, "effect": "NoSchedule"}] if on else [])]}})

    def events(node: str, reason: str) -> list[str]:
        return [e.message for e in api.core.list_namespaced_event(
            "default", field_selector=f"involvedObject.name={node},reason={reason}").items]

    def wait(check, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, what
            time.sleep(0.5)

    for node in (ok, bad):
        set_preflight(node, True)
    stop_controller(HARNESS["controller"])
    HARNESS["controller"] = start_controller(
        real_cluster, "--preflight-image", images.RUNTIME_IMAGES[0],
        "--preflight-command", f"python -c {shlex.quote(PREFLIGHT)}")
    try:
        wait(lambda: all(t["key"] != TAINT_PREFLIGHT for t in taints(ok)), "ok untainted")
        wait(lambda: api.core.read_namespaced_pod(check_pod_name(bad), SYSTEM_NAMESPACE
                                                  ).status.phase == "Failed", "bad's check failed")
        wait(lambda: events(ok, "PreflightPassed") and events(bad, "PreflightFailed"), "Events")
        assert any(t["key"] == TAINT_PREFLIGHT for t in taints(bad))
        assert "exit code 3" in events(bad, "PreflightFailed")[0]
        # The passed node's check pod is collected; the failed one is kept for its log.
        wait(lambda: not api.core.list_namespaced_pod(
            SYSTEM_NAMESPACE, field_selector=f"metadata.name={check_pod_name(ok)}").items,
            "ok's check pod deleted")
    finally:
        stop_controller(HARNESS["controller"])
        for node in (ok, bad):
            set_preflight(node, False)
        api.core.delete_collection_namespaced_pod(
            SYSTEM_NAMESPACE, label_selector="app.kubernetes.io/name=shipyard-preflight")
        HARNESS["controller"] = start_controller(real_cluster)
        api.api.close()


def _in_cluster_token_dropped(c: devcluster.DevCluster, tmp: Path,
                              monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether shipyard's in-cluster connection loses the pod's token, found by feeding
    the kubernetes client's own in-cluster loader a token file of ours."""
    import kubernetes.config
    from kubernetes.config.incluster_config import InClusterConfigLoader

    from shipyard.kube.client import load_connection

    (tmp / "token").write_text("probe-token")

    def fake(client_configuration: object = None, try_refresh_token: bool = True) -> None:
        InClusterConfigLoader(
            token_filename=str(tmp / "token"), cert_filename=str(c.certs_dir / "ca.crt"),
            environ={"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"},
            try_refresh_token=try_refresh_token).load_and_set(client_configuration)

    monkeypatch.setattr(kubernetes.config, "load_incluster_config", fake)
    return load_connection(in_cluster=True).token != "probe-token"


# 1,000 steps of 0.2 s, a report for each (shipyard.progress sends every 0.5 s).
REPORTS = ("import time, shipyard\n"
           "for step in range(1, 1001):\n"
           "    shipyard.progress(step, total_steps=1000, loss=1.0 / step)\n"
           "    time.sleep(0.2)\n")


def test_in_cluster_controller_from_the_shipyard_image_takes_over(
        real_cluster, request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Last: stops the subprocess controller. `shipyard install` deploys two replicas
    from the cluster's own image onto a real node; they reach the API server through
    `kubernetes.default`; one holds the Lease and runs the next experiments, and
    receives the progress their ranks report (--progress-port: a Service in front)."""
    from shipyard.controller.views import parse_time
    from shipyard.dev import images
    from shipyard.kube.install import CONTROLLER, SYSTEM_NAMESPACE

    if _in_cluster_token_dropped(real_cluster, tmp_path, monkeypatch):
        print("SKIP in-cluster controller: load_connection drops the token", file=sys.stderr)
        pytest.skip("shipyard.kube.client.load_connection(in_cluster=True) drops the service-"
                    "account token (the kubernetes client keeps it in api_key['BearerToken']), "
                    "so an in-cluster controller calls the API server as system:anonymous")
    out, _ = _cli(real_cluster, "install", "-c", real_cluster.context, "--replicas", "2",
                  "--progress-port", "8088").communicate(timeout=120)
    assert "installed shipyard" in out, out
    stop_controller(HARNESS["controller"])
    api = real_cluster.raw_client()
    path = f"/apis/apps/v1/namespaces/{SYSTEM_NAMESPACE}/deployments/{CONTROLLER}"
    deadline = time.monotonic() + 180
    while (api.get_json(path).get("status") or {}).get("readyReplicas") != 2:
        assert time.monotonic() < deadline, api.get_json(path).get("status")
        time.sleep(1)
    pods = api.get_json(f"/api/v1/namespaces/{SYSTEM_NAMESPACE}/pods")["items"]
    names = {p["metadata"]["name"] for p in pods}
    assert {p["spec"]["nodeName"] for p in pods} <= {"real-cpu-small-00000",
                                                      "real-cpu-small-00001"}
    lease = f"/apis/coordination.k8s.io/v1/namespaces/{SYSTEM_NAMESPACE}/leases/{CONTROLLER}"
    while api.get_json(lease)["spec"].get("holderIdentity") not in names:
        assert time.monotonic() < deadline, api.get_json(lease)["spec"]
        time.sleep(1)
    with experiment_namespace(real_cluster, request.node.name) as a:
        a.launch(sleeper("incluster", script="print('ran')"))
        # Ranks of the shipyard image call shipyard.progress; their reports reach the
        # leader's receiver through the Service (a standby answers 503: they reconnect).
        a.launch(for_real(sleeper("reports", script=REPORTS), image=images.shipyard_image_name(),
                          env={"SHIPYARD_PROGRESS_INTERVAL": "0.5"}))
        status = a.wait("incluster", lambda s: s.get("phase") in ("Succeeded", "Failed"),
                        timeout=120)
        assert status["phase"] == "Succeeded", status
        status = a.wait("reports", lambda s: bool((s.get("progress") or {}).get("eta"))
                        or s.get("phase") in ("Succeeded", "Failed"), timeout=120)
        progress = status.get("progress") or {}
        assert status["phase"] == "Running" and progress.get("eta"), (status, rank_logs(a, "reports"))
        assert progress["totalSteps"] == 1000 and 0 < progress["step"] < 1000, progress
        assert 0 < progress["percent"] < 100 and progress["stepsPerSecond"] > 0, progress
        # The ETA is when the furthest rank's rate reaches the last step: after now.
        assert parse_time(progress["eta"]) > parse_time(progress["updatedAt"]), progress
        assert 0 < progress["metrics"]["loss"] <= 1, progress


def test_in_cluster_controller_from_the_helm_chart_schedules_experiments(
        real_cluster, request, tmp_path: Path) -> None:
    """Last (after the image test, or alone): `helm install` of charts/shipyard with the
    values that place `shipyard install`'s controller on this cluster (its image, a real
    node) takes its objects over; its pods (logLevel=debug: a new pod template, so they
    are the chart's, not the ones before) hold the Lease and run the next experiment."""
    import yaml

    from shipyard.kube.install import CONTROLLER, SYSTEM_NAMESPACE

    stop_controller(HARNESS["controller"])  # only the chart's controller may act
    helm = (build.cached_tool_binaries() or {}).get("helm") or (
        build.build_tools(log=lambda m: None) / "helm")
    out, _ = _cli(real_cluster, "install", "-c", real_cluster.context,
                  "--dry-run").communicate(timeout=60)
    dep = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment")
    pod, container = dep["spec"]["template"]["spec"], dep["spec"]["template"]["spec"][
        "containers"][0]
    values = {"image": container["image"], "replicas": 1, "resources": container["resources"],
              "nodeSelector": pod["nodeSelector"], "tolerations": pod["tolerations"],
              "logLevel": "debug"}
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    done = subprocess.run([str(helm), "upgrade", "--install", "shipyard", str(REPO / "charts" /
                           "shipyard"), "--kubeconfig", str(real_cluster.kubeconfig),
                           "--kube-context", real_cluster.context, "--take-ownership",
                           "-f", str(tmp_path / "values.yaml"), "--wait", "--timeout", "180s"],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    api = real_cluster.raw_client()
    path = f"/apis/apps/v1/namespaces/{SYSTEM_NAMESPACE}/deployments/{CONTROLLER}"
    assert api.get_json(path)["metadata"]["annotations"]["meta.helm.sh/release-name"] == "shipyard"
    lease = f"/apis/coordination.k8s.io/v1/namespaces/{SYSTEM_NAMESPACE}/leases/{CONTROLLER}"

    def charts_pods() -> set[str]:
        pods = api.get_json(f"/api/v1/namespaces/{SYSTEM_NAMESPACE}/pods?labelSelector="
                            "app.kubernetes.io%2Fname%3Dshipyard-controller")["items"]
        return {p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")
                and "--verbose" in p["spec"]["containers"][0]["command"]
                and p["spec"]["nodeName"].startswith("real-cpu-small-")}

    deadline = time.monotonic() + 180
    while (holder := api.get_json(lease)["spec"].get("holderIdentity")) not in charts_pods():
        assert time.monotonic() < deadline, (holder, charts_pods())
        time.sleep(1)
    with experiment_namespace(real_cluster, request.node.name) as a:
        a.launch(sleeper("fromchart", script="print('ran')"))
        status = a.wait("fromchart", lambda s: s.get("phase") in ("Succeeded", "Failed"),
                        timeout=120)
        assert status["phase"] == "Succeeded", (status, rank_logs(a, "fromchart"))
        assert logs(a, "fromchart-worker-0").strip() == "ran"
