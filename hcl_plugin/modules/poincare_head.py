"""Projection head that maps backbone features onto the Poincaré ball."""

from __future__ import annotations

import math
from typing import Dict, Optional, Union

import torch
from torch import Tensor, nn

from hcl_plugin.geometry import Curvature, clip_features, expmap0, norm_only, riemannian_expmap0
from hcl_plugin.geometry.poincare import as_curvature, dist0_unchecked
from hcl_plugin.utils.checks import ValueCheckGate, check_nonempty, value_check_due


__all__ = ["BOUNDARY_TOLERANCE", "BallProjection", "PoincareProjectionHead", "ball_health_stats"]

#: ``near_boundary_fraction`` counts points with :math:`1 - \sqrt c\,\|z\| <` this (a fraction of the radius)
BOUNDARY_TOLERANCE = 1e-3


def ball_health_stats(
    tangent: Tensor, points: Tensor, c: Union[float, Tensor], clip_r: Optional[float], log_scale: Optional[Tensor] = None
) -> Dict[str, Tensor]:
    r"""Health metrics of a map into the ball, as detached tensors (reading them forces no device sync).

    * ``clipped_fraction``: share of tangent vectors at the clipping radius (0 without clipping);
    * ``hyp_norm_mean/min/max``: hyperbolic distances :math:`d_c(0, z)` of the points;
    * ``two_over_sqrt_c``: :math:`2/\sqrt c`, the scale of :math:`d_c(0, z)` from which the ball bends
      strongly (``hyp_norm_mean`` far below it: an almost flat, Euclidean regime; docs/hcl_options.md);
    * ``c_sq_norm_mean/max``: :math:`c\|z\|^2 \in [0, 1)` (below 0.02 the distance is within 2 % of a
      scaled Euclidean one; near 1 the points crowd the boundary);
    * ``near_boundary_fraction``: share of points within :data:`BOUNDARY_TOLERANCE` of the radius,
      :math:`1 - \sqrt c\,\|z\| < 10^{-3}` (points pulled in by the projection count);
    * ``feature_scale``: :math:`e^{\log s}` when ``log_scale`` is given.

    All-clipped, all-at-the-boundary or all-equal norms mean the norm can carry no information
    (docs/background.md). ``points`` must lie in the ball (e.g. the output of
    :func:`~hcl_plugin.geometry.expmap0`): they are not checked, so that computing the stats forces no
    device sync; a point outside gives NaN norms.
    """
    with torch.no_grad():
        cc = as_curvature(c, points)
        norms = dist0_unchecked(points, cc)
        c_sq_norm = cc * (points * points).sum(dim=-1)
        clipped = torch.zeros((), device=points.device)
        if clip_r is not None:
            clipped = (tangent.norm(dim=1) >= clip_r * (1 - 1e-6)).float().mean()
        near = (c_sq_norm >= (1 - BOUNDARY_TOLERANCE) ** 2).float().mean()
        stats = {"clipped_fraction": clipped, "hyp_norm_mean": norms.mean(), "hyp_norm_min": norms.min(),
                 "hyp_norm_max": norms.max(), "two_over_sqrt_c": 2 / cc.detach().sqrt(),
                 "c_sq_norm_mean": c_sq_norm.mean(), "c_sq_norm_max": c_sq_norm.max(),
                 "near_boundary_fraction": near}
        if log_scale is not None:
            stats["feature_scale"] = log_scale.detach().exp()
    return stats


