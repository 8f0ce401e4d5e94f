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

Peak memory is O(B·D + K·D + block) when the negatives need no gradient (a MoCo queue), plus one
byte per pair on an accelerator (the near-pair flags below, :func:`keep_near_flags`). When they do
(in-batch negatives), the B×K coefficient matrix is kept for the backward pass.

Near pairs. The product rounds :math:`u_{ij}^2` to an absolute error of a few
:math:`\epsilon M_{ij}` with :math:`M_{ij} = c s_i t_j (\|q_i\|^2 + \|k_j\|^2)`, the sum of its two
norm terms (:math:`\epsilon` the unit roundoff of the dtype), and the backward pass through the
augmented rows cancels the same way; the clamp floor of :math:`u^2` and the :math:`1/u` in the
derivative then amplify the error without bound as :math:`q_i \to k_j` (the difference of squares
of [1]; near-duplicate negatives, and every pair of a collapsed batch). Each block therefore flags the
unmasked pairs with

.. math:: u_{ij}^2 \le \theta M_{ij}, \qquad \theta = \theta_\epsilon\,\epsilon
   \quad(\text{i.e. } \|q_i - k_j\|^2 \le \theta(\|q_i\|^2 + \|k_j\|^2)),

with :math:`\theta_\epsilon` = :data:`NEAR_EPS_MULTIPLE`, so the product's relative error on the
pairs it keeps is at most a few :math:`1/\theta_\epsilon`. :class:`PoincareNegativeLogSumExp`
leaves the flagged pairs out (like masked ones) and returns their indices;
:class:`NearPairsLogSumExp` computes their log-sum-exp from the explicit difference
:math:`q_i - k_j` (:func:`~hcl_plugin.geometry.poincare.dist_unchecked`), in chunks of pairs, with the
gradient of the same formula; :func:`poincare_negative_logsumexp` combines the two with ``logaddexp``.
Time stays O(B·K·D) and memory O(B·K) (one index per flagged pair), never B×K×D.

Host synchronisations. On the CPU each block lists its own flagged pairs (reading a CPU tensor costs
nothing). On an accelerator, listing them with ``nonzero`` would synchronise the device on every
call (its output size depends on the data), so the device path never reads a value: it recomputes at
most :func:`near_capacity` pairs per call, found with ``torch.nonzero_static`` (a fixed-size output,
padded with -1, which :class:`NearPairsLogSumExp` skips). Which pairs fit is decided on the device by
a running count over the rows: the flagged pairs of the rows whose cumulative count stays within the
capacity are recomputed, every later row keeps the matrix-product value of its flagged pairs (the
floor-clamped :math:`u^2`: finite, with the accuracy the product gives). The count of flagged pairs,
overflow included, is left in :attr:`BlockWorkspace.near_pairs_flagged` (a device tensor) for
logging. With the default capacity only a collapsed batch overflows. ``alpha`` stays a tensor
throughout (no ``float(alpha)``), so forward and backward read no device value.

[1] N. J. Higham. "Accuracy and Stability of Numerical Algorithms", 2nd ed., SIAM 2002, sections
    1.7 (cancellation) and 3.1 (error of inner products).
