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
in checkpoints). :math:`\\mathcal{L}_{hyp}` is the core loss
(:class:`hcl_plugin.losses.HyperbolicInfoNCELoss`, through ``HyperbolicContrastiveHead``); the
algorithm returns λ·L_hyp (``lambda_hyp``) as ``loss_hyp_weighted`` beside the baseline's losses, which
MMEngine sums into ``loss``, and logs the unweighted L_hyp as ``loss_hyp`` without summing it (the
Lightly models' convention: ``loss`` = total, ``loss_hyp`` unweighted, ``loss_hyp_weighted`` its part of
the total). ``HCLLambdaWarmupHook`` can ramp λ.

The curvature :math:`c` belongs to the algorithm: ``curvature`` in the model config (a number, or
``dict(c=..., learnable=...)``) builds one :class:`hcl_plugin.geometry.Curvature`, and the same object
is passed to the neck, the momentum copy of the neck, the head and the queue. It is registered
once, as the algorithm's ``curvature`` (the others refer to it), so a learnable :math:`\\log c` is
one parameter (``curvature.log_c`` in the optimiser and in checkpoints), never averaged into the
momentum copy.

Where the hyperbolic branch comes from (``hyperbolic_head``, docs/hcl_options.md):

* ``'separate'`` (the project's default): the ``PoincareNeck``, an MLP of its own on the backbone
  features, beside MMSelfSup's projection neck;
* ``'shared'`` (the released HCL code's): one projection head, MMSelfSup's own neck (``MoCoV2Neck``;
  DenseCL's global branch). Its raw output, before the L2 normalisation MMSelfSup applies in ``loss``,
  is mapped onto the ball by a ``BallMapNeck`` (:class:`hcl_plugin.modules.BallMap`): the scene query
  through the online backbone and neck, the object key through the momentum backbone and the momentum
  neck (``encoder_k``, batch-shuffled like MMSelfSup's keys). The hyperbolic loss then also trains the
  projection neck.

The gradient options of the map (``riemannian_grad``, ``decoupled``) are keys of ``hyp_neck``. The
map's health (``ball_health_stats``: ``hyp_c_sq_norm_mean``, ``hyp_near_boundary_fraction``, ...) is
returned with the losses as detached tensors; MMEngine logs every entry and sums only those whose name
contains ``loss``.

[1] S. Ge, S. Mishra et al. "Hyperbolic Contrastive Learning for Visual Representations beyond
    Objects". CVPR 2023. https://arxiv.org/abs/2212.00653
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Dict, List, Mapping, Optional, Union

import torch
from mmengine.logging import print_log
from mmengine.model import ExponentialMovingAverage
from mmselfsup.models.algorithms import DenseCL, MoCo
from mmselfsup.registry import MODELS
from mmselfsup.structures import SelfSupDataSample
from mmselfsup.utils import batch_shuffle_ddp, batch_unshuffle_ddp
from torch import Tensor, nn

from hcl_plugin.checkpoints.contract import check_hyperbolic_head_kind
from hcl_plugin.geometry import Curvature
from hcl_plugin.mmselfsup.necks import BALL_MAP_KEYS, BallMapNeck, PoincareNeck
from hcl_plugin.modules import HyperbolicMemoryBank
from hcl_plugin.utils.checks import check_non_negative

__all__ = [
    "HCLMoCoV2",
    "HCLDenseCL",
    "HyperbolicBranchMixin",
    "NUM_HCL_VIEWS",
    "build_curvature",
    "momentum_copy",
    "share_curvature",
]

#: Views per sample: object view 1, object view 2 (baseline), scene crop, object crop (hyperbolic).
NUM_HCL_VIEWS = 4
#: λ of the official HCL code.
DEFAULT_LAMBDA_HYP = 0.1
#: c of the official HCL code (ball radius 1/sqrt(c) ≈ 4.47).
DEFAULT_C = 0.05

#: ``model.curvature``: a number (fixed c), ``dict(c=..., learnable=..., min_c=..., max_c=...)`` (the
#: arguments of :class:`~hcl_plugin.geometry.Curvature`), a ``Curvature``, or ``None`` (see
#: :meth:`HyperbolicBranchMixin.__init__`).
CurvatureConfig = Optional[Union[float, Mapping[str, Any], Curvature]]
InitConfig = Optional[Union[List[dict], dict]]

_CURVATURE_ARGS = ("c", "learnable", "min_c", "max_c")


def _deprecated(message: str) -> None:
    """A ``DeprecationWarning``, also written to MMEngine's log (Python hides the warning by default
    when it is raised inside a registry build)."""
    warnings.warn(message, DeprecationWarning, stacklevel=3)
    print_log(message, logger="current", level=logging.WARNING)


def build_curvature(spec: Union[float, Mapping[str, Any], Curvature], owner: str = "model") -> Curvature:
    """The :class:`~hcl_plugin.geometry.Curvature` of a config entry.

    Args:
        spec: a number (a fixed ``c``), a mapping of ``Curvature``'s arguments (``c``, ``learnable``,
            ``min_c``, ``max_c``), or a ``Curvature`` (returned as it is).
        owner: named in the errors.

    Raises:
        TypeError: ``spec`` is none of these.
        ValueError: an unknown key, or a value ``Curvature`` rejects (``c <= 0``, ...).
    """
    if isinstance(spec, Curvature):
        return spec
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(_CURVATURE_ARGS))
        if unknown:
            raise ValueError(f"{owner}: curvature has unknown key(s) {unknown}; expected {list(_CURVATURE_ARGS)}")
        kwargs = dict(spec)
    elif isinstance(spec, (int, float)) and not isinstance(spec, bool):
        kwargs = dict(c=float(spec))
    else:
        raise TypeError(f"{owner}: curvature must be a number, a dict(c=..., learnable=...) or a Curvature, "
                        f"got {type(spec).__name__}")
    try:
        return Curvature(**kwargs)
    except ValueError as error:
        raise ValueError(f"{owner}: curvature={spec!r}: {error}") from None


def _resolve_curvature(owner: str, curvature: CurvatureConfig, parts: Mapping[str, Mapping[str, Any]]) -> Curvature:
    """The branch's one curvature: ``curvature`` (the new key), checked against the ``c`` in ``parts``.

    ``parts`` maps config keys (``hyp_neck``, ``hyp_head``) to their configs. Without ``curvature``
    (configs written before it existed) the ``c`` they set is used, with a ``DeprecationWarning``, and
    0.05 when none sets one.
    """
    given = {f"{key}.c": cfg["c"] for key, cfg in parts.items() if cfg.get("c") is not None}
    if curvature is None:
        objects = list({id(value): value for value in given.values() if isinstance(value, Curvature)}.values())
        numbers = {key: float(value) for key, value in given.items() if not isinstance(value, Curvature)}
        if objects or len(set(numbers.values())) > 1:
            if len(objects) == 1 and not numbers:
                return objects[0]
            shown = " and ".join(f"model.{key} = {value}" for key, value in given.items())
            raise ValueError(f"{owner}: {shown} differ; queries and keys must live in the same ball. "
                             f"Set the curvature once, as model.curvature, and remove these")
        if numbers:
            value = next(iter(numbers.values()))
            _deprecated(f"{owner}: the curvature in model.{' / model.'.join(numbers)} is deprecated; set "
                        f"model.curvature=dict(c={value}, learnable=False) (the algorithm passes it to the neck, "
                        f"the head and the queue) and remove it there")
            return build_curvature(value, owner)
        return build_curvature(DEFAULT_C, owner)
    shared = build_curvature(curvature, owner)
    for key, value in given.items():
        if value is shared:
            continue
        if isinstance(value, Curvature) or float(value) != shared.fixed_c:
            raise ValueError(
                f"{owner}: model.{key} = {value} differs from model.curvature (c = {shared.fixed_c}); the "
                f"algorithm owns the curvature and passes it to the neck, the head and the queue: remove {key}"
            )
    return shared


def _hyperbolic_neck_config(owner: str, kind: str, hyp_neck: Mapping[str, Any], out_channels: int) -> Dict[str, Any]:
    """The config of the branch's map onto the ball for ``hyperbolic_head=kind``.

    ``'separate'``: ``hyp_neck`` as it is (a ``BallMapNeck`` there is an error: it has no MLP of its
    own). ``'shared'``: a ``BallMapNeck`` on the projection neck's ``out_channels``; a ``PoincareNeck``
    config (the base configs') gives its map's keys (``clip_r``, ``feature_scale``, ``learn_scale``,
    ``riemannian_grad``, ``decoupled``), its MLP keys are not used.
    """
    cfg = dict(hyp_neck)
    neck_type = cfg.get("type")
    if kind == "separate":
        if neck_type in ("BallMapNeck", BallMapNeck):
            raise ValueError(f"{owner}: model.hyp_neck is a BallMapNeck, which maps the projection neck's output; "
                             "set model.hyperbolic_head='shared', or use a PoincareNeck for a separate head")
        return cfg
    if neck_type in ("PoincareNeck", PoincareNeck):
        unused = sorted(key for key in cfg if key not in BALL_MAP_KEYS and key != "type")
        cfg = {key: value for key, value in cfg.items() if key in BALL_MAP_KEYS}
        print_log(f"{owner}: hyperbolic_head='shared': the hyperbolic branch maps the projection neck's output "
                  f"onto the ball (a BallMapNeck with model.hyp_neck's {sorted(cfg) or 'default'} options; "
                  f"{', '.join(unused) or 'no keys'} unused)", logger="current", level=logging.INFO)
        cfg["type"] = "BallMapNeck"
    given = cfg.get("out_channels")
    if given is not None and given != out_channels:
        raise ValueError(f"{owner}: model.hyp_neck.out_channels = {given}, but the shared head maps the projection "
                         f"neck's output, of dimension {out_channels} (feat_dim); remove it")
    cfg["out_channels"] = out_channels
    return cfg


def _resolve_lambda(owner: str, lambda_hyp: Optional[float], hyp_lambda: Optional[float]) -> float:
    """λ from ``lambda_hyp`` or its deprecated alias ``hyp_lambda`` (not both), validated; 0.1 by default."""
    if hyp_lambda is not None:
        if lambda_hyp is not None:
            raise ValueError(f"{owner}: both lambda_hyp={lambda_hyp} and its deprecated alias hyp_lambda={hyp_lambda} "
                             "are set; keep lambda_hyp only")
        _deprecated(f"{owner}: model.hyp_lambda is deprecated and will be removed in the next release; "
                    f"use model.lambda_hyp={hyp_lambda} (the name of hcl_plugin's losses and Lightly modules)")
        lambda_hyp = hyp_lambda
    value = DEFAULT_LAMBDA_HYP if lambda_hyp is None else lambda_hyp
    check_non_negative(value, "lambda_hyp")
    return float(value)


def share_curvature(module: nn.Module, curvature: Curvature) -> List[str]:
    """Make every ``Curvature`` inside ``module`` (registered or an attribute) a plain reference to ``curvature``.

    The neck, the head and the queue each register the curvature they are given as a submodule; if
    they all registered the shared one, ``log c`` would appear under several names: MMEngine's
    optimiser constructor adds it once per name when a ``paramwise_cfg`` is set (torch then refuses
    the optimiser) and the checkpoint stores it several times. The algorithm registers it once, as
    ``curvature``, and the modules refer to it without registering it. Returns the dotted names replaced.
    """
    replaced = []
    for prefix, parent in list(module.named_modules()):
        registered = [name for name, child in parent.named_children() if isinstance(child, Curvature)]
        referred = [name for name, value in vars(parent).items()
                    if isinstance(value, Curvature) and value is not curvature]  # e.g. in a deep copy
        for name in registered + referred:
            parent._modules.pop(name, None)
            object.__setattr__(parent, name, curvature)  # an attribute, not a submodule
            replaced.append(f"{prefix}.{name}" if prefix else name)
    return replaced


def momentum_copy(module: nn.Module, momentum: float, curvature: Curvature,
                  ema_type: type = ExponentialMovingAverage, **ema_kwargs: Any) -> ExponentialMovingAverage:
    """MMEngine's ``ExponentialMovingAverage`` of ``module`` (as MMSelfSup's key encoders), sharing ``curvature``.

    The copy is updated as :math:`\\theta_k \\leftarrow (1 - m)\\,\\theta_k + m\\,\\theta_q` with
    ``m = momentum``; ``ema_type`` (with ``ema_kwargs``) makes another kind of average, e.g. MMSelfSup's
    ``CosineEMA`` for BYOL-style target networks, whose ``momentum`` is the weight of the average itself.
    The EMA deep-copies ``module``, and with it the curvature:
    the copy's is replaced by (a reference to) ``curvature`` itself, so keys and queries live in the
    same ball, and it is not averaged (the online branch learns ``log c``; the copy reads it).
    """
    ema = ema_type(module, momentum, **ema_kwargs)
    share_curvature(ema.module, curvature)
    ema.avg_parameters = dict(ema.module.named_parameters())  # without the copy's log c
    return ema


#: entries of the HCL algorithms' loss dict that MMEngine must log but not add to ``loss``
LOGGED_NOT_SUMMED = ("loss_hyp",)


class HyperbolicBranchMixin:
    """The hyperbolic branch shared by the HCL algorithms, put before an MMSelfSup MoCo-style algorithm.

    ``__init__`` takes the branch's arguments and passes the rest to the algorithm (``MoCo``,
    ``DenseCL``), whose ``backbone``, ``encoder_k`` (the momentum encoder) and ``queue_len`` it uses.
    An algorithm with another momentum encoder (BYOL's ``target_net``: ``HCLORL``) overrides
    :meth:`_momentum_encoder`, :meth:`_default_hyp_queue_len`, :meth:`_projection_dim` and
    :meth:`_momentum_copy`.
    """

    hyp_neck: nn.Module
    hyp_head: nn.Module

    def __init__(
        self,
        *,
        hyp_neck: dict,
        hyp_head: dict,
        lambda_hyp: Optional[float] = None,
        curvature: CurvatureConfig = None,
        hyp_queue_len: Optional[int] = None,
        queue_seed: int = 0,
        hyp_lambda: Optional[float] = None,
        hyperbolic_head: str = "separate",
        **baseline_kwargs: Any,
    ) -> None:
        """Build the baseline from ``baseline_kwargs``, then the branch (arguments: see :class:`HCLMoCoV2`).

        The curvature: ``curvature`` when given (a ``c`` in ``hyp_neck`` / ``hyp_head`` must then be
        equal, else ``ValueError``); without it, the ``c`` of ``hyp_neck`` / ``hyp_head`` (deprecated;
        they must agree), else 0.05. The neck, the head, the momentum neck and the queue receive the
        same :class:`~hcl_plugin.geometry.Curvature` (their configs' ``c`` is replaced by it).

        ``hyperbolic_head='shared'`` builds a ``BallMapNeck`` of the projection neck's output instead of
        the ``PoincareNeck`` (see :func:`_hyperbolic_neck_config`).
        """
        owner = type(self).__name__
        kind = check_hyperbolic_head_kind(hyperbolic_head, f"{owner}: model.hyperbolic_head")
        lambda_value = _resolve_lambda(owner, lambda_hyp, hyp_lambda)
        shared = _resolve_curvature(owner, curvature, {"hyp_neck": hyp_neck, "hyp_head": hyp_head})
        super().__init__(**baseline_kwargs)  # type: ignore[call-arg]  # MoCo / DenseCL
        queue_len = self._default_hyp_queue_len() if hyp_queue_len is None else hyp_queue_len
        if queue_len < 1:
            raise ValueError(f"{owner}: hyp_queue_len must be >= 1, got {queue_len}")
        self.lambda_hyp = lambda_value
        self.hyperbolic_head = kind
        self.curvature = shared  # the one registration: parameter and checkpoint key 'curvature.log_c'
        # shared: the map of the projection neck's output, whose dimension is the queue's (MoCo's feat_dim)
        neck_cfg = _hyperbolic_neck_config(owner, kind, hyp_neck, self._projection_dim())
        self.hyp_neck = MODELS.build(dict(neck_cfg, c=shared))
        self.hyp_head = MODELS.build(dict(hyp_head, c=shared))
        self.hyp_neck_k = self._momentum_copy(self.hyp_neck, shared)
        self.hyp_queue = HyperbolicMemoryBank(queue_len, self.hyp_neck.out_channels, c=shared, seed=queue_seed)
        for part in (self.hyp_neck, self.hyp_head, self.hyp_queue):
            share_curvature(part, shared)

    def _momentum_encoder(self) -> ExponentialMovingAverage:
        """The EMA of ``nn.Sequential(backbone, neck)`` that computes the keys (MoCo / DenseCL: ``encoder_k``)."""
        return self.encoder_k  # type: ignore[attr-defined]

    def _default_hyp_queue_len(self) -> int:
        """The hyperbolic queue's length without ``hyp_queue_len``: the baseline's ``queue_len``."""
        return int(self.queue_len)  # type: ignore[attr-defined]

    def _projection_dim(self) -> int:
        """Output width of the projection neck (the shared head's input): MoCo's ``feat_dim``, the queue's rows."""
        return int(self.queue.size(0))  # type: ignore[attr-defined]

    def _momentum_copy(self, module: nn.Module, curvature: Curvature) -> ExponentialMovingAverage:
        """The momentum copy of the hyperbolic neck, averaged like :meth:`_momentum_encoder`."""
        return momentum_copy(module, self._momentum_encoder().momentum, curvature)

    @property
    def shared_head(self) -> bool:
        """Whether the hyperbolic branch maps the projection neck's output (``hyperbolic_head='shared'``)."""
        return self.hyperbolic_head == "shared"

    def hyperbolic_query(self, images: Tensor) -> Tensor:
        """Points on the ball of ``images`` through the online backbone and ``hyp_neck``; shared: through
        the online backbone, the projection neck (its raw global output, before MMSelfSup normalises it)
        and the ``BallMapNeck``."""
        features = self.backbone(images)
        if self.shared_head:
            return self.hyp_neck([self.neck(features)[0]])[0]
        return self.hyp_neck(features)[0]

    def hyperbolic_key(self, images: Tensor) -> Tensor:
        """The momentum counterpart of :meth:`hyperbolic_query` (``encoder_k`` and ``hyp_neck_k``), with
        MMSelfSup's shuffle-BN: the batch is shuffled across ranks before the key backbone and the keys
        unshuffled after the map (row by row, so the order does not change it). Call it without grad."""
        images, idx_unshuffle = batch_shuffle_ddp(images)
        encoder = self._momentum_encoder().module
        features = encoder[0](images)
        if self.shared_head:
            key = self.hyp_neck_k.module([encoder[1](features)[0]])[0]
        else:
            key = self.hyp_neck_k.module(features)[0]
        return batch_unshuffle_ddp(key, idx_unshuffle)

    @property
    def hyp_lambda(self) -> float:
        """Deprecated alias of :attr:`lambda_hyp` (read and written through, with a ``DeprecationWarning``)."""
        warnings.warn("hyp_lambda is deprecated and will be removed in the next release; use lambda_hyp",
                      DeprecationWarning, stacklevel=2)
        return self.lambda_hyp

    @hyp_lambda.setter
    def hyp_lambda(self, value: float) -> None:
        warnings.warn("hyp_lambda is deprecated and will be removed in the next release; use lambda_hyp",
                      DeprecationWarning, stacklevel=2)
        self.lambda_hyp = value

    def parse_losses(self, losses: Dict[str, Tensor]):
        """MMEngine's sum of every ``loss*`` entry, with the unweighted ``loss_hyp`` logged but not summed
        (its weighted part, ``loss_hyp_weighted``, is in the sum)."""
        logged_only = {name: losses[name] for name in LOGGED_NOT_SUMMED if name in losses}
        loss, log_vars = super().parse_losses({k: v for k, v in losses.items() if k not in logged_only})
        for name, value in logged_only.items():
            log_vars[name] = value.detach().mean()
        return loss, log_vars

    def _hyperbolic_loss(self, inputs: List[Tensor]) -> Dict[str, Tensor]:
        """``loss_hyp_weighted`` = λ · ``loss_hyp``, ``loss_hyp`` = HyperbolicInfoNCE(scene queries, object keys,
        queue) (detached, logged only: :meth:`parse_losses`) and the branch's health; the scene and object
        views are ``inputs[2]`` and ``inputs[3]``."""
        if len(inputs) != NUM_HCL_VIEWS:
            raise ValueError(
                f"{type(self).__name__} expects {NUM_HCL_VIEWS} views per sample (object, object, scene, "
                f"object; the SceneObjectMultiView transform makes them), got {len(inputs)}"
            )
        return self._hyperbolic_pair_loss(inputs[2], inputs[3])

    def _hyperbolic_pair_loss(self, im_scene: Tensor, im_object: Tensor) -> Dict[str, Tensor]:
        """:meth:`_hyperbolic_loss` of a batch of scene views (queries) and object views (keys)."""
        query = self.hyperbolic_query(im_scene)
        health = dict(getattr(self.hyp_neck, "stats", {}))  # of the scene queries
        with torch.no_grad():
            self.hyp_neck_k.update_parameters(self.hyp_neck)  # encoder_k: updated by the baseline's loss
            key = self.hyperbolic_key(im_object)
        loss_hyp = self.hyp_head(query, key, self.hyp_queue.negatives())
        self.hyp_queue.enqueue(key)
        out = {"loss_hyp_weighted": self.lambda_hyp * loss_hyp, "loss_hyp": loss_hyp.detach()}
        # health of the hyperbolic branch (logged, not optimised: MMEngine sums only keys with 'loss')
        for name, value in health.items():
            out[name if name.startswith("hyp_") else f"hyp_{name}"] = value.detach()
        if self.curvature.learnable:
            out["hyp_c"] = self.curvature().detach()
        return out


def _arguments(frame_locals: Dict[str, Any]) -> Dict[str, Any]:
    """The arguments of an ``__init__`` from its ``locals()`` (taken first thing), without ``self``."""
    return {name: value for name, value in frame_locals.items() if name not in ("self", "__class__")}


@MODELS.register_module()
class HCLMoCoV2(HyperbolicBranchMixin, MoCo):
    """MoCo-v2 + HCL (MMSelfSup ``MoCo`` with a ``MoCoV2Neck``, plus the hyperbolic branch).

    Args:
        backbone, neck, head, queue_len, feat_dim, momentum, pretrained, data_preprocessor,
            init_cfg: as MMSelfSup's ``MoCo``.
        hyp_neck: a ``PoincareNeck`` config (its ``c`` comes from ``curvature``), or with
            ``hyperbolic_head='shared'`` a ``BallMapNeck`` one; its ``riemannian_grad`` / ``decoupled``
            are the map's gradient options (default off; the released code: ``riemannian_grad=True``).
        hyp_head: a ``HyperbolicContrastiveHead`` config (its ``c`` comes from ``curvature``).
        lambda_hyp: λ, the weight of the hyperbolic loss (default: 0.1, the official HCL value).
        curvature: the curvature of the ball, for the neck, its momentum copy, the head and the queue:
            a number (fixed ``c``) or ``dict(c=0.05, learnable=False)`` (``learnable=True`` learns
            ``log c``; ``min_c`` / ``max_c`` bound it). Default: the ``c`` of ``hyp_neck`` /
            ``hyp_head`` (deprecated), else 0.05 (official HCL).
        hyp_queue_len: length of the queue of object keys (default: ``queue_len``).
        queue_seed: seed of the hyperbolic queue's initial points (equal on every rank).
        hyp_lambda: deprecated alias of ``lambda_hyp`` (``DeprecationWarning``; ``ValueError`` with both).
        hyperbolic_head: ``'separate'`` (default: the ``PoincareNeck``, an MLP of its own) or ``'shared'``
            (the released HCL code's: the ``neck``'s raw output mapped onto the ball by a ``BallMapNeck``;
            a ``PoincareNeck`` config in ``hyp_neck`` gives the map's options, its MLP keys are unused).
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
        queue_len: int = 65536,
        hyp_queue_len: Optional[int] = None,
        feat_dim: int = 128,
        momentum: float = 0.999,
        queue_seed: int = 0,
        pretrained: Optional[str] = None,
        data_preprocessor: Optional[dict] = None,
        init_cfg: InitConfig = None,
        hyp_lambda: Optional[float] = None,
        hyperbolic_head: str = "separate",
    ) -> None:
        super().__init__(**_arguments(locals()))  # the mixin splits them between MoCo and the branch

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
        hyp_neck, hyp_head, lambda_hyp, curvature, hyp_queue_len, queue_seed, hyp_lambda, hyperbolic_head:
            as :class:`HCLMoCoV2` (shared: DenseCL's global branch, ``neck.mlp``, is the shared head).
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
        queue_len: int = 65536,
        hyp_queue_len: Optional[int] = None,
        feat_dim: int = 128,
        momentum: float = 0.999,
        loss_lambda: float = 0.5,
        queue_seed: int = 0,
        pretrained: Optional[str] = None,
        data_preprocessor: Optional[dict] = None,
        init_cfg: InitConfig = None,
        hyp_lambda: Optional[float] = None,
        hyperbolic_head: str = "separate",
    ) -> None:
        super().__init__(**_arguments(locals()))  # the mixin splits them between DenseCL and the branch

    def loss(self, inputs: List[Tensor], data_samples: List[SelfSupDataSample], **kwargs) -> Dict[str, Tensor]:
        """DenseCL's ``loss`` on views 0/1 plus ``loss_hyp`` on views 2 (scene) / 3 (object)."""
        losses = super().loss(inputs, data_samples, **kwargs)
        losses.update(self._hyperbolic_loss(inputs))
        return losses
