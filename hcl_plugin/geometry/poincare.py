r"""Poincaré-ball geometry of curvature :math:`-c` as small pure functions (torch only).

The ball is :math:`\mathbb{D}^n_c = \{x \in \mathbb{R}^n : c\|x\|^2 < 1\}` with radius
:math:`1/\sqrt{c}`; ``c`` is the positive magnitude of the curvature, a float or a tensor (e.g. a
learnable one, see :class:`hcl_plugin.geometry.Curvature`).

Precision: inputs in float16/bfloat16, and calls made under ``torch.autocast``, are computed in
float32 (a clamp such as ``1 - 1e-5`` rounds to 1 in half precision, docs/numerics.md); float64
inputs stay float64. Results are returned in the compute dtype.

Distances use the identity :math:`\operatorname{arcosh}(1 + 2u^2) = 2\operatorname{arsinh}(u)`:

.. math::
    d_c(x, y) = \frac{2}{\sqrt{c}} \operatorname{arsinh}\left(
        \frac{\sqrt{c}\,\|x - y\|}{\sqrt{(1 - c\|x\|^2)(1 - c\|y\|^2)}}\right),

which is accurate for near-identical pairs (no ``arcosh(1 + tiny)``) and for pairs near the
boundary (no Möbius addition with an epsilon in its denominator, docs/numerics.md).

Input policy: point and tangent arguments must be floating-point tensors with at least one
dimension (``TypeError`` / ``ValueError`` otherwise); a NaN or an infinity raises ``ValueError``
naming the argument and the first bad index (:func:`expmap0`, :func:`project` and
:func:`clip_features` check finiteness, the functions that take points in the ball check it together
with ball membership). Norms of tangent vectors are taken after scaling each row by its largest
absolute entry (:func:`scaled_rows`), so finite inputs of any size keep their direction.

The value checks (finiteness, ball membership, positivity of a tensor curvature) read device values,
a host synchronisation on an accelerator. Each public function guards them with its own
:class:`~hcl_plugin.utils.checks.ValueCheckGate` (:func:`expmap0`, :func:`project` and
:func:`clip_features` also take ``check_values``, the decision of the caller's own gate): they run
on every call by default and on
every ``n``-th call under :func:`~hcl_plugin.utils.checks.set_value_check_interval` ``(n)``
(docs/numerics.md). Shape and dtype checks always run. :func:`check_in_ball` itself always checks.

References:
    [1] O. Ganea, G. Bécigneul, T. Hofmann. "Hyperbolic Neural Networks". NeurIPS 2018.
    [2] V. Khrulkov et al. "Hyperbolic Image Embeddings". CVPR 2020.
    [3] Y. Guo et al. "Clipped Hyperbolic Classifiers Are Super-Hyperbolic Classifiers". CVPR 2022.
    [4] S. Ge, S. Mishra et al. "Hyperbolic Contrastive Learning for Visual Representations beyond
        Objects". CVPR 2023.
"""

from __future__ import annotations

import functools
from typing import Callable, Dict, Optional, Sequence, Tuple, TypeVar

import torch
from torch import Tensor

from hcl_plugin.utils.checks import CurvatureLike, ValueCheckGate, check_finite, check_floating, check_positive

__all__ = [
    "ball_margin",
    "ball_radius",
    "check_points",
    "clip_features",
    "conformal_gap",
    "dist",
    "dist0",
    "expmap0",
    "logmap0",
    "pairwise_dist",
    "project",
    "check_all_in_ball",
    "check_in_ball",
    "scaled_rows",
]

F = TypeVar("F", bound=Callable[..., Tensor])

#: One value-check gate per public function (and one for tensor curvatures in :func:`as_curvature`).
_GATES: Dict[str, ValueCheckGate] = {
    name: ValueCheckGate()
    for name in ("curvature", "project", "clip_features", "expmap0", "logmap0", "dist0", "dist", "pairwise_dist")
}


