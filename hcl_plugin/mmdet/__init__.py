"""MMDetection transfer of HCL-pretrained backbones (registered on import).

Load from a detection config with::

    custom_imports = dict(imports=['hcl_plugin.mmdet'], allow_failed_imports=False)

Registered in MMDetection's registries (``default_scope='mmdet'``):

- ``HOOKS``: ``PretrainedKeysCheckHook`` — stops a training run at start when the backbone checkpoint
  of ``init_cfg=dict(type='Pretrained', ...)`` is missing or its keys do not match the backbone
  (MMEngine itself only warns and trains from random weights).

Importing this package also

- installs hcl_plugin's allowlisted ``weights_only`` loader for local checkpoints into MMEngine's
  ``CheckpointLoader`` (:mod:`hcl_plugin.mmengine_support.checkpoint_loading`), so ``Pretrained`` init,
  ``load_from`` and ``resume`` work under torch >= 2.6;
- registers MMSelfSup's ``ResLayerExtraNorm`` (the C4 RoI head of MMSelfSup's benchmark configs).

The key comparison itself is framework-free: :func:`hcl_plugin.mmdet.pretrained_keys.check_pretrained_keys`.
Configs: ``mmconfigs/mmdet/`` (docs/mmdet.md).
"""

from hcl_plugin.mmdet.pretrained_keys import (
    KeyReport,
    PretrainedKeysError,
    check_pretrained_keys,
    compare_keys,
    prefix_hint,
)
from hcl_plugin.mmengine_support import checkpoint_loading as _checkpoint_loading
from hcl_plugin.mmdet.hooks import PretrainedKeysCheckHook

_checkpoint_loading.install()

try:  # registers ResLayerExtraNorm into MMDetection's MODELS (needs mmcv.ops, like every mmdet model)
    import mmselfsup.models.utils.res_layer_extra_norm  # noqa: F401
except ImportError:  # pragma: no cover - mmcv without ops: the model configs fail at build with mmcv's own error
    pass

__all__ = [
    "PretrainedKeysCheckHook",
    "PretrainedKeysError",
    "KeyReport",
    "check_pretrained_keys",
    "compare_keys",
    "prefix_hint",
]
