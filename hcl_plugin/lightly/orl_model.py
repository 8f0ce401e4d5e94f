r"""ORL stage 3 (object-level BYOL) + HCL as a Lightning module built from Lightly's BYOL modules.

ORL (Xie et al., "Unsupervised Object-Level Representation Learning from Scene Images", NeurIPS 2021;
release github Jiahao000/ORL, ``openselfsup/models/orl.py``): an online network (backbone + projection
MLP), a momentum (target) copy of it, and three predictor heads -- global (image-level pair), local
intra-RoI and local inter-RoI -- on the one shared projection. Each head's loss is BYOL's symmetric loss
on its pair of views :math:`(v_1, v_2)`, as in the release (its head returns :math:`-2\cos` per direction):

.. math::

    \mathcal{L}_h = -2\cos\big(q_h(g(f(v_1))),\ \mathrm{sg}\,g'(f'(v_2))\big)
                    -2\cos\big(q_h(g(f(v_2))),\ \mathrm{sg}\,g'(f'(v_1))\big)

    \mathcal{L}_{ORL} = w_g\,\mathcal{L}_{global} + w_{intra}\,\mathcal{L}_{local\_intra}
                        + w_{inter}\,\mathcal{L}_{local\_inter}

(:math:`f, g` online backbone and projection, :math:`f', g'` their momentum copies, :math:`q_h` head
``h``'s predictor; weights 1 by default; Lightly's ``NegativeCosineSimilarity`` is :math:`-\cos` averaged over
the batch). The momentum copies follow :math:`\theta' \leftarrow m\,\theta' + (1-m)\,\theta` with
:math:`m` annealed from ``momentum`` (0.99) to 1 by Lightly's ``cosine_schedule`` over the trainer's steps.

HCL (Ge et al., "Hyperbolic Contrastive Learning for Visual Representations beyond Objects", CVPR 2023,
https://arxiv.org/abs/2212.00653) adds a hyperbolic InfoNCE term: the scene (whole image) through the
online backbone and a Poincaré head (query) against the object (an intra-RoI proposal crop) through the
momentum backbone and the momentum Poincaré head (key), with a queue of earlier object keys on the ball
as negatives (:class:`~hcl_plugin.lightly.HyperbolicNTXentLoss`, logits :math:`-d_c(z, k)/\tau`):

.. math:: \mathcal{L} = \mathcal{L}_{ORL} + \lambda\,\mathcal{L}_{hyp}

``lambda_hyp = 0`` is plain ORL: no Poincaré head, queue or hyperbolic loss is built or computed.
The head, its momentum copy, the loss and the queue share one :class:`~hcl_plugin.geometry.Curvature`,
as in :class:`~hcl_plugin.lightly.models.MoCoHCL`. The key encoder runs without shuffle-BN (BYOL has none).

Logged: ``loss`` (the total), ``train/loss_global``, ``train/loss_local_intra``, ``train/loss_local_inter``
(weighted, as the release reports them), ``train/loss_orl``, ``train/momentum``, and with λ > 0
``train/loss_hyp`` (unweighted), ``train/loss_hyp_weighted`` (λ · ``loss_hyp``) and the Poincaré head's
``health/*``. The online backbone is ``model.backbone`` (a torchvision ResNet, ``fc = Identity``), so a
checkpoint's ``backbone.*`` entries are what ``tools/extract_backbone.py`` extracts.

Needs ``lightly`` and ``pytorch_lightning``. The batches are :class:`hcl_plugin.lightly.orl_data.ORLDataset`'s.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import pytorch_lightning as pl
import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad
from lightly.models.utils import update_momentum as lightly_update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import Tensor, nn

from hcl_plugin.checkpoints import check_stem
from hcl_plugin.geometry import Curvature
from hcl_plugin.lightly.heads import PoincareProjectionHead
from hcl_plugin.lightly.hyperbolic_ntx_ent_loss import HyperbolicNTXentLoss
from hcl_plugin.lightly.models import update_momentum as update_momentum_sharing
from hcl_plugin.lightly.training import resnet_backbone, sgd_with_cosine
from hcl_plugin.losses.hcl import check_lambda_hyp

__all__ = ["ORLHCL", "ORLHyperParameters", "orl_momentum"]

Batch = Dict[str, Any]


@dataclass
class ORLHyperParameters:
    """The hyper-parameters of :class:`ORLHCL` (saved in the checkpoint under these names).

    Attributes:
        backbone, stem: torchvision ResNet name and stem (``"imagenet"`` or ``"small"``).
        proj_hidden_dim, proj_output_dim: BYOL's projection MLP (release: 4096, 256).
        pred_hidden_dim: the predictors' hidden width (release: 4096; output = ``proj_output_dim``).
        image_size, patch_size, hyperbolic_size: view sides (metadata; release 224 / 96).
        global_weight, intra_weight, inter_weight: the three BYOL terms' weights (release: 1 each).
        momentum: base momentum ``m_0`` of the target network (release: 0.99), annealed to 1.
        lambda_hyp: weight λ of the hyperbolic term (0: plain ORL, no hyperbolic parameters).
        c, learn_c: curvature magnitude of the ball; learn it (as log c).
        hyp_hidden_dim, hyp_output_dim: the Poincaré head's MLP.
        clip_r, feature_scale, learn_scale, riemannian_grad, decoupled: the Poincaré head's options
            (docs/hcl_options.md); ``feature_scale=None`` with ``learn_scale`` is 1/sqrt(hyp_output_dim).
        temperature: τ of the hyperbolic InfoNCE.
        memory_bank_size: queue of object keys on the ball (0: in-batch negatives).
        lr, weight_decay, warmup_steps: SGD (momentum 0.9) with a cosine schedule.
        gather_distributed: gather the hyperbolic keys across ranks under DDP.
    """

    backbone: str = "resnet18"
    stem: str = "imagenet"
    proj_hidden_dim: int = 4096
    proj_output_dim: int = 256
    pred_hidden_dim: int = 4096
    image_size: int = 64
    patch_size: int = 32
    hyperbolic_size: Optional[int] = None
    global_weight: float = 1.0
    intra_weight: float = 1.0
    inter_weight: float = 1.0
    momentum: float = 0.99
    lambda_hyp: float = 0.1
    c: float = 0.05
    learn_c: bool = False
    hyp_hidden_dim: int = 512
    hyp_output_dim: int = 128
    clip_r: Optional[float] = None
    feature_scale: Optional[float] = None
    learn_scale: bool = True
    riemannian_grad: bool = False
    decoupled: bool = False
    temperature: float = 0.2
    memory_bank_size: int = 4096
    lr: float = 0.05
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    gather_distributed: bool = True

    def __post_init__(self) -> None:
        self.lambda_hyp = check_lambda_hyp(self.lambda_hyp)
        self.stem = check_stem(self.stem)
        for name in ("global_weight", "intra_weight", "inter_weight"):
            value = float(getattr(self, name))
            if not 0 <= value < math.inf:
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
            setattr(self, name, value)
        if not 0 <= self.momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1], got {self.momentum}")
        if self.memory_bank_size < 0:
            raise ValueError(f"memory_bank_size must be >= 0, got {self.memory_bank_size}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.feature_scale is None and self.learn_scale:
            self.feature_scale = 1 / math.sqrt(self.hyp_output_dim)


def orl_momentum(step: int, total_steps: int, base: float = 0.99) -> float:
    """The target network's momentum at ``step`` of ``total_steps``: Lightly's ``cosine_schedule`` from
    ``base`` to 1, :math:`m_t = 1 - (1 - m_0)(\\cos(\\pi t/(T-1)) + 1)/2` (ORL release / BYOL)."""
    total = max(int(total_steps), 1)
    return float(cosine_schedule(min(max(int(step), 0), total - 1), total, base, 1.0))


class ORLHCL(pl.LightningModule):
    """ORL stage 3 + HCL (module docstring). Keyword arguments: the fields of :class:`ORLHyperParameters`.

    Modules: ``backbone``/``projection_head`` (online), ``backbone_momentum``/``projection_head_momentum``
    (target, no gradients), the predictors ``prediction_head_global``, ``prediction_head_intra``,
    ``prediction_head_inter``; with ``lambda_hyp > 0`` also ``curvature``, ``hyperbolic_head``, its momentum
    copy ``hyperbolic_head_momentum`` (same curvature object) and ``criterion_hyp`` (loss + queue). With
    ``lambda_hyp = 0`` those four attributes are ``None``.
    """

    HEADS: Tuple[str, ...] = ("global", "intra", "inter")

    def __init__(self, **hyper_parameters: Any) -> None:
        super().__init__()
        hp = ORLHyperParameters(**hyper_parameters)  # TypeError for an unknown name
        self.save_hyperparameters(asdict(hp))
        self.backbone, width = resnet_backbone(hp.backbone, hp.stem)
        self.projection_head = BYOLProjectionHead(width, hp.proj_hidden_dim, hp.proj_output_dim)
        self.prediction_head_global = BYOLPredictionHead(hp.proj_output_dim, hp.pred_hidden_dim, hp.proj_output_dim)
        self.prediction_head_intra = BYOLPredictionHead(hp.proj_output_dim, hp.pred_hidden_dim, hp.proj_output_dim)
        self.prediction_head_inter = BYOLPredictionHead(hp.proj_output_dim, hp.pred_hidden_dim, hp.proj_output_dim)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NegativeCosineSimilarity()
        self.curvature: Optional[Curvature] = None
        self.hyperbolic_head: Optional[PoincareProjectionHead] = None
        self.hyperbolic_head_momentum: Optional[PoincareProjectionHead] = None
        self.criterion_hyp: Optional[HyperbolicNTXentLoss] = None
        if hp.lambda_hyp > 0:
            self.curvature = Curvature(hp.c, learnable=hp.learn_c)
            self.hyperbolic_head = PoincareProjectionHead(
                width, hp.hyp_hidden_dim, hp.hyp_output_dim, c=self.curvature, clip_r=hp.clip_r,
                feature_scale=hp.feature_scale, learn_scale=hp.learn_scale, riemannian_grad=hp.riemannian_grad,
                decoupled=hp.decoupled)
            self.hyperbolic_head_momentum = copy.deepcopy(self.hyperbolic_head)
            deactivate_requires_grad(self.hyperbolic_head_momentum)
            self.hyperbolic_head_momentum.curvature = self.curvature  # one ball for query, key, loss and queue
            bank = (hp.memory_bank_size, hp.hyp_output_dim) if hp.memory_bank_size else 0
            self.criterion_hyp = HyperbolicNTXentLoss(hp.temperature, c=self.curvature, memory_bank_size=bank,
                                                      gather_distributed=hp.gather_distributed)

    # ------------------------------------------------------------------ weights

    def load_backbone(self, state_dict: Mapping[str, Tensor], source: str = "state_dict") -> None:
        """Initialise the online and the momentum backbone from torchvision-ResNet weights (strict keys),
        e.g. a stage-1 backbone file of ``tools/extract_backbone.py``.

        Raises:
            ValueError: keys missing or unexpected, or shapes that differ (the message names ``source``).
        """
        try:
            self.backbone.load_state_dict(dict(state_dict), strict=True)
        except RuntimeError as error:
            raise ValueError(f"{source}: not a {self.hparams.backbone} ({self.hparams.stem} stem) backbone with "
                             f"torchvision keys and fc = Identity: {error}") from None
        self.backbone_momentum.load_state_dict(self.backbone.state_dict())

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tensor) -> Tensor:
        """Pooled backbone features (the representation transferred after pretraining)."""
        return self.backbone(x)

    def online(self, x: Tensor) -> Tensor:
        """The online projection :math:`g(f(x))`."""
        return self.projection_head(self.backbone(x))

    @torch.no_grad()
    def target(self, x: Tensor) -> Tensor:
        """The momentum network's projection :math:`g'(f'(x))` (no gradient)."""
        return self.projection_head_momentum(self.backbone_momentum(x)).detach()

    def byol_loss(self, predictor: nn.Module, v1: Tensor, v2: Tensor) -> Tensor:
        """:math:`-2\\cos(q(g(f(v_1))), g'(f'(v_2))) - 2\\cos(q(g(f(v_2))), g'(f'(v_1)))` (the release's head)."""
        p1, p2 = predictor(self.online(v1)), predictor(self.online(v2))
        z1, z2 = self.target(v1), self.target(v2)
        return 2 * (self.criterion(p1, z2) + self.criterion(p2, z1))

    def hyperbolic_loss(self, scene: Tensor, obj: Tensor) -> Tensor:
        """HCL's term: scene on the ball (online) against object keys (momentum) and the queue."""
        assert self.hyperbolic_head is not None and self.criterion_hyp is not None
        query = self.hyperbolic_head(self.backbone(scene))
        with torch.no_grad():
            key = self.hyperbolic_head_momentum(self.backbone_momentum(obj))
        return self.criterion_hyp(query, key)

    def current_momentum(self) -> float:
        """This step's momentum: :func:`orl_momentum` at the trainer's step (no trainer: the base value)."""
        if self._trainer is None:
            return float(self.hparams.momentum)
        return orl_momentum(self.global_step, int(self.trainer.estimated_stepping_batches), self.hparams.momentum)

    @torch.no_grad()
    def momentum_update(self, m: float) -> None:
        """:math:`\\theta' \\leftarrow m\\,\\theta' + (1-m)\\,\\theta` for backbone, projection and Poincaré head
        (the curvature, shared, is not averaged)."""
        lightly_update_momentum(self.backbone, self.backbone_momentum, m)
        lightly_update_momentum(self.projection_head, self.projection_head_momentum, m)
        if self.hyperbolic_head is not None:
            update_momentum_sharing(self.hyperbolic_head, self.hyperbolic_head_momentum, m)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        hp = self.hparams
        m = self.current_momentum()
        self.momentum_update(m)
        parts = {
            "loss_global": hp.global_weight * self.byol_loss(self.prediction_head_global,
                                                              batch["image_view_1"], batch["image_view_2"]),
            "loss_local_intra": hp.intra_weight * self.byol_loss(self.prediction_head_intra,
                                                                  batch["intra_view_1"], batch["intra_view_2"]),
            "loss_local_inter": hp.inter_weight * self.byol_loss(self.prediction_head_inter,
                                                                  batch["inter_view_1"], batch["inter_view_2"]),
        }
        loss_orl = parts["loss_global"] + parts["loss_local_intra"] + parts["loss_local_inter"]
        loss = loss_orl
        logged: Dict[str, Tensor] = {k: v.detach() for k, v in parts.items()}
        logged["loss_orl"] = loss_orl.detach()
        if hp.lambda_hyp > 0:
            missing = [k for k in ("hyperbolic_scene", "hyperbolic_object") if k not in batch]
            if missing:
                raise KeyError(f"lambda_hyp = {hp.lambda_hyp} needs the batch keys {missing} (ORLDataset with "
                               "ORLViews.default(hyperbolic=True)); lambda_hyp = 0 is plain ORL")
            loss_hyp = self.hyperbolic_loss(batch["hyperbolic_scene"], batch["hyperbolic_object"])
            loss = loss_orl + hp.lambda_hyp * loss_hyp
            logged["loss_hyp"] = loss_hyp.detach()
            logged["loss_hyp_weighted"] = hp.lambda_hyp * loss_hyp.detach()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.global_step}: {logged}")
        batch_size = batch["image_view_1"].shape[0]
        self.log("loss", loss, prog_bar=True, batch_size=batch_size)
        self.log_dict({f"train/{k}": v for k, v in logged.items()}, batch_size=batch_size)
        self.log("train/momentum", m, batch_size=batch_size)
        if self.hyperbolic_head is not None:
            health = dict(self.hyperbolic_head.stats)
            if self.curvature is not None and self.curvature.learnable:
                health["c"] = self.curvature().detach()
            self.log_dict({f"health/{k}": v for k, v in health.items()}, batch_size=batch_size)
        return loss

    def configure_optimizers(self) -> Dict[str, Any]:
        return sgd_with_cosine(self, self.hparams.lr, self.hparams.weight_decay, self.hparams.warmup_steps)
