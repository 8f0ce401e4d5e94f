"""Input validation shared by the geometry, the losses and the modules.

Every check raises an error that names the offending argument, so a bad batch stops training with
a message instead of a NaN that trains silently.

Two kinds of checks:

* shape, dtype and number checks (:func:`check_ndim`, :func:`check_floating`, :func:`check_nonempty`,
  :func:`check_positive` of a Python number, ...) read no tensor values and always run;
* value checks (:func:`check_finite` and the ball-membership check of the geometry) read values
  computed on the device: on an accelerator each one is a device-to-host synchronisation. The
  training hot path (the projection heads, the losses, the memory banks and the geometry's public
  maps) guards them with a :class:`ValueCheckGate`, one per call site, which lets them run on every
  call by default and only on every ``n``-th call after :func:`set_value_check_interval` ``(n)`` or
  inside ``with value_checks(every=n):`` (docs/numerics.md, "Host synchronisations").
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence, Tuple, Union

import torch
from torch import Tensor

CurvatureLike = Union[float, int, Tensor]

__all__ = [
    "CurvatureLike",
    "ValueCheckGate",
    "check_all_finite",
    "check_finite",
    "check_floating",
    "check_last_dim",
    "check_ndim",
    "check_non_negative",
    "check_nonempty",
    "check_positive",
    "check_same_shape",
    "set_value_check_interval",
    "value_check_due",
    "value_check_interval",
    "value_checks",
]

_VALUE_CHECK_INTERVAL = 1


def value_check_interval() -> int:
    """How often the gated value checks run: on the first call of each site, then every ``n``-th call (default 1)."""
    return _VALUE_CHECK_INTERVAL


def set_value_check_interval(every: int) -> int:
    """Run the gated value checks (NaN/Inf, ball membership) only on every ``every``-th call of each call site.

    ``every = 1`` (the default) checks every call. With ``every = n`` a call site checks its first
    call and then one call in ``n``, so on an accelerator the hot path synchronises the device once
    per ``n`` steps instead of several times per step; a bad input is then reported, naming the
    argument, within ``n`` steps of its appearance (a non-finite loss is noticed at once by the
    training loop's own loss check). Returns the previous interval.

    Raises:
        ValueError: ``every`` is not an integer >= 1.
    """
    global _VALUE_CHECK_INTERVAL
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"the value-check interval must be an integer >= 1, got {every!r}")
    previous, _VALUE_CHECK_INTERVAL = _VALUE_CHECK_INTERVAL, every
    return previous


@contextlib.contextmanager
def value_checks(every: int) -> Iterator[None]:
    """``with value_checks(every=n):`` runs the block with :func:`set_value_check_interval` ``(n)``, then restores it."""
    previous = set_value_check_interval(every)
    try:
        yield
    finally:
        set_value_check_interval(previous)


class ValueCheckGate:
    """Decides, for one call site, whether this call runs its value checks (:func:`set_value_check_interval`).

    :meth:`due` is ``True`` on the site's first call and then once every ``n`` calls, ``n`` being the
    interval in force at each call (lowering it takes effect at the next call). Reading the gate
    touches no tensor, so it never synchronises a device. A module keeps one gate per call site as a
    plain attribute (copied with the module, not saved in its state dict).

    Example:
        >>> gate = ValueCheckGate()
        >>> with value_checks(every=3):
        ...     [gate.due() for _ in range(7)]
        [True, False, False, True, False, False, True]
    """

    __slots__ = ("skipped",)

    def __init__(self) -> None:
        self.skipped = -1  # calls skipped since the last check; -1: never checked, so the first call checks

    def due(self) -> bool:
        """Whether the caller should run its value checks now (counts the call)."""
        if self.skipped < 0 or self.skipped + 1 >= _VALUE_CHECK_INTERVAL:
            self.skipped = 0
            return True
        self.skipped += 1
        return False

    def __repr__(self) -> str:
        return f"ValueCheckGate(skipped={self.skipped})"


def value_check_due(owner: object) -> bool:
    """``owner.value_check_gate.due()``: whether a module's call site runs its value checks now.

    The gate is created on first use when ``owner`` lacks one (e.g. a module unpickled from an
    older version of this package).
    """
    gate = owner.__dict__.get("value_check_gate")
    if gate is None:
        gate = ValueCheckGate()
        object.__setattr__(owner, "value_check_gate", gate)
    return gate.due()


def check_finite(tensor: Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``tensor`` holds a NaN or an infinity (a value check: synchronises an accelerator)."""
    if not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor)).nonzero()
        first = tuple(bad[0].tolist()) if bad.numel() else ()
        raise ValueError(
            f"{name} contains {bad.shape[0]} non-finite value(s) (NaN or Inf), first at index {first}"
        )


def check_all_finite(named: Sequence[Tuple[Tensor, str]]) -> None:
    """:func:`check_finite` of every ``(tensor, name)`` with one read of the device for all of them.

    The error is the one :func:`check_finite` raises for the first tensor that fails.
    """
    flags = [torch.isfinite(tensor).all() for tensor, _ in named]
    if len({flag.device for flag in flags}) > 1:  # tensors on several devices: one read each
        failed = not all(bool(flag) for flag in flags)
    else:
        failed = not bool(torch.stack(flags).all())
    if failed:
        for tensor, name in named:
            check_finite(tensor, name)


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
    if isinstance(value, Tensor):  # one read of the device (a value check); the values only on failure
        if not bool((torch.isfinite(value) & (value > 0)).all()):
            raise ValueError(f"{name} must be finite and > 0, got {value.detach().flatten()[:4].tolist()}")
    elif not (float(value) > 0 and float(value) != float("inf")):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
