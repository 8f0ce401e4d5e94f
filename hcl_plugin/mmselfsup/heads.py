"""``HyperbolicContrastiveHead``: InfoNCE with hyperbolic logits, registered in MMSelfSup's ``MODELS``.

.. math:: \\mathcal{L}_{hyp} = -\\frac{1}{N}\\sum_i \\log
    \\frac{e^{-d_c(q_i, k_i)/\\tau}}{e^{-d_c(q_i, k_i)/\\tau} + \\sum_j e^{-d_c(q_i, n_j)/\\tau}}

with :math:`d_c` the Poincaré distance [1, eq. 4]: ``q`` scene queries, ``k`` object keys, ``n`` the
queue of earlier object keys. A thin wrapper over :class:`hcl_plugin.losses.HyperbolicInfoNCELoss`
(fused O(B·K) kernel, float32 under autocast, errors naming the bad input).

[1] S. Ge, S. Mishra et al. "Hyperbolic Contrastive Learning for Visual Representations beyond
    Objects". CVPR 2023. https://arxiv.org/abs/2212.00653
"""

from __future__ import annotations

from typing import Optional, Union

from mmengine.model import BaseModule
from mmselfsup.registry import MODELS
from torch import Tensor

from hcl_plugin.geometry import Curvature
from hcl_plugin.losses import HyperbolicInfoNCELoss

__all__ = ["HyperbolicContrastiveHead"]


@MODELS.register_module()
class HyperbolicContrastiveHead(BaseModule):
    """Hyperbolic contrastive head (MMSelfSup ``ContrastiveHead`` counterpart on the Poincaré ball).

    Args:
        temperature: τ (official HCL: 0.2, the same as the Euclidean branch).
        c: curvature magnitude, or a :class:`~hcl_plugin.geometry.Curvature` shared with the neck.
            Inside ``HCLMoCoV2`` / ``HCLDenseCL`` the algorithm passes its own (``model.curvature``);
            leave ``c`` unset there.
    """

    def __init__(self, temperature: float = 0.2, c: Union[float, Curvature] = 0.05) -> None:
        super().__init__()
        self.temperature = float(temperature)
        self.loss = HyperbolicInfoNCELoss(temperature=temperature, c=c)

    @property
    def curvature(self) -> Curvature:
        """The :class:`~hcl_plugin.geometry.Curvature` of the ball (the loss's)."""
        return self.loss.curvature

    @property
    def c(self) -> Union[float, Tensor]:
        """The curvature magnitude: a float when fixed, a 0-dim tensor when learnable."""
        return self.loss.curvature()

    def forward(self, query: Tensor, key: Tensor, negatives: Optional[Tensor] = None) -> Tensor:
        """Mean loss; ``query``/``key`` ``(N, D)`` and ``negatives`` ``(K, D)`` points in the ball."""
        return self.loss(query, key, negatives)