"""

from __future__ import annotations

from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor

from hcl_plugin.geometry.poincare import dist_unchecked
from hcl_plugin.utils.checks import check_nonempty

#: Number of B×K entries processed per block, and the fewest query rows per block (each block reads
#: all K negatives twice, so very thin blocks make the matmuls memory-bound). Tuned with
#: benchmarks/bench_loss.py on a 2-core CPU: at K = 65536, 4 rows/block took 3x longer than 32.
BLOCK_ELEMENTS = 1 << 20
MIN_BLOCK_ROWS = 32

#: :math:`\theta_\epsilon`: pairs with :math:`u^2 \le \theta_\epsilon\,\epsilon\,M` are recomputed from the
#: explicit difference (module doc); float32: :math:`\theta \approx 1.2 \cdot 10^{-2}`, float64: :math:`2.2 \cdot 10^{-11}`.
NEAR_EPS_MULTIPLE = 1e5
#: The fewest pairs per chunk of the near-pair recomputation (each chunk gathers chunk × D entries).
MIN_NEAR_CHUNK = 1024
#: Device path: near pairs recomputed per call, per query row (at least :data:`MIN_NEAR_CHUNK` in all).
NEAR_CAPACITY_PER_ROW = 8


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


def near_ratio(dtype: torch.dtype) -> float:
    r""":math:`\theta = \theta_\epsilon\,\epsilon`: the :math:`u^2 / M` at or below which a pair is recomputed exactly."""
    return NEAR_EPS_MULTIPLE * float(torch.finfo(dtype).eps)


def _u2_floor(dtype: torch.dtype) -> float:
    # Below this u^2 the matmul form is rounding noise (float32: u ~ 1e-5, i.e. pairs ~1e-5 radii apart).
    return 1e-10 if dtype != torch.float64 else 1e-24


def keep_near_flags(device: torch.device) -> bool:
    """Whether :class:`PoincareNegativeLogSumExp` takes the device path for near pairs (module doc).

    On an accelerator, asking a block whether it has near pairs would synchronise the device; the
    flags of all blocks (one byte per pair) are kept instead and gathered once with
    ``torch.nonzero_static`` into at most :func:`near_capacity` indices, with no synchronisation. On
    the CPU that question costs nothing, so each block gathers its own near pairs, only when it has
    some, with no capacity and no B×K flags kept.
    """
    return device.type != "cpu"


def near_capacity(num_rows: int, num_cols: int) -> int:
    """Device path: the most near pairs recomputed in one call, ``min(B K, max(MIN_NEAR_CHUNK, NEAR_CAPACITY_PER_ROW B))``."""
    return min(num_rows * num_cols, max(MIN_NEAR_CHUNK, NEAR_CAPACITY_PER_ROW * num_rows))


class BlockWorkspace:
    """Scratch memory for the blocks, kept between calls.

    Fresh multi-megabyte buffers on every call cost page faults (on a 2-core VM about as much as the
    arithmetic at K = 4096); reusing two block-sized buffers avoids that. The buffers hold no state
    between calls: nothing saved for backward points into them. Not for concurrent use by threads.
    """

    def __init__(self) -> None:
        self._buffer: Optional[Tensor] = None
        self._flags: Optional[Tensor] = None
        #: device path: number of pairs flagged as near in the last call (a 0-dim device tensor, overflow
        #: beyond :func:`near_capacity` included); ``None`` before the first device-path call.
        self.near_pairs_flagged: Optional[Tensor] = None

    def buffers(self, rows: int, cols: int, like: Tensor) -> Tuple[Tensor, Tensor]:
        """Two (rows, cols) scratch matrices of ``like``'s dtype and device."""
        numel = rows * cols
        buf = self._buffer
        if buf is None or buf.numel() < 2 * numel or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._buffer = like.new_empty(2 * numel)
        return buf[:numel].view(rows, cols), buf[numel:2 * numel].view(rows, cols)

    def flags(self, rows: int, cols: int, device: torch.device) -> Tensor:
        """A (rows, cols) bool scratch matrix (the near-pair flags of a whole call)."""
        numel = rows * cols
        buf = self._flags
        if buf is None or buf.numel() < numel or buf.device != device:
            buf = self._flags = torch.empty(numel, dtype=torch.bool, device=device)
        return buf[:numel].view(rows, cols)

    @property
    def nbytes(self) -> int:
        return sum(0 if b is None else b.numel() * b.element_size() for b in (self._buffer, self._flags))


