"""Several processes (``accelerate launch``, torch.distributed) sharing one stage's work.

Under plain ``python`` everything here is the identity: one process, rank 0, the main one.
Under ``accelerate launch`` (see :mod:`src.launch`) each process plays a round-robin shard of
the episodes (or computes a shard of each minibatch), and results are gathered back in their
original order, so a stage's output does not depend on the number of processes. Only the
main process writes outputs and metrics.
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Sequence, TypeVar

import torch

T = TypeVar("T")


def launched() -> bool:
    """Whether this process is one of several started by a distributed launcher."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@lru_cache(maxsize=1)
def _state():
    """accelerate's process state, initialised once. On a machine without CUDA the processes
    talk over gloo (accelerate only picks its CPU backend when told it runs on the CPU)."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def rank() -> int:
    return _state().process_index if launched() else 0


def world() -> int:
    return _state().num_processes if launched() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world() > 1:
        _state().wait_for_everyone()


def shard(n: int) -> list[int]:
    """This process's indices of ``n`` items: round-robin, so long and short episodes spread
    evenly when neighbours are alike."""
    return list(range(rank(), n, world()))


def gather_in_order(local: Sequence[T], n: int) -> list[T]:
    """Every process's ``local`` items (its :func:`shard` of ``n``), back in index order, on
    every process."""
    if world() == 1:
        return list(local)
    from accelerate.utils import gather_object

    indexed = gather_object([(i, item) for i, item in zip(shard(n), local)])
    if len(indexed) != n:
        raise RuntimeError(f"gathered {len(indexed)} of {n} items from {world()} processes")
    return [item for _, item in sorted(indexed, key=lambda pair: pair[0])]


def gather_all(value: Any) -> list[Any]:
    """One ``value`` per process, in rank order, on every process."""
    if world() == 1:
        return [value]
    from accelerate.utils import gather_object

    return gather_object([value])


def batch_shard(rows: Sequence[int]) -> tuple[list[int], float]:
    """This process's rows of a minibatch and the factor that makes data-parallel training
    equal to one process: a process computes the mean loss over its rows times
    ``len(mine) / len(rows) * world``, so the gradient average over processes is the mean
    over the whole minibatch. A process left without rows computes the first row with factor
    0 (every process must run backward for the gradients to be averaged)."""
    mine = list(rows[rank()::world()])
    if not mine:
        return [rows[0]], 0.0
    return mine, len(mine) / len(rows) * world() if world() > 1 else 1.0


def data_parallel(module: torch.nn.Module) -> torch.nn.Module:
    """The module wrapped for gradient averaging across processes (itself in one process)."""
    if world() == 1:
        return module
    device = next(module.parameters()).device
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None)


def seed_per_process(seed: int) -> None:
    """Reseed torch's RNG (dropout) per process beyond the first, so processes draw
    independent masks; the first keeps ``seed``'s stream, as one process does."""
    if rank():
        torch.manual_seed(seed * 1_000_003 + rank())
