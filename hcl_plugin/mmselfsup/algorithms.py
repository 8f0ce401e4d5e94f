"""``HCLMoCoV2`` and ``HCLDenseCL``: MMSelfSup's MoCo-v2 and DenseCL plus HCL's hyperbolic branch.

The baseline objective is MMSelfSup's own, unchanged (``MoCo.loss`` / ``DenseCL.loss`` on views 0 and
1, two views of one object crop). HCL adds [1, sec. 3.2]

.. math:: \\mathcal{L} = \\mathcal{L}_{base} + \\lambda\\,\\mathcal{L}_{hyp},\\qquad
    \\mathcal{L}_{hyp} = \\mathrm{InfoNCE}\\big(-d_c(q, k)/\\tau\\big)

with the query ``q`` = the scene crop (view 2) through the online backbone and the ``PoincareNeck``,
the key ``k`` = the object crop (view 3) through the momentum backbone and a momentum copy of the
neck (no gradient, batch-shuffled across ranks like MMSelfSup's keys), and negatives a queue of
earlier object keys on the ball (:class:`hcl_plugin.modules.HyperbolicMemoryBank`: initialised inside
the ball from a seed so every rank starts equal, keys gathered across ranks before enqueueing, saved
in checkpoints). ``loss_hyp`` (already multiplied by λ) is logged beside the baseline's losses;
``HCLLambdaWarmupHook`` can ramp λ.

[1] S. Ge, S. Mishra et al. "Hyperbolic Contrastive Learning for Visual Representations beyond
    Objects". CVPR 2023. https://arxiv.org/abs/2212.00653
"""

from __future__ import annotations

from typing import Dict, List, Optional, Union

import torch
from mmengine.model import ExponentialMovingAverage
from mmselfsup.models.algorithms import DenseCL, MoCo
from mmselfsup.registry import MODELS
from mmselfsup.structures import SelfSupDataSample
from mmselfsup.utils import batch_shuffle_ddp, batch_unshuffle_ddp
from torch import Tensor

from hcl_plugin.modules import HyperbolicMemoryBank

__all__ = ["HCLMoCoV2", "HCLDenseCL", "HyperbolicBranchMixin", "NUM_HCL_VIEWS"]

#: Views per sample: object view 1, object view 2 (baseline), scene crop, object crop (hyperbolic).
NUM_HCL_VIEWS = 4


class HyperbolicBranchMixin:
    """The hyperbolic branch shared by the HCL algorithms (needs ``backbone`` and ``encoder_k``)."""

    def _build_hyperbolic_branch(
        self,
        hyp_neck: dict,
        hyp_head: dict,
        hyp_lambda: float,
        hyp_queue_len: int,
        momentum: float,
        queue_seed: int,
    ) -> None:
        if hyp_lambda < 0:
            raise ValueError(f"{type(self).__name__}: hyp_lambda must be >= 0, got {hyp_lambda}")
        if hyp_queue_len < 1:
            raise ValueError(f"{type(self).__name__}: hyp_queue_len must be >= 1, got {hyp_queue_len}")
        self.hyp_neck = MODELS.build(hyp_neck)
        self.hyp_head = MODELS.build(hyp_head)
        neck_c, head_c = getattr(self.hyp_neck, "c", None), getattr(self.hyp_head, "c", None)
        if neck_c is not None and head_c is not None and neck_c != head_c:
            raise ValueError(
                f"{type(self).__name__}: hyp_neck.c = {neck_c} and hyp_head.c = {head_c} differ; "
                "queries and keys must live in the same ball"
            )
        self.hyp_lambda = float(hyp_lambda)
        self.hyp_neck_k = ExponentialMovingAverage(self.hyp_neck, 1 - momentum)
        dim = hyp_neck.get("out_channels", 128)
        self.hyp_queue = HyperbolicMemoryBank(hyp_queue_len, dim, c=neck_c or head_c or 0.05, seed=queue_seed)

    def _hyperbolic_loss(self, inputs: List[Tensor]) -> Dict[str, Tensor]:
        if len(inputs) != NUM_HCL_VIEWS:
            raise ValueError(
                f"{type(self).__name__} expects {NUM_HCL_VIEWS} views per sample (object, object, scene, "
                f"object; the SceneObjectMultiView transform makes them), got {len(inputs)}"
            )
        im_scene, im_object = inputs[2], inputs[3]
        query = self.hyp_neck(self.backbone(im_scene))[0]
        with torch.no_grad():
            self.hyp_neck_k.update_parameters(self.hyp_neck)
            im_object, idx_unshuffle = batch_shuffle_ddp(im_object)
            key = self.hyp_neck_k.module(self.encoder_k.module[0](im_object))[0]
            key = batch_unshuffle_ddp(key, idx_unshuffle)
        loss_hyp = self.hyp_head(query, key, self.hyp_queue.negatives())
        self.hyp_queue.enqueue(key)
        out = {"loss_hyp": loss_hyp * self.hyp_lambda}
        # health of the hyperbolic branch (logged, not optimised: MMEngine sums only keys with 'loss')
        for name, value in getattr(self.hyp_neck, "stats", {}).items():
            out[name if name.startswith("hyp_") else f"hyp_{name}"] = value.detach()
        return out


