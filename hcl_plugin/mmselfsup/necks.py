"""``PoincareNeck``: the hyperbolic projection neck of HCL, registered in MMSelfSup's ``MODELS``.

Global average pooling of the last backbone stage, then :class:`hcl_plugin.modules.PoincareProjectionHead`
(MLP ``in -> hid -> out``, optional learnable scale, optional clipping, ``project(expmap0(v))``):

.. math:: z = \\operatorname{proj}\\big(\\exp_0^c(s \\cdot \\mathrm{MLP}(\\mathrm{GAP}(x)))\\big),
    \\qquad \\exp_0^c(v) = \\tanh(\\sqrt{c}\\,\\lVert v\\rVert)\\,\\frac{v}{\\sqrt{c}\\,\\lVert v\\rVert}

No L2 normalisation: the norm carries the scene/object information [1, sec. 3.2].

``BallMapNeck`` is the hyperbolic branch of a *shared* head (``model.hyperbolic_head='shared'``, the
released HCL code's): no MLP of its own, it maps the algorithm's projection neck's raw output
(``MoCoV2Neck`` / DenseCL's global branch, before MMSelfSup L2-normalises it in the loss) onto the ball
with :class:`hcl_plugin.modules.BallMap` (docs/hcl_options.md).

[1] S. Ge, S. Mishra et al. "Hyperbolic Contrastive Learning for Visual Representations beyond
    Objects". CVPR 2023. https://arxiv.org/abs/2212.00653
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple, Union

import torch
from mmengine.model import BaseModule
from mmselfsup.registry import MODELS
from torch import Tensor, nn

from hcl_plugin.geometry import Curvature
from hcl_plugin.modules import BallMap, BallProjection, PoincareProjectionHead

__all__ = ["BallMapNeck", "PoincareNeck"]


class _BallNeck(BaseModule):
    """What both hyperbolic necks expose of their map onto the ball, ``self.head`` (a ``BallProjection``)."""

    head: BallProjection

    @property
    def curvature(self) -> Curvature:
        """The :class:`~hcl_plugin.geometry.Curvature` of the ball (the map's; in the algorithms, theirs)."""
        return self.head.curvature

    @property
    def c(self) -> Union[float, Tensor]:
        """The curvature magnitude: a float when fixed, a 0-dim tensor when learnable."""
        return self.head.c

    @property
    def stats(self) -> Dict[str, Tensor]:
        """Health statistics of the last forward pass (detached tensors)."""
        return self.head.stats


@MODELS.register_module()
class PoincareNeck(_BallNeck):
    """Backbone feature map -> a point in the Poincaré ball of curvature ``-c``.

    Args:
        in_channels: channels of the last backbone stage (2048 for ResNet-50).
        hid_channels: hidden width of the MLP (official HCL: 2048).
        out_channels: dimension of the ball (official HCL: 128).
        c: curvature magnitude (official HCL: 0.05, ball radius ``1/sqrt(c)``), or a
            :class:`~hcl_plugin.geometry.Curvature` shared with other modules. Inside ``HCLMoCoV2`` /
            ``HCLDenseCL`` the algorithm passes its own (``model.curvature``); leave ``c`` unset there.
        clip_r: feature-clipping radius before ``expmap0``; ``None`` = no clipping.
        feature_scale: initial scale of the MLP output; ``None`` = no scaling. A learnable scale
            (MERU-style) keeps the norms in the informative range (docs/background.md).
        learn_scale: learn ``feature_scale``.
        riemannian_grad: rescale the gradient at the ball point by :math:`(1 - c\\|z\\|^2)^2/4` (the
            released HCL code's; default off, the project's).
        decoupled: the hyperbolic loss moves only the norm of the tangent vector (default off).
        with_avg_pool: pool the ``(N, C, H, W)`` map; ``False`` expects ``(N, C)`` features.
        init_cfg: MMEngine initialisation config.

    ``forward`` takes the backbone's tuple of stages and returns a 1-tuple ``(z,)`` like MMSelfSup's
    necks; :attr:`stats` holds the head's health tensors (clipped fraction, norm range).

    Raises:
        ValueError: ``c <= 0`` (from :class:`~hcl_plugin.geometry.Curvature`), ``clip_r`` or
            ``feature_scale`` <= 0.
    """

    def __init__(
        self,
        in_channels: int = 2048,
        hid_channels: int = 2048,
        out_channels: int = 128,
        c: Union[float, Curvature] = 0.05,
        clip_r: Optional[float] = None,
        feature_scale: Optional[float] = None,
        learn_scale: bool = False,
        with_avg_pool: bool = True,
        init_cfg: Optional[Union[dict, List[dict]]] = None,
        riemannian_grad: bool = False,
        decoupled: bool = False,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.out_channels = out_channels
        self.with_avg_pool = with_avg_pool
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1)) if with_avg_pool else nn.Identity()
        self.head: BallProjection = PoincareProjectionHead(
            in_channels, hid_channels, out_channels, c=c, clip_r=clip_r,
            feature_scale=feature_scale, learn_scale=learn_scale,
            riemannian_grad=riemannian_grad, decoupled=decoupled,
        )

    def forward(self, x: Tuple[Tensor, ...]) -> Tuple[Tensor]:
        if not isinstance(x, (tuple, list)) or len(x) != 1:
            raise ValueError(
                "PoincareNeck expects the backbone output as a 1-tuple (set the backbone's "
                f"out_indices to one stage, e.g. [4]); got {type(x).__name__} of length "
                f"{len(x) if isinstance(x, (tuple, list)) else '-'}"
            )
        feat = self.avgpool(x[0]) if self.with_avg_pool else x[0]
        return (self.head(torch.flatten(feat, 1)),)


