"""Hierarchical clustering in the Poincaré ball -> multi-level pseudo-labels and similarity levels (UHML).

Framework-free: numpy, scipy, scikit-learn and torch only.
"""

from hcl_plugin.cluster.hierarchical import default_num_centroids, hierarchical_labels
from hcl_plugin.cluster.similarity import similarity_levels

__all__ = ["default_num_centroids", "hierarchical_labels", "similarity_levels"]
