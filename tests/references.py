"""Independent references for the tests: mpmath (50 digits) and direct float64 formulas."""

from __future__ import annotations

import mpmath
import torch
import torch.nn.functional as F

mpmath.mp.dps = 50


def mp_dist(x: torch.Tensor, y: torch.Tensor, c: float) -> float:
    """Poincaré distance of two vectors with 50-digit arithmetic (arcosh form)."""
    a = [mpmath.mpf(float(t)) for t in x]
    b = [mpmath.mpf(float(t)) for t in y]
    cc = mpmath.mpf(c)
    sq = sum((p - q) ** 2 for p, q in zip(a, b))
    na, nb = sum(p * p for p in a), sum(q * q for q in b)
    return float(mpmath.acosh(1 + 2 * cc * sq / ((1 - cc * na) * (1 - cc * nb))) / mpmath.sqrt(cc))


def direct_dist64(x: torch.Tensor, y: torch.Tensor, c) -> torch.Tensor:
    """Broadcasting float64 distance through Möbius addition, no epsilons (Ganea et al. 2018, eq. 3)."""
    x, y = x.double(), y.double()
    xy = (-x * y).sum(-1, keepdim=True)
    x2, y2 = (x * x).sum(-1, keepdim=True), (y * y).sum(-1, keepdim=True)
    num = (1 + 2 * c * xy + c * y2) * (-x) + (1 - c * x2) * y
    den = 1 + 2 * c * xy + c**2 * x2 * y2
    return 2 / c**0.5 * torch.atanh(c**0.5 * (num / den).norm(dim=-1))


def acosh_dist64(x: torch.Tensor, y: torch.Tensor, c, zero_pairs_dummy: bool = False) -> torch.Tensor:
    """Broadcasting float64 distance, arcosh form with the explicit difference (accurate up to 0.999 r).

    ``zero_pairs_dummy`` puts a dummy value where x == y (arcosh'(1) is infinite): for masked pairs.
    """
    x, y = x.double(), y.double()
    sq = ((x - y) ** 2).sum(-1)
    if zero_pairs_dummy:
        sq = torch.where(sq == 0, torch.ones_like(sq), sq)
    gaps = (1 - c * (x * x).sum(-1)) * (1 - c * (y * y).sum(-1))
    return torch.acosh(1 + 2 * c * sq / gaps) / c**0.5


def reference_info_nce_hyp(q, p, negatives, c, tau) -> torch.Tensor:
    """Queue-mode hyperbolic InfoNCE in float64 by broadcasting: log-softmax of -d/τ, positive at 0."""
    pos = acosh_dist64(q, p, c)[:, None]
    neg = acosh_dist64(q[:, None], negatives[None], c)
    logits = -torch.cat([pos, neg], dim=1) / tau
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


def reference_in_batch_hyp(q, p, c, tau) -> torch.Tensor:
    """In-batch (2B-way) hyperbolic InfoNCE in float64: each view's partner is its positive."""
    z = torch.cat([q, p]).double()
    n, b = z.shape[0], q.shape[0]
    logits = -acosh_dist64(z[:, None], z[None], c, zero_pairs_dummy=True) / tau
    logits = logits.masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    labels = (torch.arange(n) + b) % n
    return F.cross_entropy(logits, labels)


def reference_info_nce_euc(q, p, negatives, tau) -> torch.Tensor:
    q, p = F.normalize(q.double(), dim=1), F.normalize(p.double(), dim=1)
    if negatives is None:
        z = torch.cat([q, p])
        n, b = z.shape[0], q.shape[0]
        logits = (z @ z.T / tau).masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
        return F.cross_entropy(logits, (torch.arange(n) + b) % n)
    k = F.normalize(negatives.double(), dim=1)
    logits = torch.cat([(q * p).sum(1, keepdim=True), q @ k.T], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long))
