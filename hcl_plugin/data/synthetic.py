"""Deprecated alias of :mod:`hcl_plugin.data.embedded.scenes`, kept for one release.

Every name still resolves here, with a :class:`DeprecationWarning` naming the new path.
"""

from hcl_plugin.utils.deprecation import moved_module

__getattr__, __dir__ = moved_module("hcl_plugin.data.synthetic", "hcl_plugin.data.embedded.scenes")

if __name__ == "__main__":
    import sys
    import warnings

    from hcl_plugin.utils.deprecation import moved_module_message

    message = moved_module_message("python -m hcl_plugin.data.synthetic", "python -m hcl_plugin.data.embedded.scenes")
    warnings.warn(message, DeprecationWarning, stacklevel=1)
    from hcl_plugin.data.embedded.scenes import main

    sys.exit(main())
