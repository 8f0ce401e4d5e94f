"""The HCL objective in Lightly's conventions: memory banks inside the loss, a MoCo-loop call signature."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from hcl_plugin.lightly.hyperbolic_ntx_ent_loss import HyperbolicNTXentLoss, bank_size
from hcl_plugin.losses import InfoNCELoss
from hcl_plugin.losses.info_nce import l2_normalize
from hcl_plugin.modules import MemoryBank
from hcl_plugin.utils.checks import check_non_negative, check_nonempty

ViewPair = Union[Tensor, Tuple[Tensor, Tensor]]


class HCLLoss(nn.Module):
    r"""HCL loss :math:`\mathcal{L} = \mathcal{L}_{euc} + \lambda\,\mathcal{L}_{hyp}` with Lightly-style memory banks.

    * :math:`\mathcal{L}_{euc}`: InfoNCE between two views of an object crop, negatives from a queue
      of keys (MoCo). With ``symmetric=True`` (the official HCL setting) the views are passed as
      pairs ``(q1, q2)``, ``(k1, k2)`` and the loss is ``(InfoNCE(q1, k2) + InfoNCE(q2, k1)) / 2``
      with one queue per direction.
    * :math:`\mathcal{L}_{hyp}`: :class:`HyperbolicNTXentLoss` between the scene query and the object
      key on the ball, negatives from a queue of object keys on the ball. Skipped (and its inputs may
      be ``None``) when ``lambda_hyp == 0``, which gives the MoCo-v2 baseline at the same cost.

    Queues are updated with this step's keys after the loss, only when the query requires grad
    (training), and are saved in checkpoints (Lightly's own banks are not). Defaults follow the
    official HCL code: λ = 0.1, τ = 0.2 for both terms, c = 0.05.

    Reference: S. Ge, S. Mishra et al., "Hyperbolic Contrastive Learning for Visual Representations
    beyond Objects", CVPR 2023. https://arxiv.org/abs/2212.00653

    Attributes:
        lambda_hyp: weight of the hyperbolic term (finite, >= 0).
        temperature_euc, temperature_hyp: τ of each term.
        c: curvature magnitude of the ball.
        memory_bank_size: Euclidean queue(s), 0 (in-batch negatives) or ``(K, D)``.
        hyp_memory_bank_size: hyperbolic queue; defaults to ``memory_bank_size``.
        symmetric: symmetric Euclidean loss with two queues.
        gather_distributed: gather keys (queues) or views (in-batch) from all ranks.

    Examples:
        >>> # inside a Lightly MoCo training_step
        >>> criterion = HCLLoss(memory_bank_size=(4096, 128), symmetric=True)
        >>> loss = criterion((q1, q2), (k1, k2), scene_query, object_key)            # doctest: +SKIP
        >>> loss, parts = criterion((q1, q2), (k1, k2), scene_query, object_key, return_parts=True)  # doctest: +SKIP
    """

    def __init__(
        self,
        lambda_hyp: float = 0.1,
        temperature_euc: float = 0.2,
        temperature_hyp: float = 0.2,
        c: float = 0.05,
        memory_bank_size: Union[int, Sequence[int]] = 0,
        hyp_memory_bank_size: Optional[Union[int, Sequence[int]]] = None,
        symmetric: bool = False,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        check_non_negative(lambda_hyp, "lambda_hyp")
        self.lambda_hyp = lambda_hyp
        self.symmetric = symmetric
        self.euclidean = InfoNCELoss(temperature_euc, gather_distributed=gather_distributed)
        size = bank_size(memory_bank_size)
        self.euclidean_banks = nn.ModuleList(
            []
            if size is None
            else [MemoryBank(size[0], size[1], seed=i, gather_distributed=gather_distributed) for i in range(1 + symmetric)]
        )
        self.hyperbolic = HyperbolicNTXentLoss(
            temperature_hyp,
            c,
            memory_bank_size=memory_bank_size if hyp_memory_bank_size is None else hyp_memory_bank_size,
            gather_distributed=gather_distributed,
        )

    def _euclidean(self, query: Tensor, key: Tensor, bank_index: int) -> Tensor:
        if not self.euclidean_banks:
            return self.euclidean(query, key)
        bank = self.euclidean_banks[bank_index]
        loss = self.euclidean(query, key, bank.negatives().to(query.device))
        if query.requires_grad:
            bank.enqueue(l2_normalize(key.detach().to(bank.bank.dtype)))
        return loss

    def forward(
        self,
        euc_query: ViewPair,
        euc_key: ViewPair,
        hyp_query: Optional[Tensor] = None,
        hyp_key: Optional[Tensor] = None,
        return_parts: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, Dict[str, Tensor]]]:
        """Args: object-view queries and keys (pairs when ``symmetric``), (B, D); scene query and
        object key on the ball, (B, D'). Returns the loss, and with ``return_parts`` also
        ``{"loss_euc", "loss_hyp"}`` (detached) for logging. An empty batch raises ``ValueError``
        naming the argument."""
        owner = type(self).__name__
        for name, views in (("euc_query", euc_query), ("euc_key", euc_key), ("hyp_query", hyp_query), ("hyp_key", hyp_key)):
            for index, tensor in enumerate(views if isinstance(views, (tuple, list)) else (views,)):
                if isinstance(tensor, Tensor):
                    check_nonempty(tensor, f"{name}[{index}]" if isinstance(views, (tuple, list)) else name, owner)
        if self.symmetric:
            if not (isinstance(euc_query, (tuple, list)) and isinstance(euc_key, (tuple, list))):
                raise ValueError("symmetric=True needs euc_query=(q1, q2) and euc_key=(k1, k2)")
            loss_euc = 0.5 * (self._euclidean(euc_query[0], euc_key[1], 0) + self._euclidean(euc_query[1], euc_key[0], 1))
        else:
            if isinstance(euc_query, (tuple, list)) or isinstance(euc_key, (tuple, list)):
                raise ValueError("pairs of views need symmetric=True")
            loss_euc = self._euclidean(euc_query, euc_key, 0)
        if self.lambda_hyp > 0:
            if hyp_query is None or hyp_key is None:
                raise ValueError("lambda_hyp > 0 needs hyp_query and hyp_key")
            loss_hyp = self.hyperbolic(hyp_query, hyp_key)
            loss = loss_euc + self.lambda_hyp * loss_hyp
        else:
            loss_hyp = torch.zeros((), device=loss_euc.device)
            loss = loss_euc
        if return_parts:
            return loss, {"loss_euc": loss_euc.detach(), "loss_hyp": loss_hyp.detach()}
        return loss
