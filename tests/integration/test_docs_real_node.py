"""The "Real nodes" command block of docs/devcluster.md, run as written (the cluster
name made unique to this session)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from shipyard.dev import cluster as devcluster
from shipyard.dev import netns, realnode

DOC = Path(__file__).resolve().parents[2] / "docs" / "devcluster.md"


def real_node_block() -> list[str]:
    text = DOC.read_text()
    section = text.split("## Real nodes", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "docs/devcluster.md: the Real nodes section lost its command block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()
            if line.split("#", 1)[0].strip()]


def test_real_node_block_runs_as_written() -> None:
    why = netns.unavailable_reason()
    if why:
        print(f"SKIP docs real-node block: {why}", file=sys.stderr)
        pytest.skip(f"real node cannot start here: {why}")
    name = f"pytest-{os.getpid()}-docs"
    commands = real_node_block()
    assert commands[0] == "shipyard dev build" and commands[-1].startswith("shipyard dev down")
    try:
        for cmd in commands:
            argv = shlex.split(cmd.replace("--name real", f"--name {name}"))
            assert argv[0] == "shipyard"
            proc = subprocess.run([sys.executable, "-m", "shipyard.cli", *argv[1:],
                                   *(["--no-kubeconfig"] if argv[1:3] == ["dev", "up"] else [])],
                                  capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, f"`{cmd}` failed:\n{proc.stdout}\n{proc.stderr}"
            if argv[1:3] == ["dev", "up"]:
                c = devcluster.DevCluster.load(name)
                assert len(c.real_nodes) == 2
                api = c.raw_client()
                nodes = api.get_json(f"/api/v1/nodes?labelSelector={realnode.LABEL_NODE_KIND}%3Dreal")
                assert sum(realnode.node_ready(n) for n in nodes["items"]) == 2
        assert not netns.Netns(netns.ns_name(name)).exists()
        assert not Path(f"/run/shipyard/{name}").exists()
    finally:
        devcluster.down(name)
