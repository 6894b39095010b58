"""PyTorch DDP on two 8-GPU A100 machines: 16 processes, launched by torchrun.

    shipyard render examples/ddp/experiment.py          # the pods, with PET_* for torchrun
    shipyard launch examples/ddp/experiment.py          # needs 16 GPUs on this machine

torchrun takes --nnodes, --nproc-per-node, --node-rank, --master-addr and
--master-port from the PET_* variables shipyard sets on every pod.

train.py checkpoints to SHIPYARD_CHECKPOINT_DIR (here the PersistentVolumeClaim
ddp-checkpoints, mounted at /ckpt in every replica, the same on every attempt and after
a move) and resumes from it after a restart or a preemption; `launch -c` ships this
folder (train.py and checkpointing.py) with it. Locally the checkpoint folder is the run's own.
"""

from shipyard import Experiment, RetryPolicy, Role

experiment = Experiment(
    name="ddp",
    queue="research",
    roles=[
        Role(
            name="trainer",
            replicas=2,
            machine_type="gpu-a100",
            procs_per_replica=8,
            image="pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
            command=["torchrun", "train.py"],
            env={"TRAIN_STEPS": "200"},
        )
    ],
    retry=RetryPolicy(max_restarts=3, backoff_seconds=30),
    time_limit="2h",
    volumes=[{"name": "ckpt", "pvc": "ddp-checkpoints"}],
    checkpoint={"volume": "ckpt", "path": "/ckpt"},
    stop_grace_seconds=60,  # SIGTERM, then a minute before SIGKILL (a save in progress ends)
)
