"""The Lightning models of the Lightly examples: MoCo-v2, DenseCL and SimCLR, each + HCL.

Each model is a ResNet backbone, its method's Euclidean projection head(s) and loss, and the HCL
branch: the scene crop against the object crop on the Poincaré ball, scored by the hyperbolic
InfoNCE loss, added as :math:`\\mathcal{L} = \\mathcal{L}_{euc} + \\lambda\\,\\mathcal{L}_{hyp}`
(:func:`hcl_plugin.losses.combine_hcl`; Ge et al., CVPR 2023, https://arxiv.org/abs/2212.00653).
``lambda_hyp = 0`` is the method's baseline (the hyperbolic branch is not computed).

The hyperbolic head (``hyperbolic_head``, ``--hyperbolic-head``; docs/hcl_options.md):

* ``"separate"`` (the project's default): a :class:`~hcl_plugin.modules.PoincareProjectionHead`, its
  own MLP on the backbone features;
* ``"shared"`` (the released HCL code's): a :class:`~hcl_plugin.modules.BallMap` of the Euclidean
  projection head's raw output; the Euclidean loss sees the same output L2-normalised.

Either way ``model.hyperbolic_head`` holds the map onto the ball, its ``stats`` are logged as
``health/*`` every step, and the gradient options ``riemannian_grad`` and ``decoupled`` apply to it.
The momentum models (:class:`MoCoHCL`, :class:`DenseCLHCL`) run their key encoder with MoCo's
shuffle-BN (``shuffle_bn``, on by default as in MoCo) through Lightly's ``batch_shuffle`` /
``batch_unshuffle`` (across ranks under DDP).

One curvature per model: ``model.curvature`` (a :class:`~hcl_plugin.geometry.Curvature`, fixed, or
learnable with ``learn_c=True`` / ``--learn-c``) is the object the Poincaré head, its momentum copy,
the hyperbolic loss and its memory bank all hold, so they cannot disagree on the ball.

Hyper-parameters are keyword arguments named as the fields of :class:`HCLHyperParameters` (and
:class:`MoCoHyperParameters`, :class:`DenseCLHyperParameters`); they are saved in the checkpoint
under these names, which include the checkpoint contract read by ``tools/analyze.py``
(:class:`hcl_plugin.checkpoints.ModelHyperParameters`, docs/eval.md). Build from a parsed command line
with ``Model.from_args(args)`` (:mod:`hcl_plugin.lightly.training`).

Needs ``lightly`` and ``pytorch_lightning`` (``pip install 'hcl_plugin[lightly]'``).

    >>> from hcl_plugin.lightly.models import MoCoHCL
    >>> model = MoCoHCL(image_size=64, lambda_hyp=0.1, learn_c=True)       # doctest: +SKIP
    >>> model.hyperbolic_head.curvature is model.criterion.curvature is model.curvature  # doctest: +SKIP
    True
"""

from __future__ import annotations

import argparse
import copy
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, ClassVar, Dict, Optional, Tuple, Type, TypeVar

import pytorch_lightning as pl
import torch
from lightly.loss import NTXentLoss
from lightly.models import utils as lightly_utils
from lightly.models.modules import DenseCLProjectionHead, MoCoProjectionHead, SimCLRProjectionHead
from lightly.utils.scheduler import cosine_schedule
from torch import Tensor, nn

from hcl_plugin.checkpoints import check_stem
from hcl_plugin.checkpoints.contract import check_hyperbolic_head_kind
from hcl_plugin.geometry import Curvature
from hcl_plugin.lightly.hcl_loss import HCLLoss
from hcl_plugin.lightly.heads import PoincareProjectionHead
from hcl_plugin.lightly.hyperbolic_ntx_ent_loss import HyperbolicNTXentLoss
from hcl_plugin.lightly.training import head_hparams, resnet_backbone, sgd_with_cosine
from hcl_plugin.losses.hcl import HCLLossOutput, check_lambda_hyp, combine_hcl
from hcl_plugin.modules import BallMap, BallProjection
from hcl_plugin.utils import distributed

__all__ = [
    "DenseCLHCL",
    "DenseCLHyperParameters",
    "HCLHyperParameters",
    "HCLModule",
    "MoCoHCL",
    "MoCoHyperParameters",
    "SimCLRHCL",
    "feature_map",
    "momentum_at",
    "update_momentum",
]

