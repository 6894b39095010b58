"""Pure parts of real dev nodes: what is built, how nodes are planned and configured."""

from __future__ import annotations

from pathlib import Path

from shipyard.dev import build, netns, realnode
from shipyard.dev.pools import parse_pool_arg
from shipyard.render.objects import render_pod
from shipyard.spec import Experiment
from shipyard.spec.machines import DEFAULT_MACHINE_TYPES


def test_node_binaries_share_the_kubernetes_wrapper_and_coredns_has_its_own() -> None:
    v = build.Versions()
    node = {t.name: t for t in build.node_targets(v)}
    assert set(node) == {"kubernetes-node", "coredns"}
    assert set(node["kubernetes-node"].packages) == {"kubelet", "kube-proxy"}
    assert node["coredns"].upstream == "github.com/coredns/coredns"
    cp = {t.name: t for t in build.targets(v)}
    # One tools.go pins both sets, so neither build drops the other's commands.
    assert set(cp["kubernetes"].tools) == set(node["kubernetes-node"].tools) >= {
        "k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes/cmd/kube-apiserver"}
    assert v.key() != v.node_key()
    tools = (Path(build.find_controlplane_dir()) / "kubernetes" / "tools.go").read_text()
    assert '"k8s.io/kubernetes/cmd/kubelet"' in tools


def test_kubectl_is_built_from_the_kubernetes_wrapper_into_a_directory_of_its_own() -> None:
    v = build.Versions()
    (kubectl,) = build.kubectl_targets(v)
    assert kubectl.packages == {"kubectl": "k8s.io/kubernetes/cmd/kubectl"}
    cp = {t.name: t for t in build.targets(v)}
    assert set(kubectl.tools) == set(cp["kubernetes"].tools)  # the shared tools.go
    # Its own cache key: adding it never invalidates a cached control-plane or node build.
    assert len({v.key(), v.node_key(), v.tools_key(), v.kubectl_key()}) == 4
    assert build.kubectl_bin_dir(v).name == v.kubectl_key()
    tools = (Path(build.find_controlplane_dir()) / "kubernetes" / "tools.go").read_text()
    assert '"k8s.io/kubernetes/cmd/kubectl"' in tools


def test_real_nodes_are_labelled_tainted_and_real_work_selects_them(tmp_path: Path) -> None:
    spec = parse_pool_arg("real-a=cpu-small:2")
    nodes = realnode.plan("c", tmp_path, netns.Netns("shipyard-c"), [spec])
    assert [n.name for n in nodes] == ["real-a-00000", "real-a-00001"]
    assert [n.ip for n in nodes] == ["10.250.0.1", "10.250.0.2"]
    assert nodes[0].labels[realnode.LABEL_NODE_KIND] == "real"
    assert nodes[0].labels["node.kubernetes.io/instance-type"] == "cpu-small"
    assert nodes[0].taints == [realnode.REAL_TAINT.model_dump()]
    mt = realnode.real_machine_type(DEFAULT_MACHINE_TYPES["cpu-small"])
    exp = Experiment.model_validate({
        "name": "x", "machine_types": [mt.model_dump(mode="json")],
        "roles": [{"name": "w", "replicas": 1, "machine_type": "cpu-small", "command": ["true"]}]})
    pod = render_pod(exp, exp.roles[0], 0)
    assert pod["spec"]["nodeSelector"][realnode.LABEL_NODE_KIND] == "real"
    assert {"key": realnode.LABEL_NODE_KIND, "operator": "Equal", "value": "real",
            "effect": "NoSchedule"} in pod["spec"]["tolerations"]


def test_kubelet_and_containerd_configs_carry_the_study_fixes(tmp_path: Path) -> None:
    node = realnode.plan("c", tmp_path, netns.Netns("shipyard-c"),
                         [parse_pool_arg("cpu-small:1")])[0]
    kc = realnode.kubelet_config(node, tmp_path / "ca.crt", node.ip)
    assert kc["failCgroupV1"] is False and kc["cgroupDriver"] == "cgroupfs"
    assert kc["cgroupRoot"].startswith("/shipyard-")
    assert kc["clusterDNS"] == [node.ip]
    assert kc["podLogsDir"].startswith(str(tmp_path))
    toml = realnode.containerd_config(node, "localhost/p:1")
    assert "restrict_oom_score_adj = true" in toml
    assert "netns_mounts_under_state_dir = true" in toml
    assert len(node.sock) < 100  # a unix socket path must fit in 108 bytes


def test_the_real_node_example_is_the_allreduce_example_with_the_real_machine_type() -> None:
    """examples/allreduce/real-node.yaml (docs/cluster.md, "Run it for real") differs from
    experiment.py only in that its cpu-small is the real nodes' (label and taint)."""
    from shipyard.spec import load_experiment

    examples = Path(__file__).resolve().parents[2] / "examples" / "allreduce"
    real = load_experiment(examples / "real-node.yaml")
    plain = load_experiment(examples / "experiment.py")
    mt = realnode.real_machine_type(DEFAULT_MACHINE_TYPES["cpu-small"])
    assert real.machine_types == [mt]
    assert real.model_copy(update={"machine_types": plain.machine_types}) == plain
    assert real.workdir is None  # launch -c ships the spec's folder, allreduce.py with it