def check_points(x: Tensor, name: str) -> None:
    """Raise ``TypeError`` for a non-floating ``x`` and ``ValueError`` for a 0-dim one (shape checks only)."""
    check_floating(x, name)
    if x.dim() == 0:
        raise ValueError(f"{name} must have shape (..., D), got a 0-dim tensor")


def scaled_rows(x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Each row as :math:`x = m\,w` with :math:`m = \max_i |x_i|`: returns ``(m, w, |w|)``, shapes ``(..., 1)``, ``x.shape``, ``(..., 1)``.

    The norm :math:`\|x\| = m\,\|w\|` with :math:`1 \le \|w\| \le \sqrt{D}` is free of overflow and
    underflow in the squares (the scaling of LAPACK's ``nrm2`` and of ``hypot``); the product
    :math:`m\|w\|` is +inf only when :math:`\|x\|` itself exceeds the largest finite number. ``m`` is
    detached: every formula ``f(m w)`` written with it is the same function of ``x`` for any constant
    ``m > 0``, so its gradient is exact. Zero rows get ``m`` = the smallest normal number (so that
    :math:`\tanh(\sqrt c\,m)/(\sqrt c\,m) = 1` in :func:`expmap0`'s gradient at 0), ``w = 0`` and
    ``|w| = 1``. Expects finite input.
    """
    tiny = torch.finfo(x.dtype).tiny
    if x.shape[-1] == 0:
        m = x.new_full(x.shape[:-1] + (1,), tiny)
    else:
        m = x.detach().abs().amax(dim=-1, keepdim=True)
        m = torch.where(m > 0, m, torch.full_like(m, tiny))
    w = x / m
    w_norm = w.norm(dim=-1, keepdim=True)
    # |w| >= 1 for every non-zero row (its largest entry is exactly +-1); where, not clamp_min(1),
    # whose gradient is 0 at exactly 1 (a one-hot row)
    return m, w, torch.where(w_norm > 0, w_norm, torch.ones_like(w_norm))


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


def _due(check_values: Optional[bool], name: str) -> bool:
    """The caller's decision, or the gate of function ``name`` when there is none."""
    return _GATES[name].due() if check_values is None else check_values


def as_curvature(c: CurvatureLike, like: Tensor) -> Tensor:
    """``c`` as a 0-dim tensor with the dtype and device of ``like``; raises ``ValueError`` unless c > 0.

    A number is always checked (on the host, no device sync) and written with ``new_full`` (a fill
    on the device, no host-to-device copy). A tensor that requires grad (a learnable
    :class:`Curvature`, positive by construction) is not checked; any other tensor is a value check,
    run when its gate is due (module doc).
    """
    if isinstance(c, Tensor):
        if not c.requires_grad and _GATES["curvature"].due():
            check_positive(c, "curvature c")
        return c.to(dtype=like.dtype, device=like.device)
    check_positive(c, "curvature c")
    if like.dtype in (torch.float32, torch.float64) and not torch.finfo(like.dtype).tiny <= float(c) <= torch.finfo(like.dtype).max:
        # e.g. c = 1e-50 would round to 0 in float32
        raise ValueError(f"curvature c must be representable as a normal {like.dtype} number, got {c}")
    return like.new_full((), float(c))


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


def _ball_flags(x: Tensor, c: CurvatureLike) -> Tuple[Tensor, Tensor, Tensor]:
    """``(cc, bad, any_bad)``: ``c`` as a tensor, the rows not strictly inside the ball (NaN included) and
    one 0-dim flag that is True when a row is bad or a tensor ``c`` is not finite and > 0 (nothing read)."""
    if isinstance(c, Tensor):
        cc = c.detach().to(dtype=x.dtype, device=x.device)
        c_bad = ~(torch.isfinite(cc) & (cc > 0)).all()
    else:
        cc, c_bad = as_curvature(c, x), None  # a number is checked on the host
    scaled_sq = (cc * _sq_norm(x.to(cc.dtype))).squeeze(-1)
    bad = ~(scaled_sq < 1)  # True for NaN too
    return cc, bad, (bad.any() if c_bad is None else bad.any() | c_bad)


def _raise_out_of_ball(x: Tensor, c: CurvatureLike, cc: Tensor, bad: Tensor, name: str) -> None:
    """The error of :func:`check_in_ball` for a tensor known to fail it (reads the device freely)."""
    if isinstance(c, Tensor) and not bool((torch.isfinite(cc) & (cc > 0)).all()):
        check_positive(c, "curvature c")
    if not torch.isfinite(x).all():
        check_finite(x, name)
    idx = bad.nonzero()[0].tolist()
    norm = x[tuple(idx)].norm().item()
    raise ValueError(
        f"{name} has {int(bad.sum())} point(s) on or outside the Poincaré ball of radius "
        f"{float(cc) ** -0.5:.6g}, first at index {tuple(idx)} with norm {norm:.6g}; "
        "map features with expmap0(...) and project(...) first"
    )


def check_in_ball(x: Tensor, c: CurvatureLike, name: str = "x") -> None:
    r"""Raise ``ValueError`` if a row of ``x`` is non-finite or not strictly inside the ball :math:`c\|x\|^2 < 1`.

    One reduction over ``x`` and one read of its result (a single host synchronisation on an
    accelerator): a NaN or an infinity makes its row's squared norm non-finite, which is reported as
    such (naming ``name`` and the index); a tensor ``c`` is checked (finite, > 0) in the same read.
    """
    with torch.no_grad():
        cc, bad, any_bad = _ball_flags(x, c)
        if any_bad:
            _raise_out_of_ball(x, c, cc, bad, name)


def check_all_in_ball(named: Sequence[Tuple[Tensor, str]], c: CurvatureLike) -> None:
    """:func:`check_in_ball` of every ``(tensor, name)`` with one read of the device for all of them.

    The error is the one :func:`check_in_ball` raises for the first tensor that fails.
    """
    with torch.no_grad():
        flags = [(x, name) + _ball_flags(x, c) for x, name in named]
        if len({f[4].device for f in flags}) > 1:  # tensors on several devices: one read each
            failed = any(bool(f[4]) for f in flags)
        else:
            failed = bool(torch.stack([f[4] for f in flags]).any())
        if failed:
            for x, name, cc, bad, any_bad in flags:
                if any_bad:
                    _raise_out_of_ball(x, c, cc, bad, name)


@float32_math
def project(x: Tensor, c: CurvatureLike, margin: Optional[float] = None, *,
            check_values: Optional[bool] = None) -> Tensor:
    r"""Pull points back inside the ball: rescale rows with :math:`\|x\| > (1 - m)/\sqrt{c}` onto that sphere.

    .. math:: \operatorname{proj}(x) = x \cdot \min\left(1, \frac{(1 - m)/\sqrt{c}}{\|x\|}\right)

    Args:
        x: points, shape ``(..., D)``.
        c: curvature magnitude (> 0).
        margin: relative margin ``m``; default :func:`ball_margin` of the compute dtype.
        check_values: run the finiteness check (``None``: when this function's gate is due).
    Returns:
        Tensor like ``x`` with every row strictly inside the ball. Idempotent: a row that was
        rescaled is left alone by a second call (the test allows the few ulps of rounding). Rows of
        any finite size land on that sphere in their own direction (norms via :func:`scaled_rows`).
    Raises:
        TypeError: non-floating ``x``. ValueError: NaN/Inf in ``x`` (named, with the index), c <= 0.
    """
    check_points(x, "x")
    cc = as_curvature(c, x)
    if _due(check_values, "project"):
        check_finite(x, "x")
    return project_unchecked(x, cc, margin)


def project_unchecked(x: Tensor, c: Tensor, margin: Optional[float] = None) -> Tensor:
    """:func:`project` without the checks or dtype handling, for callers that did both (no device sync)."""
    eps = torch.finfo(x.dtype).eps
    m = ball_margin(x.dtype) if margin is None else margin
    max_norm = (1 - m) / c.sqrt()
    scale, w, w_norm = scaled_rows(x)
    outside = scale * w_norm > max_norm * (1 + 8 * eps)
    # x * max_norm / |x| written as w * max_norm / |w|: no overflow for huge rows
    return torch.where(outside, w * (max_norm / w_norm), x)


@float32_math
def clip_features(v: Tensor, r: float, *, check_values: Optional[bool] = None) -> Tensor:
    r"""Feature clipping of [3]: :math:`\operatorname{clip}(v) = \min\left(1, \frac{r}{\|v\|}\right) v`.

    Applied to Euclidean features before :func:`expmap0`, it bounds the hyperbolic norm by
    :math:`\frac{2}{\sqrt c}\operatorname{artanh}(\tanh(\sqrt c\, r))` and keeps points away from the
    boundary (default in hyp_metric: ``r = 2.3``). ``check_values``: run the finiteness check (``None``:
    when this function's gate is due).
    """
    check_positive(r, "clip radius r")
    check_points(v, "v")
    if _due(check_values, "clip_features"):
        check_finite(v, "v")
    scale, w, w_norm = scaled_rows(v)
    return torch.where(scale * w_norm > r, w * (r / w_norm), v)


@float32_math
def expmap0(v: Tensor, c: CurvatureLike, *, check_values: Optional[bool] = None) -> Tensor:
    r"""Exponential map at the origin [1, eq. 13]:

    .. math:: \exp_0^c(v) = \tanh(\sqrt{c}\,\|v\|)\,\frac{v}{\sqrt{c}\,\|v\|}
              = \frac{\tanh(\sqrt{c}\,m\|w\|)}{\sqrt{c}\,\|w\|}\, w, \qquad v = m\,w,

    the second form with the row scaling of :func:`scaled_rows` (:math:`m = \max_i |v_i|`,
    :math:`1 \le \|w\| \le \sqrt D`): no factor overflows or underflows, so any finite ``v``, however
    large, maps to its own direction (at the projection radius once ``tanh`` saturates). The result is
    projected (:func:`project`) since ``tanh`` saturates to 1 in finite precision.

    ``check_values``: run the finiteness check (``None``: when this function's gate is due); a
    module that calls ``expmap0`` on every step passes the decision of its own gate, so that each
    of its call sites is checked at the interval (module doc).

    Raises:
        TypeError: non-floating ``v``. ValueError: NaN/Inf in ``v`` (named, with the index), c <= 0.
    """
    check_points(v, "v")
    cc = as_curvature(c, v)
    if _due(check_values, "expmap0"):
        check_finite(v, "v")
    return expmap0_unchecked(v, cc)


def expmap0_unchecked(v: Tensor, c: Tensor) -> Tensor:
    """:func:`expmap0` without the checks or dtype handling (``c`` a tensor of ``v``'s dtype), for callers that did both (no device sync)."""
    sqrt_c = c.sqrt()
    scale, w, w_norm = scaled_rows(v)
    return project_unchecked(torch.tanh(sqrt_c * scale * w_norm) / (sqrt_c * w_norm) * w, c)


@float32_math
def logmap0(x: Tensor, c: CurvatureLike) -> Tensor:
    r"""Logarithmic map at the origin [1, eq. 13], inverse of :func:`expmap0`:

    .. math:: \log_0^c(x) = \operatorname{artanh}(\sqrt{c}\,\|x\|)\,\frac{x}{\sqrt{c}\,\|x\|}
              = \frac{\operatorname{artanh}(\sqrt{c}\,m\|w\|)}{\sqrt{c}\,\|w\|}\, w, \qquad x = m\,w,

    the second form with the row scaling of :func:`scaled_rows`, as in :func:`expmap0`: at the origin
    it has no :math:`0/0` in its derivative (with respect to ``x`` or a learnable ``c``). The
    artanh is :func:`_artanh_sqrt_c_norm`'s, finite for every point that passes the ball check.

    Raises:
        ValueError: if a point is on or outside the ball (or NaN/Inf, named).
    """
    check_points(x, "x")
    cc = as_curvature(c, x)
    if _GATES["logmap0"].due():
        check_in_ball(x, cc, "x")
    return logmap0_unchecked(x, cc)


def logmap0_unchecked(x: Tensor, c: Tensor) -> Tensor:
    """:func:`logmap0` without the ball-membership check or dtype handling, for callers that did both (no device sync)."""
    scale, w, w_norm = scaled_rows(x)
    return _artanh_sqrt_c_norm(x, c, scale * w_norm) / (c.sqrt() * w_norm) * w


def _artanh_sqrt_c_norm(x: Tensor, c: Tensor, norm: Tensor) -> Tensor:
    r""":math:`\operatorname{artanh}(\sqrt c\|x\|) = \log(1 + \sqrt c\|x\|) - \tfrac12\log(1 - c\|x\|^2)` (``norm`` = :math:`\|x\|`, shape ``(..., 1)``).

    The identity :math:`\operatorname{artanh} z = \tfrac12\log\frac{(1 + z)^2}{1 - z^2}` with
    :math:`1 - z^2` rounded exactly as :func:`check_in_ball` rounds it (``1 - c * sum(x * x)``): a point
    that passes the check has a finite result, where ``atanh(sqrt(c) * norm)`` can round to
    ``atanh(1) = inf`` for a point within an ulp of the boundary. Both terms are non-negative (no
    cancellation); ``log1p`` keeps tiny arguments exact.
    """
    return torch.log1p(c.sqrt() * norm) - 0.5 * torch.log1p(-c * _sq_norm(x))


@float32_math
def dist0(x: Tensor, c: CurvatureLike) -> Tensor:
    r"""Distance to the origin, the "hyperbolic norm": :math:`d_c(0, x) = \frac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\|x\|)`.

    Returns shape ``x.shape[:-1]``. Raises ``ValueError`` for points outside the ball. The artanh is
    :func:`_artanh_sqrt_c_norm`'s, finite for every point that passes the ball check.
    """
    check_points(x, "x")
    cc = as_curvature(c, x)
    if _GATES["dist0"].due():
        check_in_ball(x, cc, "x")
    return dist0_unchecked(x, cc)


def dist0_unchecked(x: Tensor, c: Tensor) -> Tensor:
    """:func:`dist0` without the ball-membership check or dtype handling (no device sync); NaN outside the ball."""
    return (2 / c.sqrt() * _artanh_sqrt_c_norm(x, c, x.norm(dim=-1, keepdim=True))).squeeze(-1)


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
    check_points(x, "x")
    check_points(y, "y")
    try:
        torch.broadcast_shapes(x.shape, y.shape)
    except RuntimeError:
        raise ValueError(f"x and y must have broadcastable shapes (..., D), got {tuple(x.shape)} and {tuple(y.shape)}") from None
    cc = as_curvature(c, x)
    if _GATES["dist"].due():
        check_all_in_ball([(x, "x"), (y, "y")], cc)
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
    check_points(x, "x")
    check_points(y, "y")
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"pairwise_dist expects x (B, D) and y (K, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    cc = as_curvature(c, x)
    if _GATES["pairwise_dist"].due():
        check_all_in_ball([(x, "x"), (y, "y")], cc)
    sq_x, sq_y = _sq_norm(x), _sq_norm(y)
    sq_diff = torch.addmm(sq_x + sq_y.T, x, y.T, alpha=-2.0)
    return _arsinh_dist(sq_diff, 1 - cc * sq_x, (1 - cc * sq_y).T, cc)

