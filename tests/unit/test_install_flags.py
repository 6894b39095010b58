"""`shipyard install` passes the controller's monitoring flags to `controller run`."""

from __future__ import annotations

import typer

from shipyard.cli.controller_cmd import run
from shipyard.kube.install import manifests


def _command(**flags: object) -> list[str]:
    objs = manifests(**flags)  # type: ignore[arg-type]
    dep = next(o for o in objs if o["kind"] == "Deployment")
    return dep["spec"]["template"]["spec"]["containers"][0]["command"]


def test_monitoring_flags_reach_the_controller_and_it_knows_them():
    command = _command(metrics_port=9090, quarantine_after=3, quarantine_window=1800.0,
                       preflight_image="reg.example/check:1", preflight_command="nvidia-smi -L",
                       progress_port=8088)
    assert command[5:11] == ["--metrics-port=9090", "--metrics-address=0.0.0.0", "--quarantine-after=3",
                             "--quarantine-window=1800", "--preflight-image=reg.example/check:1",
                             "--preflight-command=nvidia-smi -L"]
    app = typer.Typer()
    app.command()(run)
    known = {opt for p in typer.main.get_command(app).params for opt in p.opts}
    assert {arg.split("=", 1)[0] for arg in command[3:]} <= known


def test_defaults_pass_nothing_more():
    assert _command() == ["shipyard", "controller", "run", "--in-cluster", "--leader-elect"]