Batch = Dict[str, Any]
HP = TypeVar("HP", bound="HCLHyperParameters")
M = TypeVar("M", bound="HCLModule")


@dataclass
class HCLHyperParameters:
    """The hyper-parameters every model has (the checkpoint names; docs/eval.md).

    Attributes:
        backbone: torchvision ResNet name.
        proj_hidden_dim, proj_output_dim: the Euclidean projection MLP.
        hyp_hidden_dim, hyp_output_dim: the Poincaré head's MLP (``"shared"``: set to the projection
            head's sizes, which the map onto the ball then has).
        c: curvature magnitude of the ball (the initial value when learnt).
        learn_c: learn the curvature (stored as log c).
        clip_r: feature-clipping radius before ``expmap0`` (``None``: no clipping).
        feature_scale: initial scale of the Poincaré head's output; ``None`` with ``learn_scale``
            resolves to :math:`1/\\sqrt{\\text{hyp\\_output\\_dim}}` (the examples' default).
        learn_scale: learn that scale.
        image_size: side of the training crops (metadata for the analysis).
        hyperbolic_size: side of the hyperbolic scene/object views (metadata; ``None`` = ``image_size``).
        lambda_hyp: weight λ of the hyperbolic loss (finite, >= 0; 0 = the baseline).
        temperature: τ of both losses.
        lr, weight_decay: SGD settings (cosine schedule).
        gather_distributed: gather keys / views across ranks under DDP.
        hyperbolic_head: ``"separate"`` (a Poincaré head with its own MLP; the project's default) or
            ``"shared"`` (the projection head's raw output mapped onto the ball; the released HCL code's).
        riemannian_grad: rescale the gradient at the ball point by :math:`(1 - c\\|z\\|^2)^2/4`
            (released code: on; project default: off).
        decoupled: the hyperbolic loss moves only the norm of the tangent vector, its direction is
            detached (the released code's option, off by default there and here).
        stem: the ResNet stem, ``"imagenet"`` or ``"small"`` (3x3 stride-1 conv, no max-pool;
            :func:`hcl_plugin.checkpoints.build_resnet`; part of the checkpoint contract).
        warmup_steps: linear learning-rate warm-up before the cosine decay (0: none).
        recipe: the named recipe the command line started from (metadata; :mod:`hcl_plugin.lightly.recipes`).
    """

    backbone: str = "resnet18"
    proj_hidden_dim: int = 512
    proj_output_dim: int = 128
    hyp_hidden_dim: int = 512
    hyp_output_dim: int = 128
    c: float = 0.05
    learn_c: bool = False
    clip_r: Optional[float] = None
    feature_scale: Optional[float] = None
    learn_scale: bool = True
    image_size: int = 64
    hyperbolic_size: Optional[int] = None
    lambda_hyp: float = 0.1
    temperature: float = 0.2
    lr: float = 0.06
    weight_decay: float = 1e-4
    gather_distributed: bool = True
    hyperbolic_head: str = "separate"
    riemannian_grad: bool = False
    decoupled: bool = False
    stem: str = "imagenet"
    warmup_steps: int = 0
    recipe: str = "paper"

    def __post_init__(self) -> None:
        self.lambda_hyp = check_lambda_hyp(self.lambda_hyp)
        self.stem = check_stem(self.stem)
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        self.hyperbolic_head = check_hyperbolic_head_kind(self.hyperbolic_head)
        if self.hyperbolic_head == "shared":  # the map onto the ball has the projection head's sizes
            self.hyp_hidden_dim, self.hyp_output_dim = self.proj_hidden_dim, self.proj_output_dim
        if self.feature_scale is None and self.learn_scale:
            self.feature_scale = 1 / math.sqrt(self.hyp_output_dim)

    @classmethod
    def from_args(cls: Type[HP], args: argparse.Namespace) -> HP:
        """From the examples' command line: :func:`~hcl_plugin.lightly.training.head_hparams`, then every
        other field that ``args`` has under the same name (``memory_bank_size``, ``momentum``, ...)."""
        values = head_hparams(args)
        names = [f.name for f in fields(cls)]
        values.update({name: getattr(args, name) for name in names if name not in values and hasattr(args, name)})
        return cls(**{name: values[name] for name in names if name in values})


