"""Input validation shared by the geometry, the losses and the modules.

Every check raises an error that names the offending argument, so a bad batch stops training with
a message instead of a NaN that trains silently.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

CurvatureLike = Union[float, int, Tensor]


def check_finite(tensor: Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``tensor`` holds a NaN or an infinity."""
    if not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor)).nonzero()
        first = tuple(bad[0].tolist()) if bad.numel() else ()
        raise ValueError(
            f"{name} contains {bad.shape[0]} non-finite value(s) (NaN or Inf), first at index {first}"
        )


def check_ndim(tensor: Tensor, ndim: int, name: str, layout: str) -> None:
    """Raise ``ValueError`` unless ``tensor`` has ``ndim`` dimensions (``layout`` describes them)."""
    if tensor.dim() != ndim:
        raise ValueError(f"{name} must have shape {layout}, got {tuple(tensor.shape)}")


def check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_last_dim(tensors: Sequence[Tensor], names: Sequence[str]) -> None:
    """Raise ``ValueError`` unless all tensors share their last (feature) dimension."""
    dims = {t.shape[-1] for t in tensors}
    if len(dims) > 1:
        shapes = ", ".join(f"{n}: {tuple(t.shape)}" for n, t in zip(names, tensors))
        raise ValueError(f"feature dimensions differ ({shapes})")


def check_floating(tensor: Tensor, name: str) -> None:
    """Raise ``TypeError`` unless ``tensor`` is a floating-point tensor (integer or bool features are a bug)."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")


def check_nonempty(tensor: Tensor, name: str, owner: str) -> None:
    """Raise ``ValueError`` if the batch (first) dimension of ``tensor`` is 0; ``owner`` is the caller's name.

    A shape check only: it reads no values, so it never synchronises a device.
    """
    if tensor.dim() > 0 and tensor.shape[0] == 0:
        raise ValueError(f"{owner} got an empty batch: {name} has shape {tuple(tensor.shape)}")


def check_non_negative(value: float, name: str) -> None:
    """Raise ``ValueError`` unless the number ``value`` is finite and >= 0 (e.g. a loss weight)."""
    if not 0 <= float(value) < float("inf"):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")


def check_positive(value: CurvatureLike, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` (a number or a tensor) is finite and > 0 everywhere."""
    if isinstance(value, Tensor):
        ok = bool(torch.isfinite(value).all() and (value > 0).all())
        shown = value.detach().flatten()[:4].tolist()
    else:
        ok = float(value) > 0 and float(value) != float("inf")
        shown = value
    if not ok:
        raise ValueError(f"{name} must be finite and > 0, got {shown}")
