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
algorithm multiplies it by λ (``lambda_hyp``) and returns it as ``loss_hyp`` beside the baseline's
losses, and MMEngine sums every ``loss*`` entry. ``HCLLambdaWarmupHook`` can ramp λ.

The curvature :math:`c` belongs to the algorithm: ``curvature`` in the model config (a number, or
``dict(c=..., learnable=...)``) builds one :class:`hcl_plugin.geometry.Curvature`, and the same object
is passed to the neck, the momentum copy of the neck, the head and the queue. It is registered
once, as the algorithm's ``curvature`` (the others refer to it), so a learnable :math:`\\log c` is
one parameter (``curvature.log_c`` in the optimiser and in checkpoints), never averaged into the
momentum copy.

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

from hcl_plugin.geometry import Curvature
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


def momentum_copy(module: nn.Module, momentum: float, curvature: Curvature) -> ExponentialMovingAverage:
    """MMEngine's ``ExponentialMovingAverage`` of ``module`` (as MMSelfSup's key encoders), sharing ``curvature``.

    The copy is updated as :math:`\\theta_k \\leftarrow (1 - m)\\,\\theta_k + m\\,\\theta_q` with
    ``m = momentum``. ``ExponentialMovingAverage`` deep-copies ``module``, and with it the curvature:
    the copy's is replaced by (a reference to) ``curvature`` itself, so keys and queries live in the
    same ball, and it is not averaged (the online branch learns ``log c``; the copy reads it).
    """
    ema = ExponentialMovingAverage(module, momentum)
    share_curvature(ema.module, curvature)
    ema.avg_parameters = dict(ema.module.named_parameters())  # without the copy's log c
    return ema


class HyperbolicBranchMixin:
    """The hyperbolic branch shared by the HCL algorithms, put before an MMSelfSup MoCo-style algorithm.

    ``__init__`` takes the branch's arguments and passes the rest to the algorithm (``MoCo``,
    ``DenseCL``), whose ``backbone``, ``encoder_k`` (the momentum encoder) and ``queue_len`` it uses.
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
        **baseline_kwargs: Any,
    ) -> None:
        """Build the baseline from ``baseline_kwargs``, then the branch (arguments: see :class:`HCLMoCoV2`).

        The curvature: ``curvature`` when given (a ``c`` in ``hyp_neck`` / ``hyp_head`` must then be
        equal, else ``ValueError``); without it, the ``c`` of ``hyp_neck`` / ``hyp_head`` (deprecated;
        they must agree), else 0.05. The neck, the head, the momentum neck and the queue receive the
        same :class:`~hcl_plugin.geometry.Curvature` (their configs' ``c`` is replaced by it).
        """
        owner = type(self).__name__
        lambda_value = _resolve_lambda(owner, lambda_hyp, hyp_lambda)
        shared = _resolve_curvature(owner, curvature, {"hyp_neck": hyp_neck, "hyp_head": hyp_head})
        super().__init__(**baseline_kwargs)  # type: ignore[call-arg]  # MoCo / DenseCL
        queue_len = self.queue_len if hyp_queue_len is None else hyp_queue_len
        if queue_len < 1:
            raise ValueError(f"{owner}: hyp_queue_len must be >= 1, got {queue_len}")
        self.lambda_hyp = lambda_value
        self.curvature = shared  # the one registration: parameter and checkpoint key 'curvature.log_c'
        self.hyp_neck = MODELS.build(dict(hyp_neck, c=shared))
        self.hyp_head = MODELS.build(dict(hyp_head, c=shared))
        self.hyp_neck_k = momentum_copy(self.hyp_neck, self.encoder_k.momentum, shared)
        self.hyp_queue = HyperbolicMemoryBank(queue_len, self.hyp_neck.out_channels, c=shared, seed=queue_seed)
        for part in (self.hyp_neck, self.hyp_head, self.hyp_queue):
            share_curvature(part, shared)

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

    def _hyperbolic_loss(self, inputs: List[Tensor]) -> Dict[str, Tensor]:
        """``loss_hyp`` = λ · HyperbolicInfoNCE(scene queries, object keys, queue) and the branch's health."""
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
        out = {"loss_hyp": self.lambda_hyp * loss_hyp}
        # health of the hyperbolic branch (logged, not optimised: MMEngine sums only keys with 'loss')
        for name, value in getattr(self.hyp_neck, "stats", {}).items():
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
        hyp_neck: a ``PoincareNeck`` config (its ``c`` comes from ``curvature``).
        hyp_head: a ``HyperbolicContrastiveHead`` config (its ``c`` comes from ``curvature``).
        lambda_hyp: λ, the weight of the hyperbolic loss (default: 0.1, the official HCL value).
        curvature: the curvature of the ball, for the neck, its momentum copy, the head and the queue:
            a number (fixed ``c``) or ``dict(c=0.05, learnable=False)`` (``learnable=True`` learns
            ``log c``; ``min_c`` / ``max_c`` bound it). Default: the ``c`` of ``hyp_neck`` /
            ``hyp_head`` (deprecated), else 0.05 (official HCL).
        hyp_queue_len: length of the queue of object keys (default: ``queue_len``).
        queue_seed: seed of the hyperbolic queue's initial points (equal on every rank).
        hyp_lambda: deprecated alias of ``lambda_hyp`` (``DeprecationWarning``; ``ValueError`` with both).
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
        hyp_neck, hyp_head, lambda_hyp, curvature, hyp_queue_len, queue_seed, hyp_lambda: as
            :class:`HCLMoCoV2`.
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
    ) -> None:
        super().__init__(**_arguments(locals()))  # the mixin splits them between DenseCL and the branch

    def loss(self, inputs: List[Tensor], data_samples: List[SelfSupDataSample], **kwargs) -> Dict[str, Tensor]:
        """DenseCL's ``loss`` on views 0/1 plus ``loss_hyp`` on views 2 (scene) / 3 (object)."""
        losses = super().loss(inputs, data_samples, **kwargs)
        losses.update(self._hyperbolic_loss(inputs))
        return losses
