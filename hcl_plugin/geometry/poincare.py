r"""Poincaré-ball geometry of curvature :math:`-c` as small pure functions (torch only).

The ball is :math:`\mathbb{D}^n_c = \{x \in \mathbb{R}^n : c\|x\|^2 < 1\}` with radius
:math:`1/\sqrt{c}`; ``c`` is the positive magnitude of the curvature, a float or a tensor (e.g. a
learnable one, see :class:`hcl_plugin.geometry.Curvature`).

Precision: inputs in float16/bfloat16, and calls made under ``torch.autocast``, are computed in
float32 (a clamp such as ``1 - 1e-5`` rounds to 1 in half precision, DESIGN.md section 4); float64
inputs stay float64. Results are returned in the compute dtype.

Distances use the identity :math:`\operatorname{arcosh}(1 + 2u^2) = 2\operatorname{arsinh}(u)`:

.. math::
    d_c(x, y) = \frac{2}{\sqrt{c}} \operatorname{arsinh}\left(
        \frac{\sqrt{c}\,\|x - y\|}{\sqrt{(1 - c\|x\|^2)(1 - c\|y\|^2)}}\right),

which is accurate for near-identical pairs (no ``arcosh(1 + tiny)``) and for pairs near the
boundary (no Möbius addition with an epsilon in its denominator, DESIGN.md section 4).

References:
    [1] O. Ganea, G. Bécigneul, T. Hofmann. "Hyperbolic Neural Networks". NeurIPS 2018.
    [2] V. Khrulkov et al. "Hyperbolic Image Embeddings". CVPR 2020.
    [3] Y. Guo et al. "Clipped Hyperbolic Classifiers Are Super-Hyperbolic Classifiers". CVPR 2022.
    [4] S. Ge, S. Mishra et al. "Hyperbolic Contrastive Learning for Visual Representations beyond
        Objects". CVPR 2023.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional, TypeVar

import torch
from torch import Tensor

from hcl_plugin.utils.checks import CurvatureLike, check_positive

__all__ = [
    "ball_margin",
    "ball_radius",
    "clip_features",
    "conformal_gap",
    "dist",
    "dist0",
    "expmap0",
    "logmap0",
    "pairwise_dist",
    "project",
    "check_in_ball",
]

F = TypeVar("F", bound=Callable[..., Tensor])


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (half precision is never used for the math)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def float32_math(fn: F) -> F:
    """Run ``fn`` with autocast disabled and half-precision tensor arguments upcast to float32."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = [a for a in args if isinstance(a, Tensor)]
        dtype = compute_dtype(*tensors) if tensors else torch.float32
        device_type = tensors[0].device.type if tensors else "cpu"
        args = tuple(a.to(dtype) if isinstance(a, Tensor) and a.is_floating_point() else a for a in args)
        with torch.autocast(device_type=device_type, enabled=False):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def as_curvature(c: CurvatureLike, like: Tensor) -> Tensor:
    """``c`` as a tensor with the dtype and device of ``like``; raises ``ValueError`` unless c > 0.

    A tensor that requires grad (a learnable :class:`Curvature`, positive by construction) is not
    checked, so training on a GPU does not synchronise the device on every call.
    """
    if not (isinstance(c, Tensor) and c.requires_grad):
        check_positive(c, "curvature c")
    if isinstance(c, Tensor):
        return c.to(dtype=like.dtype, device=like.device)
    return torch.tensor(float(c), dtype=like.dtype, device=like.device)


def ball_margin(dtype: torch.dtype) -> float:
    r"""Relative distance to the boundary kept by :func:`project`: :math:`\sqrt{\epsilon}` of ``dtype``.

    At :math:`\|x\| = (1 - m)/\sqrt{c}` the conformal gap :math:`1 - c\|x\|^2 \approx 2m` is resolved
    to about :math:`\sqrt{\epsilon}/2` relative precision (float32: m = 3.5e-4, float64: 1.5e-8).
    Half precision is never used for the math, so it maps to float32's margin.
    """
    if dtype not in (torch.float32, torch.float64):
        dtype = torch.float32
    return float(torch.finfo(dtype).eps) ** 0.5