class PoincareNegativeLogSumExp(torch.autograd.Function):
    """Row-wise ``logsumexp_j(-alpha * arsinh(sqrt(qa_i . ka_j)))`` over unmasked ``j``. See module doc.

    With ``near_ratio`` (θ) the pairs with ``u^2 <= θ M`` are left out as well and the call returns
    ``(lse, near)``: ``near`` holds their flat indices ``i * K + j`` (int64, no gradient), in
    row-major order; on the device path (:func:`keep_near_flags`) it has :func:`near_capacity`
    entries, padded with -1, and only the pairs it lists are left out. A row with no pair left has
    ``lse = -inf`` and zero gradient. ``alpha`` may be a float or a 0-dim tensor (not read on the host).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        qa: Tensor,
        ka: Tensor,
        alpha: Tensor,
        mask: Optional[Tensor] = None,
        block_elements: int = BLOCK_ELEMENTS,
        workspace: Optional[BlockWorkspace] = None,
        near_ratio: Optional[float] = None,
    ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        # Per block, with y = u^2 and r = sqrt(y (1 + y)) = u sqrt(1 + u^2):
        #   L = log(1 + 2y + 2r) = 2 arsinh(u)        (one sqrt and one log per entry)
        #   logit = -(alpha / 2) L,  e = exp(logit - max_logit),  lse = max_logit + log(sum e)
        #   d lse / d y = -(alpha / 2) p / r  with  p = e / sum(e)
        # Near pairs: r = y - θ M first (M = the two norm terms of the product), flag r <= 0.
        need_q, need_k, need_alpha = ctx.needs_input_grad[:3]
        need_grad = need_q or need_k or need_alpha
        num_rows, num_cols = qa.shape[0], ka.shape[0]
        rows_per_block = min(num_rows, max(MIN_BLOCK_ROWS, block_elements // max(num_cols, 1)))
        floor = _u2_floor(qa.dtype)
        half_alpha = 0.5 * (alpha.detach() if isinstance(alpha, Tensor) else float(alpha))  # a tensor: no host read
        lse = qa.new_empty(num_rows)
        grad_qa = torch.empty_like(qa) if need_q else None
        coef_all = qa.new_empty(num_rows, num_cols) if need_k else None
        grad_alpha_unit = qa.new_empty(num_rows) if need_alpha else None
        workspace = workspace or BlockWorkspace()
        y_buf, r_buf = workspace.buffers(rows_per_block, num_cols, qa)
        # +inf on the masked pairs: y, and with it L, is +inf there (an addition, cheaper than a fill)
        mask_shift = None if mask is None else torch.zeros_like(mask, dtype=qa.dtype).masked_fill_(mask, float("inf"))
        device_path = near_ratio is not None and keep_near_flags(qa.device)
        near_all = workspace.flags(num_rows, num_cols, qa.device) if device_path else None
        capacity = near_capacity(num_rows, num_cols)
        # device path: near pairs flagged so far, counted on the device
        flagged = torch.zeros(1, dtype=torch.long, device=qa.device) if device_path else None
        near_parts: List[Tensor] = []
        # M_ij = norm_q[i] . norm_k_t[:, j]: two rank-1 terms (contiguous, for fast broadcasting)
        norm_q, norm_k_t = qa[:, -2:].contiguous(), ka[:, -2:].t().contiguous()
        ka_t = ka.t()
        for start in range(0, num_rows, rows_per_block):
            rows = slice(start, start + rows_per_block)
            n = min(rows_per_block, num_rows - start)
            y, r = y_buf[:n], r_buf[:n]
            torch.mm(qa[rows], ka_t, out=y)
            if mask_shift is not None:
                y.add_(mask_shift[rows])
            keep = None
            if near_ratio is not None:
                # r = y - θ M; keep = 1 where r > 0, +0.0 where r <= 0 (a near pair; masked ones have r = inf)
                torch.addcmul(y, norm_q[rows, :1], norm_k_t[:1], value=-near_ratio, out=r)
                r.addcmul_(norm_q[rows, 1:], norm_k_t[1:], value=-near_ratio)
                if near_all is not None:
                    # device path: rows whose near pairs overflow the capacity keep them (r = inf), decided
                    # from a running count on the device
                    flags = near_all[rows]
                    torch.le(r, 0, out=flags)
                    ends = flags.sum(dim=1).cumsum_(0).add_(flagged)
                    flagged = ends[-1:]
                    over = (ends > capacity).unsqueeze(1)
                    flags.logical_and_(over.logical_not())
                    r.masked_fill_(over, float("inf"))
                keep = r.sign_().clamp_min_(0.0).add_(0.0)  # adding +0.0 turns a -0.0 into +0.0
            y.clamp_min_(floor)
            if keep is not None:
                y.div_(keep)  # near pairs: y = +inf, left out like masked ones
                if near_all is None and float(keep.amin()) == 0.0:  # the CPU path: no device to synchronise
                    near_parts.append((keep == 0).view(-1).nonzero().squeeze(1) + start * num_cols)
            torch.addcmul(y, y, y, out=r).sqrt_()
            L = y.add_(r).mul_(2).add_(1).log_()  # 2 arsinh(u), in y's memory
            L_min = L.amin(dim=1, keepdim=True)
            L_min.masked_fill_(L_min == float("inf"), 0.0)  # a row with every pair left out: e = 0, lse = -inf
            L_shift = L.sub_(L_min)
            arsinh_shift = L_shift.mul(0.5) if need_alpha else None
            e = L_shift.mul_(-half_alpha).exp_()  # exp(logit - max logit)
            total = e.sum(dim=1, keepdim=True)
            lse[rows] = (total.log() - half_alpha * L_min).squeeze(1)
            if not need_grad:
                continue
            total = torch.where(total > 0, total, torch.ones_like(total))  # e = 0 on the rows where it is 0
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
        if near_ratio is None:
            return lse
        if near_all is not None:
            # fixed-size output, no device sync; the flags hold at most `capacity` pairs
            near_pairs = torch.nonzero_static(near_all.view(-1), size=capacity, fill_value=-1).squeeze(1)
            workspace.near_pairs_flagged = flagged.squeeze(0)
        elif near_parts:
            near_pairs = torch.cat(near_parts)
        else:
            near_pairs = torch.empty(0, dtype=torch.long, device=qa.device)
        ctx.mark_non_differentiable(near_pairs)
        return lse, near_pairs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_lse: Tensor, *unused: Optional[Tensor]) -> Tuple[Optional[Tensor], ...]:  # type: ignore[override]
        grad_qa_unit, coef, qa, grad_alpha_unit = ctx.saved_tensors
        grad_qa = grad_ka = grad_alpha = None
        if ctx.needs_input_grad[0]:
            grad_qa = grad_qa_unit * grad_lse[:, None]
        if ctx.needs_input_grad[1]:
            grad_ka = torch.mm(coef.t(), qa * grad_lse[:, None])
        if ctx.needs_input_grad[2]:
            grad_alpha = (grad_alpha_unit * grad_lse).sum()
        return grad_qa, grad_ka, grad_alpha, None, None, None, None


class NearPairsLogSumExp(torch.autograd.Function):
    r"""Row-wise :math:`\log \sum_{(i, j) \in P} \exp(-d_c(q_i, k_j)/\tau)` over the listed pairs only.

    Distances come from the explicit difference :math:`q_i - k_j`
    (:func:`~hcl_plugin.geometry.poincare.dist_unchecked`), so pairs closer than the matrix product
    resolves keep full relative accuracy, and so does their gradient: the backward pass recomputes
    each chunk of pairs and differentiates that same formula with autograd (with respect to the
    queries, the negatives and ``c``). Pairs are processed ``chunk`` at a time (chunk × D gathered
    entries); what is kept between the passes is O(|P|). Rows without a pair get ``-inf`` (and zero
    gradient). Entries of ``pairs`` equal to -1 (the padding of the device path) are skipped: they
    add nothing to the result or the gradient.

    Args (of ``apply``): query (B, D), negatives (K, D), c (0-dim), pairs (|P|,) int64 flat indices
    ``i * K + j`` or -1, temperature (float), chunk (int).
    """

    @staticmethod
    def _chunk_logits(query: Tensor, negatives: Tensor, c: Tensor, flat: Tensor, temperature: float) -> Tensor:
        num_cols = negatives.shape[0]
        return -dist_unchecked(query[flat // num_cols], negatives[flat % num_cols], c) / temperature

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, query: Tensor, negatives: Tensor, c: Tensor, pairs: Tensor, temperature: float, chunk: int
    ) -> Tensor:
        num_pairs = pairs.shape[0]
        padding = pairs < 0
        pairs = pairs.clamp_min(0)  # padding reads pair (0, 0); its logit is -inf and its weight 0
        logits = query.new_empty(num_pairs)
        for start in range(0, num_pairs, chunk):
            part = slice(start, start + chunk)
            logits[part] = NearPairsLogSumExp._chunk_logits(query, negatives, c, pairs[part], temperature)
        logits.masked_fill_(padding, float("-inf"))
        row = pairs // negatives.shape[0]
        row_max = query.new_full((query.shape[0],), float("-inf")).scatter_reduce_(0, row, logits, "amax")
        e = logits.sub_(row_max[row]).exp_().masked_fill_(padding, 0.0)  # padding: exp(-inf - -inf) = NaN
        total = query.new_zeros(query.shape[0]).index_add_(0, row, e)
        p = e.div_(total[row]).masked_fill_(padding, 0.0)  # d lse_i / d logit_ij (padding: 0 / 0)
        ctx.save_for_backward(query, negatives, c, pairs, p)
        ctx.temperature, ctx.chunk = temperature, chunk
        return total.log() + row_max  # log(0) + (-inf) = -inf for rows without pairs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_lse: Tensor) -> Tuple[Optional[Tensor], ...]:  # type: ignore[override]
        query, negatives, c, pairs, p = ctx.saved_tensors
        need_q, need_k, need_c = ctx.needs_input_grad[:3]
        num_cols = negatives.shape[0]
        grad_q = torch.zeros_like(query) if need_q else None
        grad_k = torch.zeros_like(negatives) if need_k else None
        grad_c = torch.zeros_like(c) if need_c else None
        weights = grad_lse[pairs // num_cols] * p
        query, negatives = query.detach(), negatives.detach()
        for start in range(0, pairs.shape[0], ctx.chunk):
            part = slice(start, start + ctx.chunk)
            flat = pairs[part]
            rows, cols = flat // num_cols, flat % num_cols
            with torch.enable_grad():
                q_rows = query[rows].requires_grad_(need_q)
                k_rows = negatives[cols].requires_grad_(need_k)
                cc = c.detach().requires_grad_(need_c)
                logits = -dist_unchecked(q_rows, k_rows, cc) / ctx.temperature
                wrt = [t for t, need in ((q_rows, need_q), (k_rows, need_k), (cc, need_c)) if need]
                grads = list(torch.autograd.grad(logits, wrt, grad_outputs=weights[part]))
            if need_q:
                grad_q.index_add_(0, rows, grads.pop(0))
            if need_k:
                grad_k.index_add_(0, cols, grads.pop(0))
            if need_c:
                grad_c += grads.pop(0)
        return grad_q, grad_k, grad_c, None, None, None


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

    Far pairs go through :class:`PoincareNegativeLogSumExp` (one matrix product per block), the pairs
    it flags as near (module doc) through :class:`NearPairsLogSumExp` (explicit differences); the two
    row-wise results are combined with ``logaddexp``.

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
    Raises:
        ValueError: an empty ``query`` or ``negatives``.
    """
    check_nonempty(query, "query", "poincare_negative_logsumexp")
    check_nonempty(negatives, "negatives", "poincare_negative_logsumexp")
    alpha = 2.0 / (temperature * c.sqrt())
    qa, ka = augment_query(query, c), augment_key(negatives, c)
    lse_far, near_pairs = PoincareNegativeLogSumExp.apply(
        qa, ka, alpha, mask, block_elements, workspace, near_ratio(query.dtype)
    )
    if near_pairs.numel() == 0:  # the CPU path without near pairs (the device path has a fixed size)
        return lse_far
    chunk = max(MIN_NEAR_CHUNK, block_elements // (query.shape[1] + 2))
    lse_near = NearPairsLogSumExp.apply(query, negatives, c, near_pairs, float(temperature), chunk)
    return torch.logaddexp(lse_far, lse_near)
