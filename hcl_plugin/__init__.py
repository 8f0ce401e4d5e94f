"""hcl_plugin: hyperbolic representation learning as a plugin for Lightly, MMSelfSup and MMDetection.

Importing the package is cheap and framework-free: the adapters (``hcl_plugin.lightly``,
``hcl_plugin.mmselfsup``) are imported only when asked for.
"""

__version__ = "0.1.0.dev0"