@dataclass
class MoCoHyperParameters(HCLHyperParameters):
    """:class:`HCLHyperParameters` plus the momentum encoder and the queues.

    Attributes:
        memory_bank_size: length of each queue (official: 65536); 0 = in-batch negatives.
        momentum: momentum-encoder update (official: 0.999); the start value ``m_0`` of a cosine schedule.
        shuffle_bn: MoCo's shuffle-BN in the key encoder (official: on; default on).
        momentum_schedule: ``"constant"`` (MoCo's) or ``"cosine"`` (BYOL / MoCo-v3:
            :math:`m_t = 1 - (1 - m_0)(\\cos(\\pi t/T) + 1)/2` from ``momentum`` to 1 over the trainer's
            ``T`` steps; :func:`momentum_at`).
    """

    memory_bank_size: int = 4096
    momentum: float = 0.999
    shuffle_bn: bool = True
    momentum_schedule: str = "constant"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.momentum_schedule not in MOMENTUM_SCHEDULES:
            raise ValueError(f"momentum_schedule must be one of {', '.join(map(repr, MOMENTUM_SCHEDULES))}, "
                             f"got {self.momentum_schedule!r}")


@dataclass
class DenseCLHyperParameters(MoCoHyperParameters):
    """:class:`MoCoHyperParameters` plus DenseCL's weight between the global and the dense loss."""

    dense_weight: float = 0.5


MOMENTUM_SCHEDULES: Tuple[str, ...] = ("constant", "cosine")


def momentum_at(step: int, total_steps: int, momentum: float, schedule: str = "constant") -> float:
    """The momentum-encoder coefficient at ``step`` of ``total_steps``: ``momentum`` (``"constant"``), or
    Lightly's ``cosine_schedule`` from ``momentum`` at step 0 to 1 at the last step (``"cosine"``; BYOL,
    MoCo-v3: :math:`m_t = 1 - (1 - m_0)(\\cos(\\pi t/(T-1)) + 1)/2`)."""
    if schedule == "constant":
        return float(momentum)
    if schedule != "cosine":
        raise ValueError(f"momentum schedule must be one of {', '.join(map(repr, MOMENTUM_SCHEDULES))}, got {schedule!r}")
    total = max(int(total_steps), 1)
    return cosine_schedule(min(max(int(step), 0), total - 1), total, momentum, 1.0)


@torch.no_grad()
def update_momentum(online: nn.Module, target: nn.Module, m: float) -> None:
    """Lightly's ``update_momentum`` (:math:`\\theta_t \\leftarrow m\\,\\theta_t + (1 - m)\\,\\theta`), skipping
    parameters the two modules share (the curvature, which a momentum head uses as is)."""
    for target_param, param in zip(target.parameters(), online.parameters()):
        if target_param is not param:
            target_param.data = target_param.data * m + param.data * (1.0 - m)


def feature_map(resnet: nn.Module, x: Tensor) -> Tensor:
    """The (B, C, H, W) output of a torchvision ResNet's last stage (the backbone keeps torchvision's keys)."""
    x = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
    return resnet.layer4(resnet.layer3(resnet.layer2(resnet.layer1(x))))


