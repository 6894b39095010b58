"""A small PyTorch DDP training loop: the script a researcher launches on a GPU cluster.

Launched by torchrun (which reads shipyard's PET_* variables) or directly with one
process per replica (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Uses NCCL on GPUs
and gloo on CPUs. At the end every rank checks that the replicas agree exactly:
DDP's all-reduce must have kept the models in sync.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
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

    generator = torch.Generator().manual_seed(1000 + rank)  # different data per rank
    steps = int(os.environ.get("TRAIN_STEPS", "50"))
    for step in range(steps):
        x = torch.randn(64, 32, generator=generator).to(device)
        y = x.sum(dim=1, keepdim=True)
        loss = nn.functional.mse_loss(ddp(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == steps - 1:
            print(f"rank {rank}/{world} step {step} loss {loss.item():.4f}", flush=True)

    # Every rank must hold identical weights after synchronous DDP training.
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    in_sync = all(torch.equal(gathered[0], g) for g in gathered)
    print(f"rank {rank}: replicas in sync: {in_sync}", flush=True)
    dist.destroy_process_group()
    return 0 if in_sync else 1


if __name__ == "__main__":
    raise SystemExit(main())
