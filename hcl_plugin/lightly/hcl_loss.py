"""The HCL objective in Lightly's conventions: the core loss plus memory banks, a MoCo-loop call signature."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

from torch import Tensor, nn

from hcl_plugin.geometry import Curvature
from hcl_plugin.lightly.hyperbolic_ntx_ent_loss import MemoryBankLoss, bank_size, hyperbolic_bank, loss_with_memory_bank
from hcl_plugin.losses import HCLLoss as CoreHCLLoss
from hcl_plugin.losses.hcl import check_nonempty_inputs, warn_keys_require_grad
from hcl_plugin.losses.info_nce import l2_normalize
from hcl_plugin.modules import MemoryBank

ViewPair = Union[Tensor, Tuple[Tensor, Tensor]]


class HCLLoss(nn.Module):
    r"""HCL loss :math:`\mathcal{L} = \mathcal{L}_{euc} + \lambda\,\mathcal{L}_{hyp}` with Lightly-style memory banks.

    The core :class:`hcl_plugin.losses.HCLLoss` (:attr:`objective`: its two terms, the λ check and
    the sum) plus what a Lightly MoCo loop expects of a loss: the queues inside, and the symmetric
    two-queue MoCo form.

    * :math:`\mathcal{L}_{euc}`: InfoNCE between two views of an object crop, negatives from a queue
      of keys (MoCo). With ``symmetric=True`` (the official HCL setting) the views are passed as
      pairs ``(q1, q2)``, ``(k1, k2)`` and the loss is ``(InfoNCE(q1, k2) + InfoNCE(q2, k1)) / 2``
      with one queue per direction.
    * :math:`\mathcal{L}_{hyp}`: hyperbolic InfoNCE between the scene query and the object key on the
      ball, negatives from a queue of object keys on the ball (:attr:`hyperbolic`, a
      :class:`~hcl_plugin.lightly.hyperbolic_ntx_ent_loss.MemoryBankLoss` around the core term).
      As in the core loss, it is computed when ``hyp_query`` and ``hyp_key`` are given; with
      ``lambda_hyp == 0`` they may be ``None`` (the MoCo-v2 baseline at the same cost).

    Queues are updated with this step's keys after the loss, only when the query requires grad
    (training), and are saved in checkpoints (Lightly's own banks are not). Defaults follow the
    official HCL code: λ = 0.1, τ = 0.2 for both terms, c = 0.05.

    One curvature: ``c`` is a float or a :class:`~hcl_plugin.geometry.Curvature`, passed unchanged to
    the core loss; the hyperbolic queue uses the same object (with a learnable one it stores tangent
    vectors). A float builds a new ``Curvature``: if the model's Poincaré head was built with another
    ``c``, head and loss work on different balls and nothing detects it. Pass the head's object,
    ``HCLLoss(c=hyp_head.curvature, ...)``, as the models of :mod:`hcl_plugin.lightly.models` do.

    Reference: S. Ge, S. Mishra et al., "Hyperbolic Contrastive Learning for Visual Representations
    beyond Objects", CVPR 2023. https://arxiv.org/abs/2212.00653

    Args:
        lambda_hyp: weight of the hyperbolic term (finite, >= 0).
        temperature_euc, temperature_hyp: τ of each term.
        c: curvature magnitude of the ball, a float or a ``Curvature``.
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
        c: Union[float, Curvature] = 0.05,
        memory_bank_size: Union[int, Sequence[int]] = 0,
        hyp_memory_bank_size: Optional[Union[int, Sequence[int]]] = None,
        symmetric: bool = False,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        self.objective = CoreHCLLoss(lambda_hyp, temperature_euc, temperature_hyp, c, gather_distributed)
        self.symmetric = symmetric
        size = bank_size(memory_bank_size)
        self.euclidean_banks = nn.ModuleList(
            []
            if size is None
            else [MemoryBank(size[0], size[1], seed=i, gather_distributed=gather_distributed) for i in range(1 + symmetric)]
        )
        hyp_size = memory_bank_size if hyp_memory_bank_size is None else hyp_memory_bank_size
        self.hyperbolic = MemoryBankLoss(
            self.objective.hyperbolic, hyperbolic_bank(hyp_size, self.curvature, gather_distributed)
        )

    @property
    def lambda_hyp(self) -> float:
        return self.objective.lambda_hyp

    @property
    def curvature(self) -> Curvature:
        """The one curvature of the hyperbolic term and its queue."""
        return self.objective.curvature

    def _euclidean(self, query: Tensor, key: Tensor, bank_index: int) -> Tensor:
        bank = self.euclidean_banks[bank_index] if self.euclidean_banks else None
        return loss_with_memory_bank(self.objective.euclidean, query, key, bank,
                                     prepare_key=lambda k: l2_normalize(k.to(bank.bank.dtype)))

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
        naming the argument; keys that still require grad warn once (``UserWarning`` naming the argument).
        Points outside the loss's ball raise ``ValueError`` (with value checks on): a head built with
        another curvature than the loss's usually shows up that way."""
        check_nonempty_inputs(type(self).__name__, [("euc_query", euc_query), ("euc_key", euc_key),
                                                    ("hyp_query", hyp_query), ("hyp_key", hyp_key)])
        warn_keys_require_grad(self, [("euc_key", euc_key), ("hyp_key", hyp_key)])
        pairs = isinstance(euc_query, (tuple, list)), isinstance(euc_key, (tuple, list))
        if self.symmetric:
            if not all(pairs):
                raise ValueError("symmetric=True needs euc_query=(q1, q2) and euc_key=(k1, k2)")
            loss_euc = 0.5 * (self._euclidean(euc_query[0], euc_key[1], 0) + self._euclidean(euc_query[1], euc_key[0], 1))
        else:
            if any(pairs):
                raise ValueError("pairs of views need symmetric=True")
            loss_euc = self._euclidean(euc_query, euc_key, 0)
        loss_hyp = None
        if self.objective.computes_hyperbolic(hyp_query, hyp_key, ("hyp_query", "hyp_key")):
            loss_hyp = self.hyperbolic(hyp_query, hyp_key)
        out = self.objective.combine(loss_euc, loss_hyp)
        if return_parts:
            return out.loss, {"loss_euc": out.loss_euc, "loss_hyp": out.loss_hyp}
        return out.loss