def ball_radius(c: CurvatureLike) -> float:
    """The radius ``1 / sqrt(c)`` of the ball (as a Python float)."""
    check_positive(c, "curvature c")
    return float(c) ** -0.5


def _sq_norm(x: Tensor) -> Tensor:
    return (x * x).sum(dim=-1, keepdim=True)


def conformal_gap(x: Tensor, c: Tensor) -> Tensor:
    r""":math:`1 - c\|x\|^2` (twice the inverse conformal factor), shape ``(..., 1)``."""
    return 1 - c * _sq_norm(x)


def check_in_ball(x: Tensor, c: CurvatureLike, name: str = "x") -> None:
    r"""Raise ``ValueError`` if a row of ``x`` is non-finite or not strictly inside the ball :math:`c\|x\|^2 < 1`.

    One reduction over ``x``: a NaN or an infinity makes its row's squared norm non-finite, which is
    reported as such (naming ``name`` and the index).
    """
    with torch.no_grad():
        cc = as_curvature(c, x)
        scaled_sq = (cc * _sq_norm(x.to(cc.dtype))).squeeze(-1)
        bad = ~(scaled_sq < 1)  # True for NaN too
        if not bad.any():
            return
        if not torch.isfinite(x).all():
            from hcl_plugin.utils.checks import check_finite

            check_finite(x, name)
        idx = bad.nonzero()[0].tolist()
        norm = x[tuple(idx)].norm().item()
        raise ValueError(
            f"{name} has {int(bad.sum())} point(s) on or outside the Poincaré ball of radius "
            f"{float(cc) ** -0.5:.6g}, first at index {tuple(idx)} with norm {norm:.6g}; "
            "map features with expmap0(...) and project(...) first"
        )


@float32_math
def project(x: Tensor, c: CurvatureLike, margin: Optional[float] = None) -> Tensor:
    r"""Pull points back inside the ball: rescale rows with :math:`\|x\| > (1 - m)/\sqrt{c}` onto that sphere.

    .. math:: \operatorname{proj}(x) = x \cdot \min\left(1, \frac{(1 - m)/\sqrt{c}}{\|x\|}\right)

    Args:
        x: points, shape ``(..., D)``.
        c: curvature magnitude (> 0).
        margin: relative margin ``m``; default :func:`ball_margin` of the compute dtype.
    Returns:
        Tensor like ``x`` with every row strictly inside the ball. Idempotent: a row that was
        rescaled is left alone by a second call (the test allows the few ulps of rounding).
    """
    cc = as_curvature(c, x)
    eps = torch.finfo(x.dtype).eps
    m = ball_margin(x.dtype) if margin is None else margin
    max_norm = (1 - m) / cc.sqrt()
    norm = x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    return x * torch.where(norm > max_norm * (1 + 8 * eps), max_norm / norm, torch.ones_like(norm))


@float32_math
def clip_features(v: Tensor, r: float) -> Tensor:
    r"""Feature clipping of [3]: :math:`\operatorname{clip}(v) = \min\left(1, \frac{r}{\|v\|}\right) v`.

    Applied to Euclidean features before :func:`expmap0`, it bounds the hyperbolic norm by
    :math:`\frac{2}{\sqrt c}\operatorname{artanh}(\tanh(\sqrt c\, r))` and keeps points away from the
    boundary (default in hyp_metric: ``r = 2.3``).
    """
    check_positive(r, "clip radius r")
    norm = v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
    return v * torch.clamp(r / norm, max=1.0)


@float32_math
def expmap0(v: Tensor, c: CurvatureLike) -> Tensor:
    r"""Exponential map at the origin [1, eq. 13]:

    .. math:: \exp_0^c(v) = \tanh(\sqrt{c}\,\|v\|)\,\frac{v}{\sqrt{c}\,\|v\|}.

    The result is projected (:func:`project`) since ``tanh`` saturates to 1 in finite precision.
    """
    cc = as_curvature(c, v)
    sqrt_c = cc.sqrt()
    scaled = sqrt_c * v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
    return project(torch.tanh(scaled) / scaled * v, cc)


