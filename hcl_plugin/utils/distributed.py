"""torch.distributed helpers that are no-ops when no process group is initialised."""

from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")


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


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (``torch.distributed.broadcast_object_list`` on the default group).

    Returns ``obj`` itself when not distributed. The object is pickled: it must be importable on every rank.
    """
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def compute_on_rank0(
    compute: Callable[[], T],
    what: str,
    *,
    is_source: Optional[bool] = None,
    distributed: Optional[bool] = None,
    broadcast: Optional[Callable[[Any], Any]] = None,
) -> T:
    """Run ``compute()`` on rank 0 only and return its result on every rank; an error on rank 0 raises on every rank.

    Rank 0 sends ``("ok", result)`` or, when ``compute`` raised, ``("error", "<Type>: <message>")``; rank 0
    then re-raises its original exception and every other rank raises
    ``RuntimeError("<what> failed on rank 0: <Type>: <message>")``, so no rank is left waiting for a result
    that never comes (the exception object itself is not sent: not every exception survives pickling).
    Every rank must call this function (it is a collective when distributed).

    Args:
        compute: the work, run on the source rank only.
        what: names the work in the other ranks' error (e.g. ``"UHML re-clustering"``).
        is_source: whether this process computes (default: :func:`rank` is 0).
        distributed: whether to broadcast (default: :func:`is_distributed`).
        broadcast: ``obj -> obj of rank 0`` (default :func:`broadcast_object`); a framework passes its own,
            e.g. PyTorch Lightning's ``trainer.strategy.broadcast`` or MMEngine's ``broadcast_object_list``.
    """
    if is_source is None:
        is_source = rank() == 0
    if distributed is None:
        distributed = is_distributed()
    error: Optional[BaseException] = None
    payload: Any = None
    if is_source:
        try:
            payload = ("ok", compute())
        except Exception as exc:  # noqa: BLE001  (sent to the other ranks, then re-raised here)
            error = exc
            payload = ("error", f"{type(exc).__name__}: {exc}")
    if distributed:
        payload = (broadcast or broadcast_object)(payload)
    if error is not None:
        raise error
    if not isinstance(payload, tuple) or len(payload) != 2:
        raise RuntimeError(f"{what}: expected a result from rank 0, got {type(payload).__name__}")
    status, value = payload
    if status == "error":
        raise RuntimeError(f"{what} failed on rank 0: {value}")
    return value