#: the keys of a ``PoincareNeck`` config that describe its map onto the ball (``BallMapNeck``'s keys)
BALL_MAP_KEYS = ("c", "clip_r", "feature_scale", "learn_scale", "riemannian_grad", "decoupled", "init_cfg")


@MODELS.register_module()
class BallMapNeck(_BallNeck):
    """The projection neck's raw output -> a point in the Poincaré ball: a shared head's hyperbolic branch.

    The released HCL code has one projection head (MoCo-v2's MLP): its L2-normalised output feeds the
    Euclidean loss and its raw output, mapped onto the ball, the hyperbolic loss. In ``HCLMoCoV2`` /
    ``HCLDenseCL`` with ``hyperbolic_head='shared'`` this neck is that map: it takes the output of the
    algorithm's ``neck`` (``MoCoV2Neck``; DenseCL's global branch), before its normalisation, and
    applies a :class:`~hcl_plugin.modules.BallMap` (optional scale, optional clipping, ``expmap0``, a
    projection into the ball). It has no MLP; its only weights are ``head.log_scale`` when a scale is
    set (the curvature is the algorithm's).

    Args:
        out_channels: dimension of the vectors (the projection neck's ``out_channels``; the algorithm
            sets it). ``None``: any.
        c: curvature magnitude, or the algorithm's :class:`~hcl_plugin.geometry.Curvature` (leave it
            unset inside the algorithms).
        clip_r, feature_scale, learn_scale, riemannian_grad, decoupled: as in :class:`PoincareNeck`
            (:class:`~hcl_plugin.modules.BallMap`). The released code's map: no scale, no clipping,
            ``riemannian_grad=True`` (``BallMap.official``).
        init_cfg: MMEngine initialisation config.

    ``forward`` takes the projection neck's output (a tuple/list whose first entry is ``(N, D)``) and
    returns ``(z,)``; :attr:`stats` holds the map's health tensors.
    """

    def __init__(
        self,
        out_channels: Optional[int] = None,
        c: Union[float, Curvature] = 0.05,
        clip_r: Optional[float] = None,
        feature_scale: Optional[float] = None,
        learn_scale: bool = False,
        riemannian_grad: bool = False,
        decoupled: bool = False,
        init_cfg: Optional[Union[dict, List[dict]]] = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.out_channels = out_channels
        self.head: BallProjection = BallMap(c, clip_r=clip_r, feature_scale=feature_scale, learn_scale=learn_scale,
                                            riemannian_grad=riemannian_grad, decoupled=decoupled)

    def forward(self, x: Union[Tensor, Tuple[Tensor, ...], List[Tensor]]) -> Tuple[Tensor]:
        raw = x[0] if isinstance(x, (tuple, list)) else x
        if raw.dim() != 2 or (self.out_channels is not None and raw.size(1) != self.out_channels):
            raise ValueError(f"BallMapNeck expects the projection neck's (N, {self.out_channels or 'D'}) output, "
                             f"got shape {tuple(raw.shape)}")
        return (self.head(raw),)
