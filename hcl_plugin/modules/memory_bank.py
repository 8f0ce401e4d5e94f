"""First-in-first-out queues of keys for MoCo-style negatives, Euclidean and on the Poincaré ball."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Union

import torch
from torch import Tensor, nn

from hcl_plugin.geometry import Curvature, check_in_ball, expmap0
from hcl_plugin.geometry.poincare import as_curvature, logmap0_unchecked, project_unchecked
from hcl_plugin.utils import distributed
from hcl_plugin.utils.checks import (
    ValueCheckGate,
    check_finite,
    check_floating,
    check_ndim,
    check_nonempty,
    check_positive,
    value_check_due,
)


class MemoryBank(nn.Module):
    """A FIFO queue of ``size`` keys of dimension ``dim`` (MoCo [1]).

    ``enqueue(keys)`` writes a batch of keys (gathered from all ranks under torch.distributed, so
    every rank holds the same queue) with wrap-around for any batch size, larger than the queue
    included (then only the newest ``size`` keys stay). ``negatives()`` returns a detached copy,
    safe to use in a loss that is back-propagated after the next ``enqueue``.

    The initial keys are drawn from a generator seeded with ``seed``, so all ranks start equal.

    Host synchronisations: none per ``enqueue`` beyond the value checks of the keys, which run when
    the bank's :class:`~hcl_plugin.utils.checks.ValueCheckGate` is due (every call by default, every
    ``n``-th under :func:`~hcl_plugin.utils.checks.set_value_check_interval` ``(n)``). The write
    position lives in the ``ptr`` buffer (saved in checkpoints) and in a host-side copy that
    ``enqueue`` reads, so it never reads ``ptr`` from the device; loading a state dict refreshes the
    copy (one read at load time). Writing ``ptr`` directly bypasses the copy: use
    :meth:`set_pointer`.

    [1] K. He et al. "Momentum Contrast for Unsupervised Visual Representation Learning". CVPR 2020.
    """

    bank: Tensor
    ptr: Tensor

    def __init__(self, size: int, dim: int, seed: int = 0, gather_distributed: bool = True) -> None:
        super().__init__()
        if size <= 0 or dim <= 0:
            raise ValueError(f"size and dim must be positive, got size={size}, dim={dim}")
        self.size, self.dim = size, dim
        self.gather_distributed = gather_distributed
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("bank", self.initial_keys(torch.randn(size, dim, generator=gen)))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.host_ptr = 0  # == int(self.ptr), kept on the host so that enqueue does not read the device
        self.value_check_gate = ValueCheckGate()

    def set_pointer(self, position: int) -> None:
        """Set the write position (``ptr`` and its host-side copy) to ``position`` modulo ``size``."""
        self.host_ptr = int(position) % self.size
        self.ptr.fill_(self.host_ptr)

    def _load_from_state_dict(self, state_dict: Dict[str, Any], prefix: str, local_metadata: Dict[str, Any],
                              strict: bool, missing_keys: List[str], unexpected_keys: List[str],
                              error_msgs: List[str]) -> None:
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        self.host_ptr = int(self.ptr) % self.size  # the one read of the device pointer, at load time

    def initial_keys(self, noise: Tensor) -> Tensor:
        """Random unit vectors (subclasses place them where their keys live)."""
        return nn.functional.normalize(noise, dim=1)

    def validate_keys(self, keys: Tensor, check_values: bool = True) -> None:
        """Raise ``TypeError``/``ValueError`` (naming ``keys``) unless ``keys`` is a finite, non-empty (B, dim) float tensor.

        ``check_values=False`` skips the value (finiteness) check, keeping the shape and dtype checks.
        """
        check_floating(keys, "keys")
        check_ndim(keys, 2, "keys", f"(B, {self.dim})")
        if keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape (B, {self.dim}), got {tuple(keys.shape)}")
        check_nonempty(keys, "keys", f"{type(self).__name__}.enqueue")
        if check_values:
            check_finite(keys, "keys")

    def prepare_keys(self, keys: Tensor) -> Tensor:
        """``keys`` (validated) as stored: cast to the bank's dtype and device."""
        return keys.detach().to(dtype=self.bank.dtype, device=self.bank.device)

    def negatives(self) -> Tensor:
        """A detached copy of the queue, shape (size, dim)."""
        return self.bank.detach().clone()

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Append ``keys`` (B, dim), overwriting the oldest entries (at most two slice copies, no device read)."""
        self.validate_keys(keys, value_check_due(self))
        if self.gather_distributed:
            keys = distributed.gather_no_grad(keys.detach())
        keys = self.prepare_keys(keys)
        n = keys.shape[0]
        m = min(n, self.size)
        ptr = self.__dict__.get("host_ptr")
        if ptr is None:  # a module pickled before the host copy existed
            ptr = int(self.ptr)
        start = (ptr + n - m) % self.size
        head = min(m, self.size - start)  # rows written before wrapping around
        self.bank[start:start + head] = keys[n - m:n - m + head]
        if head < m:
            self.bank[:m - head] = keys[n - m + head:]
        self.set_pointer(ptr + n)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"


class HyperbolicMemoryBank(MemoryBank):
    r"""A :class:`MemoryBank` of points on the Poincaré ball of curvature ``-c``.

    Initial keys are :math:`\exp_0^c(g/\sqrt{D})` for Gaussian ``g``: inside the ball at a hyperbolic
    distance of about 2 from the origin, unlike Lightly's random unit vectors, which lie outside a
    ball of radius < 1. Enqueued keys must lie in the ball (``ValueError`` naming ``keys`` otherwise).

    ``c`` is a float or a :class:`~hcl_plugin.geometry.Curvature`, the same object the model's head and
    loss use (pass it down, as geoopt passes its manifold objects):

    * fixed curvature: the bank stores the points. Keys are cast to the bank's dtype and then
      projected (:func:`~hcl_plugin.geometry.project`, the margin of the bank's dtype): a float64 key
      just inside the ball can round onto the boundary in float32, and would then fail the loss's
      ball check on every later step.
    * learnable curvature: a stored point would leave the ball when ``c`` grows, so the bank stores
      tangent vectors :math:`v = \log_0^{c_t}(k)` with the curvature :math:`c_t` of the step that
      enqueued them, and :meth:`negatives` returns :math:`\exp_0^{c}(v)` with the current ``c``
      (the keys are detached; the gradient reaches ``c``, as it does through the queries).

    Example:
        >>> bank = HyperbolicMemoryBank(size=1024, dim=128, c=0.05)
        >>> negatives = bank.negatives()        # use in the loss ...
        >>> bank.enqueue(expmap0(torch.randn(32, 128), 0.05))  # ... then add this step's keys
    """

    def __init__(self, size: int, dim: int, c: Union[float, Curvature] = 0.05, seed: int = 0,
                 gather_distributed: bool = True) -> None:
        if not isinstance(c, Curvature):
            check_positive(c, "c")
        self.stores_tangent = isinstance(c, Curvature) and c.learnable
        self._initial_c = float(c.fixed_c) if isinstance(c, Curvature) else float(c)
        super().__init__(size, dim, seed=seed, gather_distributed=gather_distributed)
        self.curvature = c if isinstance(c, Curvature) else Curvature(float(c))

    @property
    def c(self) -> Union[float, Tensor]:
        """The current curvature magnitude (a float when fixed, a 0-dim tensor when learnable)."""
        return self.curvature()

    def initial_keys(self, noise: Tensor) -> Tensor:
        tangent = noise / math.sqrt(self.dim)
        return tangent if self.stores_tangent else expmap0(tangent, self._initial_c)

    def validate_keys(self, keys: Tensor, check_values: bool = True) -> None:
        """:meth:`MemoryBank.validate_keys`, with the ball-membership check as the value check (it reports NaN/Inf too)."""
        super().validate_keys(keys, check_values=False)
        if check_values:
            check_in_ball(keys, self.c, "keys")

    def prepare_keys(self, keys: Tensor) -> Tensor:
        r"""Fixed ``c``: cast to the bank's dtype, then :func:`~hcl_plugin.geometry.project` in that dtype.
        Learnable ``c``: :math:`\log_0^c` of the keys (in float32 or wider), cast to the bank's dtype."""
        keys = super().prepare_keys(keys)
        if self.stores_tangent:
            with torch.no_grad():
                wide = keys if keys.dtype == torch.float64 else keys.float()
                # keys were checked (validate_keys) and a learnable c is positive by construction
                c = self.c.detach().to(dtype=wide.dtype, device=wide.device)
                return logmap0_unchecked(wide, c).to(self.bank.dtype)
        return project_unchecked(keys, as_curvature(self.c, keys))

    def negatives(self) -> Tensor:
        """A detached copy of the queue's points, shape (size, dim) (learnable ``c``: mapped with the current ``c``)."""
        if self.stores_tangent:
            # the bank's own tangent vectors, checked when they were enqueued: no value check here
            return expmap0(self.bank.detach(), self.c, check_values=False)
        return super().negatives()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, stores_tangent={self.stores_tangent}"
