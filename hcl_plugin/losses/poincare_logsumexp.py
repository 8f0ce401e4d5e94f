r"""Fused, memory-lean log-sum-exp of negative hyperbolic logits with an analytic backward.

For queries :math:`q_i` and negatives :math:`k_j` in the Poincaré ball the InfoNCE denominator needs

.. math:: \operatorname{lse}_i = \log \sum_j \exp\left(-\frac{d_c(q_i, k_j)}{\tau}\right)
          = \log \sum_j \exp\left(-\alpha \operatorname{arsinh}(u_{ij})\right),
   \qquad \alpha = \frac{2}{\tau\sqrt c},\quad
   u_{ij}^2 = \frac{c\,\|q_i - k_j\|^2}{(1 - c\|q_i\|^2)(1 - c\|k_j\|^2)}.

With :math:`s_i = 1/(1 - c\|q_i\|^2)` and :math:`t_j = 1/(1 - c\|k_j\|^2)`, :math:`u_{ij}^2` is one
matrix product of augmented rows (:func:`augment_query`, :func:`augment_key`):

.. math:: u_{ij}^2 = \big[-2cs_iq_i,\; cs_i\|q_i\|^2,\; s_i\big] \cdot \big[t_jk_j,\; t_j,\; ct_j\|k_j\|^2\big].

:class:`PoincareNegativeLogSumExp` takes those augmented matrices, walks over blocks of query rows
(so the B×K intermediates live in cache-sized blocks and are never all stored), and computes the
gradient of each row's lse with respect to the augmented query already in the forward pass:

.. math:: \frac{\partial \operatorname{lse}_i}{\partial u^2_{ij}} = -\frac{\alpha\, p_{ij}}{2u_{ij}\sqrt{1+u_{ij}^2}},
   \qquad p_{ij} = \exp(\ell_{ij} - \operatorname{lse}_i).

Peak memory is O(B·D + K·D + block) when the negatives need no gradient (a MoCo queue). When they
do (in-batch negatives), the B×K coefficient matrix is kept for the backward pass.
The difference of squares cancels for pairs closer than about 1e-3 radii in float32 (DESIGN.md
section 4): use this for negatives only and compute positives from the explicit difference.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

#: Number of B×K entries processed per block, and the fewest query rows per block (each block reads
#: all K negatives twice, so very thin blocks make the matmuls memory-bound). Tuned with
#: benchmarks/bench_loss.py on a 2-core CPU: at K = 65536, 4 rows/block took 3x longer than 32.
BLOCK_ELEMENTS = 1 << 20
MIN_BLOCK_ROWS = 32


def augment_query(q: Tensor, c: Tensor) -> Tensor:
    r"""Rows :math:`[-2cs_iq_i,\ cs_i\|q_i\|^2,\ s_i]`, shape (B, D + 2), differentiable."""
    sq = (q * q).sum(-1, keepdim=True)
    s = 1 / (1 - c * sq)
    return torch.cat([(-2 * c) * s * q, c * s * sq, s], dim=-1)


def augment_key(k: Tensor, c: Tensor) -> Tensor:
    r"""Rows :math:`[t_jk_j,\ t_j,\ ct_j\|k_j\|^2]`, shape (K, D + 2), differentiable."""
    sq = (k * k).sum(-1, keepdim=True)
    t = 1 / (1 - c * sq)
    return torch.cat([t * k, t, c * t * sq], dim=-1)


def _u2_floor(dtype: torch.dtype) -> float:
    # Below this u^2 the matmul form is rounding noise (float32: u ~ 1e-5, i.e. pairs ~1e-5 radii apart).
    return 1e-10 if dtype != torch.float64 else 1e-24


class BlockWorkspace:
    """Scratch memory for the blocks, kept between calls.

    Fresh multi-megabyte buffers on every call cost page faults (on a 2-core VM about as much as the
    arithmetic at K = 4096); reusing two block-sized buffers avoids that. The buffers hold no state
    between calls: nothing saved for backward points into them. Not for concurrent use by threads.
    """

    def __init__(self) -> None:
        self._buffer: Optional[Tensor] = None

    def buffers(self, rows: int, cols: int, like: Tensor) -> Tuple[Tensor, Tensor]:
        numel = rows * cols
        buf = self._buffer
        if buf is None or buf.numel() < 2 * numel or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._buffer = like.new_empty(2 * numel)
        return buf[:numel].view(rows, cols), buf[numel:2 * numel].view(rows, cols)

    @property
    def nbytes(self) -> int:
        return 0 if self._buffer is None else self._buffer.numel() * self._buffer.element_size()


class PoincareNegativeLogSumExp(torch.autograd.Function):
    """Row-wise ``logsumexp_j(-alpha * arsinh(sqrt(qa_i . ka_j)))`` over unmasked ``j``. See module doc."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        qa: Tensor,
        ka: Tensor,
        alpha: Tensor,
        mask: Optional[Tensor] = None,
        block_elements: int = BLOCK_ELEMENTS,
        workspace: Optional[BlockWorkspace] = None,
    ) -> Tensor:
        # Per block, with y = u^2 and r = sqrt(y (1 + y)) = u sqrt(1 + u^2):
        #   L = log(1 + 2y + 2r) = 2 arsinh(u)        (one sqrt and one log per entry)
        #   logit = -(alpha / 2) L,  e = exp(logit - max_logit),  lse = max_logit + log(sum e)
        #   d lse / d y = -(alpha / 2) p / r  with  p = e / sum(e)
        need_q, need_k, need_alpha = ctx.needs_input_grad[:3]
        need_grad = need_q or need_k or need_alpha
        num_rows, num_cols = qa.shape[0], ka.shape[0]
        rows_per_block = min(num_rows, max(MIN_BLOCK_ROWS, block_elements // max(num_cols, 1)))
        floor = _u2_floor(qa.dtype)
        half_alpha = 0.5 * float(alpha)
        lse = qa.new_empty(num_rows)
        grad_qa = torch.empty_like(qa) if need_q else None
        coef_all = qa.new_empty(num_rows, num_cols) if need_k else None
        grad_alpha_unit = qa.new_empty(num_rows) if need_alpha else None
        y_buf, r_buf = (workspace or BlockWorkspace()).buffers(rows_per_block, num_cols, qa)
        ka_t = ka.t()
        for start in range(0, num_rows, rows_per_block):
            rows = slice(start, start + rows_per_block)
            n = min(rows_per_block, num_rows - start)
            y, r = y_buf[:n], r_buf[:n]
            torch.mm(qa[rows], ka_t, out=y)
            y.clamp_min_(floor)
            torch.addcmul(y, y, y, out=r).sqrt_()
            L = y.add_(r).mul_(2).add_(1).log_()  # 2 arsinh(u), in y's memory
            if mask is not None:
                L.masked_fill_(mask[rows], float("inf"))
            L_min = L.amin(dim=1, keepdim=True)
            L_shift = L.sub_(L_min)
            arsinh_shift = L_shift.mul(0.5) if need_alpha else None
            e = L_shift.mul_(-half_alpha).exp_()  # exp(logit - max logit)
            total = e.sum(dim=1, keepdim=True)
            lse[rows] = (total.log() - half_alpha * L_min).squeeze(1)
            if not need_grad:
                continue
            p_scale = -half_alpha / total  # d lse / d y = p_scale * e / r
            if need_alpha:
                # d lse / d alpha = -E_p[arsinh(u)] = -(sum e * arsinh_shift) / total - L_min / 2
                weighted = (e * arsinh_shift.nan_to_num_(posinf=0.0)).sum(dim=1, keepdim=True)
                grad_alpha_unit[rows] = -(weighted / total + 0.5 * L_min).squeeze(1)
            coef = e.div_(r)
            if need_q:
                torch.mm(coef, ka, out=grad_qa[rows])
                grad_qa[rows] *= p_scale
            if need_k:
                torch.mul(coef, p_scale, out=coef_all[rows])
        ctx.save_for_backward(grad_qa, coef_all, qa if need_k else None, grad_alpha_unit)
        return lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_lse: Tensor) -> Tuple[Optional[Tensor], ...]:  # type: ignore[override]
        grad_qa_unit, coef, qa, grad_alpha_unit = ctx.saved_tensors
        grad_qa = grad_ka = grad_alpha = None
        if ctx.needs_input_grad[0]:
            grad_qa = grad_qa_unit * grad_lse[:, None]
        if ctx.needs_input_grad[1]:
            grad_ka = torch.mm(coef.t(), qa * grad_lse[:, None])
        if ctx.needs_input_grad[2]:
            grad_alpha = (grad_alpha_unit * grad_lse).sum()
        return grad_qa, grad_ka, grad_alpha, None, None, None


def poincare_negative_logsumexp(
    query: Tensor,
    negatives: Tensor,
    c: Tensor,
    temperature: float,
    mask: Optional[Tensor] = None,
    block_elements: int = BLOCK_ELEMENTS,
    workspace: Optional[BlockWorkspace] = None,
) -> Tensor:
    r"""``lse_i = log sum_j exp(-d_c(query_i, negatives_j) / temperature)`` over unmasked ``j``.

    Args:
        query: (B, D) points in the ball (float32 or float64).
        negatives: (K, D) points in the ball.
        c: curvature magnitude as a 0-dim tensor of the same dtype.
        temperature: τ > 0.
        mask: optional (B, K) bool, True = leave the pair out.
        block_elements: B×K entries per block (see :data:`BLOCK_ELEMENTS`).
        workspace: scratch buffers reused between calls (a fresh one per call if None).
    Returns:
        (B,) tensor; differentiable with respect to ``query``, ``negatives`` and ``c``.
    """
    alpha = 2.0 / (temperature * c.sqrt())
    qa, ka = augment_query(query, c), augment_key(negatives, c)
    return PoincareNegativeLogSumExp.apply(qa, ka, alpha, mask, block_elements, workspace)
