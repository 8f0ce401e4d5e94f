"""Deprecated: UHML's clustering, similarity levels, batch sampler and embedding moved to :mod:`hcl_plugin.uhml`.

Kept for one release. The package's names (``from hcl_plugin.cluster import hierarchical_labels``)
resolve to the objects of :mod:`hcl_plugin.uhml` with a :class:`DeprecationWarning`; the submodules
are deprecated aliases of the new modules:

=====================================  ==================================
old                                    new
=====================================  ==================================
``hcl_plugin.cluster.hierarchical``    ``hcl_plugin.uhml.clustering``
``hcl_plugin.cluster.label_change``    ``hcl_plugin.uhml.clustering``
``hcl_plugin.cluster.similarity``      ``hcl_plugin.uhml.similarity``
``hcl_plugin.cluster.batch_sampler``   ``hcl_plugin.uhml.batch_sampler``
``hcl_plugin.cluster.sampler``         ``hcl_plugin.uhml.batch_sampler``
``hcl_plugin.cluster.embedding``       ``hcl_plugin.uhml.embedding``
=====================================  ==================================
"""

import importlib as _importlib
import warnings as _warnings

from hcl_plugin.utils.deprecation import moved_module_message as _message

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


def __getattr__(name: str):
    # only the package's own names: a submodule name must fall through to the import system
    if name not in __all__:
        raise AttributeError(f"module 'hcl_plugin.cluster' has no attribute {name!r}")
    _warnings.warn(_message("hcl_plugin.cluster", "hcl_plugin.uhml"), DeprecationWarning, stacklevel=2)
    return getattr(_importlib.import_module("hcl_plugin.uhml"), name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
