"""A small PyTorch DDP training loop: the script a researcher launches on a GPU cluster.

Launched by torchrun (which reads shipyard's PET_* variables) or directly with one
process per replica (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Uses NCCL on GPUs
and gloo on CPUs. At the end every rank checks that the replicas agree exactly:
DDP's all-reduce must have kept the models in sync.

Checkpoints (checkpointing.py, beside this file): rank 0 saves the model, the optimizer
and the step to $SHIPYARD_CHECKPOINT_DIR every CHECKPOINT_EVERY steps (atomically); a restarted,
preempted or moved run finds it there and resumes from that step, not from 0. Each
step's data is seeded by (rank, step), so a resumed run sees what it would have seen.
On SIGTERM (preemption, cancel, time limit) it prints why, from $SHIPYARD_STOP_REASON.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from checkpointing import checkpoint_path, data_seed, start_step, train, write_atomically  # beside this file
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def main() -> int:
    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)

    torch.manual_seed(0)  # same initial weights on every rank
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1)).to(device)
    ddp = DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05)

    checkpoint = checkpoint_path()
    start, state = start_step(checkpoint, lambda path: torch.load(path, map_location="cpu"))
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    if start:
        print(f"rank {rank}: resumed from step {start} (attempt "
              f"{os.environ.get('SHIPYARD_RESTART_COUNT', '?')})", flush=True)
    steps = int(os.environ.get("TRAIN_STEPS", "50"))
    every = int(os.environ.get("CHECKPOINT_EVERY", "10"))
    step_s = float(os.environ.get("TRAIN_STEP_SECONDS", "0"))  # a slower step, to try a stop

    def one_step(step: int) -> None:
        generator = torch.Generator().manual_seed(data_seed(rank, step))
        x = torch.randn(64, 32, generator=generator).to(device)
        y = x.sum(dim=1, keepdim=True)
        loss = nn.functional.mse_loss(ddp(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == steps - 1:
            print(f"rank {rank}/{world} step {step} loss {loss.item():.4f}", flush=True)
        time.sleep(step_s)

    def save(step: int) -> None:
        saved = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
        write_atomically(checkpoint, lambda tmp: torch.save(saved, tmp))
        print(f"rank 0: checkpoint at step {step}", flush=True)

    train(start, steps, every, rank, one_step, save if checkpoint else None)

    # Every rank must hold identical weights after synchronous DDP training.
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    in_sync = all(torch.equal(gathered[0], g) for g in gathered)
    print(f"rank {rank}: replicas in sync: {in_sync}", flush=True)
    dist.destroy_process_group()
    return 0 if in_sync else 1


def on_sigterm(_signum: int, _frame: object) -> None:
    reason_file = os.environ.get("SHIPYARD_STOP_REASON")
    reason = Path(reason_file).read_text().strip() if reason_file and Path(reason_file).exists() else ""
    print(f"stopping: {reason or 'SIGTERM'}", flush=True)
    sys.exit(143)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)
    raise SystemExit(main())