@float32_math
def logmap0(x: Tensor, c: CurvatureLike) -> Tensor:
    r"""Logarithmic map at the origin [1, eq. 13], inverse of :func:`expmap0`:

    .. math:: \log_0^c(x) = \operatorname{artanh}(\sqrt{c}\,\|x\|)\,\frac{x}{\sqrt{c}\,\|x\|}.

    Raises:
        ValueError: if a point is on or outside the ball.
    """
    cc = as_curvature(c, x)
    check_in_ball(x, cc, "x")
    scaled = cc.sqrt() * x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    return torch.atanh(scaled) / scaled * x


@float32_math
def dist0(x: Tensor, c: CurvatureLike) -> Tensor:
    r"""Distance to the origin, the "hyperbolic norm": :math:`d_c(0, x) = \frac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\|x\|)`.

    Returns shape ``x.shape[:-1]``. Raises ``ValueError`` for points outside the ball.
    """
    cc = as_curvature(c, x)
    check_in_ball(x, cc, "x")
    sqrt_c = cc.sqrt()
    return 2 / sqrt_c * torch.atanh(sqrt_c * x.norm(dim=-1))


def _arsinh_dist(sq_diff: Tensor, gap_x: Tensor, gap_y: Tensor, c: Tensor) -> Tensor:
    # sqrt has an infinite derivative at 0: take it of a clamped value and zero the identical pairs,
    # so d(x, x) = 0 exactly with zero gradient.
    positive = sq_diff > 0
    u = (c * sq_diff.clamp_min(torch.finfo(sq_diff.dtype).tiny) / (gap_x * gap_y)).sqrt()
    return 2 / c.sqrt() * torch.asinh(torch.where(positive, u, torch.zeros_like(u)))


@float32_math
def dist(x: Tensor, y: Tensor, c: CurvatureLike) -> Tensor:
    r"""Row-wise geodesic distance from the explicit difference ``x - y`` (accurate for close pairs):

    .. math:: d_c(x, y) = \frac{2}{\sqrt{c}}\operatorname{arsinh}\left(\frac{\sqrt{c}\,\|x-y\|}
              {\sqrt{(1 - c\|x\|^2)(1 - c\|y\|^2)}}\right)

    (equal to [1, eq. 3]'s :math:`\frac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\|-x \oplus_c y\|)`).

    Args:
        x, y: points in the ball, broadcastable shapes ``(..., D)``.
        c: curvature magnitude.
    Returns:
        Distances of shape ``broadcast(x, y).shape[:-1]``; ``d(x, x) = 0`` with zero gradient.
    """
    cc = as_curvature(c, x)
    check_in_ball(x, cc, "x")
    check_in_ball(y, cc, "y")
    return dist_unchecked(x, y, cc)


def dist_unchecked(x: Tensor, y: Tensor, c: Tensor) -> Tensor:
    """:func:`dist` without the ball-membership checks or dtype handling, for callers that did both."""
    return _arsinh_dist(_sq_norm(x - y), conformal_gap(x, c), conformal_gap(y, c), c).squeeze(-1)


@float32_math
def pairwise_dist(x: Tensor, y: Tensor, c: CurvatureLike) -> Tensor:
    r"""All distances between the rows of ``x`` (B, D) and ``y`` (K, D) as a (B, K) matrix.

    Uses one matmul, :math:`\|x - y\|^2 = \|x\|^2 + \|y\|^2 - 2\langle x, y\rangle`, so memory is
    O(B·K) (broadcasting ``dist(x[:, None], y[None])`` would materialise B×K×D tensors). Accurate for
    far-apart pairs, but the difference of squares cancels for pairs closer than about
    :math:`10^{-3}/\sqrt c` in float32: use :func:`dist` for positive pairs.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"pairwise_dist expects x (B, D) and y (K, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    cc = as_curvature(c, x)
    check_in_ball(x, cc, "x")
    check_in_ball(y, cc, "y")
    sq_x, sq_y = _sq_norm(x), _sq_norm(y)
    sq_diff = torch.addmm(sq_x + sq_y.T, x, y.T, alpha=-2.0)
    return _arsinh_dist(sq_diff, 1 - cc * sq_x, (1 - cc * sq_y).T, cc)