class BallProjection(nn.Module):
    r"""Base of every map onto the ball: a Euclidean map, an optional scale, optional clipping, :math:`\exp_0^c`.

    .. math:: z = \exp_0^c\big(\operatorname{clip}_r(e^{\log s}\,g(x))\big),
        \qquad \exp_0^c(v) = \tanh(\sqrt c\,\|v\|)\,\frac{v}{\sqrt c\,\|v\|}

    Subclasses define the Euclidean map :math:`g` (:meth:`euclidean`): an MLP in
    :class:`PoincareProjectionHead`, a linear layer in :class:`hcl_plugin.uhml.LinearBallProjection`,
    the identity in :class:`~hcl_plugin.modules.BallMap` (the released HCL code's map of the
    projection head's output).
    This base owns the curvature (a :class:`~hcl_plugin.geometry.Curvature`, fixed or learnable), the
    feature scale (stored as its log, learnable or a buffer, as in MERU), the clip radius (feature
    clipping, Guo et al. 2022) and the health metrics of the last forward (:func:`ball_health_stats`).

    Host synchronisations: the health metrics are detached tensors and the curvature is a Python
    float (fixed) or a tensor that needs no check (learnable), so a forward reads no device value
    except the finiteness check of the tangent features, which runs when the head's own
    :class:`~hcl_plugin.utils.checks.ValueCheckGate` is due: every call by default, every ``n``-th
    under :func:`~hcl_plugin.utils.checks.set_value_check_interval` ``(n)`` (docs/numerics.md).

    Gradient options (the released HCL code's; docs/hcl_options.md), both off by default and neither
    changing the forward values:

    * ``riemannian_grad``: the gradient reaching the ball point :math:`z` is multiplied by
      :math:`(1 - c\|z\|^2)^2/4` (:func:`~hcl_plugin.geometry.riemannian_expmap0`; a learnable
      curvature keeps its exact gradient);
    * ``decoupled``: the direction of the tangent vector fed to :math:`\exp_0^c` is detached
      (:func:`~hcl_plugin.geometry.norm_only`): the loss on :math:`z` moves only its norm.

    Args:
        c: curvature magnitude (float, or a :class:`Curvature` to learn it).
        clip_r: feature-clipping radius (Euclidean norm before expmap0); ``None`` = no clipping.
        feature_scale: initial scale of :math:`g`'s output; ``None`` = no scaling.
        learn_scale: learn ``feature_scale`` (requires it to be set).
        riemannian_grad: rescale the gradient at the ball point by the Riemannian factor.
        decoupled: let the gradient change only the norm of the tangent vector.

    Raises:
        ValueError: ``clip_r`` or ``feature_scale`` <= 0, or ``learn_scale`` without a ``feature_scale``.
    """

    def __init__(self, c: Union[float, Curvature], clip_r: Optional[float], feature_scale: Optional[float],
                 learn_scale: bool, *, riemannian_grad: bool = False, decoupled: bool = False) -> None:
        super().__init__()
        if clip_r is not None and not clip_r > 0:
            raise ValueError(f"clip_r must be > 0 or None, got {clip_r}")
        if feature_scale is None and learn_scale:
            raise ValueError("learn_scale=True needs an initial feature_scale")
        if feature_scale is not None and not feature_scale > 0:
            raise ValueError(f"feature_scale must be > 0 or None, got {feature_scale}")
        self.curvature = c if isinstance(c, Curvature) else Curvature(float(c))
        self.clip_r = clip_r
        self.riemannian_grad = bool(riemannian_grad)
        self.decoupled = bool(decoupled)
        if feature_scale is None:
            self.log_scale = None
        elif learn_scale:
            self.log_scale = nn.Parameter(torch.tensor(math.log(feature_scale)))
        else:
            self.register_buffer("log_scale", torch.tensor(math.log(feature_scale)))
        self.stats: Dict[str, Tensor] = {}
        self.value_check_gate = ValueCheckGate()

    @property
    def c(self) -> Union[float, Tensor]:
        """The curvature magnitude (a float when fixed, a 0-dim tensor when learnable)."""
        return self.curvature()

    def euclidean(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        """The Euclidean map :math:`g` before scaling (defined by subclasses)."""
        raise NotImplementedError

    def scale_and_clip(self, v: Tensor, check_values: Optional[bool] = None) -> Tensor:
        r""":math:`\operatorname{clip}_r(e^{\log s} v)` (each step only when configured).

        ``check_values``: run the finiteness check of the clipping (``None``: when the head's gate is due).
        """
        if self.log_scale is not None:
            v = v * self.log_scale.exp()
        if self.clip_r is not None:
            v = clip_features(v, self.clip_r, check_values=value_check_due(self) if check_values is None else check_values)
        return v

    def to_ball(self, v: Tensor, check_values: Optional[bool] = None) -> Tensor:
        r""":math:`\exp_0^c(v)` for tangent vectors ``v``, with the gradient options; records :attr:`stats`
        (detached tensors: no device sync).

        ``check_values``: run the finiteness check of ``v`` (``None``: when the head's gate is due).
        """
        c = self.curvature()
        check_values = value_check_due(self) if check_values is None else check_values
        if self.__dict__.get("decoupled", False):  # .get: a module pickled before the option existed
            v = norm_only(v)
        if self.__dict__.get("riemannian_grad", False):
            z = riemannian_expmap0(v, c, check_values=check_values)
        else:
            z = expmap0(v, c, check_values=check_values)
        self.stats = ball_health_stats(v, z, c, self.clip_r, self.log_scale)
        return z

    def to_tangent(self, x: Tensor) -> Tensor:
        """Euclidean (tangent-space at 0) features before expmap0: :math:`g`, scale, clipping."""
        return self.scale_and_clip(self.euclidean(x))

    def forward(self, x: Tensor) -> Tensor:
        """Map (B, input) features to (B, output) points strictly inside the ball; records :attr:`stats`.

        Raises ``ValueError`` for an empty batch and for NaN/Inf tangent features (named ``v``,
        from :func:`~hcl_plugin.geometry.expmap0`; a value check, see the class doc).
        """
        check_nonempty(x, "x", type(self).__name__)
        check_values = value_check_due(self)  # one decision per forward, for the clipping and expmap0
        return self.to_ball(self.scale_and_clip(self.euclidean(x), check_values), check_values)

    def extra_repr(self) -> str:
        options = "".join(f", {name}=True" for name in ("riemannian_grad", "decoupled") if self.__dict__.get(name))
        return f"clip_r={self.clip_r}{options}"


class PoincareProjectionHead(BallProjection):
    r"""MLP → (optional learnable scale) → (optional feature clipping) → :math:`\exp_0^c` → project.

    The MLP is MoCo-v2's (Linear–ReLU–Linear, 2048-2048-128 in the official HCL code [1]). The
    output lies strictly inside the ball of radius :math:`1/\sqrt c`; its distance to the origin is
    free to carry information (no L2 normalisation).

    Norm control (docs/background.md): without it, raw head norms (tens) put every point at the
    boundary, where a growing norm acts as a falling temperature and training diverges; a fixed
    clip radius below the raw norms clips every point, and then the norm carries nothing.
    ``clip_r`` is feature clipping [2]; ``feature_scale`` multiplies the MLP output by a scalar
    (learnable with ``learn_scale=True``, stored as its log as in MERU [3]) so the head can learn
    the range in which norms differ. ``stats`` holds detached health metrics of the last forward:
    the fraction of clipped rows and the mean/min/max hyperbolic distance to the origin (0-dim tensors).

    [1] S. Ge, S. Mishra et al. "Hyperbolic Contrastive Learning for Visual Representations beyond
        Objects". CVPR 2023.
    [2] Y. Guo et al. "Clipped Hyperbolic Classifiers Are Super-Hyperbolic Classifiers". CVPR 2022.
    [3] K. Desai et al. "Hyperbolic Image-Text Representations". ICML 2023.

    Args:
        input_dim, hidden_dim, output_dim: MLP sizes.
        c: curvature magnitude (float, or a :class:`Curvature` to learn it).
        clip_r: feature-clipping radius (Euclidean norm before expmap0); ``None`` = no clipping.
        feature_scale: initial scale of the MLP output; ``None`` = no scaling.
        learn_scale: learn ``feature_scale`` (requires it to be set).
        batch_norm: BatchNorm1d after the hidden Linear (Lightly's SimCLR-style heads use it).
        riemannian_grad, decoupled: the gradient options of :class:`BallProjection`.

    Example:
        >>> head = PoincareProjectionHead(512, 512, 128, c=0.05, feature_scale=1 / 128 ** 0.5, learn_scale=True)
        >>> z = head(torch.randn(4, 512))
        >>> bool((z.norm(dim=1) < 0.05 ** -0.5).all())
        True
    """

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 2048,
        output_dim: int = 128,
        c: Union[float, Curvature] = 0.05,
        clip_r: Optional[float] = None,
        feature_scale: Optional[float] = None,
        learn_scale: bool = False,
        batch_norm: bool = False,
        riemannian_grad: bool = False,
        decoupled: bool = False,
    ) -> None:
        super().__init__(c, clip_r, feature_scale, learn_scale, riemannian_grad=riemannian_grad, decoupled=decoupled)
        layers = [nn.Linear(input_dim, hidden_dim, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, output_dim)]
        self.mlp = nn.Sequential(*layers)

    def euclidean(self, x: Tensor) -> Tensor:
        """MoCo-v2's projection MLP."""
        return self.mlp(x)
