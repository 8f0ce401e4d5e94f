r"""Embedding norms against the number of objects in an image (HCL [1], Sec. 4.4, Fig. 3 and Fig. 4).

HCL's claim: a scene is higher in the hierarchy than its objects, so a hyperbolic embedding of an
image with more objects lies farther from the origin. The "norm" is the geodesic distance to the
origin of the Poincaré ball of curvature :math:`-c`,

.. math:: \|z\|_{\mathbb D} = d_c(0, z) = \frac{2}{\sqrt c}\operatorname{artanh}(\sqrt c\,\|z\|),

(:func:`hcl_plugin.geometry.dist0`), and the Euclidean norm :math:`\|e\|_2` of the Euclidean head's
output is reported beside it. Both are correlated (Spearman, Pearson) with the number of objects
and the number of distinct labels per image; the Fig. 3-style table groups images by that number
(mean and standard deviation of the norm per group), and Fig. 4 shows, per class, the images of
that class with the lowest and the highest norm.

[1] S. Ge, S. Mishra, S. Kornblith, C.-L. Li, D. Jacobs. "Hyperbolic Contrastive Learning for Visual
    Representations beyond Objects". CVPR 2023.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
from torch import Tensor

from hcl_plugin.eval.metrics import correlation, to_numpy
from hcl_plugin.geometry import dist0

__all__ = [
    "hyperbolic_norms",
    "euclidean_norms",
    "clipped_fraction",
    "norm_summary",
    "norms_by_count",
    "lowest_highest_per_class",
    "norm_correlations",
    "quantize_norms",
]


def hyperbolic_norms(points: Tensor, c: float) -> Tensor:
    """Distance to the origin of each row of ``points`` (in the ball of curvature ``-c``), float64."""
    return dist0(points.double(), c)


def euclidean_norms(vectors: Tensor) -> Tensor:
    """L2 norm of each row, float64."""
    return vectors.double().norm(dim=-1)


def clipped_fraction(hyperbolic_norm: Tensor, clip_r: Union[float, None], rtol: float = 1e-4) -> float:
    r"""Fraction of points at the feature-clipping limit.

    Clipping at radius :math:`r` bounds the tangent norm, and :math:`d_c(0, \exp_0^c(v)) = 2\|v\|`, so a
    clipped point has hyperbolic norm :math:`2r`. Returns 0 when ``clip_r`` is ``None``. When this is
    close to 1 every norm is the same and the norm cannot carry information (docs/background.md).
    """
    if clip_r is None or hyperbolic_norm.numel() == 0:
        return 0.0
    return float((hyperbolic_norm >= 2 * clip_r * (1 - rtol)).double().mean())


def norm_summary(norms: Tensor) -> Dict[str, float]:
    """Mean, standard deviation, min, median and max of a vector of norms."""
    x = to_numpy(norms, np.float64)
    if x.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "median": float("nan"), "max": float("nan")}
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()),
            "median": float(np.median(x)), "max": float(x.max())}


def norms_by_count(norms: Tensor, counts: Sequence[int]) -> List[Dict[str, float]]:
    """Fig. 3 table: for each distinct count (ascending), ``count``, ``n`` images, ``mean`` and ``std``
    (sample standard deviation, ddof = 1; 0 for a single image) of their norms."""
    x = to_numpy(norms, np.float64).ravel()
    k = to_numpy(counts).astype(np.int64).ravel()
    if x.shape != k.shape:
        raise ValueError(f"norms and counts must have the same length, got {x.shape[0]} and {k.shape[0]}")
    rows = []
    for value in np.unique(k):
        group = x[k == value]
        rows.append({"count": int(value), "n": int(group.size), "mean": float(group.mean()),
                     "std": float(group.std(ddof=1)) if group.size > 1 else 0.0})
    return rows


def lowest_highest_per_class(
    norms: Tensor, image_categories: Sequence[Tensor], k: int = 5
) -> Dict[int, Tuple[List[int], List[int]]]:
    """Fig. 4: per category id, the indices of the ``k`` images of that class (images holding at least
    one object of it) with the lowest norm (ascending) and the ``k`` with the highest (descending).

    Ties are broken by image index (stable sort). With fewer than ``2k`` images the lists overlap.
    """
    x = to_numpy(norms, np.float64).ravel()
    if len(image_categories) != x.size:
        raise ValueError(f"need one category set per image: {len(image_categories)} vs {x.size} norms")
    members: Dict[int, List[int]] = {}
    for index, categories in enumerate(image_categories):
        for category in sorted({int(c) for c in to_numpy(categories).ravel()}):
            members.setdefault(category, []).append(index)
    out: Dict[int, Tuple[List[int], List[int]]] = {}
    for category in sorted(members):
        idx = np.array(members[category])
        ascending = idx[np.argsort(x[idx], kind="stable")]
        descending = idx[np.argsort(-x[idx], kind="stable")]
        out[category] = (ascending[:k].tolist(), descending[:k].tolist())
    return out


def quantize_norms(norms: Tensor, resolution: float = 1e-5) -> np.ndarray:
    """Norms rounded to ``resolution`` times the largest absolute norm.

    Float32 embeddings carry about 7 significant digits, so points that sit at the same norm (e.g.
    all clipped at the same radius) differ in the last bits; compared as they are, those rounding
    differences would be ranked like real ones. Rounding makes them exact ties (average ranks in
    Spearman's rho) and a set of them constant (correlation undefined).
    """
    x = to_numpy(norms, np.float64).ravel()
    scale = float(np.abs(x).max()) if x.size else 0.0
    if scale == 0.0:
        return x
    step = resolution * scale
    return np.round(x / step) * step


def norm_correlations(norms: Tensor, num_objects: Sequence[int], num_labels: Sequence[int],
                      resolution: float = 1e-5) -> Dict[str, Dict]:
    """:func:`~hcl_plugin.eval.metrics.correlation` of the norms with ``num_objects`` and ``num_labels``.

    Spearman's rho ranks the :func:`quantize_norms` values (rounding noise ties); Pearson's r uses the
    norms as they are. Both are ``None`` when the quantised norms are constant. Each comes with its
    95 % interval (``spearman_ci``, ``pearson_ci``, :mod:`hcl_plugin.eval.metrics`).
    """
    raw = to_numpy(norms, np.float64).ravel()
    quantized = quantize_norms(norms, resolution)
    out: Dict[str, Dict] = {}
    for name, counts in (("objects", num_objects), ("labels", num_labels)):
        result = correlation(quantized, np.asarray(counts))
        if result["spearman"] is not None:
            linear = correlation(raw, np.asarray(counts))
            result.update(pearson=linear["pearson"], pearson_p=linear["pearson_p"], pearson_ci=linear["pearson_ci"])
        out[name] = result
    return out
