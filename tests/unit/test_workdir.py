"""Code shipping: which files are packed, the archive, its size limit, and the pod parts
that unpack it; the runtime parts every pod gets (grace, stop reason, checkpoint)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.kube import workdir
from shipyard.render import render_pod, runtime
from shipyard.spec import Experiment

EXP = {"name": "ship", "roles": [{"name": "w", "machine_type": "cpu-small", "command": "python t.py"}]}


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def unpack(archive: bytes, dest: Path, script: bool = False) -> None:
    """What the init container runs: the same script (`script`) with this machine's
    Python, or the same tarfile call in this process (fast, for many examples)."""
    src = dest.parent / "a.tar.gz"
    src.write_bytes(archive)
    if script:
        subprocess.run([sys.executable, "-c", runtime.UNPACK, str(src), str(dest)], check=True)
        return
    with tarfile.open(src) as tar:
        tar.extractall(dest, filter="data")


def test_gitignore_and_shipyardignore_in_every_folder(tmp_path):
    write(tmp_path, {
        "train.py": "", "notes.log": "", "keep.log": "", "data/big.bin": "", ".git/HEAD": "",
        ".gitignore": "*.log\n!keep.log\ndata/\n",
        "pkg/__init__.py": "", "pkg/secret.txt": "", "pkg/cache/x": "", "pkg/deep/secret.txt": "",
        "pkg/.shipyardignore": "secret.txt\ncache/\n",
        "pkg/deep/.gitignore": "!secret.txt\n",  # a deeper file may take an ignore back
        "other/secret.txt": "",  # pkg's rules stay in pkg
    })
    os.symlink("train.py", tmp_path / "inside.py")
    os.symlink("/etc/hostname", tmp_path / "outside")
    assert workdir.shipped_files(tmp_path) == [
        ".gitignore", "inside.py", "keep.log", "other/secret.txt", "pkg/.shipyardignore",
        "pkg/__init__.py", "pkg/deep/.gitignore", "pkg/deep/secret.txt", "train.py",
    ]


names = st.text(alphabet="abcdefgh_.-", min_size=1, max_size=8).filter(lambda n: n not in (".", ".."))
trees = st.dictionaries(
    st.lists(names, min_size=1, max_size=3).map("/".join).filter(lambda p: not p.startswith(".git")),
    st.text(max_size=200), max_size=12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=trees, executable=st.booleans())
def test_the_archive_is_reproducible_and_unpacks_to_the_shipped_files(tmp_path_factory, files,
                                                                     executable):
    root = tmp_path_factory.mktemp("src")
    # A name cannot be both a file and a folder: keep the first of each clash.
    kept: dict[str, str] = {}
    for rel, text in files.items():
        parts = rel.split("/")
        prefixes = {"/".join(parts[:i]) for i in range(1, len(parts))}
        if rel in {p for k in kept for p in _prefixes(k)} or prefixes & set(kept):
            continue
        kept[rel] = text
    write(root, kept)
    if kept and executable:
        (root / sorted(kept)[0]).chmod(0o755)
    first, second = workdir.pack(root), workdir.pack(root)
    assert first.archive == second.archive
    dest = tmp_path_factory.mktemp("dst") / "out"
    unpack(first.archive, dest)
    got = {str(p.relative_to(dest)): p.read_text() for p in dest.rglob("*") if p.is_file()}
    expected = {rel: (root / rel).read_text() for rel in workdir.shipped_files(root)}
    assert got == expected
    for rel in expected:
        assert os.access(dest / rel, os.X_OK) == os.access(root / rel, os.X_OK)


def _prefixes(rel: str) -> set[str]:
    parts = rel.split("/")
    return {"/".join(parts[:i]) for i in range(1, len(parts))}


def test_the_init_containers_script_unpacks_the_archive(tmp_path):
    write(tmp_path / "src", {"run.py": "print(1)", "pkg/m.py": "X = 1"})
    unpack(workdir.pack(tmp_path / "src").archive, tmp_path / "out", script=True)
    assert (tmp_path / "out" / "pkg" / "m.py").read_text() == "X = 1"
    assert (tmp_path / "out" / "run.py").read_text() == "print(1)"


def test_a_workdir_larger_than_a_configmap_is_one_clear_error(tmp_path):
    (tmp_path / "weights.bin").write_bytes(os.urandom(workdir.CONFIGMAP_LIMIT + 1000))
    with pytest.raises(workdir.WorkdirTooLarge) as info:
        workdir.pack(tmp_path)
    message = str(info.value)
    assert "more than the 1,048,576 bytes a ConfigMap holds" in message
    assert "stopped at file 1, weights.bin" in message
    assert "image" in message and "volume" in message and ".shipyardignore" in message
    # Ignoring it makes it fit.
    (tmp_path / ".shipyardignore").write_text("*.bin\n")
    workdir.pack(tmp_path)


def test_packing_stops_at_the_first_file_past_the_limit_and_never_reads_the_rest(tmp_path):
    # Four incompressible halves of the limit: the archive passes it inside the third
    # file; the fourth is never opened.
    for i in range(4):
        (tmp_path / f"shard-{i}.bin").write_bytes(os.urandom(workdir.CONFIGMAP_LIMIT // 2))
    with pytest.raises(workdir.WorkdirTooLarge) as info:
        workdir.pack(tmp_path)
    assert "stopped at file 3, shard-2.bin" in str(info.value)


def test_a_dataset_too_big_to_ever_fit_is_refused_from_its_size_unread(tmp_path):
    """A sparse file of 1 TiB: reading it would take hours and compressing it in memory
    would need more than the machine has; its size alone refuses it."""
    (tmp_path / "train.py").write_text("print(1)\n")
    with open(tmp_path / "zz-dataset.bin", "wb") as handle:
        handle.truncate(1 << 40)
    with pytest.raises(workdir.WorkdirTooLarge) as info:
        workdir.pack(tmp_path)
    message = str(info.value)
    assert f"more than {workdir.RAW_LIMIT:,} bytes before compression" in message
    assert f"{(1 << 40) + len('print(1)') + 1:,} with zz-dataset.bin" in message
    assert "stopped at file 2, zz-dataset.bin" in message
    assert "1,048,576 bytes a ConfigMap holds" in message and "volume" in message


def test_the_size_of_the_whole_archive_is_checked_at_the_end(tmp_path):
    # A limit below a small archive's size: refused with the exact size.
    write(tmp_path, {"t.py": "print(1)\n"})
    size = len(workdir.pack(tmp_path).archive) + len(runtime.ARCHIVE_KEY)
    with pytest.raises(workdir.WorkdirTooLarge, match=f"pack to {size:,} bytes, more than the "
                       f"{size - 1:,} bytes"):
        workdir.pack(tmp_path, limit=size - 1)


def test_a_missing_workdir_is_an_error_naming_it(tmp_path):
    with pytest.raises(workdir.WorkdirError, match="no such folder"):
        workdir.pack(tmp_path / "nope")


def test_workdir_defaults_to_the_spec_files_folder(tmp_path):
    spec = tmp_path / "exp" / "experiment.py"
    spec.parent.mkdir()
    (spec.parent / "code").mkdir()
    exp = Experiment.model_validate(EXP)
    assert workdir.resolve_workdir(exp, spec).workdir == str(spec.parent.resolve())
    relative = Experiment.model_validate({**EXP, "workdir": "code"})
    assert workdir.resolve_workdir(relative, spec).workdir == str(spec.parent.resolve() / "code")
    off = Experiment.model_validate({**EXP, "workdir": False})
    assert workdir.resolve_workdir(off, spec).workdir is False
    assert workdir.resolve_workdir(exp, None).workdir is None


def test_the_configmap_holds_the_archive(tmp_path):
    write(tmp_path, {"t.py": "print(1)"})
    exp = Experiment.model_validate({**EXP, "workdir": str(tmp_path)})
    packed = workdir.pack(tmp_path)
    cm = workdir.configmap(exp, packed)
    assert cm["metadata"]["name"] == runtime.workdir_configmap_name(exp) == "ship-workdir"
    assert base64.b64decode(cm["binaryData"][runtime.ARCHIVE_KEY]) == packed.archive
    owner = {"apiVersion": "shipyard.dev/v1alpha1", "kind": "Experiment",
             "metadata": {"name": "ship", "uid": "u-1"}}
    ref = workdir.owner_patch(owner)["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"]) == ("Experiment", "ship", "u-1")


def test_a_shipped_workdir_is_unpacked_by_an_init_container_into_the_pods_cwd():
    exp = Experiment.model_validate({**EXP, "workdir": "/src/project"})
    exp = exp.model_copy(update={"roles": [exp.roles[0].model_copy(update={"working_dir": "sub"})]})
    pod = render_pod(exp, exp.roles[0], 0)
    spec = pod["spec"]
    (init,) = spec["initContainers"]
    container = spec["containers"][0]
    assert init["image"] == container["image"]
    assert init["resources"] == container["resources"]  # asks for no more than the role
    assert init["command"][-2:] == [f"{runtime.CODE_MOUNT}/{runtime.ARCHIVE_KEY}", runtime.WORKDIR]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[runtime.VOLUME_CODE]["configMap"]["name"] == "ship-workdir"
    assert container["workingDir"] == f"{runtime.WORKDIR}/sub"
    assert {"name": runtime.VOLUME_WORKDIR, "mountPath": runtime.WORKDIR} in container["volumeMounts"]
    unshipped = Experiment.model_validate({**EXP, "workdir": False})
    assert "initContainers" not in render_pod(unshipped, unshipped.roles[0], 0)["spec"]


def test_every_pod_stops_with_sigterm_a_grace_period_and_a_readable_reason():
    exp = Experiment.model_validate({**EXP, "stop_grace_seconds": 90})
    spec = render_pod(exp, exp.roles[0], 0)["spec"]
    assert spec["terminationGracePeriodSeconds"] == 90
    assert spec["shareProcessNamespace"] is True  # the command is not PID 1
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["SHIPYARD_STOP_REASON"] == runtime.STOP_REASON_FILE
    podinfo = next(v for v in spec["volumes"] if v["name"] == runtime.VOLUME_PODINFO)
    (item,) = podinfo["downwardAPI"]["items"]
    assert item["fieldRef"]["fieldPath"] == f"metadata.annotations['{runtime.ANNOTATION_STOP_REASON}']"
    assert Experiment.model_validate(EXP).stop_grace_seconds == 30  # Kubernetes' own default


@pytest.mark.skipif("volumes" not in Experiment.model_fields,
                    reason="needs the experiment's volumes field (issue #10, storage)")
def test_the_checkpoint_volume_is_mounted_at_its_path_in_every_replica():
    exp = Experiment.model_validate({
        **EXP, "volumes": [{"name": "ckpt", "pvc": "team-ckpt"}],
        "checkpoint": {"volume": "ckpt", "path": "/ckpt/run"}})
    spec = render_pod(exp, exp.roles[0], 0)["spec"]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["SHIPYARD_CHECKPOINT_DIR"] == "/ckpt/run"
    assert {"name": "ckpt", "mountPath": "/ckpt/run"} in spec["containers"][0]["volumeMounts"]
    assert any(v["name"] == "ckpt" for v in spec["volumes"])


def test_a_checkpoint_on_an_unknown_volume_is_refused_naming_the_field():
    from shipyard.spec import SpecError, experiment_from_data

    with pytest.raises(SpecError, match=r"checkpoint\.volume: no volume named 'nope'"):
        experiment_from_data({**EXP, "checkpoint": {"volume": "nope"}})
