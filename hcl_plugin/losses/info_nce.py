"""Euclidean InfoNCE (cosine similarity / temperature), the MoCo/SimCLR objective."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hcl_plugin.losses.contrastive_batch import in_batch, queue_batch, validate_pair


def check_temperature(temperature: float) -> None:
    """Lightly's rule: a temperature of (almost) zero divides by zero."""
    if not (abs(temperature) >= 1e-8) or temperature < 0:
        raise ValueError(f"temperature must be > 1e-8, got {temperature}")


class InfoNCELoss(nn.Module):
    r"""Euclidean InfoNCE [1, 2] on L2-normalised features.

    .. math:: \mathcal{L} = -\frac{1}{N}\sum_i \log
        \frac{\exp(\cos(q_i, p_i)/\tau)}{\exp(\cos(q_i, p_i)/\tau) + \sum_{k} \exp(\cos(q_i, k)/\tau)}

    Called as ``loss(query, positive, negatives=None)``: with ``negatives`` (K, D) (a MoCo queue)
    each query is contrasted with its positive key and the queue; with ``None`` the 2B views of the
    batch serve as each other's negatives (SimCLR/NT-Xent). Implemented in the standard form
    (logits matrix + ``cross_entropy``), the baseline of ``benchmarks/bench_loss.py``.

    [1] A. van den Oord et al. "Representation Learning with Contrastive Predictive Coding", 2018.
    [2] K. He et al. "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020.

    Attributes:
        temperature: τ > 0.
        gather_distributed: in-batch mode gathers the views of all ranks as extra negatives.

    Raises:
        ValueError: temperature ≈ 0; inputs with wrong shapes or non-finite values.

    Example:
        >>> loss_fn = InfoNCELoss(temperature=0.2)
        >>> q, p = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = loss_fn(q, p, negatives=torch.randn(64, 16))
    """

    def __init__(self, temperature: float = 0.2, gather_distributed: bool = False) -> None:
        super().__init__()
        check_temperature(temperature)
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(self, query: Tensor, positive: Tensor, negatives: Optional[Tensor] = None) -> Tensor:
        validate_pair(query, positive, negatives)
        query, positive = F.normalize(query, dim=1), F.normalize(positive, dim=1)
        if negatives is None:
            batch = in_batch(query, positive, self.gather_distributed)
        else:
            batch = queue_batch(query, positive, F.normalize(negatives, dim=1))
        pos = (batch.anchors * batch.positives).sum(dim=1, keepdim=True)
        neg = batch.anchors @ batch.negatives.t()
        if batch.mask is not None:
            neg = neg.masked_fill(batch.mask, float("-inf"))
        logits = torch.cat([pos, neg], dim=1) / self.temperature
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, labels)
