"""Hyperbolic NT-Xent loss in Lightly's conventions (in-batch or memory-bank negatives)."""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

from torch import Tensor, nn

from hcl_plugin.geometry import Curvature
from hcl_plugin.losses import HyperbolicInfoNCELoss
from hcl_plugin.losses.hcl import check_nonempty_inputs
from hcl_plugin.modules import HyperbolicMemoryBank, MemoryBank

ContrastiveLoss = Callable[..., Tensor]  # loss(query, positive, negatives=None) -> Tensor


def bank_size(memory_bank_size: Union[int, Sequence[int]]) -> Optional[Tuple[int, int]]:
    """Lightly's ``memory_bank_size``: 0 disables the bank, else a ``(num_features, dim)`` tuple."""
    if isinstance(memory_bank_size, int):
        if memory_bank_size == 0:
            return None
        raise ValueError(
            f"memory_bank_size={memory_bank_size} does not give the feature dimension; "
            f"pass ({memory_bank_size}, dim), or 0 to disable the memory bank"
        )
    size = tuple(int(s) for s in memory_bank_size)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"memory_bank_size must be 0 or (num_features, dim) with positive entries, got {memory_bank_size}")
    return size[0], size[1]


def hyperbolic_bank(memory_bank_size: Union[int, Sequence[int]], curvature: Curvature,
                    gather_distributed: bool) -> Optional[HyperbolicMemoryBank]:
    """A :class:`~hcl_plugin.modules.HyperbolicMemoryBank` on ``curvature`` (the loss's object), or ``None`` for 0."""
    size = bank_size(memory_bank_size)
    return None if size is None else HyperbolicMemoryBank(size[0], size[1], c=curvature,
                                                          gather_distributed=gather_distributed)


def loss_with_memory_bank(loss: ContrastiveLoss, query: Tensor, key: Tensor, bank: Optional[MemoryBank],
                          prepare_key: Optional[Callable[[Tensor], Tensor]] = None) -> Tensor:
    """Lightly's memory-bank convention around a core loss ``loss(query, positive, negatives=None)``.

    Without a bank: ``loss(query, key)`` (in-batch negatives). With one: ``loss(query, key, negatives)``
    with the bank's keys as negatives; then, when ``query`` requires grad (training), ``key``
    (detached, passed through ``prepare_key``) is enqueued, so the loss never sees its own keys.
    """
    if bank is None:
        return loss(query, key)
    value = loss(query, key, bank.negatives().to(query.device))
    if query.requires_grad:
        key = key.detach()
        bank.enqueue(key if prepare_key is None else prepare_key(key))
    return value


class MemoryBankLoss(nn.Module):
    """A core contrastive loss and an optional memory bank (:func:`loss_with_memory_bank`), as one module.

    Attributes:
        loss: ``loss(query, positive, negatives=None)``, e.g. a :class:`~hcl_plugin.losses.HyperbolicInfoNCELoss`.
        memory_bank: its queue of negatives, or ``None`` for in-batch negatives (saved in checkpoints).
    """

    def __init__(self, loss: nn.Module, memory_bank: Optional[MemoryBank] = None) -> None:
        super().__init__()
        self.loss = loss
        self.memory_bank = memory_bank

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        return loss_with_memory_bank(self.loss, query, key, self.memory_bank)


class HyperbolicNTXentLoss(MemoryBankLoss):
    """NT-Xent / InfoNCE with hyperbolic logits ``-d_c(z0, z1) / temperature`` on the Poincaré ball.

    The core :class:`~hcl_plugin.losses.HyperbolicInfoNCELoss` plus, with ``memory_bank_size=(K, D)``,
    a :class:`~hcl_plugin.modules.HyperbolicMemoryBank`: the Lightly counterpart of
    ``lightly.loss.NTXentLoss`` for points on the ball (``NTXentLoss`` L2-normalises, which would
    erase the norm that HCL uses). Without a memory bank the 2B views of the batch are each other's
    negatives; with one ``out1`` is the key, the negatives come from the bank (initialised inside the
    ball, saved in checkpoints), and ``out1`` is enqueued after the loss when ``out0`` requires grad
    (i.e. during training), as Lightly's memory-bank losses do.

    Loss and bank share one curvature: ``c`` is a float (a :class:`~hcl_plugin.geometry.Curvature`
    is built from it) or a ``Curvature`` object, kept as given, e.g. the one of the model's
    :class:`~hcl_plugin.modules.PoincareProjectionHead` (``head.curvature``). A float that differs
    from the head's ``c`` is not detected: pass the head's object.

    Reference: S. Ge, S. Mishra et al., "Hyperbolic Contrastive Learning for Visual Representations
    beyond Objects", CVPR 2023. https://arxiv.org/abs/2212.00653

    Args:
        temperature: τ > 0.
        c: curvature magnitude of the ball (radius ``1/sqrt(c)``), a float or a ``Curvature``.
        memory_bank_size: 0, or ``(num_features, dim)``.
        gather_distributed: gather the views (in-batch) or the keys (memory bank) of all ranks.

    Raises:
        ValueError: τ ≈ 0, infinite or NaN, c <= 0 or non-finite, a bad ``memory_bank_size``; an
            empty batch, inputs off the ball or non-finite (the message names ``out0``/``out1``
            for an empty batch, the core loss's ``query``/``positive`` otherwise).

    Examples:
        >>> import torch
        >>> from hcl_plugin.geometry import expmap0
        >>> loss_fn = HyperbolicNTXentLoss(temperature=0.2, c=0.05, memory_bank_size=(4096, 128))
        >>> z0, z1 = expmap0(torch.randn(8, 128), 0.05), expmap0(torch.randn(8, 128), 0.05)
        >>> loss = loss_fn(z0, z1)
    """

    loss: HyperbolicInfoNCELoss
    memory_bank: Optional[HyperbolicMemoryBank]

    def __init__(
        self,
        temperature: float = 0.2,
        c: Union[float, Curvature] = 0.05,
        memory_bank_size: Union[int, Sequence[int]] = 0,
        gather_distributed: bool = False,
    ) -> None:
        loss = HyperbolicInfoNCELoss(temperature, c, gather_distributed=gather_distributed)
        super().__init__(loss, hyperbolic_bank(memory_bank_size, loss.curvature, gather_distributed))

    @property
    def curvature(self) -> Curvature:
        """The one curvature of the loss and the bank."""
        return self.loss.curvature

    def forward(self, out0: Tensor, out1: Tensor) -> Tensor:
        """Loss of the views ``out0`` (B, D) and ``out1`` (B, D) on the ball; enqueues ``out1`` when training."""
        check_nonempty_inputs(type(self).__name__, [("out0", out0), ("out1", out1)])
        return super().forward(out0, out1)
