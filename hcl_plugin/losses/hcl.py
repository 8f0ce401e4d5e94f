"""The HCL objective: Euclidean InfoNCE on object views + lambda * hyperbolic InfoNCE (scene vs object)."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from hcl_plugin.geometry import Curvature
from hcl_plugin.losses.hyperbolic_info_nce import HyperbolicInfoNCELoss
from hcl_plugin.losses.info_nce import InfoNCELoss
from hcl_plugin.utils.checks import check_non_negative, check_nonempty

__all__ = ["HCLLoss", "HCLLossOutput", "check_lambda_hyp", "check_nonempty_inputs", "combine_hcl",
           "warn_keys_require_grad"]


class HCLLossOutput(NamedTuple):
    """``loss`` (to back-propagate) and its two parts (detached, for logging)."""

    loss: Tensor
    loss_euc: Tensor
    loss_hyp: Tensor


def check_lambda_hyp(lambda_hyp: float) -> float:
    """``lambda_hyp`` as a float; ``ValueError`` naming it unless it is finite and >= 0."""
    check_non_negative(lambda_hyp, "lambda_hyp")
    return float(lambda_hyp)


def combine_hcl(loss_euc: Tensor, loss_hyp: Optional[Tensor], lambda_hyp: float) -> HCLLossOutput:
    r"""The HCL sum [1, eq. 5], :math:`\mathcal{L} = \mathcal{L}_{euc} + \lambda\,\mathcal{L}_{hyp}`.

    ``loss_hyp=None`` (the hyperbolic branch was not computed, the baseline) gives
    :math:`\mathcal{L}_{euc}` with ``loss_hyp`` reported as 0. Every HCL objective of the package
    (:class:`HCLLoss`, the Lightly ``HCLLoss``, the Lightning models) adds its terms here.

    [1] S. Ge, S. Mishra et al. "Hyperbolic Contrastive Learning for Visual Representations beyond
        Objects". CVPR 2023. https://arxiv.org/abs/2212.00653
    """
    if loss_hyp is None:
        return HCLLossOutput(loss_euc, loss_euc.detach(), loss_euc.new_zeros(()))
    return HCLLossOutput(loss_euc + lambda_hyp * loss_hyp, loss_euc.detach(), loss_hyp.detach())


def check_nonempty_inputs(owner: str, named: Sequence[Tuple[str, Any]]) -> None:
    """``ValueError`` for the first empty batch among ``(name, tensor or (tensor, tensor) or None)`` pairs.

    A pair of views is reported as ``name[0]``/``name[1]``; ``None`` and non-tensors are skipped
    (the losses report those themselves).
    """
    for name, value in named:
        views = value if isinstance(value, (tuple, list)) else (value,)
        for index, tensor in enumerate(views):
            if isinstance(tensor, Tensor):
                check_nonempty(tensor, f"{name}[{index}]" if isinstance(value, (tuple, list)) else name, owner)


def warn_keys_require_grad(owner: nn.Module, named: Sequence[Tuple[str, Any]]) -> None:
    """A ``UserWarning`` (once per ``owner``) naming the first key among ``(name, tensor or pair or None)``
    that still requires grad while autograd records: MoCo keys come from the momentum encoder under
    ``torch.no_grad()``; a key with a graph trains the key encoder too (and the queue keeps the graph
    alive until it detaches). Intended in-batch use (both views trained) can pass ``key.detach()`` or
    ignore the warning."""
    if getattr(owner, "_warned_key_grad", False) or not torch.is_grad_enabled():
        return
    for name, value in named:
        views = value if isinstance(value, (tuple, list)) else (value,)
        for index, tensor in enumerate(views):
            if isinstance(tensor, Tensor) and tensor.requires_grad:
                shown = f"{name}[{index}]" if isinstance(value, (tuple, list)) else name
                owner._warned_key_grad = True
                warnings.warn(
                    f"{type(owner).__name__}: {shown} requires grad, so the loss also back-propagates through the "
                    f"key encoder; keys come from the momentum encoder under torch.no_grad() (or pass "
                    f"{shown}.detach()). Shown once per loss.", UserWarning, stacklevel=3)
                return


class HCLLoss(nn.Module):
    r"""Hyperbolic Contrastive Learning objective [1, eq. 5]: :math:`\mathcal{L} = \mathcal{L}_{euc} + \lambda\mathcal{L}_{hyp}`.

    * :math:`\mathcal{L}_{euc}`: :class:`InfoNCELoss` between two views of an object crop
      (query from the online encoder, key from the momentum encoder, negatives from a queue of keys
      or the batch). For MoCo's symmetric loss, call twice with the views swapped (or use the Lightly
      ``HCLLoss``, which holds the queues).
    * :math:`\mathcal{L}_{hyp}`: :class:`HyperbolicInfoNCELoss` between the scene crop (query, on
      the ball) and the object crop (positive, on the ball), negatives from a queue of object keys on
      the ball or the batch. It pulls a scene towards its objects while the object lies closer to the
      origin, so scene norms grow with the number of objects they contain.

    The hyperbolic term is computed when its two inputs are given. With ``lambda_hyp == 0`` they may
    be ``None``: the term is skipped (the MoCo/SimCLR baseline at the cost of the Euclidean term
    alone) and ``loss_hyp`` is reported as 0; with ``lambda_hyp > 0`` they are required.

    Defaults are the official HCL code's: λ = 0.1, τ = 0.2 for both terms, c = 0.05. λ must be
    finite and >= 0, τ finite and >= 1e-8, c finite and > 0 (``ValueError`` naming the argument
    otherwise). ``c`` may be a :class:`~hcl_plugin.geometry.Curvature` (e.g. learnable): the
    hyperbolic term keeps that object, so a model passes the one its Poincaré head and memory bank
    use.

    [1] S. Ge, S. Mishra et al. "Hyperbolic Contrastive Learning for Visual Representations beyond
        Objects". CVPR 2023. https://arxiv.org/abs/2212.00653

    Attributes:
        lambda_hyp: weight of the hyperbolic term.
        euclidean: the :class:`InfoNCELoss` term.
        hyperbolic: the :class:`HyperbolicInfoNCELoss` term (``hyperbolic.curvature`` is the curvature).

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
        self.lambda_hyp = check_lambda_hyp(lambda_hyp)
        self.euclidean = InfoNCELoss(temperature_euc, gather_distributed=gather_distributed)
        self.hyperbolic = HyperbolicInfoNCELoss(temperature_hyp, c=c, gather_distributed=gather_distributed)

    @property
    def curvature(self) -> Curvature:
        """The curvature of the hyperbolic term (the object passed as ``c``, or one built from the float)."""
        return self.hyperbolic.curvature

    def computes_hyperbolic(self, query: Optional[Tensor], key: Optional[Tensor],
                            names: Tuple[str, str] = ("scene_query", "object_key_hyp")) -> bool:
        """Whether the hyperbolic term is computed: both inputs given. ``ValueError`` naming them when
        one is missing while ``lambda_hyp > 0``."""
        if query is not None and key is not None:
            return True
        if self.lambda_hyp > 0:
            raise ValueError(f"lambda_hyp > 0 needs {names[0]} and {names[1]}")
        return False

    def combine(self, loss_euc: Tensor, loss_hyp: Optional[Tensor]) -> HCLLossOutput:
        r""":func:`combine_hcl` with this loss's λ."""
        return combine_hcl(loss_euc, loss_hyp, self.lambda_hyp)

    def forward(
        self,
        object_query: Tensor,
        object_key: Tensor,
        scene_query: Optional[Tensor] = None,
        object_key_hyp: Optional[Tensor] = None,
        euc_negatives: Optional[Tensor] = None,
        hyp_negatives: Optional[Tensor] = None,
    ) -> HCLLossOutput:
        """Args: object views (B, D) for the Euclidean term; scene query and object key (B, D') on the
        ball for the hyperbolic term (``None`` allowed when ``lambda_hyp == 0``); optional queues
        (K, D) and (K, D') of negatives for each (``None``: in-batch negatives).

        Raises ``ValueError`` naming the argument for an empty batch (and see the two losses). Keys
        that still require grad give a ``UserWarning`` naming the argument (once per loss)."""
        check_nonempty_inputs(type(self).__name__, [("object_query", object_query), ("object_key", object_key),
                                                    ("scene_query", scene_query), ("object_key_hyp", object_key_hyp)])
        warn_keys_require_grad(self, [("object_key", object_key), ("object_key_hyp", object_key_hyp)])
        loss_euc = self.euclidean(object_query, object_key, euc_negatives)
        loss_hyp = None
        if self.computes_hyperbolic(scene_query, object_key_hyp):
            loss_hyp = self.hyperbolic(scene_query, object_key_hyp, hyp_negatives)
        return self.combine(loss_euc, loss_hyp)

    def extra_repr(self) -> str:
        return f"lambda_hyp={self.lambda_hyp}"
