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

95 % intervals (:data:`CONFIDENCE`):

* Spearman's :math:`\rho`: Fisher's :math:`z = \operatorname{artanh}\rho` with the Bonett–Wright [3]
  standard error :math:`\sqrt{(1 + \rho^2/2)/(n - 3)}`, mapped back with :math:`\tanh`
  (:func:`spearman_interval`). The standard error of :math:`\rho` itself (delta method,
  :func:`spearman_standard_error`) is at most :math:`1/\sqrt{n - 3}` (at :math:`\rho = 0`): 0.071
  at 200 images, 0.029 at 1,200 (a 95 % interval of about ±0.06).
* Pearson's :math:`r`: Fisher's :math:`z` with standard error :math:`1/\sqrt{n - 3}`
  (``scipy.stats.pearsonr(...).confidence_interval``).
* AUROC: DeLong's [4] variance (the structural components: for each positive the fraction of
  negatives it outscores, for each negative the fraction of positives that outscore it, ties 1/2;
  computed from mid-ranks as in Sun & Xu [5]), normal interval clipped to [0, 1] (:func:`auroc_interval`).

All intervals are ``None`` where they are undefined (the statistic is undefined, :math:`n < 4`, or
fewer than two positives or negatives for the AUROC).

[1] T. Fawcett. "An introduction to ROC analysis". Pattern Recognition Letters 27, 2006.
[2] scikit-learn user guide, "Precision, recall and F-measures" (average precision).
[3] D. G. Bonett, T. A. Wright. "Sample size requirements for estimating Pearson, Kendall and Spearman
    correlations". Psychometrika 65, 2000.
[4] E. R. DeLong, D. M. DeLong, D. L. Clarke-Pearson. "Comparing the areas under two or more correlated
    receiver operating characteristic curves: a nonparametric approach". Biometrics 44, 1988.
[5] X. Sun, W. Xu. "Fast implementation of DeLong's algorithm for comparing the areas under correlated
    receiver operating characteristic curves". IEEE Signal Processing Letters 21, 2014.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

import numpy as np

__all__ = [
    "CONFIDENCE",
    "auroc",
    "auroc_interval",
    "delong_auroc",
    "average_precision",
    "mean_average_precision",
    "spearman",
    "spearman_interval",
    "spearman_standard_error",
    "pearson",
    "correlation",
    "top1_accuracy",
    "to_numpy",
]

ArrayLike = Union[np.ndarray, "object"]
Interval = Optional[Tuple[float, float]]

#: Confidence level of every interval the analysis reports.
CONFIDENCE = 0.95


def _normal_quantile(confidence: float) -> float:
    from scipy.stats import norm

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(norm.ppf(0.5 + confidence / 2))


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


def delong_auroc(labels: ArrayLike, scores: ArrayLike) -> Optional[Tuple[float, float]]:
    """``(AUROC, DeLong standard error)``; ``None`` with fewer than two positives or two negatives."""
    from scipy.stats import rankdata

    y, s = _binary_inputs(labels, scores)
    positives, negatives = s[y], s[~y]
    m, n = positives.size, negatives.size
    if m < 2 or n < 2:
        return None
    ranks = rankdata(np.concatenate([positives, negatives]))  # mid-ranks: ties count 1/2
    # per positive: fraction of negatives below it; per negative: fraction of positives above it
    v10 = (ranks[:m] - rankdata(positives)) / n
    v01 = 1.0 - (ranks[m:] - rankdata(negatives)) / m
    variance = v10.var(ddof=1) / m + v01.var(ddof=1) / n
    return float(v10.mean()), float(np.sqrt(max(variance, 0.0)))


def auroc_interval(labels: ArrayLike, scores: ArrayLike, confidence: float = CONFIDENCE) -> Interval:
    """Normal interval ``AUROC ± z·SE`` with DeLong's standard error, clipped to [0, 1]; ``None`` when
    undefined (fewer than two positives or two negatives)."""
    z = _normal_quantile(confidence)
    result = delong_auroc(labels, scores)
    if result is None:
        return None
    value, se = result
    return max(0.0, value - z * se), min(1.0, value + z * se)


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


def spearman_standard_error(rho: float, n: int) -> Optional[float]:
    """Approximate standard error of Spearman's rho: ``(1 - rho²)·sqrt((1 + rho²/2)/(n - 3))`` (the
    Bonett–Wright standard error of Fisher's z, delta method); ``None`` for ``n < 4``."""
    if rho is None or n < 4:
        return None
    return float((1 - rho * rho) * np.sqrt((1 + rho * rho / 2) / (n - 3)))


def spearman_interval(rho: Optional[float], n: int, confidence: float = CONFIDENCE) -> Interval:
    """Fisher-z interval of Spearman's rho with the Bonett–Wright standard error; ``None`` when
    ``rho`` is ``None`` or ``n < 4``."""
    z = _normal_quantile(confidence)
    if rho is None or n < 4:
        return None
    centre = np.arctanh(np.clip(rho, -1 + 1e-12, 1 - 1e-12))
    half = z * np.sqrt((1 + rho * rho / 2) / (n - 3))
    return float(np.tanh(centre - half)), float(np.tanh(centre + half))


def pearson(x: ArrayLike, y: ArrayLike) -> Optional[float]:
    """Pearson's correlation coefficient; ``None`` for fewer than 2 samples or a constant input."""
    from scipy.stats import pearsonr

    pair = _correlation_inputs(x, y)
    return None if pair is None else float(pearsonr(*pair).statistic)


def _pearson_interval(result, n: int, confidence: float) -> Interval:
    if n < 4:
        return None
    interval = result.confidence_interval(confidence_level=confidence)
    low, high = float(interval.low), float(interval.high)
    return (low, high) if np.isfinite(low) and np.isfinite(high) else None


def correlation(x: ArrayLike, y: ArrayLike, confidence: float = CONFIDENCE) -> Dict[str, object]:
    """Spearman and Pearson coefficients with their two-sided p-values, ``confidence`` intervals
    (``spearman_ci``, ``pearson_ci``: ``(low, high)`` or ``None``) and ``n``."""
    from scipy.stats import pearsonr, spearmanr

    pair = _correlation_inputs(x, y)
    n = int(to_numpy(x).size)
    if pair is None:
        return {"spearman": None, "spearman_p": None, "spearman_ci": None,
                "pearson": None, "pearson_p": None, "pearson_ci": None, "n": n}
    rho, r = spearmanr(*pair), pearsonr(*pair)
    return {"spearman": float(rho.statistic), "spearman_p": float(rho.pvalue),
            "spearman_ci": spearman_interval(float(rho.statistic), n, confidence),
            "pearson": float(r.statistic), "pearson_p": float(r.pvalue),
            "pearson_ci": _pearson_interval(r, n, confidence), "n": n}


def top1_accuracy(predictions: ArrayLike, targets: ArrayLike) -> Optional[float]:
    """Fraction of ``predictions`` equal to ``targets``; ``None`` when empty."""
    p, t = to_numpy(predictions).ravel(), to_numpy(targets).ravel()
    if p.shape != t.shape:
        raise ValueError(f"predictions and targets must have the same length, got {p.shape[0]} and {t.shape[0]}")
    return float((p == t).mean()) if p.size else None
