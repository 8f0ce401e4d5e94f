"""How much a re-clustering changed the pseudo-labels (logged by the UHML re-clustering callback and hook)."""

from __future__ import annotations

import numpy as np

__all__ = ["label_change_fraction"]


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
