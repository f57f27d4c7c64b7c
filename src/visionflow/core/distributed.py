"""Data-parallel processes: torch.distributed as torchrun starts it.

Under `torchrun` (or anything that sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT — torchrun's
c10d rendezvous, SLURM through `srun torchrun ...`) `join()` initialises the default process
group: NCCL when the run's device is CUDA (each process on GPU LOCAL_RANK), gloo on the CPU.
Outside it, everything here is a no-op for a world of one process, so single-process code paths
stay as they are.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

from ..errors import InputError

#: How long a collective may wait for a peer before the process gives up (a dead rank must end the
#: job, not hang it).  Override with VISIONFLOW_DIST_TIMEOUT (seconds).
DEFAULT_TIMEOUT_S = 300


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """Whether torchrun (or an equivalent launcher) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> World:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return World()


def join(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun described (once); returns the world and this rank's
    device (CUDA runs use GPU LOCAL_RANK).  A single process gets World() and `device` back."""
    if not launched():
        return World(), device
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=float(os.environ.get("VISIONFLOW_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend, timeout=timeout, device_id=device if device.type == "cuda" else None,
                                    **_attempt_store(timeout))
        except (RuntimeError, ValueError) as e:
            raise InputError(f"cannot join the torchrun process group ({backend}): {e}") from None
        import atexit

        atexit.register(leave)  # torn down before the interpreter's own teardown, which can abort in C++
    return world(), device


def _attempt_store(timeout: datetime.timedelta) -> dict:
    """Under torchrun's elastic agent: the rendezvous store with this restart attempt's own key
    prefix (store, rank and world size for init_process_group); otherwise nothing (env://).

    After `--max-restarts` restarted the workers, a new rank 1 was seen to read the gloo address
    the previous attempt's rank 0 had published and fail with "connection refused" (torch 2.14,
    CPU): keys under a prefix naming the run and the attempt cannot be confused across attempts.
    """
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None:
        return {}
    import torch.distributed as dist

    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    agent_hosts_it = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), size,
                          is_master=not agent_hosts_it and rank == 0, timeout=timeout, multi_tenant=True)
    prefix = f"visionflow/{os.environ.get('TORCHELASTIC_RUN_ID', 'run')}/attempt-{attempt}/"
    return {"store": dist.PrefixStore(prefix, store), "rank": rank, "world_size": size}


def barrier() -> None:
    if world().active:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum over all processes (in place; a no-op alone)."""
    if world().active:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_value(value: float) -> float:
    """Rank 0's `value` on every process."""
    if not world().active:
        return value
    import torch.distributed as dist

    tensor = torch.tensor([float(value)], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.broadcast(tensor, 0)
    return float(tensor.item())


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's rows, concatenated in rank order (row counts may differ by rank)."""
    w = world()
    if not w.active:
        return tensor
    import torch.distributed as dist

    count = torch.tensor([len(tensor)], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(w.size)]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros((longest,) + tuple(tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: len(tensor)] = tensor
    parts = [torch.zeros_like(padded) for _ in range(w.size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(c.item())] for part, c in zip(parts, counts)])


def part_of(lo: int, hi: int, rank: int, size: int) -> tuple[int, int]:
    """Rank `rank`'s contiguous part of rows [lo, hi) among `size` processes: the parts are
    disjoint, cover every row, and differ in length by at most one.  One rule for every split —
    each global batch while training, a split while evaluating."""
    n = hi - lo
    return lo + n * rank // size, lo + n * (rank + 1) // size


def shard_range(count: int, w: World) -> tuple[int, int]:
    """Rows [lo, hi) of `count` that this process evaluates."""
    return part_of(0, count, w.rank, w.size)


def check_global_batch(batch_size: int, w: World, flags: bool) -> None:
    """`batch_size` is the global batch: it must split evenly over the processes."""
    if batch_size % w.size:
        name = "--batch-size" if flags else "batch_size"
        raise InputError(f"{name} {batch_size} is the global batch: it must divide evenly among the "
                         f"{w.size} processes")


def leave() -> None:
    """Leave the process group (at exit, or when a command is done with it).

    A DistributedDataParallel wrapper left in a reference cycle keeps the gloo group and its
    last work objects alive until the interpreter's final collection, where freeing them aborts
    the process ("terminate called without an active exception": seen once in ~20 CI runs of
    the --max-restarts test).  Collecting first frees them while the interpreter is whole."""
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()
