"""Hierarchical clustering in the Poincaré ball -> multi-level pseudo-labels and similarity levels (UHML).

Framework-free: numpy, scipy, scikit-learn and torch only (``UHMLEmbedding`` imports torchvision
when it is built). Training pieces: ``BalancedBatchSampler`` (P classes x M instances per batch) and
``UHMLEmbedding`` (ResNet -> linear -> learnable scale -> clipping -> expmap0).
"""

from hcl_plugin.cluster.embedding import UHMLEmbedding, WeightsMismatchError
from hcl_plugin.cluster.hierarchical import default_num_centroids, hierarchical_labels
from hcl_plugin.cluster.sampler import BalancedBatchSampler
from hcl_plugin.cluster.similarity import similarity_levels

__all__ = [
    "BalancedBatchSampler",
    "UHMLEmbedding",
    "WeightsMismatchError",
    "default_num_centroids",
    "hierarchical_labels",
    "similarity_levels",
]
