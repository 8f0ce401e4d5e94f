"""Deprecated alias of :mod:`hcl_plugin.uhml.image_folder`, kept for one release.

Every name still resolves here, with a :class:`DeprecationWarning` naming the new path.
(:class:`~hcl_plugin.uhml.image_folder.RetrievalImageFolder`, ``ImageReadError`` and ``class_range``
stay importable from :mod:`hcl_plugin.eval` without a warning.)
"""

from hcl_plugin.utils.deprecation import moved_module

__getattr__, __dir__ = moved_module("hcl_plugin.eval.image_folder", "hcl_plugin.uhml.image_folder")
