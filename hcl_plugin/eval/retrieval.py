r"""Recall@K for metric learning (the protocol of UHML [1] and of deep metric learning since [2]).

Every item is a query; its gallery is every other item (query = gallery minus self). Recall@K is the
fraction of queries whose K nearest gallery items contain at least one item of the query's class:

.. math:: R@K = \frac{1}{N}\sum_{q=1}^N \mathbb{1}\left[\exists\, g \in \mathrm{NN}_K(q),\ g \ne q:\ y_g = y_q\right].

A query whose class has no other member counts as a miss (it is kept, as in the standard protocol).
Distances: cosine (:math:`1 - \cos`, on L2-normalised rows, the usual Euclidean-embedding protocol) or
the Poincaré distance of curvature :math:`-c`. The Poincaré ranking uses the monotone quantity
:math:`\|x - y\|^2 / ((1 - c\|x\|^2)(1 - c\|y\|^2))` (arsinh and the square root do not change the
order) computed in float64, because its matmul form cancels for close pairs in float32
(docs/numerics.md), and close pairs are exactly the nearest neighbours.

Memory: queries are processed in blocks of ``block_size`` rows against all N items (a block x N
distance matrix plus a top-k), so 50,000 items need O(block_size · N) memory, never N x N.
Ties between equal distances are broken by ``torch.topk`` (by index in practice, not guaranteed).

[1] J. Yan, L. Luo, C. Deng, H. Huang. "Unsupervised Hyperbolic Metric Learning". CVPR 2021.
[2] H. O. Song, Y. Xiang, S. Jegelka, S. Savarese. "Deep Metric Learning via Lifted Structured
    Feature Embedding". CVPR 2016.
"""

from __future__ import annotations

from typing import Dict, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from hcl_plugin.geometry import check_in_ball
from hcl_plugin.geometry.poincare import as_curvature
from hcl_plugin.utils.checks import CurvatureLike, check_finite

__all__ = ["DEFAULT_KS", "METRICS", "recall_at_k", "nearest_neighbours"]

DEFAULT_KS = (1, 2, 4, 8, 16, 32)
METRICS = ("cosine", "poincare")
ArrayLike = Union[Tensor, np.ndarray]


def _prepare(embeddings: ArrayLike, metric: str, c: CurvatureLike) -> Tensor:
    x = torch.as_tensor(embeddings).detach()
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"embeddings must have shape (N, D) with N >= 2, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"embeddings must be floating point, got {x.dtype}")
    check_finite(x, "embeddings")
    if metric == "cosine":
        x = x.float()
        norm = x.norm(dim=1, keepdim=True)
        if bool((norm == 0).any()):
            raise ValueError(f"embeddings has {int((norm == 0).sum())} zero row(s): no cosine distance for them")
        return x / norm
    if metric == "poincare":
        x = x.double()
        check_in_ball(x, c, "embeddings")
        return x
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def _block_scores(queries: Tensor, items: Tensor, metric: str, c: Tensor) -> Tensor:
    """Scores to minimise: a monotone function of the distance, (b, N)."""
    if metric == "cosine":
        return -(queries @ items.T)
    sq_q = (queries * queries).sum(1, keepdim=True)
    sq_i = (items * items).sum(1)[None, :]
    scores = queries @ items.T  # in place from here on: one (b, N) float64 buffer
    scores.mul_(-2).add_(sq_q).add_(sq_i).clamp_min_(0)
    return scores.div_(1 - c * sq_q).div_(1 - c * sq_i)


def nearest_neighbours(
    embeddings: ArrayLike,
    k: int,
    metric: str = "cosine",
    c: CurvatureLike = 1.0,
    block_size: int = 1024,
) -> Tensor:
    """Indices (N, k) of each item's k nearest other items (self excluded), nearest first."""
    x = _prepare(embeddings, metric, c)
    n = x.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be between 1 and N - 1 = {n - 1} (self is excluded), got {k}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    cc = as_curvature(c, x) if metric == "poincare" else x.new_tensor(1.0)
    out = torch.empty(n, k, dtype=torch.int64)
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        scores = _block_scores(x[start:stop], x, metric, cc)
        rows = torch.arange(stop - start)
        scores[rows, rows + start] = float("inf")  # the query itself is not in its gallery
        out[start:stop] = scores.topk(k, dim=1, largest=False, sorted=True).indices
    return out


def recall_at_k(
    embeddings: ArrayLike,
    labels: ArrayLike,
    ks: Sequence[int] = DEFAULT_KS,
    metric: str = "cosine",
    c: CurvatureLike = 1.0,
    block_size: int = 1024,
) -> Dict[int, float]:
    r"""Recall@K for each K in ``ks`` (query = gallery minus self), as fractions in [0, 1].

    Args:
        embeddings: (N, D) features (any for cosine; points in the ball for Poincaré).
        labels: (N,) integer class labels (evaluate on classes held out of training).
        ks: the K values, each in [1, N - 1].
        metric: ``"cosine"`` or ``"poincare"``.
        c: curvature magnitude for ``"poincare"``.
        block_size: queries per block (memory ~ block_size x N scores).
    Returns:
        ``{K: recall}``.
    Raises:
        ValueError: wrong shapes, NaN/Inf (named), a K outside [1, N - 1], an unknown metric,
            points outside the ball for ``"poincare"``.
    """
    y = torch.as_tensor(labels)
    if y.dim() != 1 or y.is_floating_point():
        raise ValueError(f"labels must be a 1-D integer array, got shape {tuple(y.shape)} and dtype {y.dtype}")
    n = torch.as_tensor(embeddings).shape[0]
    if y.shape[0] != n:
        raise ValueError(f"labels has {y.shape[0]} entries but embeddings has {n} rows")
    ks = [int(k) for k in ks]
    if not ks or any(k < 1 or k > n - 1 for k in ks):
        raise ValueError(f"every K must be between 1 and N - 1 = {n - 1} (self is excluded), got {ks}")
    neighbours = nearest_neighbours(embeddings, max(ks), metric, c, block_size)
    y = y.to(torch.int64)
    hit = y[neighbours] == y[:, None]  # (N, max K)
    first_hit = torch.where(hit.any(1), hit.to(torch.int8).argmax(1), torch.full((n,), max(ks)))
    return {k: float((first_hit < k).double().mean()) for k in ks}
