"""`shipyard dashboard`: the web dashboard (imports the web stack only when it runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli.options import ClustersFile
from shipyard.cli.output import console, fail


def dashboard(
    contexts: Annotated[list[str] | None, typer.Option(
        "--cluster", "-c", help="A cluster (its name in the clusters config, or a kubeconfig "
        "context); repeat for several. Left out: every configured cluster.")] = None,
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="Port to serve on.")] = 8765,
    host: Annotated[str, typer.Option("--host", help="Address to bind; anything but loopback "
                                      "needs a token.")] = "127.0.0.1",
    token: Annotated[str | None, typer.Option("--token", help="The token requests must carry "
                                              "(default: generated and printed when --host is "
                                              "not loopback).")] = None,
    local: Annotated[bool, typer.Option("--local/--no-local", help="Show this machine's runs "
                                        "(the local backend).")] = True,
    explain: Annotated[Path | None, typer.Option(
        "--explain", help="A spec file: the clusters page says where `launch --cluster auto` would "
        "put it, and why (a .py spec runs once, here, at start).")] = None,
    clusters_file: ClustersFile = None,
) -> None:
    """Serve a read-only web dashboard of experiments, queues and clusters, updated
    live: this machine's runs and the clusters in clusters.yaml (or those given with
    -c). Binds 127.0.0.1 unless --host says otherwise; on any other address every
    request needs a token (printed with the address).

    Example:  shipyard dashboard -c shipyard-dev --port 8765
    """
    from shipyard.cli.lazy import available

    if not (available("starlette") and available("uvicorn") and available("jinja2")):
        fail("the dashboard needs its extra: pip install 'shipyard[dashboard]'", 2)
    from shipyard.cli.main import _load
    from shipyard.dashboard.server import plan, serve
    from shipyard.spec import SpecError

    exp = _load(explain) if explain is not None else None
    try:
        p = plan(contexts or [], clusters_file, host, port, token, local, exp)
    except (SpecError, FileNotFoundError) as exc:
        fail(str(exc), 2)
    if token and len(token) < 16:
        fail("--token: use at least 16 characters", 2)
    names = ", ".join(["local"] * p.local + [r.name for r in p.refs]) or "nothing"
    console.print(f"shipyard dashboard of {names} at {p.url}", highlight=False, soft_wrap=True)
    serve(p)
