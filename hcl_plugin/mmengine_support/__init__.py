"""What every MMEngine-based adapter (``hcl_plugin.mmselfsup``, ``hcl_plugin.mmdet``) shares; imports
MMEngine only, so a detection-only run does not import MMSelfSup.

- :mod:`~hcl_plugin.mmengine_support.checkpoint_loading`: MMEngine's local checkpoint loading under
  torch >= 2.6 with an allowlist (``install()``).
"""
