r"""The map of given Euclidean vectors onto the ball: the hyperbolic branch of a *shared* projection head.

In the released HCL code there is one projection head, MoCo-v2's MLP: its L2-normalised output feeds
the Euclidean loss and its raw output, mapped onto the ball (:math:`\exp_0^c`, then a projection into
the ball, no scale, no clipping, the Riemannian gradient rescale), feeds the hyperbolic loss.
:class:`BallMap` is that map, with the options of :class:`~hcl_plugin.modules.BallProjection` (scale,
clipping, the gradient options, the health metrics). The models of the adapters use it for
``hyperbolic_head="shared"`` (docs/hcl_options.md); ``"separate"`` is a
:class:`~hcl_plugin.modules.PoincareProjectionHead` with its own MLP.
"""

from __future__ import annotations

from typing import Optional, Union

from torch import Tensor

from hcl_plugin.geometry import Curvature
from hcl_plugin.modules.poincare_head import BallProjection

__all__ = ["BallMap"]


class BallMap(BallProjection):
    r""":math:`z = \exp_0^c\big(\operatorname{clip}_r(e^{\log s}\,x)\big)` for given vectors ``x`` (B, D): a
    :class:`~hcl_plugin.modules.BallProjection` whose Euclidean map is the identity.

    Its state is the feature scale (``log_scale``, when set) and a learnable curvature
    (``curvature.log_c``); without either it has no weights. :meth:`official` builds the released
    HCL code's map (no scale, no clipping, Riemannian gradient rescale on).

    Args:
        c: curvature magnitude (float, or a :class:`~hcl_plugin.geometry.Curvature` to learn it).
        clip_r, feature_scale, learn_scale, riemannian_grad, decoupled: as in
            :class:`~hcl_plugin.modules.BallProjection`.

    Example:
        >>> import torch
        >>> ball_map = BallMap.official(c=0.05)
        >>> raw = torch.randn(4, 128) * 10           # e.g. a projection head's raw output
        >>> z = ball_map(raw)                        # the hyperbolic loss's input
        >>> bool((0.05 * z.pow(2).sum(1) < 1).all())
        True
    """

    def __init__(
        self,
        c: Union[float, Curvature] = 0.05,
        clip_r: Optional[float] = None,
        feature_scale: Optional[float] = None,
        learn_scale: bool = False,
        riemannian_grad: bool = False,
        decoupled: bool = False,
    ) -> None:
        super().__init__(c, clip_r, feature_scale, learn_scale, riemannian_grad=riemannian_grad, decoupled=decoupled)

    @classmethod
    def official(cls, c: Union[float, Curvature] = 0.05, decoupled: bool = False) -> "BallMap":
        """The released HCL code's map: :math:`\\exp_0^c` and projection only, with the Riemannian gradient rescale."""
        return cls(c, clip_r=None, feature_scale=None, learn_scale=False, riemannian_grad=True, decoupled=decoupled)

    def euclidean(self, x: Tensor) -> Tensor:
        """The identity: the vectors are given (e.g. a projection head's raw output)."""
        return x
