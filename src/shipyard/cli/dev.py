"""`shipyard dev`: a real local Kubernetes control plane with simulated (kwok) nodes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shipyard.dev import build as devbuild
from shipyard.dev import cluster as devcluster
from shipyard.dev import pools as devpools
from shipyard.dev.images import ImageError
from shipyard.dev.netns import NetnsError
from shipyard.dev.realnode import RealNodeError

app = typer.Typer(
    help="Local Kubernetes control planes (etcd, kube-apiserver, controller-manager, "
    "scheduler) with thousands of kwok-simulated nodes.\n\n"
    "Example: shipyard dev up --pool gpu-a100:2000 --pool cpu:500",
    no_args_is_help=True,
)
console = Console(stderr=True)


def _fail(msg: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(msg)}")
    return typer.Exit(1)


@app.command("build")
def build_cmd(
    force: Annotated[bool, typer.Option(help="Rebuild even when the cache has the binaries.")]
    = False,
    node: Annotated[bool, typer.Option(
        help="Also kubelet, kube-proxy, CoreDNS (real nodes), helm, prometheus and promtool.")]
    = True,
) -> None:
    """Build (or reuse) etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
    kwok and kubectl (and kubelet, kube-proxy, CoreDNS for real nodes, helm for the chart's tests,
    prometheus and promtool for the monitoring tests) from the Go module proxy into
    ~/.cache/shipyard/bin/<versions>/.

    Example: shipyard dev build
    """
    t0 = time.monotonic()
    with console.status("building control-plane binaries") as st:
        def log(msg: str) -> None:
            st.update(f"[{time.monotonic() - t0:5.0f}s] {msg[:110]}")
            if msg.startswith(("built", "cached")):
                console.print(msg)
        try:
            out = devbuild.build(force=force, log=log)
            devbuild.build_kubectl(force=force, log=log)
            if node:
                devbuild.build_node(force=force, log=log)
                devbuild.build_tools(force=force, log=log)
                devbuild.build_monitoring(force=force, log=log)
        except devbuild.BuildError as e:
            raise _fail(str(e)) from e
    typer.echo(out)


@app.command("up")
def up_cmd(
    name: Annotated[str, typer.Option("--name", "-n", help="Cluster name.")] = "default",
    pool: Annotated[list[str] | None, typer.Option(
        help="Node pool MACHINE_TYPE:COUNT or NAME=MACHINE_TYPE:COUNT; repeatable.")] = None,
    real_pool: Annotated[list[str] | None, typer.Option(
        help="Real nodes (kubelet + containerd in the cluster's network namespace) "
        "MACHINE_TYPE:COUNT or NAME=MACHINE_TYPE:COUNT; needs root. Repeatable.")] = None,
    pools_file: Annotated[Path | None, typer.Option(
        "--pools-file", exists=True, dir_okay=False, help="YAML file with a `pools:` list.")]
    = None,
    apiserver_port: Annotated[int | None, typer.Option(
        help="Fixed API server port (default: a free one).")] = None,
    no_kubeconfig: Annotated[bool, typer.Option(
        "--no-kubeconfig", help="Do not merge the context into ~/.kube/config.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for nodes to be Ready.")]
    = 900,
    feature_gates: Annotated[str | None, typer.Option(
        help="Kubernetes feature gates NAME=true|false,... for the API server, controller-manager "
        "and scheduler (alpha API groups they need are served too), e.g. "
        "GenericWorkload=true,GangScheduling=true for kube-scheduler's native gang scheduling.")]
    = None,
) -> None:
    """Start a named cluster on 127.0.0.1 (or add pools to a running one) and wait for it.

    Example: shipyard dev up --name a --pool gpu-a100:2000 --pool cpu:500
    """
    try:
        gates = None if feature_gates is None else devcluster.parse_feature_gates(feature_gates)
        specs = [devpools.parse_pool_arg(p) for p in pool or []]
        if pools_file is not None:
            specs += devpools.load_pools_file(pools_file)
        real_specs = [_real_pool(p) for p in real_pool or []]
    except ValueError as e:
        raise _fail(str(e)) from e
    t0 = time.monotonic()
    with console.status(f"starting cluster {name}") as st:
        def progress(msg: str) -> None:
            st.update(f"[{time.monotonic() - t0:5.1f}s] {name}: {msg}")
        try:
            c = devcluster.up(name, pool_specs=specs, real_specs=real_specs, progress=progress,
                              merge_kubeconfig=not no_kubeconfig,
                              apiserver_port=apiserver_port, nodes_timeout=timeout,
                              feature_gates=gates)
        except (devcluster.DevClusterError, devbuild.BuildError, RealNodeError, ImageError,
                NetnsError) as e:
            raise _fail(str(e)) from e
    console.print(f"cluster [bold]{name}[/bold] ready in {time.monotonic() - t0:.1f}s: "
                  f"{c.server}, context {c.context}")
    typer.echo(f"export KUBECONFIG={c.kubeconfig}")


@app.command("down")
def down_cmd(
    name: Annotated[str, typer.Option("--name", "-n", help="Cluster name.")] = "default",
    all_: Annotated[bool, typer.Option("--all", help="Stop every dev cluster.")] = False,
    keep_state: Annotated[bool, typer.Option(help="Keep certs, logs and etcd data.")] = False,
) -> None:
    """Stop a cluster's processes and remove its state and kubeconfig context.

    Example: shipyard dev down --name a
    """
    names = [c.name for c in devcluster.list_clusters()] if all_ else [name]
    for n in names:
        if devcluster.down(n, keep_state=keep_state):
            console.print(f"stopped {n}")
        elif not all_:
            raise _fail(f"no dev cluster named {n!r}; `shipyard dev list` shows them")


@app.command("list")
def list_cmd() -> None:
    """List dev clusters with their API server and which components are alive.

    Example: shipyard dev list
    """
    t = Table("name", "server", "context", "components", "kubeconfig")
    for c in devcluster.list_clusters():
        st = c.component_status()
        alive = sum(st.values())
        comps = "all running" if alive == len(st) else ", ".join(
            f"{k}:{'up' if v else 'DOWN'}" for k, v in st.items())
        t.add_row(c.name, c.server, c.context, comps, str(c.kubeconfig))
    Console().print(t)


@app.command("node-notready")
def node_notready_cmd(
    node: Annotated[str, typer.Argument(help="Node name.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Cluster name.")] = "default",
    message: Annotated[str, typer.Option(help="Condition message.")] = "made NotReady",
    recover: Annotated[bool, typer.Option("--recover", help="Make it Ready again.")] = False,
) -> None:
    """Turn a simulated node's Ready condition False (or back to True with --recover).

    Example: shipyard dev node-notready gpu-a100-00003 --name a
    """
    c = _load(name)
    if recover:
        c.set_node_ready(node)
    else:
        c.set_node_not_ready(node, message)


@app.command("node-unhealthy")
def node_unhealthy_cmd(
    node: Annotated[str, typer.Argument(help="Node name.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Cluster name.")] = "default",
    reason: Annotated[str, typer.Option(help="Why (a label value: letters, digits, -_.).")]
    = "gpu-xid-79",
    recover: Annotated[bool, typer.Option("--recover", help="Remove the mark.")] = False,
) -> None:
    """Mark a node unhealthy as a GPU health agent would (taint shipyard.dev/unhealthy):
    the controller restarts the gangs on it elsewhere and places nothing new there.

    Example: shipyard dev node-unhealthy gpu-a100-00003 --name a --reason gpu-xid-79
    """
    _load(name).set_node_unhealthy(node, None if recover else reason)


@app.command("node-delete")
def node_delete_cmd(
    node: Annotated[str, typer.Argument(help="Node name.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Cluster name.")] = "default",
) -> None:
    """Delete a simulated node, as if its machine vanished.

    Example: shipyard dev node-delete gpu-a100-00003 --name a
    """
    _load(name).delete_node(node)


image_app = typer.Typer(help="Local OCI images for real dev nodes (no registry needed).",
                        no_args_is_help=True)
app.add_typer(image_app, name="image")


@image_app.command("build")
def image_build_cmd(
    name: Annotated[str | None, typer.Option(
        "--name", "-n", help="Also import them into this running cluster's real nodes.")] = None,
) -> None:
    """Build (or reuse, cached) the base rootfs (debootstrap), the pause image, the
    runtime image the examples use (python:3.11-slim) and shipyard's own image
    (installed from this checkout); print each archive.

    Example: shipyard dev image build --name demo
    """
    from shipyard.dev import images, netns, realnode

    t0 = time.monotonic()
    with console.status("building images") as st:
        def log(msg: str) -> None:
            st.update(f"[{time.monotonic() - t0:5.0f}s] {msg[:110]}")
        try:
            built = images.build_images(log=log)
            if name is not None:
                c = _load(name)
                if not c.real_nodes or c.netns is None:
                    raise _fail(f"cluster {name!r} has no real nodes (start it with --real-pool)")
                for node in realnode.from_json(c.real_nodes):
                    images.import_images([*netns.Netns(c.netns).prefix(), *node.ctr()], built,
                                         log=log)
        except images.ImageError as e:
            raise _fail(str(e)) from e
    for img in built:
        typer.echo(f"{img.archive}  {' '.join(img.names)}")


def _real_pool(arg: str) -> devpools.PoolSpec:
    """`cpu-small:1` names the pool `real-cpu-small`, apart from kwok's `cpu-small`."""
    spec = devpools.parse_pool_arg(arg)
    if "=" not in arg:
        spec.name = f"real-{spec.name}"
    return spec


def _load(name: str) -> devcluster.DevCluster:
    try:
        return devcluster.DevCluster.load(name)
    except devcluster.DevClusterError as e:
        raise _fail(str(e)) from e


if __name__ == "__main__":
    app()
