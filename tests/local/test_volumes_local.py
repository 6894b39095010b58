"""Volumes on the local backend: a host_path volume is its folder, an empty_dir one a
folder of the run, each found through SHIPYARD_MOUNT_<VOLUME>; what cannot exist here
(a claim, NFS, a Secret, /dev/shm sizes, Secret env, extended resources) is said once."""

from __future__ import annotations

from shipyard.local import launch
from shipyard.local.volumes import ignored
from shipyard.spec import experiment_from_data

# Each rank reads the dataset through its mount and writes its result to scratch.
SCRIPT = (
    "import os, pathlib\n"
    "ds = pathlib.Path(os.environ['SHIPYARD_MOUNT_DS'])\n"
    "out = pathlib.Path(os.environ['SHIPYARD_MOUNT_SCRATCH'])\n"
    "(out / os.environ['RANK']).write_text((ds / 'input.txt').read_text().upper())\n"
    "assert 'SHIPYARD_MOUNT_DATA' not in os.environ\n"
)


def spec(dataset: str, **role: object) -> dict:
    return {
        "name": "vols",
        "volumes": [{"name": "ds", "host_path": dataset}, {"name": "scratch", "empty_dir": {}},
                    {"name": "data", "pvc": "imagenet"}],
        "roles": [{"name": "worker", "replicas": 2, "machine_type": "cpu-small",
                   "resources": {"cpu": "100m", "memory": "64Mi"}, "command": ["python", "-c", SCRIPT],
                   "mounts": [{"volume": "ds", "path": "/datasets", "sub_path": "mnist", "read_only": True},
                              {"volume": "scratch", "path": "/scratch", "sub_path": "out"},
                              {"volume": "data", "path": "/data"}], **role}],
    }


def test_host_path_and_empty_dir_volumes_reach_every_rank(store, tmp_path, capsys):
    (tmp_path / "ds" / "mnist").mkdir(parents=True)
    (tmp_path / "ds" / "mnist" / "input.txt").write_text("digits")
    exp = experiment_from_data(spec(str(tmp_path / "ds"), shm_size="32Mi", env_from=[{"secret": "wandb"}]))
    status = launch(exp, tmp_path / "spec.yaml", store=store)
    assert status.phase == "Succeeded", status.message
    scratch = store.run_dir(status.id) / "volumes" / "scratch" / "out"  # a folder of this run
    assert sorted(p.name for p in scratch.iterdir()) == ["0", "1"]
    assert (scratch / "0").read_text() == "DIGITS"
    warnings = [line for line in capsys.readouterr().err.splitlines() if "ignored on the local backend" in line]
    assert len(warnings) == 3, warnings  # once per launch: the claim, /dev/shm, the Secret's env
    assert any("'data' (PersistentVolumeClaim imagenet)" in w and "SHIPYARD_MOUNT_DATA is not set" in w
               for w in warnings)


def test_ignored_lists_only_what_the_local_backend_cannot_honour(tmp_path):
    exp = experiment_from_data(spec(str(tmp_path)))
    assert [line.split(":")[0] for line in ignored(exp)] == ["volumes"]  # only the claim
    missing = experiment_from_data(spec(str(tmp_path / "nope"), resources={"extra": {"rdma/hca": 1}}))
    lines = ignored(missing)
    assert any("is not a folder on this machine" in line for line in lines)
    assert any("rdma/hca not counted here" in line for line in lines)
