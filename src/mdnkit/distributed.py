"""Data-parallel training on several processes: PyTorch DistributedDataParallel, as launched by
``torchrun`` (gloo on CPUs, NCCL on GPUs).

Every rank holds the same data and model settings and draws the same shuffle each epoch (a
generator of its own, cloned from the run's), then takes its own share of every minibatch: rows
``rank, rank + W, ...`` of it (:class:`ShardedBatches`). DDP averages the gradients, so a step is
the step of the whole minibatch (exactly so when its rows divide evenly among the ``W`` ranks);
the epoch's and the validation's NLL sums are summed over the ranks (:func:`summed`), so early
stopping, rollbacks and learning-rate decay decide alike on every rank. A streamed Parquet table
is the exception: each rank reads only its own row groups and takes its batches whole
(:mod:`mdnkit._table_shards`). Outside a process group nothing here changes anything.

    torchrun --nproc_per_node=2 -m mdnkit fit data.csv --target y -o model.mdn
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch
from torch import Tensor, nn

Batch = tuple[Tensor, Tensor, "Tensor | None"]
T = TypeVar("T")


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the current process group; ``(0, 1)`` without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_environment() -> bool:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE > 1`` in the environment):
    NCCL when CUDA is present, else gloo. Returns whether there is a group to train in."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def summed(*tensors: Tensor) -> list[Tensor]:
    """Each tensor summed over the ranks (as it is on one process)."""
    import torch.distributed as dist

    if world()[1] == 1:
        return list(tensors)
    flat = torch.cat([torch.as_tensor(t, dtype=torch.float64).reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    out, start = [], 0
    for t in tensors:
        size = torch.as_tensor(t).numel()
        out.append(flat[start:start + size].reshape(torch.as_tensor(t).shape).to(torch.as_tensor(t).dtype))
        start += size
    return out


def largest(tensor: Tensor) -> Tensor:
    """``tensor``'s elementwise maximum over the ranks."""
    import torch.distributed as dist

    if world()[1] == 1:
        return tensor
    out = tensor.clone()
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


def gathered(value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank (``[value]`` on one process).

    Values travel by torch's object collective, which pickles them: they come from this job's
    own ranks, never from a file.
    """
    import torch.distributed as dist

    if world()[1] == 1:
        return [value]
    out: list = [None] * world()[1]
    dist.all_gather_object(out, value)
    return out


def data_parallel(step_module: nn.Module) -> nn.Module:
    """``step_module`` wrapped in DistributedDataParallel when there are several ranks."""
    if world()[1] == 1:
        return step_module
    from torch.nn.parallel import DistributedDataParallel

    device = next(step_module.parameters()).device
    return DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda" else None)


def decorrelate(generator: torch.Generator | None) -> None:
    """Give each rank a noise stream of its own: one draw common to all ranks, plus the rank.
    (The shuffle has its own copy of the generator: :class:`ShardedBatches`.)"""
    if generator is not None and world()[1] > 1:
        common = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
        generator.manual_seed(common + world()[0])


def _shard(batch: Batch, rank: int, size: int) -> Batch:
    x, y, weights = batch
    return x[rank::size], y[rank::size], None if weights is None else weights[:, rank::size]


class ShardedBatches:
    """This rank's share of every batch of ``source``, whose shuffle is drawn from a generator
    of its own so that it stays the same on every rank (noise draws differ between ranks)."""

    def __init__(self, source, generator: torch.Generator | None) -> None:
        self.source = source
        self.rank, self.size = world()
        self.order = None
        if generator is not None:
            self.order = torch.Generator(device=generator.device)
            self.order.set_state(generator.get_state())

    def epoch(self, generator: torch.Generator | None) -> Iterator[Batch]:
        for batch in self.source.epoch(self.order):
            yield _shard(batch, self.rank, self.size)


def sharded_validation(validation: Callable[[], Iterable[Batch]] | None) -> Callable[[], Iterator[Batch]] | None:
    """The validation batches, each cut to this rank's share."""
    if validation is None:
        return None
    rank, size = world()
    return lambda: (_shard(batch, rank, size) for batch in validation())
