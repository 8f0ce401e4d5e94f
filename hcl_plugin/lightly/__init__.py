"""Lightly adapters: losses, heads, transforms and data in Lightly's conventions.

Imports ``lightly``/``pytorch_lightning`` only where needed (``training``); the losses and heads are
thin wrappers over the framework-free core.

    >>> from hcl_plugin.lightly import HCLLoss, HyperbolicNTXentLoss, PoincareProjectionHead, HCLTransform
"""

from hcl_plugin.lightly.data import ensure_embedded_dataset, read_scenes, scene_dataset
from hcl_plugin.lightly.hcl_loss import HCLLoss
from hcl_plugin.lightly.heads import PoincareProjectionHead
from hcl_plugin.lightly.hyperbolic_ntx_ent_loss import HyperbolicNTXentLoss
from hcl_plugin.lightly.transforms import HCLTransform

__all__ = [
    "HCLLoss",
    "HCLTransform",
    "HyperbolicNTXentLoss",
    "PoincareProjectionHead",
    "ensure_embedded_dataset",
    "read_scenes",
    "scene_dataset",
]
