"""Hyperbolic InfoNCE on the Poincaré ball: logits are negative geodesic distances (HCL, Ge et al. 2023)."""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor, nn

from hcl_plugin.geometry import Curvature
from hcl_plugin.geometry.poincare import as_curvature, check_all_in_ball, compute_dtype, dist_unchecked
from hcl_plugin.losses.contrastive_batch import in_batch, queue_batch, validate_pair
from hcl_plugin.losses.info_nce import check_temperature
from hcl_plugin.losses.poincare_logsumexp import BLOCK_ELEMENTS, BlockWorkspace, poincare_negative_logsumexp
from hcl_plugin.utils.checks import ValueCheckGate, value_check_due


class HyperbolicInfoNCELoss(nn.Module):
    r"""InfoNCE with hyperbolic logits :math:`-d_c(q, \cdot)/\tau` [1, eq. 4].

    .. math:: \mathcal{L} = -\frac{1}{N}\sum_i \log
        \frac{\exp(-d_c(q_i, p_i)/\tau)}{\exp(-d_c(q_i, p_i)/\tau) + \sum_k \exp(-d_c(q_i, k)/\tau)}

    The positive sits at index 0. Inputs are points in the ball (no L2 normalisation: the norm carries
    information). Positive distances come from the explicit difference (accurate for close pairs);
    negative distances from one matrix product, fused with the log-sum-exp and an analytic backward
    (:mod:`hcl_plugin.losses.poincare_logsumexp`): time and memory are O(B·K), like Euclidean
    InfoNCE, instead of the B×K×D tensors of broadcasting ``dist(q[:, None], k[None])``.

    Computed in float32 for half-precision inputs and under autocast (docs/numerics.md).

    Host synchronisations: the ball-membership checks of ``query``, ``positive`` and ``negatives``
    (which report NaN/Inf too; one read of the device for the three) are value checks, run when the loss's
    :class:`~hcl_plugin.utils.checks.ValueCheckGate` is due: every call by default, every ``n``-th
    under :func:`~hcl_plugin.utils.checks.set_value_check_interval` ``(n)``. Nothing else in the
    forward or backward pass reads a device value (docs/numerics.md, "Host synchronisations").

    [1] S. Ge, S. Mishra et al. "Hyperbolic Contrastive Learning for Visual Representations beyond
        Objects". CVPR 2023. https://arxiv.org/abs/2212.00653

    Attributes:
        temperature: τ > 0 (official HCL default 0.2).
        c: curvature magnitude, a float or a :class:`~hcl_plugin.geometry.Curvature` (learnable).
        gather_distributed: in-batch mode gathers the views of all ranks as extra negatives
            (gradients flow back to their ranks). In queue mode the queue is used as given: a
            :class:`~hcl_plugin.modules.HyperbolicMemoryBank` already gathers keys before enqueueing.

    Raises:
        ValueError: temperature ≈ 0, infinite or NaN, c <= 0, wrong shapes (the message prints
            them), an empty batch, NaN/Inf features (the message names the argument), points on or
            outside the ball.
        TypeError: non-floating inputs.

    Example:
        >>> from hcl_plugin.geometry import expmap0
        >>> loss_fn = HyperbolicInfoNCELoss(temperature=0.2, c=0.05)
        >>> q, p = expmap0(torch.randn(8, 16), 0.05), expmap0(torch.randn(8, 16), 0.05)
        >>> queue = expmap0(torch.randn(64, 16), 0.05)
        >>> loss = loss_fn(q, p, queue)         # MoCo-style queue
        >>> loss_in_batch = loss_fn(q, p)       # SimCLR-style 2B-way
    """

    def __init__(
        self,
        temperature: float = 0.2,
        c: Union[float, Curvature] = 0.05,
        gather_distributed: bool = False,
        block_elements: int = BLOCK_ELEMENTS,
    ) -> None:
        super().__init__()
        check_temperature(temperature)
        self.temperature = temperature
        self.curvature = c if isinstance(c, Curvature) else Curvature(float(c))
        self.gather_distributed = gather_distributed
        self.block_elements = block_elements
        self.workspace = BlockWorkspace()  # scratch kept between calls: 2 blocks of max(block_elements, 32 K) entries
        self.value_check_gate = ValueCheckGate()

    def forward(self, query: Tensor, positive: Tensor, negatives: Optional[Tensor] = None) -> Tensor:
        """Mean loss over the anchors (B in queue mode, 2B in in-batch mode); a 0-dim float32/64 tensor."""
        validate_pair(query, positive, negatives, check_values=False, owner=type(self).__name__)
        tensors = [query, positive] + ([] if negatives is None else [negatives])
        dtype = compute_dtype(*tensors)
        with torch.autocast(device_type=query.device.type, enabled=False):
            query, positive = query.to(dtype), positive.to(dtype)
            c = as_curvature(self.curvature(), query)
            if negatives is not None:
                negatives = negatives.to(dtype)
            if value_check_due(self):  # one read of the device for the three
                check_all_in_ball([(query, "query"), (positive, "positive")]
                                  + ([] if negatives is None else [(negatives, "negatives")]), c)
            if negatives is None:
                batch = in_batch(query, positive, self.gather_distributed)
            else:
                batch = queue_batch(query, positive, negatives)
            pos_logit = -dist_unchecked(batch.anchors, batch.positives, c) / self.temperature
            neg_lse = poincare_negative_logsumexp(
                batch.anchors, batch.negatives, c, self.temperature, batch.mask, self.block_elements, self.workspace
            )
            return (torch.logaddexp(pos_logit, neg_lse) - pos_logit).mean()

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"

