"""The HCL objective: Euclidean InfoNCE on object views + lambda * hyperbolic InfoNCE (scene vs object)."""

from __future__ import annotations

from typing import NamedTuple, Optional, Union

from torch import Tensor, nn

from hcl_plugin.geometry import Curvature
from hcl_plugin.losses.hyperbolic_info_nce import HyperbolicInfoNCELoss
from hcl_plugin.losses.info_nce import InfoNCELoss
from hcl_plugin.utils.checks import check_non_negative, check_nonempty


class HCLLossOutput(NamedTuple):
    """``loss`` (to back-propagate) and its two parts (for logging)."""

    loss: Tensor
    loss_euc: Tensor
    loss_hyp: Tensor


class HCLLoss(nn.Module):
    r"""Hyperbolic Contrastive Learning objective [1, eq. 5]: :math:`\mathcal{L} = \mathcal{L}_{euc} + \lambda\mathcal{L}_{hyp}`.

    * :math:`\mathcal{L}_{euc}`: :class:`InfoNCELoss` between two views of an object crop
      (query from the online encoder, key from the momentum encoder, negatives from a queue of keys
      or the batch). For MoCo's symmetric loss, call twice with the views swapped.
    * :math:`\mathcal{L}_{hyp}`: :class:`HyperbolicInfoNCELoss` between the scene crop (query, on
      the ball) and the object crop (positive, on the ball), negatives from a queue of object keys on
      the ball or the batch. It pulls a scene towards its objects while the object lies closer to the
      origin, so scene norms grow with the number of objects they contain.

    Defaults are the official HCL code's: λ = 0.1, τ = 0.2 for both terms, c = 0.05. λ must be
    finite and >= 0, τ finite and >= 1e-8 (``ValueError`` naming the argument otherwise).

    [1] S. Ge, S. Mishra et al. "Hyperbolic Contrastive Learning for Visual Representations beyond
        Objects". CVPR 2023. https://arxiv.org/abs/2212.00653

    Example:
        >>> import torch
        >>> from hcl_plugin.geometry import expmap0
        >>> loss_fn = HCLLoss()
        >>> obj_q, obj_k = torch.randn(8, 128), torch.randn(8, 128)
        >>> scene, obj = expmap0(torch.randn(8, 128), 0.05), expmap0(torch.randn(8, 128), 0.05)
        >>> out = loss_fn(obj_q, obj_k, scene, obj)
        >>> out.loss.backward()  # doctest: +SKIP
        >>> sorted(out._asdict())
        ['loss', 'loss_euc', 'loss_hyp']
    """

    def __init__(
        self,
        lambda_hyp: float = 0.1,
        temperature_euc: float = 0.2,
        temperature_hyp: float = 0.2,
        c: Union[float, Curvature] = 0.05,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        check_non_negative(lambda_hyp, "lambda_hyp")
        self.lambda_hyp = lambda_hyp
        self.euclidean = InfoNCELoss(temperature_euc, gather_distributed=gather_distributed)
        self.hyperbolic = HyperbolicInfoNCELoss(temperature_hyp, c=c, gather_distributed=gather_distributed)

    def forward(
        self,
        object_query: Tensor,
        object_key: Tensor,
        scene_query: Tensor,
        object_key_hyp: Tensor,
        euc_negatives: Optional[Tensor] = None,
        hyp_negatives: Optional[Tensor] = None,
    ) -> HCLLossOutput:
        """Args: object views (B, D) for the Euclidean term; scene query and object key (B, D) on the
        ball for the hyperbolic term; optional queues (K, D) of negatives for each.

        Raises ``ValueError`` naming the argument for an empty batch (and see the two losses)."""
        for name, tensor in (("object_query", object_query), ("object_key", object_key),
                             ("scene_query", scene_query), ("object_key_hyp", object_key_hyp)):
            if isinstance(tensor, Tensor):
                check_nonempty(tensor, name, type(self).__name__)
        loss_euc = self.euclidean(object_query, object_key, euc_negatives)
        loss_hyp = self.hyperbolic(scene_query, object_key_hyp, hyp_negatives)
        return HCLLossOutput(loss_euc + self.lambda_hyp * loss_hyp, loss_euc.detach(), loss_hyp.detach())
