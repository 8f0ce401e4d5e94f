"""Hierarchical clustering in the Poincaré ball -> multi-level pseudo-labels and similarity levels (UHML).

Framework-free: numpy, scipy, scikit-learn and torch only (``UHMLEmbedding`` imports torchvision
when it is built). Training pieces: ``BalancedBatchSampler`` (module ``batch_sampler``: P classes x M
instances per batch; ``hcl_plugin.cluster.sampler`` is its deprecated old path, kept for one release)
and ``UHMLEmbedding`` (ResNet -> linear -> learnable scale -> clipping -> expmap0).
"""

from hcl_plugin.cluster.embedding import LinearBallProjection, UHMLEmbedding, WeightsMismatchError
from hcl_plugin.cluster.hierarchical import default_num_centroids, flat_kmeans_labels, hierarchical_labels
from hcl_plugin.cluster.label_change import label_change_fraction
from hcl_plugin.cluster.batch_sampler import BalancedBatchSampler
from hcl_plugin.cluster.similarity import similarity_levels

__all__ = [
    "BalancedBatchSampler",
    "LinearBallProjection",
    "UHMLEmbedding",
    "WeightsMismatchError",
    "default_num_centroids",
    "flat_kmeans_labels",
    "hierarchical_labels",
    "label_change_fraction",
    "similarity_levels",
]
