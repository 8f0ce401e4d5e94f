"""Euclidean InfoNCE (cosine similarity / temperature), the MoCo/SimCLR objective."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hcl_plugin.geometry.poincare import compute_dtype, scaled_rows
from hcl_plugin.losses.contrastive_batch import in_batch, queue_batch, validate_pair
from hcl_plugin.utils.checks import ValueCheckGate, value_check_due


def check_temperature(temperature: float) -> None:
    """Raise ``ValueError`` unless ``1e-8 <= temperature < inf``.

    Lightly's rule: a temperature of (almost) zero divides by zero; an infinite one (or NaN) makes
    every logit 0 (or NaN) and the loss a constant that trains nothing.
    """
    if not 1e-8 <= float(temperature) < float("inf"):
        raise ValueError(f"temperature must be finite and >= 1e-8, got {temperature}")


def l2_normalize(x: Tensor, eps: float = 1e-12) -> Tensor:
    r"""Rows divided by their norm, :math:`x / \max(\|x\|, \epsilon)` (as ``F.normalize``), for any finite size.

    ``F.normalize`` squares the entries, so rows beyond about 1e19 (float32) get an infinite norm and
    become 0 with a NaN gradient; here rows at least ``eps`` long are divided as
    :math:`w / \|w\|` with the max-abs scaling of :func:`~hcl_plugin.geometry.poincare.scaled_rows`.
    """
    scale, w, w_norm = scaled_rows(x)
    return torch.where(scale * w_norm < eps, x / eps, w / w_norm)


class InfoNCELoss(nn.Module):
    r"""Euclidean InfoNCE [1, 2] on L2-normalised features.

    .. math:: \mathcal{L} = -\frac{1}{N}\sum_i \log
        \frac{\exp(\cos(q_i, p_i)/\tau)}{\exp(\cos(q_i, p_i)/\tau) + \sum_{k} \exp(\cos(q_i, k)/\tau)}

    Called as ``loss(query, positive, negatives=None)``: with ``negatives`` (K, D) (a MoCo queue)
    each query is contrasted with its positive key and the queue; with ``None`` the 2B views of the
    batch serve as each other's negatives (SimCLR/NT-Xent). Implemented in the standard form
    (logits matrix + ``cross_entropy``), the baseline of ``benchmarks/bench_loss.py``, with rows
    normalised by :func:`l2_normalize`. Computed in float32 for half-precision inputs and under
    autocast (float64 if any input is float64): logits of size 1/τ overflow float16 for small τ.

    Host synchronisations: the NaN/Inf checks of the inputs are value checks, run when the loss's
    :class:`~hcl_plugin.utils.checks.ValueCheckGate` is due (every call by default, every ``n``-th
    under :func:`~hcl_plugin.utils.checks.set_value_check_interval` ``(n)``); nothing else reads a
    device value.

    [1] A. van den Oord et al. "Representation Learning with Contrastive Predictive Coding", 2018.
    [2] K. He et al. "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020.

    Attributes:
        temperature: τ > 0.
        gather_distributed: in-batch mode gathers the views of all ranks as extra negatives.

    Raises:
        ValueError: temperature ≈ 0, infinite or NaN; inputs with wrong shapes, an empty batch or
            non-finite values (the message names the argument).
        TypeError: non-floating inputs.

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
        self.value_check_gate = ValueCheckGate()

    def forward(self, query: Tensor, positive: Tensor, negatives: Optional[Tensor] = None) -> Tensor:
        """Mean loss over the anchors (B in queue mode, 2B in in-batch mode); a 0-dim float32/64 tensor."""
        validate_pair(query, positive, negatives, check_values=value_check_due(self), owner=type(self).__name__)
        dtype = compute_dtype(*(t for t in (query, positive, negatives) if t is not None))
        with torch.autocast(device_type=query.device.type, enabled=False):
            query, positive = l2_normalize(query.to(dtype)), l2_normalize(positive.to(dtype))
            if negatives is None:
                batch = in_batch(query, positive, self.gather_distributed)
            else:
                batch = queue_batch(query, positive, l2_normalize(negatives.to(dtype)))
            pos = (batch.anchors * batch.positives).sum(dim=1, keepdim=True)
            neg = batch.anchors @ batch.negatives.t()
            if batch.mask is not None:
                neg = neg.masked_fill(batch.mask, float("-inf"))
            logits = torch.cat([pos, neg], dim=1) / self.temperature
            labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
            return F.cross_entropy(logits, labels)
