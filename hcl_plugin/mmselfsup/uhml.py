"""Deprecated: the UHML components of MMSelfSup moved to modules by kind; kept for one release.

- ``UHML``, ``UHMLNeck`` -> :mod:`hcl_plugin.mmselfsup.uhml_model`;
- ``UHMLImageFolder``, ``detect_layout`` -> :mod:`hcl_plugin.mmselfsup.datasets`;
- ``UHMLBalancedBatchSampler`` -> :mod:`hcl_plugin.mmselfsup.samplers`;
- ``UHMLReclusterHook``, ``embed_with_model`` -> :mod:`hcl_plugin.mmselfsup.hooks`;
- ``label_change_fraction`` -> :mod:`hcl_plugin.uhml.clustering`.

Every name still resolves here, with a :class:`DeprecationWarning` naming its new module. Importing
this module still registers everything (``custom_imports=dict(imports=['hcl_plugin.mmselfsup'])``
is enough: the package registers every component, the registry names are unchanged).
"""

import importlib as _importlib
import warnings as _warnings

from hcl_plugin.utils.deprecation import moved_module_message as _message

_NEW_HOMES = {
    "UHML": "hcl_plugin.mmselfsup.uhml_model",
    "UHMLNeck": "hcl_plugin.mmselfsup.uhml_model",
    "UHMLImageFolder": "hcl_plugin.mmselfsup.datasets",
    "detect_layout": "hcl_plugin.mmselfsup.datasets",
    "UHMLBalancedBatchSampler": "hcl_plugin.mmselfsup.samplers",
    "UHMLReclusterHook": "hcl_plugin.mmselfsup.hooks",
    "embed_with_model": "hcl_plugin.mmselfsup.hooks",
    "label_change_fraction": "hcl_plugin.uhml.clustering",
}

__all__ = sorted(_NEW_HOMES)


def __getattr__(name: str):
    new = _NEW_HOMES.get(name)
    if new is None:
        raise AttributeError(f"module 'hcl_plugin.mmselfsup.uhml' has no attribute {name!r}")
    _warnings.warn(_message("hcl_plugin.mmselfsup.uhml", new), DeprecationWarning, stacklevel=2)
    return getattr(_importlib.import_module(new), name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