@MODELS.register_module()
class HCLMoCoV2(HyperbolicBranchMixin, MoCo):
    """MoCo-v2 + HCL (MMSelfSup ``MoCo`` with a ``MoCoV2Neck``, plus the hyperbolic branch).

    Args:
        backbone, neck, head, queue_len, feat_dim, momentum, pretrained, data_preprocessor,
            init_cfg: as MMSelfSup's ``MoCo``.
        hyp_neck: a ``PoincareNeck`` config.
        hyp_head: a ``HyperbolicContrastiveHead`` config.
        hyp_lambda: λ, the weight of the hyperbolic loss (official HCL: 0.1).
        hyp_queue_len: length of the queue of object keys (default: ``queue_len``).
        queue_seed: seed of the hyperbolic queue's initial points (equal on every rank).
    """

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        head: dict,
        hyp_neck: dict,
        hyp_head: dict,
        hyp_lambda: float = 0.1,
        queue_len: int = 65536,
        hyp_queue_len: Optional[int] = None,
        feat_dim: int = 128,
        momentum: float = 0.999,
        queue_seed: int = 0,
        pretrained: Optional[str] = None,
        data_preprocessor: Optional[dict] = None,
        init_cfg: Optional[Union[List[dict], dict]] = None,
    ) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head, queue_len=queue_len, feat_dim=feat_dim,
                         momentum=momentum, pretrained=pretrained, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self._build_hyperbolic_branch(hyp_neck, hyp_head, hyp_lambda, hyp_queue_len or queue_len, momentum, queue_seed)

    def loss(self, inputs: List[Tensor], data_samples: List[SelfSupDataSample], **kwargs) -> Dict[str, Tensor]:
        """MoCo-v2's loss on views 0/1 (logged as ``loss_moco``) plus ``loss_hyp`` on views 2 / 3.

        MMSelfSup's ``MoCo`` names its loss ``loss``, the key MMEngine uses for the total; kept, the
        log would show MoCo's part as the total. The optimised sum is the same either way.
        """
        losses = super().loss(inputs, data_samples, **kwargs)
        losses["loss_moco"] = losses.pop("loss")
        losses.update(self._hyperbolic_loss(inputs))
        return losses


@MODELS.register_module()
class HCLDenseCL(HyperbolicBranchMixin, DenseCL):
    """DenseCL + HCL (MMSelfSup ``DenseCL`` plus the hyperbolic branch).

    Args:
        backbone, neck, head, queue_len, feat_dim, momentum, loss_lambda, pretrained,
            data_preprocessor, init_cfg: as MMSelfSup's ``DenseCL``.
        hyp_neck, hyp_head, hyp_lambda, hyp_queue_len, queue_seed: as :class:`HCLMoCoV2`.
    """

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        head: dict,
        hyp_neck: dict,
        hyp_head: dict,
        hyp_lambda: float = 0.1,
        queue_len: int = 65536,
        hyp_queue_len: Optional[int] = None,
        feat_dim: int = 128,
        momentum: float = 0.999,
        loss_lambda: float = 0.5,
        queue_seed: int = 0,
        pretrained: Optional[str] = None,
        data_preprocessor: Optional[dict] = None,
        init_cfg: Optional[Union[List[dict], dict]] = None,
    ) -> None:
        super().__init__(backbone=backbone, neck=neck, head=head, queue_len=queue_len, feat_dim=feat_dim,
                         momentum=momentum, loss_lambda=loss_lambda, pretrained=pretrained,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self._build_hyperbolic_branch(hyp_neck, hyp_head, hyp_lambda, hyp_queue_len or queue_len, momentum, queue_seed)

    def loss(self, inputs: List[Tensor], data_samples: List[SelfSupDataSample], **kwargs) -> Dict[str, Tensor]:
        """DenseCL's ``loss`` on views 0/1 plus ``loss_hyp`` on views 2 (scene) / 3 (object)."""
        losses = super().loss(inputs, data_samples, **kwargs)
        losses.update(self._hyperbolic_loss(inputs))
        return losses
