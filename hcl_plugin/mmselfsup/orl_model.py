"""``ORL`` and ``HCLORL``: ORL's stage 3 on MMSelfSup's ``BYOL``, and HCL's hyperbolic branch added to it.

ORL stage 3 (Xie et al., "Unsupervised Object-Level Representation Learning from Scene Images",
NeurIPS 2021; release github Jiahao000/ORL, ``openselfsup/models/orl.py``) trains BYOL on three kinds
of view pairs at once, each with its own predictor (``LatentPredictHead``) and one shared online /
target network (backbone + projection neck, the target an EMA with a cosine-annealed momentum):

.. math:: \\mathcal{L}_{ORL} = w_g\\,\\mathcal{L}(x_1, x_2) + w_{intra}\\,\\mathcal{L}(p_1, p_2)
    + w_{inter}\\,\\mathcal{L}(q_1, q_2),

with :math:`\\mathcal{L}(a, b) = 2\\,[\\ell(h(f(a)), \\bar f(b)) + \\ell(h(f(b)), \\bar f(a))]` MMSelfSup's
BYOL loss (:math:`\\ell = -\\cos`, ``CosineSimilarityLoss``; the factor 2 is MMSelfSup's ``BYOL``, so each
term lies in [-4, 4], as the release's ``LatentPredictHead`` loss),
:math:`x_{1,2}` two augmented views of the image, :math:`p_{1,2}` an intra-RoI pair (a proposal and a
jittered copy), :math:`q_{1,2}` an inter-RoI pair (corresponding proposals of the image and of one of
its nearest images, from stage 2). The weights default to 1 (the release). With both local weights 0
the loss is MMSelfSup's ``BYOL`` on the image views (the local branches are then not computed).

``HCLORL`` adds [Ge, Mishra et al., CVPR 2023] :math:`\\lambda\\,\\mathcal{L}_{hyp}`, the hyperbolic
InfoNCE of :class:`hcl_plugin.mmselfsup.algorithms.HyperbolicBranchMixin` with the image (scene, the
whole image: views 6) as query through the online backbone and one of its proposals (object: the
intra-RoI box, view 7) as key through the target backbone, and a queue of earlier object keys. The
options (``hyp_neck`` / ``hyperbolic_head`` / ``decoupled`` / ``curvature`` / ``hyp_queue_len``) are
those of ``HCLMoCoV2``; the momentum copy of the hyperbolic neck follows the target network's cosine
momentum (an MMSelfSup ``CosineEMA`` with the same base momentum).

Views per sample, made by ``ORLMultiView`` (:mod:`hcl_plugin.mmselfsup.orl_data`): 0, 1 image; 2, 3
intra-RoI; 4, 5 inter-RoI (4 in the image, 5 in the neighbour); ``HCLORL`` also 6 scene, 7 object.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

import torch
from mmengine.model import ExponentialMovingAverage
from mmselfsup.models.algorithms import BYOL
from mmselfsup.models.utils import CosineEMA
from mmselfsup.registry import MODELS
from mmselfsup.structures import SelfSupDataSample
from torch import Tensor, nn

from hcl_plugin.geometry import Curvature
from hcl_plugin.mmselfsup.algorithms import (
    CurvatureConfig,
    HyperbolicBranchMixin,
    InitConfig,
    _arguments,
    momentum_copy,
)
from hcl_plugin.utils.checks import check_non_negative

__all__ = ["ORL", "HCLORL", "NUM_ORL_VIEWS", "NUM_HCLORL_VIEWS", "DEFAULT_HYP_QUEUE_LEN"]

#: views per sample of ORL (image x2, intra-RoI x2, inter-RoI x2) and of HCLORL (+ scene, object)
NUM_ORL_VIEWS = 6
NUM_HCLORL_VIEWS = 8
#: the hyperbolic queue's length without ``hyp_queue_len`` (BYOL has no queue; official HCL: 65536)
DEFAULT_HYP_QUEUE_LEN = 65536

_BRANCHES = (("global", 0), ("local_intra", 2), ("local_inter", 4))


@MODELS.register_module()
class ORL(BYOL):
    """ORL stage 3: BYOL on image, intra-RoI and inter-RoI view pairs (module docstring).

    Args:
        backbone, neck, head, base_momentum, pretrained, data_preprocessor, init_cfg: as MMSelfSup's
            ``BYOL`` (the release: ResNet-50, a 2048-4096-256 projection without bias, a 256-4096-256
            predictor, base momentum 0.99).
        global_loss_weight, local_intra_loss_weight, local_inter_loss_weight: :math:`w_g`,
            :math:`w_{intra}`, :math:`w_{inter}` (default 1 each).

    The intra- and inter-RoI branches get predictors of their own, built from ``head``.
    """

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        head: dict,
        base_momentum: float = 0.99,
        global_loss_weight: float = 1.0,
        local_intra_loss_weight: float = 1.0,
        local_inter_loss_weight: float = 1.0,
        pretrained: Optional[str] = None,
        data_preprocessor: Optional[dict] = None,
        init_cfg: InitConfig = None,
    ) -> None:
        weights = {"global": global_loss_weight, "local_intra": local_intra_loss_weight,
                   "local_inter": local_inter_loss_weight}
        for name, value in weights.items():
            check_non_negative(value, f"{name}_loss_weight")
        super().__init__(backbone=backbone, neck=neck, head=head, base_momentum=base_momentum,
                         pretrained=pretrained, data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.loss_weights = {name: float(value) for name, value in weights.items()}
        self.local_intra_head = MODELS.build(copy.deepcopy(head))
        self.local_inter_head = MODELS.build(copy.deepcopy(head))
        self.projection_dim = int(neck.get("out_channels", 256))

    def _heads(self) -> Dict[str, nn.Module]:
        return {"global": self.head, "local_intra": self.local_intra_head, "local_inter": self.local_inter_head}

    def loss(self, inputs: List[Tensor], data_samples: List[SelfSupDataSample], **kwargs: Any) -> Dict[str, Tensor]:
        """``loss_global``, ``loss_local_intra``, ``loss_local_inter`` (each weighted) of views 0-5."""
        if len(inputs) < NUM_ORL_VIEWS:
            raise ValueError(f"{type(self).__name__} expects {NUM_ORL_VIEWS} views per sample (image x2, intra-RoI "
                             f"x2, inter-RoI x2; the ORLMultiView transform makes them), got {len(inputs)}")
        online = nn.Sequential(self.backbone, self.neck)
        with torch.no_grad():
            self.target_net.update_parameters(online)
        losses: Dict[str, Tensor] = {}
        heads = self._heads()
        for name, first in _BRANCHES:
            weight = self.loss_weights[name]
            if weight == 0 and name != "global":
                continue
            view_1, view_2 = inputs[first], inputs[first + 1]
            online_1, online_2 = self.neck(self.backbone(view_1))[0], self.neck(self.backbone(view_2))[0]
            with torch.no_grad():
                target_1, target_2 = self.target_net(view_1)[0], self.target_net(view_2)[0]
            head = heads[name]
            losses[f"loss_{name}"] = weight * 2.0 * (head(online_1, target_2) + head(online_2, target_1))
        return losses


@MODELS.register_module()
class HCLORL(HyperbolicBranchMixin, ORL):
    """ORL stage 3 + HCL: :class:`ORL`'s loss plus λ·L_hyp of the scene (view 6) and object (view 7) views.

    Args:
        backbone, neck, head, base_momentum, global_loss_weight, local_intra_loss_weight,
            local_inter_loss_weight, pretrained, data_preprocessor, init_cfg: as :class:`ORL`.
        hyp_neck, hyp_head, lambda_hyp, curvature, queue_seed, hyp_lambda, hyperbolic_head: as
            :class:`hcl_plugin.mmselfsup.algorithms.HCLMoCoV2` (``'shared'``: the projection neck's raw
            output is mapped onto the ball).
        hyp_queue_len: length of the queue of object keys (default 65536, the official HCL queue).
    """

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        head: dict,
        hyp_neck: dict,
        hyp_head: dict,
        lambda_hyp: Optional[float] = None,
        curvature: CurvatureConfig = None,
        base_momentum: float = 0.99,
        global_loss_weight: float = 1.0,
        local_intra_loss_weight: float = 1.0,
        local_inter_loss_weight: float = 1.0,
        hyp_queue_len: Optional[int] = None,
        queue_seed: int = 0,
        pretrained: Optional[str] = None,
        data_preprocessor: Optional[dict] = None,
        init_cfg: InitConfig = None,
        hyp_lambda: Optional[float] = None,
        hyperbolic_head: str = "separate",
    ) -> None:
        super().__init__(**_arguments(locals()))  # the mixin splits them between ORL and the branch

    def _momentum_encoder(self) -> ExponentialMovingAverage:
        return self.target_net

    def _default_hyp_queue_len(self) -> int:
        return DEFAULT_HYP_QUEUE_LEN

    def _projection_dim(self) -> int:
        return self.projection_dim

    def _momentum_copy(self, module: nn.Module, curvature: Curvature) -> ExponentialMovingAverage:
        target = self.target_net
        return momentum_copy(module, target.momentum, curvature, ema_type=CosineEMA, end_momentum=target.end_momentum)

    def loss(self, inputs: List[Tensor], data_samples: List[SelfSupDataSample], **kwargs: Any) -> Dict[str, Tensor]:
        """:meth:`ORL.loss` on views 0-5 plus ``loss_hyp_weighted`` (summed) and ``loss_hyp`` (logged) on 6, 7."""
        if len(inputs) != NUM_HCLORL_VIEWS:
            raise ValueError(f"HCLORL expects {NUM_HCLORL_VIEWS} views per sample (ORL's 6, then scene and object: "
                             f"set scene_transforms in ORLMultiView), got {len(inputs)}")
        losses = super().loss(inputs, data_samples, **kwargs)
        losses.update(self._hyperbolic_pair_loss(inputs[6], inputs[7]))
        return losses
