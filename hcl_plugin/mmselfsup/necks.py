"""``PoincareNeck``: the hyperbolic projection neck of HCL, registered in MMSelfSup's ``MODELS``.

Global average pooling of the last backbone stage, then :class:`hcl_plugin.modules.PoincareProjectionHead`
(MLP ``in -> hid -> out``, optional learnable scale, optional clipping, ``project(expmap0(v))``):

.. math:: z = \\operatorname{proj}\\big(\\exp_0^c(s \\cdot \\mathrm{MLP}(\\mathrm{GAP}(x)))\\big),
    \\qquad \\exp_0^c(v) = \\tanh(\\sqrt{c}\\,\\lVert v\\rVert)\\,\\frac{v}{\\sqrt{c}\\,\\lVert v\\rVert}

No L2 normalisation: the norm carries the scene/object information [1, sec. 3.2].

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
from hcl_plugin.modules import PoincareProjectionHead

__all__ = ["PoincareNeck"]


@MODELS.register_module()
class PoincareNeck(BaseModule):
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
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.out_channels = out_channels
        self.with_avg_pool = with_avg_pool
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1)) if with_avg_pool else nn.Identity()
        self.head = PoincareProjectionHead(
            in_channels, hid_channels, out_channels, c=c, clip_r=clip_r,
            feature_scale=feature_scale, learn_scale=learn_scale,
        )

    @property
    def curvature(self) -> Curvature:
        """The :class:`~hcl_plugin.geometry.Curvature` of the ball (the projection head's)."""
        return self.head.curvature

    @property
    def c(self) -> Union[float, Tensor]:
        """The curvature magnitude: a float when fixed, a 0-dim tensor when learnable."""
        return self.head.c

    @property
    def stats(self) -> Dict[str, Tensor]:
        """Health statistics of the last forward pass (tensors; reading them syncs the device)."""
        return self.head.stats

    def forward(self, x: Tuple[Tensor, ...]) -> Tuple[Tensor]:
        if not isinstance(x, (tuple, list)) or len(x) != 1:
            raise ValueError(
                "PoincareNeck expects the backbone output as a 1-tuple (set the backbone's "
                f"out_indices to one stage, e.g. [4]); got {type(x).__name__} of length "
                f"{len(x) if isinstance(x, (tuple, list)) else '-'}"
            )
        feat = self.avgpool(x[0]) if self.with_avg_pool else x[0]
        return (self.head(torch.flatten(feat, 1)),)
