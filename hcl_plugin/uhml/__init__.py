"""UHML (Unsupervised Hyperbolic Metric Learning, Yan et al. CVPR 2021), framework-free.

numpy, scipy, scikit-learn, torch and PIL only (``UHMLEmbedding`` imports torchvision when it is
built); no training framework is imported. Modules:

- :mod:`~hcl_plugin.uhml.clustering`: multi-level pseudo-labels in the Poincaré ball
  (``hierarchical_labels``: Ward in ``logmap0`` coordinates; ``flat_kmeans_labels``: the flat
  control) and ``label_change_fraction``;
- :mod:`~hcl_plugin.uhml.similarity`: similarity levels :math:`s_{ij}` from the labels;
- :mod:`~hcl_plugin.uhml.batch_sampler`: ``BalancedBatchSampler``, P classes x M instances per batch;
- :mod:`~hcl_plugin.uhml.embedding`: ``LinearBallProjection`` and ``UHMLEmbedding`` (ResNet -> linear
  -> learnable scale -> clipping -> expmap0), strict weight loading;
- :mod:`~hcl_plugin.uhml.image_folder`: ``RetrievalImageFolder`` (class-halves split of an image tree);
- :mod:`~hcl_plugin.uhml.recluster`: ``recluster(...)``, one re-clustering step (embed, cluster,
  compare), shared by the PyTorch Lightning callback (:mod:`hcl_plugin.lightly.uhml_recluster`) and
  the MMEngine hook (:mod:`hcl_plugin.mmselfsup.hooks`).

The loss is :class:`hcl_plugin.losses.HierarchicalLogRatioLoss`; Recall@K is
:func:`hcl_plugin.eval.recall_at_k`. (``hcl_plugin.uhml.recluster`` is the module; the function is
``hcl_plugin.uhml.recluster.recluster``.)
"""

from hcl_plugin.uhml.batch_sampler import BalancedBatchSampler
from hcl_plugin.uhml.clustering import (default_num_centroids, flat_kmeans_labels, hierarchical_labels,
                                        label_change_fraction)
from hcl_plugin.uhml.embedding import LinearBallProjection, UHMLEmbedding, WeightsMismatchError
from hcl_plugin.uhml.image_folder import ImageReadError, RetrievalImageFolder, class_range, detect_layout
from hcl_plugin.uhml.recluster import ReclusterResult, cluster_labels, embed_dataset
from hcl_plugin.uhml.similarity import similarity_levels

__all__ = [
    "BalancedBatchSampler",
    "ImageReadError",
    "LinearBallProjection",
    "ReclusterResult",
    "RetrievalImageFolder",
    "UHMLEmbedding",
    "WeightsMismatchError",
    "class_range",
    "cluster_labels",
    "default_num_centroids",
    "detect_layout",
    "embed_dataset",
    "flat_kmeans_labels",
    "hierarchical_labels",
    "label_change_fraction",
    "similarity_levels",
]
