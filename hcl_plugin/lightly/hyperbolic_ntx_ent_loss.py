"""Hyperbolic NT-Xent loss in Lightly's conventions (in-batch or memory-bank negatives)."""

from __future__ import annotations

from typing import Optional, Sequence, Union

from torch import Tensor, nn

from hcl_plugin.losses import HyperbolicInfoNCELoss
from hcl_plugin.modules import HyperbolicMemoryBank
from hcl_plugin.utils.checks import check_nonempty


def bank_size(memory_bank_size: Union[int, Sequence[int]]) -> Optional[tuple]:
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
    return size


class HyperbolicNTXentLoss(nn.Module):
    """NT-Xent / InfoNCE with hyperbolic logits ``-d_c(z0, z1) / temperature`` on the Poincaré ball.

    The Lightly counterpart of ``lightly.loss.NTXentLoss`` for points on the ball (``NTXentLoss``
    L2-normalises, which would erase the norm that HCL uses). Without a memory bank the 2B views of
    the batch are each other's negatives; with ``memory_bank_size=(K, D)`` ``out1`` is the key, the
    negatives come from a :class:`~hcl_plugin.modules.HyperbolicMemoryBank` (initialised inside the
    ball, saved in checkpoints), and ``out1`` is enqueued after the loss when ``out0`` requires grad
    (i.e. during training), as Lightly's memory-bank losses do.

    Reference: S. Ge, S. Mishra et al., "Hyperbolic Contrastive Learning for Visual Representations
    beyond Objects", CVPR 2023. https://arxiv.org/abs/2212.00653

    Attributes:
        temperature: τ > 0.
        c: curvature magnitude of the ball (radius ``1/sqrt(c)``).
        memory_bank_size: 0, or ``(num_features, dim)``.
        gather_distributed: gather the views (in-batch) or the keys (memory bank) of all ranks.

    Raises:
        ValueError: τ ≈ 0, infinite or NaN, c <= 0 or non-finite, a bad ``memory_bank_size``; an
            empty batch, inputs off the ball or non-finite (the message names ``out0``/``out1``
            for an empty batch, the core loss's ``query``/``positive`` otherwise).

    Examples:
        >>> from hcl_plugin.geometry import expmap0
        >>> loss_fn = HyperbolicNTXentLoss(temperature=0.2, c=0.05, memory_bank_size=(4096, 128))
        >>> z0, z1 = expmap0(torch.randn(8, 128), 0.05), expmap0(torch.randn(8, 128), 0.05)
        >>> loss = loss_fn(z0, z1)
    """

    def __init__(
        self,
        temperature: float = 0.2,
        c: float = 0.05,
        memory_bank_size: Union[int, Sequence[int]] = 0,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        self.loss = HyperbolicInfoNCELoss(temperature, c, gather_distributed=gather_distributed)
        size = bank_size(memory_bank_size)
        self.memory_bank = (
            None if size is None else HyperbolicMemoryBank(size[0], size[1], c=c, gather_distributed=gather_distributed)
        )

    def forward(self, out0: Tensor, out1: Tensor) -> Tensor:
        """Loss of the views ``out0`` (B, D) and ``out1`` (B, D) on the ball; enqueues ``out1`` when training."""
        for name, tensor in (("out0", out0), ("out1", out1)):
            if isinstance(tensor, Tensor):
                check_nonempty(tensor, name, type(self).__name__)
        if self.memory_bank is None:
            return self.loss(out0, out1)
        loss = self.loss(out0, out1, self.memory_bank.negatives().to(out0.device))
        if out0.requires_grad:
            self.memory_bank.enqueue(out1.detach())
        return loss
