"""Deprecated alias of :mod:`hcl_plugin.uhml.embedding`, kept for one release.

Every name still resolves here, with a :class:`DeprecationWarning` naming the new path. ``build_resnet``
(deprecated before the move) is :func:`hcl_plugin.checkpoints.build_resnet`, with its own warning.
"""

import warnings as _warnings

from hcl_plugin.utils.deprecation import moved_module

__getattr__, __dir__ = moved_module("hcl_plugin.cluster.embedding", "hcl_plugin.uhml.embedding")


def build_resnet(name: str):
    """Deprecated alias of :func:`hcl_plugin.checkpoints.build_resnet` (kept for one release)."""
    from hcl_plugin.checkpoints import build_resnet as _build_resnet

    _warnings.warn("hcl_plugin.cluster.embedding.build_resnet moved to hcl_plugin.checkpoints.build_resnet",
                   DeprecationWarning, stacklevel=2)
    return _build_resnet(name)
