r"""Gradient options of the map onto the ball: the Riemannian rescale and the norm-only ("decoupled") gradient.

Both change only what the backward pass sends back; the forward values are those of
:func:`~hcl_plugin.geometry.expmap0` (up to a few ulps for :func:`norm_only`). They are the two
gradient options of the released HCL code (docs/hcl_options.md):

* :func:`riemannian_gradient` / :func:`riemannian_expmap0`: the gradient that reaches a point
  :math:`x` of the ball is multiplied by :math:`(1 - c\|x\|^2)^2 / 4 = 1/\lambda_x^2`, the inverse
  squared conformal factor (:math:`\lambda_x = 2/(1 - c\|x\|^2)`): the Riemannian gradient of the
  Poincaré ball written in its coordinates [1]. The released code wraps every map onto the ball in
  such an operation (``RiemannianGradient`` of its ``hyptorch`` package, on by default).
* :func:`norm_only`: :math:`v \mapsto \|v\|\,\operatorname{sg}(v/\|v\|)`, the same value with the
  direction detached, so a loss downstream moves only the norm (the released code's ``decoupled``
  option). :math:`\exp_0^c` keeps directions, so detaching the direction of the tangent vector is
  detaching the direction of the ball point.

No host synchronisation: nothing here reads a device value (the finiteness check of
:func:`riemannian_expmap0` runs when its gate is due, as :func:`~hcl_plugin.geometry.expmap0`'s).

[1] M. Nickel, D. Kiela. "Poincaré Embeddings for Learning Hierarchical Representations". NeurIPS 2017.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from hcl_plugin.geometry.poincare import (
    as_curvature,
    check_points,
    conformal_gap,
    expmap0_unchecked,
    float32_math,
    scaled_rows,
)
from hcl_plugin.utils.checks import CurvatureLike, ValueCheckGate, check_finite

__all__ = ["RiemannianGradient", "norm_only", "riemannian_expmap0", "riemannian_gradient"]

_GATE = ValueCheckGate()  # the finiteness check of riemannian_expmap0 when the caller does not decide


class RiemannianGradient(torch.autograd.Function):
    r"""Forward: the identity on ball points ``x``. Backward: ``grad * (1 - c|x|^2)^2 / 4`` (row-wise).

    ``c`` is a tensor (0-dim) and receives no gradient from this operation: the factor is a
    preconditioner applied to the gradient, not a function the loss depends on.
    """

    @staticmethod
    def forward(ctx, x: Tensor, c: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, c)
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tuple[Tensor, None]:  # type: ignore[override]
        x, c = ctx.saved_tensors
        wide = x if x.dtype in (torch.float32, torch.float64) else x.float()
        factor = conformal_gap(wide, c.to(wide.dtype)).square() / 4
        return grad * factor.to(grad.dtype), None


def riemannian_gradient(x: Tensor, c: CurvatureLike) -> Tensor:
    r"""``x`` unchanged; its backward multiplies the incoming gradient by :math:`(1 - c\|x\|^2)^2 / 4`.

    Args:
        x: points of the ball, shape ``(..., D)`` (not checked: the caller made them, e.g. with expmap0).
        c: curvature magnitude, a number or a tensor (detached here: no gradient reaches ``c`` through
            this operation; see :func:`riemannian_expmap0` for a learnable curvature).
    """
    check_points(x, "x")
    cc = c.detach().to(dtype=x.dtype, device=x.device) if isinstance(c, Tensor) else as_curvature(c, x)
    if not (torch.is_grad_enabled() and x.requires_grad):
        return x
    return RiemannianGradient.apply(x, cc)


@float32_math
def riemannian_expmap0(v: Tensor, c: CurvatureLike, *, check_values: Optional[bool] = None) -> Tensor:
    r""":func:`~hcl_plugin.geometry.expmap0` followed by :func:`riemannian_gradient` (the released HCL code's ``ToPoincare``).

    Forward: exactly ``expmap0(v, c)``. Backward: the gradient reaching ``v`` is the one of
    ``expmap0`` applied to ``grad * (1 - c|z|^2)^2 / 4``, ``z`` the output.

    A learnable curvature (a tensor ``c`` that requires grad) gets the exact, unscaled gradient of
    ``expmap0`` with respect to ``c``: the map is evaluated once with ``c`` detached for the rescaled
    path to ``v`` and once with ``v`` detached for the path to ``c`` (the second adds zero to the
    value). The rescale is a preconditioner of the point's coordinates, not of the curvature.
    (The released code does not learn ``c``.)

    ``check_values``: run the finiteness check of ``v`` (``None``: when this function's gate is due).

    Raises:
        TypeError: non-floating ``v``. ValueError: NaN/Inf in ``v`` (named), c <= 0.
    """
    check_points(v, "v")
    cc = as_curvature(c, v)
    if _GATE.due() if check_values is None else check_values:
        check_finite(v, "v")
    if not torch.is_grad_enabled():
        return expmap0_unchecked(v, cc)
    if cc.requires_grad:
        fixed = cc.detach()
        z = riemannian_gradient(expmap0_unchecked(v, fixed), fixed)
        z_c = expmap0_unchecked(v.detach(), cc)
        return z + (z_c - z_c.detach())
    return riemannian_gradient(expmap0_unchecked(v, cc), cc)


@float32_math
def norm_only(v: Tensor) -> Tensor:
    r""":math:`\|v\|\,\operatorname{sg}(v/\|v\|)` row-wise: the value of ``v``, a gradient along ``v`` only.

    The gradient that reaches ``v`` is the incoming one projected on the direction of ``v``
    (:math:`(g \cdot \hat v)\,\hat v`): a loss downstream can change the norm, not the direction.
    Norms via :func:`~hcl_plugin.geometry.poincare.scaled_rows` (no overflow); a zero row stays zero,
    with zero gradient. Expects finite input (the map that follows checks it).
    """
    check_points(v, "v")
    scale, w, w_norm = scaled_rows(v)
    return scale * (w_norm * (w / w_norm).detach())  # |v| = m |w| never formed: no overflow for huge rows
