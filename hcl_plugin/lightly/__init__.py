"""Lightly adapters: losses, heads, transforms and data in Lightly's conventions.

The losses are the framework-free core losses plus Lightly-style memory banks; the heads are the core
heads (``PoincareProjectionHead``, a separate head, and ``BallMap``, the map of a shared projection
head's raw output onto the ball; docs/hcl_options.md). ``hcl_plugin.lightly.models`` (the Lightning
models ``MoCoHCL``, ``DenseCLHCL``, ``SimCLRHCL``), ``hcl_plugin.lightly.training``, and for UHML ``hcl_plugin.lightly.uhml_model`` (``UHML``),
``hcl_plugin.lightly.uhml_training`` (data, Recall@K, command line) and
``hcl_plugin.lightly.uhml_recluster`` (``ReclusterCallback``) import ``lightly``/``pytorch_lightning``;
this package does not.

    >>> from hcl_plugin.lightly import HCLLoss, HyperbolicNTXentLoss, PoincareProjectionHead, HCLTransform
    >>> from hcl_plugin.lightly.models import MoCoHCL  # doctest: +SKIP
"""

from hcl_plugin.lightly.data import ensure_embedded_dataset, read_scenes, scene_dataset
from hcl_plugin.lightly.hcl_loss import HCLLoss
from hcl_plugin.lightly.heads import PoincareProjectionHead
from hcl_plugin.lightly.hyperbolic_ntx_ent_loss import HyperbolicNTXentLoss
from hcl_plugin.lightly.transforms import HCLTransform
from hcl_plugin.modules import BallMap

__all__ = [
    "BallMap",
    "HCLLoss",
    "HCLTransform",
    "HyperbolicNTXentLoss",
    "PoincareProjectionHead",
    "ensure_embedded_dataset",
    "read_scenes",
    "scene_dataset",
]