class HCLModule(pl.LightningModule):
    """What the three models share: hyper-parameters, backbone, the curvature, the hyperbolic head
    (separate or shared), the hyperbolic views, logging and the optimiser.

    Subclasses set :attr:`HyperParameters`, build their Euclidean heads in :meth:`build_projection_heads`
    and their losses after ``super().__init__``, and define ``training_step``.
    """

    HyperParameters: ClassVar[Type[HCLHyperParameters]] = HCLHyperParameters

    def __init__(self, **hyper_parameters: Any) -> None:
        super().__init__()
        hp = self.HyperParameters(**hyper_parameters)  # TypeError for an unknown name
        self.save_hyperparameters(asdict(hp))
        self.backbone, width = resnet_backbone(hp.backbone, hp.stem)
        self.curvature = Curvature(hp.c, learnable=hp.learn_c)
        self.build_projection_heads(width)
        self.hyperbolic_head = self.build_hyperbolic_head(width)

    def build_hyperbolic_head(self, width: int) -> BallProjection:
        """The map onto the ball: a :class:`~hcl_plugin.modules.PoincareProjectionHead` on the backbone
        features (``"separate"``) or a :class:`~hcl_plugin.modules.BallMap` of the projection head's
        output (``"shared"``), on the model's curvature, with the gradient options."""
        hp = self.hparams
        options = dict(c=self.curvature, clip_r=hp.clip_r, feature_scale=hp.feature_scale, learn_scale=hp.learn_scale,
                       riemannian_grad=hp.riemannian_grad, decoupled=hp.decoupled)
        if hp.hyperbolic_head == "shared":
            return BallMap(**options)
        return PoincareProjectionHead(width, hp.hyp_hidden_dim, hp.hyp_output_dim, **options)

    @property
    def shared_head(self) -> bool:
        """Whether the hyperbolic head maps the projection head's output (``hyperbolic_head="shared"``)."""
        return self.hparams.hyperbolic_head == "shared"

    def to_ball(self, features: Tensor, projection_head: nn.Module, hyperbolic_head: nn.Module) -> Tensor:
        """Backbone ``features`` on the ball: ``hyperbolic_head(features)`` (separate) or
        ``hyperbolic_head(projection_head(features))`` (shared: the projection head's raw output)."""
        return hyperbolic_head(projection_head(features) if self.shared_head else features)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Command-line arguments of this model beyond :func:`~hcl_plugin.lightly.training.add_common_arguments`."""
        return parser

    @classmethod
    def from_args(cls: Type[M], args: argparse.Namespace) -> M:
        """The model described by the examples' parsed command line."""
        return cls(**asdict(cls.HyperParameters.from_args(args)))

    def build_projection_heads(self, width: int) -> None:  # pragma: no cover - abstract
        """Create the Euclidean projection head(s) on ``width``-dimensional backbone features."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def embed_scene(self, x: Tensor) -> Tensor:
        """The scene crop on the ball through the online network (the hyperbolic query)."""
        return self.to_ball(self.backbone(x), self.projection_head, self.hyperbolic_head)

    def embed_object(self, x: Tensor) -> Tensor:
        """The object crop on the ball: the online network (SimCLR); MoCo/DenseCL use the momentum encoder."""
        return self.to_ball(self.backbone(x), self.projection_head, self.hyperbolic_head)

    def hyperbolic_views(self, batch: Batch) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """Scene query and object on the ball; ``(None, None)`` when ``lambda_hyp == 0`` (not computed)."""
        if self.hparams.lambda_hyp == 0:
            return None, None
        return self.embed_scene(batch["hyperbolic_scene"]), self.embed_object(batch["hyperbolic_object"])

    def hyperbolic_loss(self, batch: Batch) -> Optional[Tensor]:
        """``criterion_hyp(scene, object)`` for models with a separate hyperbolic loss; ``None`` when ``lambda_hyp == 0``."""
        scene, obj = self.hyperbolic_views(batch)
        return None if scene is None else self.criterion_hyp(scene, obj)

    def log_step(self, out: HCLLossOutput, batch_size: int, **parts: Tensor) -> Tensor:
        """Log the loss, its parts and the hyperbolic head's health (and ``c`` when learnt); return ``out.loss``.

        ``loss`` is the total; ``train/loss_euc`` and ``train/loss_hyp`` the two terms unweighted;
        ``train/loss_hyp_weighted`` = λ · ``loss_hyp``, the hyperbolic term's part of ``loss``.

        The health metrics are the online head's :func:`~hcl_plugin.modules.ball_health_stats` of this
        step's scene queries, for either head kind (detached tensors: no host sync): ``clipped_fraction``,
        ``hyp_norm_mean/min/max`` beside ``two_over_sqrt_c``, ``c_sq_norm_mean/max``,
        ``near_boundary_fraction`` (and ``feature_scale``), logged as ``health/<name>``.

        Raises ``FloatingPointError`` for a non-finite loss.
        """
        # one λ convention in both frameworks: loss_hyp unweighted, loss_hyp_weighted = λ * loss_hyp (its part of loss)
        parts = {"loss_euc": out.loss_euc, "loss_hyp": out.loss_hyp,
                 "loss_hyp_weighted": self.hparams.lambda_hyp * out.loss_hyp, **{k: v.detach() for k, v in parts.items()}}
        if not torch.isfinite(out.loss):
            raise FloatingPointError(f"non-finite loss at step {self.global_step}: {parts}")
        self.log("loss", out.loss, prog_bar=True, batch_size=batch_size)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=batch_size)
        if self.hparams.lambda_hyp > 0:
            health = dict(self.hyperbolic_head.stats)
            if self.curvature.learnable:
                health["c"] = self.curvature().detach()
            self.log_dict({f"health/{k}": v for k, v in health.items()}, batch_size=batch_size)
        return out.loss

    def configure_optimizers(self) -> Dict[str, Any]:
        return sgd_with_cosine(self, self.hparams.lr, self.hparams.weight_decay, self.hparams.get("warmup_steps", 0))


class _MomentumModule(HCLModule):
    """A momentum encoder: a frozen copy ``<name>_momentum`` of each module in :attr:`MOMENTUM`.

    The copy of the hyperbolic head holds the model's curvature itself (not a copy): keys and queries
    lie on the same ball, and a learnt ``c`` is not averaged.

    Shuffle-BN (``shuffle_bn``, MoCo's; on by default): every forward of the key encoder
    (:meth:`momentum_forward`) permutes the batch before the encoder and restores the order after it,
    with Lightly's ``batch_shuffle``/``batch_unshuffle``. Under DDP the permutation runs over the
    batches of all ranks (``distributed=True``: an all-gather of the images and one of the outputs),
    so the key encoder's BatchNorm statistics on each rank mix samples of every rank and cannot leak
    which keys belong to the rank's queries. In one process it changes nothing but the order in which
    BatchNorm sums (keys equal up to float error). Every rank needs the same batch size (the examples
    drop the last incomplete batch).
    """

    HyperParameters: ClassVar[Type[HCLHyperParameters]] = MoCoHyperParameters
    MOMENTUM: ClassVar[Tuple[str, ...]] = ()

    def __init__(self, **hyper_parameters: Any) -> None:
        super().__init__(**hyper_parameters)
        for name in self.MOMENTUM:
            target = copy.deepcopy(getattr(self, name))
            lightly_utils.deactivate_requires_grad(target)
            setattr(self, f"{name}_momentum", target)
        self.hyperbolic_head_momentum.curvature = self.curvature

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--memory-bank-size", type=int, default=4096,
                            help="queue length (official: 65536); 0: in-batch negatives")
        parser.add_argument("--momentum", type=float, default=0.999,
                            help="momentum encoder update (official: 0.999); the start value with --momentum-schedule cosine")
        parser.add_argument("--momentum-schedule", choices=list(MOMENTUM_SCHEDULES), default="constant",
                            help="constant (MoCo) or cosine from --momentum to 1 over the run's steps (BYOL, MoCo-v3)")
        parser.add_argument("--shuffle-bn", action=argparse.BooleanOptionalAction, default=True,
                            help="MoCo's shuffle-BN in the key encoder, across ranks under DDP (official: on; "
                                 "default: on; docs/hcl_options.md)")
        return parser

    def bank_size(self, dim: int) -> Any:
        """Lightly's ``memory_bank_size`` for ``dim``-dimensional keys: ``(size, dim)``, or 0."""
        size = self.hparams.memory_bank_size
        return (size, dim) if size else 0

    def current_momentum(self) -> float:
        """This step's momentum coefficient: :func:`momentum_at` at the trainer's global step of its
        estimated steps (without a trainer: ``momentum``, the cosine schedule's start value)."""
        hp = self.hparams
        schedule = hp.get("momentum_schedule", "constant")
        if schedule == "constant" or self._trainer is None:
            return float(hp.momentum)
        return momentum_at(self.global_step, int(self.trainer.estimated_stepping_batches), hp.momentum, schedule)

    @torch.no_grad()
    def momentum_update(self) -> None:
        m = self.current_momentum()
        for name in self.MOMENTUM:
            update_momentum(getattr(self, name), getattr(self, f"{name}_momentum"), m)
        if self.hparams.get("momentum_schedule", "constant") != "constant":
            self.log("train/momentum", m, batch_size=1)

    @torch.no_grad()
    def momentum_forward(self, encode: Callable[[Tensor], Any], x: Tensor, shuffle_bn: Optional[bool] = None) -> Any:
        """``encode(x)`` (a tensor or a tuple of tensors, batch first), with shuffle-BN when ``shuffle_bn``
        (``None``: the hyper-parameter): ``x`` permuted before, the outputs unpermuted after (all ranks
        under DDP, see the class doc)."""
        if not (self.hparams.get("shuffle_bn", True) if shuffle_bn is None else shuffle_bn):
            return encode(x)
        across_ranks = distributed.is_distributed()
        shuffled, order = lightly_utils.batch_shuffle(x, distributed=across_ranks)
        out = encode(shuffled)
        if isinstance(out, tuple):
            return tuple(lightly_utils.batch_unshuffle(o, order, distributed=across_ranks) for o in out)
        return lightly_utils.batch_unshuffle(out, order, distributed=across_ranks)

    @torch.no_grad()
    def embed_object(self, x: Tensor, shuffle_bn: Optional[bool] = None) -> Tensor:
        """The object crop on the ball through the momentum encoder (the hyperbolic key)."""
        return self.momentum_forward(
            lambda v: self.to_ball(self.backbone_momentum(v), self.projection_head_momentum, self.hyperbolic_head_momentum),
            x, shuffle_bn)


class MoCoHCL(_MomentumModule):
    """MoCo-v2 + HCL (the official HCL code's setting).

    Euclidean: symmetric MoCo loss on two views of an object crop, two queues of keys (:meth:`key`,
    shuffle-BN when on). Hyperbolic: the scene crop through the online backbone and the hyperbolic head
    (query) against the object crop through the momentum encoder (key), with a queue of object keys on
    the ball. One :class:`~hcl_plugin.lightly.HCLLoss` holds both terms and the three queues. With
    ``hyperbolic_head="shared"``, ``riemannian_grad=True`` and ``feature_scale=1`` fixed this is the
    released code's model (docs/hcl_options.md).
    """

    MOMENTUM = ("backbone", "projection_head", "hyperbolic_head")

    def __init__(self, **hyper_parameters: Any) -> None:
        super().__init__(**hyper_parameters)
        hp = self.hparams
        self.criterion = HCLLoss(
            lambda_hyp=hp.lambda_hyp, temperature_euc=hp.temperature, temperature_hyp=hp.temperature,
            c=self.curvature, memory_bank_size=self.bank_size(hp.proj_output_dim),
            hyp_memory_bank_size=self.bank_size(hp.hyp_output_dim), symmetric=True,
            gather_distributed=hp.gather_distributed,
        )

    def build_projection_heads(self, width: int) -> None:
        self.projection_head = MoCoProjectionHead(width, self.hparams.proj_hidden_dim, self.hparams.proj_output_dim)

    @torch.no_grad()
    def key(self, x: Tensor, shuffle_bn: Optional[bool] = None) -> Tensor:
        """The Euclidean key of ``x``: the momentum encoder's raw projection (shuffle-BN when enabled)."""
        return self.momentum_forward(lambda v: self.projection_head_momentum(self.backbone_momentum(v)), x, shuffle_bn)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        self.momentum_update()
        v1, v2 = batch["object_view_1"], batch["object_view_2"]
        queries = (self.projection_head(self.backbone(v1)), self.projection_head(self.backbone(v2)))
        keys = (self.key(v1), self.key(v2))
        loss, parts = self.criterion(queries, keys, *self.hyperbolic_views(batch), return_parts=True)
        return self.log_step(HCLLossOutput(loss, parts["loss_euc"], parts["loss_hyp"]), v1.shape[0])


class DenseCLHCL(_MomentumModule):
    """DenseCL + HCL.

    DenseCL (Wang et al., CVPR 2021, Lightly's modules): a global MoCo loss and a dense loss between
    matched feature-map locations of two views of an object crop, each with a queue, mixed by
    ``dense_weight``. HCL adds the hyperbolic term as :class:`MoCoHCL` does, with a
    :class:`~hcl_plugin.lightly.HyperbolicNTXentLoss` and its queue of object keys on the ball.
    """

    HyperParameters = DenseCLHyperParameters
    MOMENTUM = ("backbone", "projection_head", "projection_head_local", "hyperbolic_head")

    def __init__(self, **hyper_parameters: Any) -> None:
        super().__init__(**hyper_parameters)
        hp = self.hparams
        bank, gather = self.bank_size(hp.proj_output_dim), hp.gather_distributed
        self.criterion_global = NTXentLoss(temperature=hp.temperature, memory_bank_size=bank, gather_distributed=gather)
        self.criterion_local = NTXentLoss(temperature=hp.temperature, memory_bank_size=bank, gather_distributed=gather)
        self.criterion_hyp = HyperbolicNTXentLoss(hp.temperature, c=self.curvature,
                                                  memory_bank_size=self.bank_size(hp.hyp_output_dim),
                                                  gather_distributed=gather)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        super().add_arguments(parser)
        parser.add_argument("--dense-weight", type=float, default=0.5, help="DenseCL's lambda between global and dense loss")
        return parser

    def build_projection_heads(self, width: int) -> None:
        hidden, out = self.hparams.proj_hidden_dim, self.hparams.proj_output_dim
        self.projection_head = DenseCLProjectionHead(width, hidden, out)  # global
        self.projection_head_local = DenseCLProjectionHead(width, hidden, out)

    @staticmethod
    def dense_outputs(resnet: nn.Module, head_global: nn.Module, head_local: nn.Module,
                      x: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Pooled features, the (B, H*W, C) feature map, and the global and dense projections."""
        features = feature_map(resnet, x)
        pooled = features.mean(dim=(2, 3))
        features = features.flatten(start_dim=2).permute(0, 2, 1)  # (B, H*W, C)
        return pooled, features, head_global(pooled), head_local(features)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        self.momentum_update()
        _, q_features, q_global, q_local = self.dense_outputs(self.backbone, self.projection_head, self.projection_head_local,
                                                             batch["object_view_1"])
        with torch.no_grad():
            _, k_features, k_global, k_local = self.momentum_forward(
                lambda x: self.dense_outputs(self.backbone_momentum, self.projection_head_momentum,
                                             self.projection_head_local_momentum, x),
                batch["object_view_2"])
            k_local = lightly_utils.select_most_similar(q_features, k_features, k_local)
        loss_global = self.criterion_global(q_global, k_global)
        loss_local = self.criterion_local(q_local.flatten(end_dim=1), k_local.flatten(end_dim=1))
        w = self.hparams.dense_weight
        out = combine_hcl((1 - w) * loss_global + w * loss_local, self.hyperbolic_loss(batch), self.hparams.lambda_hyp)
        return self.log_step(out, q_global.shape[0], loss_global=loss_global, loss_local=loss_local)


class SimCLRHCL(HCLModule):
    """SimCLR + HCL: in-batch negatives for both losses.

    Euclidean: Lightly's ``NTXentLoss`` between two views of an object crop. Hyperbolic:
    :class:`~hcl_plugin.lightly.HyperbolicNTXentLoss` between the scene crop and the object crop, both
    through the online network and the hyperbolic head, the other 2B - 2 views of the batch (of all
    ranks with DDP) as negatives. No momentum encoder, hence no shuffle-BN.
    """

    def __init__(self, **hyper_parameters: Any) -> None:
        super().__init__(**hyper_parameters)
        hp = self.hparams
        self.criterion = NTXentLoss(temperature=hp.temperature, gather_distributed=hp.gather_distributed)
        self.criterion_hyp = HyperbolicNTXentLoss(hp.temperature, c=self.curvature, gather_distributed=hp.gather_distributed)

    def build_projection_heads(self, width: int) -> None:
        # no batch norm: Linear-ReLU-Linear, the same keys as the other models' heads
        self.projection_head = SimCLRProjectionHead(width, self.hparams.proj_hidden_dim, self.hparams.proj_output_dim,
                                                    batch_norm=False)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        z1 = self.projection_head(self.backbone(batch["object_view_1"]))
        z2 = self.projection_head(self.backbone(batch["object_view_2"]))
        out = combine_hcl(self.criterion(z1, z2), self.hyperbolic_loss(batch), self.hparams.lambda_hyp)
        return self.log_step(out, z1.shape[0])


MODELS: Dict[str, Type[HCLModule]] = {"moco": MoCoHCL, "densecl": DenseCLHCL, "simclr": SimCLRHCL}

