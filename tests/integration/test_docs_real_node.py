"""Every command block of docs/cluster.md and docs/devcluster.md, run as written.

The kwok blocks run in order, one file after the other, through bash (`set -ex`) with
the dev clusters' state and the kubeconfig in a folder of this test's own, so `dev up`
without a name, or `dev down --all`, touch no one else's cluster. A block marked
`<!-- docs-test: skip REASON -->` is reported skipped with its reason. The blocks
on real nodes (devcluster.md's "Real nodes", cluster.md's "Run it for real": real
clusters use machine-wide names) have tests of their own below, with the cluster
name made unique to this session; after their `dev down`, nothing of the cluster may
be left on the machine (processes, cgroups, mounts, paths, namespace).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shipyard.dev import cluster as devcluster
from shipyard.dev import netns, realnode
from tests.integration.leftovers import leftovers

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "devcluster.md"
DOCS = (REPO / "docs" / "cluster.md", DOC)
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s+(.+?)\s*-->")
FENCE = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
# What a block's output must show besides its exit status, by its first command.
EXPECT = {
    "shipyard dev up --name demo": ["ddp"],  # kubectl get experiments lists it
    "shipyard dev up --name helm-demo": ["STATUS: deployed"],
    "shipyard dev build": ["stopped default", "stopped b"],
}


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    script: str
    skip: str | None

    @property
    def first(self) -> str:
        return next(ln.split("#", 1)[0].strip() for ln in self.script.splitlines()
                    if ln.split("#", 1)[0].strip())


def command_blocks(path: Path) -> list[Block]:
    text = path.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip().rsplit("\n", 1)[-1]
        marker = SKIP.search(before)
        blocks.append(Block(path.name, text.count("\n", 0, match.start()) + 1, match.group(1),
                            marker.group(1) if marker else None))
    return blocks


BLOCKS = [b for doc in DOCS for b in command_blocks(doc)]


@pytest.fixture(scope="module")
def docs_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    """An environment of its own for the docs' clusters; every one of them down after."""
    from shipyard.dev import build

    root = tmp_path_factory.mktemp("docs")
    build.build(log=lambda m: None)  # no-ops when cached, as `shipyard dev build` is
    helm_dir = build.build_tools(log=lambda m: None)
    kubectl_dir = build.build_kubectl(log=lambda m: None)
    # `shipyard` is this checkout's; kubectl and helm the ones `shipyard dev build` made,
    # first on PATH: a fresh machine has no kubectl of its own.
    path = [str(Path(sys.executable).parent), str(kubectl_dir), str(helm_dir)]
    env = {**os.environ, "SHIPYARD_DEV_STATE_DIR": str(root / "state"),
           "KUBECONFIG": str(root / "kubeconfig"), "SHIPYARD_HOME": str(root / "home"),
           "PATH": os.pathsep.join([*path, os.environ.get("PATH", "")]), "COLUMNS": "200"}
    assert shutil.which("kubectl", path=env["PATH"]) == str(kubectl_dir / "kubectl")
    try:
        yield env
    finally:
        subprocess.run([sys.executable, "-m", "shipyard.cli", "dev", "down", "--all"], env=env,
                       capture_output=True, timeout=300, cwd=REPO)


@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b.doc}:{b.line}" for b in BLOCKS])
def test_command_block_runs_as_written(block: Block, docs_env: dict[str, str]) -> None:
    if block.skip:
        print(f"SKIP {block.doc} line {block.line}: {block.skip}", file=sys.stderr)
        pytest.skip(f"{block.doc} line {block.line}: {block.skip}")
    # Its own session: what the block starts in the background (`... &`) is stopped after
    # bash ends (it holds the output open: a file, not a pipe, is read).
    log = Path(docs_env["SHIPYARD_DEV_STATE_DIR"]).parent / f"{block.doc}-{block.line}.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(["bash", "-ex", "-o", "pipefail", "-c", block.script], cwd=REPO,
                                env=docs_env, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=600)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    out = log.read_text(errors="replace")
    assert proc.returncode == 0, f"{block.doc} line {block.line} failed:\n{out[-4000:]}"
    for want in next((v for k, v in EXPECT.items() if block.first.startswith(k)), []):
        assert want in out, f"{block.doc} line {block.line}: no {want!r} in:\n{out[-4000:]}"


def test_every_block_is_run_or_says_why_not() -> None:
    assert len(BLOCKS) >= 4
    for b in BLOCKS:
        assert b.skip is None or len(b.skip) > 10, f"{b.doc} line {b.line}: say why it is skipped"


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
        assert leftovers(c) == []
    finally:
        devcluster.down(name)


def section_block(doc: Path, heading: str) -> str:
    """The first bash block of the section `heading` of `doc`."""
    section = doc.read_text().split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    block = FENCE.search(section)
    assert block, f"{doc.name}: the section {heading!r} lost its command block"
    return block.group(1)


def test_run_it_for_real_block_runs_as_written(docs_env: dict[str, str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """cluster.md's "Run it for real" as a new user types it: the example launched from
    its spec file, its code shipped, run by the in-cluster controller on real nodes."""
    why = netns.unavailable_reason()
    if why:
        print(f"SKIP docs run-it-for-real block: {why}", file=sys.stderr)
        pytest.skip(f"real node cannot start here: {why}")
    name = f"pytest-{os.getpid()}-rdemo"
    lines = section_block(DOCS[0], "## Run it for real").replace("real-demo", name).splitlines()
    assert lines[-1].startswith(f"shipyard dev down --name {name}"), lines
    monkeypatch.setenv("SHIPYARD_DEV_STATE_DIR", docs_env["SHIPYARD_DEV_STATE_DIR"])
    log = Path(docs_env["SHIPYARD_DEV_STATE_DIR"]).parent / "run-it-for-real.log"
    c = None
    try:
        # All but the `dev down`, then the cluster as it runs, then the `dev down`.
        for script in ("\n".join(lines[:-1]), lines[-1]):
            if c is None and script == lines[-1]:
                c = devcluster.DevCluster.load(name)
                # What the check below must then find gone is there while it runs.
                running = {what.split()[0] for what in leftovers(c)}
                assert {"process", "cgroup", "mount", "path"} <= running, running
            with log.open("a") as handle:
                proc = subprocess.run(["bash", "-ex", "-o", "pipefail", "-c", script], cwd=REPO,
                                      env=docs_env, stdout=handle, stderr=subprocess.STDOUT,
                                      timeout=1200, start_new_session=True)
            out = log.read_text(errors="replace")
            assert proc.returncode == 0, f"cluster.md, Run it for real, failed:\n{out[-6000:]}"
        for rank in range(4):
            assert f"[worker-{rank}] rank {rank}: allreduce OK" in out, out[-6000:]
        assert "rendezvous at allreduce-worker-0.allreduce:" in out, out[-6000:]
        assert "Succeeded" in out, out[-6000:]
        assert c is not None and len(c.real_nodes) == 2
        assert leftovers(c) == []
    finally:
        subprocess.run([sys.executable, "-m", "shipyard.cli", "dev", "down", "--name", name],
                       env=docs_env, capture_output=True, timeout=300, cwd=REPO)
