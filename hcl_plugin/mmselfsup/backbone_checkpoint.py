"""Backbone weights out of an MMSelfSup pretraining checkpoint (``tools/extract_backbone.py``).

MMSelfSup/MMEngine checkpoints hold ``state_dict`` keys like ``backbone.layer1.0.conv1.weight`` beside
the necks, heads, the momentum encoder and the queues. Detection and classification code expects the
bare backbone names (``layer1.0.conv1.weight``): the "missing keys / unexpected keys" that MMSelfSup and
MMDetection users keep reporting come from loading the whole checkpoint, or one with the prefix.
"""

from __future__ import annotations

from typing import Any, Dict

from hcl_plugin.checkpoints import BackboneNotFoundError, select_prefixed
from hcl_plugin.mmengine_support.checkpoint_loading import load_local_checkpoint

__all__ = ["extract_backbone", "BackboneNotFoundError"]


def extract_backbone(checkpoint_path: str, prefix: str = "backbone.") -> Dict[str, Any]:
    """``{'state_dict': backbone weights without prefix, 'meta': provenance}`` from a checkpoint file.

    Raises:
        FileNotFoundError: the file does not exist.
        BackboneNotFoundError: no ``state_dict`` key starts with ``prefix``.
    """
    checkpoint = load_local_checkpoint(checkpoint_path, map_location="cpu")
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise BackboneNotFoundError(f"{checkpoint_path}: no state_dict (got {type(checkpoint).__name__})")
    backbone, _ = select_prefixed(state, [prefix], checkpoint_path)
    meta = dict(checkpoint.get("meta", {}) or {}) if isinstance(checkpoint, dict) else {}
    return {
        "state_dict": backbone,
        "meta": {"source": str(checkpoint_path), "prefix": prefix, "iter": meta.get("iter"), "epoch": meta.get("epoch"),
                 "experiment_name": meta.get("experiment_name")},
    }
