r"""Scalar metrics of the analysis, on top of scikit-learn and SciPy.

Every function takes array-likes (numpy arrays, torch tensors, lists) and returns a Python ``float``,
or ``None`` where the metric is undefined on the input (one class only, constant input, < 2 samples):
an undefined metric is reported as missing, never as a made-up number.

* AUROC [1]: the probability that a random positive scores above a random negative (ties count 1/2),
  :math:`\mathrm{AUROC} = \frac{1}{|P||N|}\sum_{p\in P}\sum_{n\in N}\big(\mathbb 1[s_p > s_n] + \tfrac12\mathbb 1[s_p = s_n]\big)`
  (``sklearn.metrics.roc_auc_score``).
* Average precision [2]: :math:`\mathrm{AP} = \sum_k (R_k - R_{k-1}) P_k` over the thresholds in
  decreasing score order — the mean of the precisions at the ranks of the positives, without
  interpolation (``sklearn.metrics.average_precision_score``).
* Multi-label mAP: the mean over classes of the per-class AP, over classes with at least one positive
  in the evaluation set (the usual VOC/COCO multi-label convention; classes without positives have no
  defined AP).
* Spearman's :math:`\rho` (Pearson correlation of the ranks, ties get average ranks) and Pearson's
  :math:`r` (``scipy.stats.spearmanr`` / ``pearsonr``).

[1] T. Fawcett. "An introduction to ROC analysis". Pattern Recognition Letters 27, 2006.
[2] scikit-learn user guide, "Precision, recall and F-measures" (average precision).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

import numpy as np

__all__ = [
    "auroc",
    "average_precision",
    "mean_average_precision",
    "spearman",
    "pearson",
    "correlation",
    "top1_accuracy",
    "to_numpy",
]

ArrayLike = Union[np.ndarray, "object"]


def to_numpy(values: ArrayLike, dtype: Optional[type] = None) -> np.ndarray:
    """A numpy copy of a tensor / array / list (detached, on the CPU)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    return array.astype(dtype) if dtype is not None else array


def _binary_inputs(labels: ArrayLike, scores: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
    y = to_numpy(labels).astype(bool).ravel()
    s = to_numpy(scores, np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores must have the same length, got {y.shape[0]} and {s.shape[0]}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} non-finite value(s)")
    return y, s


def auroc(labels: ArrayLike, scores: ArrayLike) -> Optional[float]:
    """Area under the ROC curve of ``scores`` for binary ``labels``; ``None`` without both classes."""
    from sklearn.metrics import roc_auc_score

    y, s = _binary_inputs(labels, scores)
    if y.all() or not y.any():
        return None
    return float(roc_auc_score(y, s))


def average_precision(labels: ArrayLike, scores: ArrayLike) -> Optional[float]:
    """Average precision of ``scores`` for binary ``labels``; ``None`` when there is no positive."""
    from sklearn.metrics import average_precision_score

    y, s = _binary_inputs(labels, scores)
    if not y.any():
        return None
    return float(average_precision_score(y, s))


def mean_average_precision(targets: ArrayLike, scores: ArrayLike) -> Tuple[Optional[float], np.ndarray]:
    """Multi-label mAP of ``scores`` (N, C) against binary ``targets`` (N, C).

    Returns:
        ``(mAP over the classes with a positive, per-class AP with NaN for classes without one)``;
        the mAP is ``None`` when no class has a positive.
    """
    y = to_numpy(targets).astype(bool)
    s = to_numpy(scores, np.float64)
    if y.ndim != 2 or y.shape != s.shape:
        raise ValueError(f"targets and scores must both be (N, C), got {y.shape} and {s.shape}")
    per_class = np.full(y.shape[1], np.nan)
    for k in range(y.shape[1]):
        ap = average_precision(y[:, k], s[:, k])
        if ap is not None:
            per_class[k] = ap
    defined = ~np.isnan(per_class)
    return (float(per_class[defined].mean()) if defined.any() else None), per_class


def _correlation_inputs(x: ArrayLike, y: ArrayLike) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    a, b = to_numpy(x, np.float64).ravel(), to_numpy(y, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"x and y must have the same length, got {a.shape[0]} and {b.shape[0]}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("x and y must be finite")
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return a, b


def spearman(x: ArrayLike, y: ArrayLike) -> Optional[float]:
    """Spearman's rank correlation; ``None`` for fewer than 2 samples or a constant input."""
    from scipy.stats import spearmanr

    pair = _correlation_inputs(x, y)
    return None if pair is None else float(spearmanr(*pair).statistic)


def pearson(x: ArrayLike, y: ArrayLike) -> Optional[float]:
    """Pearson's correlation coefficient; ``None`` for fewer than 2 samples or a constant input."""
    from scipy.stats import pearsonr

    pair = _correlation_inputs(x, y)
    return None if pair is None else float(pearsonr(*pair).statistic)


def correlation(x: ArrayLike, y: ArrayLike) -> Dict[str, Optional[float]]:
    """Spearman and Pearson coefficients with their two-sided p-values and ``n``."""
    from scipy.stats import pearsonr, spearmanr

    pair = _correlation_inputs(x, y)
    n = int(to_numpy(x).size)
    if pair is None:
        return {"spearman": None, "spearman_p": None, "pearson": None, "pearson_p": None, "n": n}
    rho, r = spearmanr(*pair), pearsonr(*pair)
    return {"spearman": float(rho.statistic), "spearman_p": float(rho.pvalue),
            "pearson": float(r.statistic), "pearson_p": float(r.pvalue), "n": n}


def top1_accuracy(predictions: ArrayLike, targets: ArrayLike) -> Optional[float]:
    """Fraction of ``predictions`` equal to ``targets``; ``None`` when empty."""
    p, t = to_numpy(predictions).ravel(), to_numpy(targets).ravel()
    if p.shape != t.shape:
        raise ValueError(f"predictions and targets must have the same length, got {p.shape[0]} and {t.shape[0]}")
    return float((p == t).mean()) if p.size else None
