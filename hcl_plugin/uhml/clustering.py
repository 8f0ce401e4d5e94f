r"""UHML pseudo-labels: multi-level hierarchical clustering of points in the Poincaré ball, flat k-means, label change.

Geometry: Ward linkage on the tangent-space coordinates :math:`v_i = \log_0^c(z_i)` [2, eq. 13].
``logmap0`` is a bijection of the ball onto :math:`\mathbb{R}^D` that preserves directions and maps
the norm monotonically (:math:`\|v\| = \operatorname{artanh}(\sqrt c\|z\|)/\sqrt c`, half the
hyperbolic distance to the origin), so Ward's variance criterion, which needs a vector space with
means, is well defined there; a point's hyperbolic norm is kept, not flattened onto a sphere.

Ward's merge height between clusters :math:`A` and :math:`B` (scipy's convention, [3]) is

.. math:: h(A, B) = \sqrt{\frac{2|A||B|}{|A| + |B|}}\;\|\mu_A - \mu_B\|,

with :math:`\mu` the cluster means of the ``logmap0`` coordinates; the thresholds :math:`\delta` of a
distance cut are in these units (``logmap0`` coordinates scale as :math:`1/\sqrt c`).

Scale (two-stage scheme). Ward on all points needs the condensed N×N distance matrix (50,000 points:
10 GB in float64), so above ``max_exact`` points the clustering runs in two stages:

1. MiniBatchKMeans [4] reduces the ``logmap0`` coordinates to ``M`` centroids (default
   ``max(2048, 4 k_1)`` capped at 20,000 and at N, with :math:`k_1` the finest requested count;
   k-means++ seeding up to M = 4096, random seeding above, where k-means++ costs O(M^2)); time and
   memory are O(N·M·D) per pass and O(N·D + M·D).
2. Ward linkage (scipy) on the M centroids, each counted once; the tree is cut at the requested
   counts and every point takes the label of its centroid. k-means places centroids roughly in
   proportion to the density of the points, so the unweighted centroids approximate the weighted
   Ward problem; for a cut by threshold, the heights are recomputed with the true cluster sizes and
   means (the formula above, on the k-means cells' point counts and sums) and made monotone by a
   running maximum up the tree, so :math:`\delta` means the same in both schemes.

The coarse levels are unions of the fine ones (one tree, cut several times): the labels form a
hierarchy, which :func:`hcl_plugin.uhml.similarity_levels` turns into similarity levels.

How much a re-clustering changed the labels: :func:`label_change_fraction` (majority matching of the old
clusters, formula in its docstring), logged by the re-clustering driver (:mod:`hcl_plugin.uhml.recluster`).

Where the paper and the released code differ: the paper [1] builds the levels from distance
thresholds :math:`\delta`; the released code (``for_clustering.py``) runs ``scipy`` Ward on the raw
features of the whole training set and cuts with ``fcluster(..., criterion='maxclust')`` at fixed
counts (CUB [100, 50], Cars [98, 49], SOP [10000, 1000]; its K = 3 branch reuses the finest count for
the third level, a bug). Both cuts are offered here; counts are exact (``cut_tree``), whereas
``maxclust`` may return fewer clusters when heights tie.

References:
    [1] J. Yan, L. Luo, C. Deng, H. Huang. "Unsupervised Hyperbolic Metric Learning". CVPR 2021.
    [2] O. Ganea, G. Bécigneul, T. Hofmann. "Hyperbolic Neural Networks". NeurIPS 2018.
    [3] J. H. Ward. "Hierarchical Grouping to Optimize an Objective Function". JASA 1963; scipy
        ``scipy.cluster.hierarchy.linkage(method='ward')``.
    [4] D. Sculley. "Web-Scale K-Means Clustering". WWW 2010; ``sklearn.cluster.MiniBatchKMeans``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from scipy.cluster.hierarchy import cut_tree, fcluster, linkage
from sklearn.cluster import MiniBatchKMeans
from torch import Tensor

from hcl_plugin.geometry import check_in_ball, logmap0
from hcl_plugin.utils.checks import CurvatureLike, check_finite

__all__ = [
    "MAX_CENTROIDS",
    "MAX_EXACT_POINTS",
    "default_num_centroids",
    "flat_kmeans_labels",
    "hierarchical_labels",
    "label_change_fraction",
]

#: Up to this many points Ward runs on all of them (condensed distances: 400 MB in float64 at 10,000).
MAX_EXACT_POINTS = 10_000
#: Upper bound of the default number of k-means centroids (Ward on 20,000 centroids: 1.6 GB).
MAX_CENTROIDS = 20_000
#: Lower bound of the default number of k-means centroids.
MIN_CENTROIDS = 2048
#: k-means++ seeding costs O(M^2 D log M); above this many centroids, random seeding.
MAX_KMEANS_PLUS_PLUS = 4096

ArrayLike = Union[Tensor, np.ndarray]


def default_num_centroids(num_points: int, finest_count: Optional[int]) -> int:
    """``min(N, max(2048, min(4 k_1, 20000)))``: the k-means size of the two-stage scheme."""
    wanted = MIN_CENTROIDS if finest_count is None else max(MIN_CENTROIDS, min(4 * finest_count, MAX_CENTROIDS))
    return min(num_points, wanted)


def _validate_cuts(
    n_clusters: Optional[Sequence[int]], thresholds: Optional[Sequence[float]], num_points: int
) -> None:
    if (n_clusters is None) == (thresholds is None):
        raise ValueError("give exactly one of n_clusters (e.g. [100, 50]) or thresholds (e.g. [2.0, 4.0])")
    if n_clusters is not None:
        counts = list(n_clusters)
        if not counts or any(int(k) != k or k < 1 for k in counts):
            raise ValueError(f"n_clusters must be a non-empty list of positive integers, got {counts}")
        if any(a <= b for a, b in zip(counts, counts[1:])):
            raise ValueError(f"n_clusters must be ordered fine -> coarse (strictly decreasing), got {counts}")
        if counts[0] > num_points:
            raise ValueError(
                f"fewer samples ({num_points}) than clusters requested ({counts[0]} at the finest level)"
            )
    else:
        deltas = [float(t) for t in thresholds]  # type: ignore[union-attr]
        if not deltas or any(not np.isfinite(t) or t <= 0 for t in deltas):
            raise ValueError(f"thresholds must be a non-empty list of finite values > 0, got {deltas}")
        if any(a >= b for a, b in zip(deltas, deltas[1:])):
            raise ValueError(f"thresholds must be ordered fine -> coarse (strictly increasing), got {deltas}")


def tangent_coordinates(embeddings: ArrayLike, c: CurvatureLike, name: str) -> np.ndarray:
    """``logmap0`` of the rows as a float64 (N, D) array; errors name ``name`` and the first bad row."""
    z = torch.as_tensor(embeddings)
    if z.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D), got {tuple(z.shape)}")
    if not z.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {z.dtype}")
    z = z.detach().to(device="cpu", dtype=torch.float64)
    check_finite(z, name)
    check_in_ball(z, c, name)
    return logmap0(z, c).numpy()


def _consecutive(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def _size_weighted_heights(tree: np.ndarray, counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """Ward heights of ``tree``'s merges recomputed with weighted leaves, made monotone up the tree.

    Leaf ``i`` stands for ``counts[i]`` points with coordinate sum ``sums[i]``; merge ``m`` joins nodes
    ``a`` and ``b`` into node ``M + m``. Returns a copy of ``tree`` with column 2 replaced.
    """
    num_leaves = counts.shape[0]
    node_count = np.concatenate([counts.astype(np.float64), np.zeros(num_leaves - 1)])
    node_sum = np.concatenate([sums, np.zeros((num_leaves - 1, sums.shape[1]))])
    node_height = np.zeros(2 * num_leaves - 1)
    out = tree.copy()
    for m, (a, b) in enumerate(tree[:, :2].astype(np.int64)):
        na, nb = node_count[a], node_count[b]
        gap = node_sum[a] / na - node_sum[b] / nb
        height = np.sqrt(2 * na * nb / (na + nb)) * np.linalg.norm(gap)
        node = num_leaves + m
        node_height[node] = max(height, node_height[a], node_height[b])
        node_count[node], node_sum[node] = na + nb, node_sum[a] + node_sum[b]
        out[m, 2] = node_height[node]
    return out


def _cut(tree: np.ndarray, n_clusters: Optional[Sequence[int]], thresholds: Optional[Sequence[float]]) -> np.ndarray:
    """(K, leaves) labels, one row per cut, fine -> coarse, consecutive from 0."""
    if n_clusters is not None:
        return cut_tree(tree, n_clusters=[int(k) for k in n_clusters]).T.astype(np.int64)
    return np.stack([_consecutive(fcluster(tree, t=float(t), criterion="distance")) for t in thresholds])  # type: ignore[union-attr]


def hierarchical_labels(
    embeddings: ArrayLike,
    c: CurvatureLike,
    n_clusters: Optional[Sequence[int]] = None,
    thresholds: Optional[Sequence[float]] = None,
    *,
    max_exact: int = MAX_EXACT_POINTS,
    num_centroids: Optional[int] = None,
    kmeans_batch_size: int = 4096,
    seed: int = 0,
    name: str = "embeddings",
) -> np.ndarray:
    r"""Cluster points of the ball at K levels, fine -> coarse, by Ward linkage in ``logmap0`` coordinates.

    See the module docstring for the geometry, the two-stage scheme used above ``max_exact`` points
    and the units of ``thresholds``.

    Args:
        embeddings: (N, D) points in the ball of curvature :math:`-c` (torch or numpy).
        c: curvature magnitude (> 0).
        n_clusters: cluster counts per level, strictly decreasing (the released code's way, e.g.
            ``[100, 50]``). Exclusive with ``thresholds``.
        thresholds: Ward heights :math:`\delta` per level, strictly increasing (the paper's way).
        max_exact: up to this many points, Ward runs on all points; above, the two-stage scheme.
        num_centroids: k-means size M of the two-stage scheme; default :func:`default_num_centroids`.
        kmeans_batch_size: MiniBatchKMeans batch size.
        seed: random state of k-means (the exact scheme is deterministic).
        name: how errors refer to ``embeddings`` (e.g. ``"epoch 3 embeddings"``).
    Returns:
        int64 array (K, N): row k holds the level-k labels 0..k_k-1; every coarse cluster is a union
        of clusters of the level below.
    Raises:
        ValueError: both or neither of ``n_clusters``/``thresholds``, unordered or non-positive cuts,
            fewer samples than clusters requested (also fewer centroids than clusters), NaN/Inf
            values or points outside the ball (the message names ``name`` and the first bad row).
    """
    points = tangent_coordinates(embeddings, c, name)
    num_points = points.shape[0]
    _validate_cuts(n_clusters, thresholds, num_points)
    if num_points < 2:
        raise ValueError(f"{name} must hold at least 2 points to cluster, got {num_points}")

    if num_points <= max_exact:
        tree = linkage(points, method="ward")
        return _cut(tree, n_clusters, thresholds)

    finest = None if n_clusters is None else int(n_clusters[0])
    m = default_num_centroids(num_points, finest) if num_centroids is None else int(num_centroids)
    if finest is not None and m < finest:
        raise ValueError(
            f"num_centroids ({m}) must be at least the finest cluster count ({finest}); pass a larger "
            f"num_centroids (Ward on M centroids needs about 4*M^2 bytes) or raise max_exact"
        )
    kmeans = MiniBatchKMeans(
        n_clusters=m,
        init="k-means++" if m <= MAX_KMEANS_PLUS_PLUS else "random",
        batch_size=kmeans_batch_size,
        init_size=min(num_points, max(3 * m, 3 * kmeans_batch_size)),
        n_init=1,
        random_state=seed,
    ).fit(points.astype(np.float32))
    cell = kmeans.labels_.astype(np.int64)
    counts = np.bincount(cell, minlength=m)
    occupied = np.flatnonzero(counts)  # MiniBatchKMeans can leave a centroid without points
    if finest is not None and occupied.size < finest:
        raise ValueError(
            f"k-means left {occupied.size} non-empty cells, fewer than the {finest} clusters requested; "
            "are many points of the embeddings identical?"
        )
    remap = np.full(m, -1, dtype=np.int64)
    remap[occupied] = np.arange(occupied.size)
    cell = remap[cell]
    sums = torch.zeros(occupied.size, points.shape[1], dtype=torch.float64)
    sums = sums.index_add_(0, torch.from_numpy(cell), torch.from_numpy(points)).numpy()
    centroids = sums / counts[occupied, None]
    tree = linkage(centroids, method="ward")
    if thresholds is not None:
        tree = _size_weighted_heights(tree, counts[occupied], sums)
    return _cut(tree, n_clusters, thresholds)[:, cell]


def flat_kmeans_labels(
    embeddings: ArrayLike,
    c: CurvatureLike,
    n_clusters: int,
    *,
    max_exact: int = MAX_EXACT_POINTS,
    kmeans_batch_size: int = 4096,
    seed: int = 0,
    name: str = "embeddings",
) -> np.ndarray:
    r"""One level of k-means pseudo-labels in ``logmap0`` coordinates: the flat control for UHML.

    Minimises :math:`\sum_i \|v_i - \mu_{a(i)}\|^2` over the assignments :math:`a` and centroids
    :math:`\mu` of the tangent coordinates :math:`v_i = \log_0^c(z_i)` (the same space as
    :func:`hierarchical_labels`, so the two differ only in flat vs hierarchical clustering): Lloyd's
    k-means with k-means++ seeding (``sklearn.cluster.KMeans``, ``n_init=1``) up to ``max_exact``
    points, ``MiniBatchKMeans`` above.

    Returns:
        int64 array (1, N) of labels 0..k-1 (consecutive; empty clusters are dropped), the shape of a
        one-level :func:`hierarchical_labels` result, so :func:`~hcl_plugin.uhml.similarity_levels`
        gives :math:`s_{ij} \in \{0, 1\}`.
    Raises:
        ValueError: ``n_clusters`` not a positive integer or more than the number of points; bad
            embeddings (named by ``name``).
    """
    from sklearn.cluster import KMeans

    points = tangent_coordinates(embeddings, c, name)
    if int(n_clusters) != n_clusters or n_clusters < 1:
        raise ValueError(f"n_clusters must be a positive integer, got {n_clusters}")
    if n_clusters > points.shape[0]:
        raise ValueError(f"fewer samples ({points.shape[0]}) in {name} than clusters requested ({n_clusters})")
    if points.shape[0] <= max_exact:
        model = KMeans(n_clusters=int(n_clusters), init="k-means++", n_init=1, random_state=seed)
    else:
        model = MiniBatchKMeans(n_clusters=int(n_clusters), batch_size=kmeans_batch_size, n_init=1, random_state=seed)
    labels = model.fit(points.astype(np.float32)).labels_
    return _consecutive(labels)[None, :]


def label_change_fraction(old: np.ndarray, new: np.ndarray) -> float:
    """Fraction of samples whose new cluster is not the one most of their old cluster moved to.

    .. math:: 1 - \\frac{1}{N}\\sum_{a} \\max_b \\left|\\{i : \\text{old}_i = a,\\ \\text{new}_i = b\\}\\right|

    Cluster ids are arbitrary, so each old cluster is matched to the new cluster that holds most of
    its members; 0.0 means the same partition (up to renaming, for the old clusters' majorities),
    1.0 is returned when the shapes differ (e.g. the first clustering).
    """
    old = np.asarray(old, dtype=np.int64)
    new = np.asarray(new, dtype=np.int64)
    if old.shape != new.shape:
        return 1.0
    kept = sum(int(np.bincount(new[old == cluster]).max()) for cluster in np.unique(old))
    return 1.0 - kept / old.size
