"""Deprecated alias of :mod:`hcl_plugin.uhml.batch_sampler`, kept for one release.

Every name still resolves here, with a :class:`DeprecationWarning` naming the new path.
"""

from hcl_plugin.utils.deprecation import moved_module

__getattr__, __dir__ = moved_module("hcl_plugin.cluster.sampler", "hcl_plugin.uhml.batch_sampler")
