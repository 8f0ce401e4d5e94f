r"""Similarity levels :math:`s_{ij}` from multi-level cluster labels (UHML, Yan et al. CVPR 2021).

With K label levels ordered fine -> coarse (level 0 the finest),

.. math:: s_{ij} = K - k_{ij}, \qquad k_{ij} = \min\{k : y^{(k)}_i = y^{(k)}_j\},

and :math:`s_{ij} = 0` when i and j share no cluster at any level. Larger means more similar:
:math:`s_{ii} = K`, a pair in the same finest cluster has K, a pair that first meets at the coarsest
level has 1. This is the paper's "level at which i and j are first grouped" [1] written so
that the loss's target :math:`\Omega^{s_{ij} - s_{il}}` (:class:`~hcl_plugin.losses.HierarchicalLogRatioLoss`)
shrinks the distance of the more similar pair. (The released code encodes the same information as
a list of per-level masks built in its loss; its K = 3 branch mislabels the third level.)

The result is (N, N): call it on the labels of a batch, not of a whole data set.

[1] J. Yan, L. Luo, C. Deng, H. Huang. "Unsupervised Hyperbolic Metric Learning". CVPR 2021.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["similarity_levels"]

LabelsLike = Union[Tensor, np.ndarray, Sequence[Sequence[int]]]


def similarity_levels(labels: LabelsLike) -> Union[Tensor, np.ndarray]:
    r"""The (N, N) integer matrix :math:`s_{ij} = K - k_{ij}` (0 if never in one cluster).

    Args:
        labels: (K, N) integer labels, one row per level, fine -> coarse (as returned by
            :func:`~hcl_plugin.uhml.hierarchical_labels`, or a batch's columns of it); a torch
            tensor, a numpy array or a list of K label sequences. Levels need not be nested: the
            first (finest) shared level counts.
    Returns:
        int64 (N, N) matrix, symmetric, diagonal K; a torch tensor (on the input's device) when
        ``labels`` is a tensor, else a numpy array.
    Raises:
        ValueError: ``labels`` not 2-D, empty, or not integer.
    """
    as_tensor = isinstance(labels, Tensor)
    levels = labels if as_tensor else torch.as_tensor(np.asarray(labels))
    if levels.dim() != 2 or levels.shape[0] == 0:
        raise ValueError(f"labels must have shape (K, N) with K >= 1 levels, got {tuple(levels.shape)}")
    if levels.is_floating_point() or levels.is_complex() or levels.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got {levels.dtype}")
    num_levels, n = levels.shape
    similarity = torch.zeros(n, n, dtype=torch.int64, device=levels.device)
    for k in range(num_levels - 1, -1, -1):  # coarse -> fine: a finer shared level overwrites
        row = levels[k]
        similarity[row[:, None] == row[None, :]] = num_levels - k
    return similarity if as_tensor else similarity.numpy()
