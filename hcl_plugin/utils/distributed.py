"""torch.distributed helpers that are no-ops when no process group is initialised."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when torch.distributed is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def gather_with_grad(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from all ranks along dim 0, in rank order; gradients flow back to each rank.

    Uses ``torch.distributed.nn.functional.all_gather`` (its backward sums the gradients of every
    rank's copy). Returns ``tensor`` itself when not distributed.
    """
    if not is_distributed():
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor), dim=0)


@torch.no_grad()
def gather_no_grad(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from all ranks along dim 0 without gradient (e.g. keys for a queue)."""
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)
