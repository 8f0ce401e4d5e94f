"""Read MMSelfSup (MMEngine) checkpoints of ``HCLMoCoV2`` / ``HCLDenseCL`` / ``MoCo`` / ``DenseCL`` for
:mod:`hcl_plugin.eval` (``tools/analyze.py``), by a :class:`~hcl_plugin.eval.checkpoint.CheckpointAdapter`.

MMEngine saves ``{"meta": {"cfg": <config text>, ...}, "state_dict": ..., "message_hub": ...}``. The
adapter renames the keys into the evaluation contract and reads the hyper-parameters from the
config text stored in the checkpoint, parsed as literals (:func:`hcl_plugin.checkpoints.parse_config_text`),
never executed: a file whose text holds anything else is refused.

* ``backbone.*`` stays (MMCls' ResNet uses torchvision's parameter names);
* ``neck.mlp.{0,2}.*`` (``MoCoV2Neck`` / ``DenseCLNeck`` global branch) -> ``projection_head.layers.{0,2}.*``;
* ``hyp_neck.head.*`` (``PoincareNeck``; a shared head's ``BallMapNeck``: only ``log_scale``, when a
  scale is set) -> ``hyperbolic_head.*``;
* ``hyperbolic_head`` (``"separate"`` / ``"shared"``) from ``model.hyperbolic_head`` (absent:
  ``"separate"``): a shared head is rebuilt as a ``BallMap`` of ``projection_head``'s output, with the
  projection neck's sizes as ``hyp_hidden_dim`` / ``hyp_output_dim``; ``riemannian_grad`` and
  ``decoupled`` (training-only) are kept as metadata;
* ``backbone = resnet<depth>``, the heads' widths, ``c``, ``clip_r``, ``feature_scale``,
  ``learn_scale`` from ``model``, ``image_size`` from the object views' ``RandomResizedCrop``; ``c`` from
  ``model.curvature`` (a number or ``dict(c=...)``; a learnable one is read from ``curvature.log_c``
  in the state dict), or from ``model.hyp_neck.c`` in configs written before ``model.curvature``.

The adapter also brings the stand-ins of MMEngine's message-hub types
(:func:`hcl_plugin.mmengine_support.checkpoint_loading.mmengine_stand_ins`: ``HistoryBuffer`` rebuilt from
its data, a restricted getattr), so these checkpoints load without ``--trust-checkpoint``.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import torch
from mmengine.config import ConfigDict

from hcl_plugin.checkpoints import UnsafeConfigTextError, parse_config_text
from hcl_plugin.eval.checkpoint import CheckpointAdapter, CheckpointFormatError, register_checkpoint_adapter
from hcl_plugin.mmengine_support.checkpoint_loading import mmengine_stand_ins

__all__ = ["MMSelfSupCheckpointAdapter", "register"]

_RENAMES = (("neck.mlp.", "projection_head.layers."), ("hyp_neck.head.", "hyperbolic_head."))


def _matches(checkpoint: Mapping[str, Any]) -> bool:
    meta, state = checkpoint.get("meta"), checkpoint.get("state_dict")
    return (isinstance(meta, Mapping) and isinstance(meta.get("cfg"), str) and isinstance(state, Mapping)
            and any(k.startswith("backbone.") for k in state) and any(k.startswith("neck.mlp.") for k in state))


def _image_size(cfg: ConfigDict) -> int:
    for step in cfg.get("train_dataloader", {}).get("dataset", {}).get("pipeline", []):
        if step.get("type") == "SceneObjectMultiView":
            for view in step.get("object_transforms", []):
                if view.get("type") == "RandomResizedCrop":
                    size = view["size"]
                    return int(size if isinstance(size, int) else size[0])
    return 224


def _curvature(model: ConfigDict, state: Mapping[str, Any]) -> float:
    """The curvature ``c`` of an HCL checkpoint: learned (``curvature.log_c``) or configured, else 0.05."""
    spec = model.get("curvature", model.get("hyp_neck", {}).get("c", 0.05))
    spec = spec if isinstance(spec, Mapping) else {"c": spec}
    if "curvature.log_c" in state:
        learned = float(torch.as_tensor(state["curvature.log_c"]).exp())
        return min(max(learned, spec.get("min_c", 1e-4)), spec.get("max_c", 1e4))  # Curvature's clamp
    return float(spec.get("c", 0.05))


def _convert(checkpoint: Mapping[str, Any]) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    try:
        cfg = ConfigDict(parse_config_text(checkpoint["meta"]["cfg"]))
    except UnsafeConfigTextError as error:
        raise CheckpointFormatError(f"meta['cfg'] is refused (nothing from it was run): {error}") from None
    if not isinstance(cfg.get("model"), dict):
        raise CheckpointFormatError("meta['cfg'] has no model = dict(...)")
    model = cfg.model
    state: Dict[str, torch.Tensor] = {}
    for key, value in checkpoint["state_dict"].items():
        if key.startswith("backbone."):
            state[key] = value
        for old, new in _RENAMES:
            if key.startswith(old):
                state[new + key[len(old):]] = value
    hp: Dict[str, Any] = {
        "backbone": f"resnet{model.backbone.depth}",
        "proj_hidden_dim": model.neck.hid_channels,
        "proj_output_dim": model.neck.out_channels,
        "image_size": _image_size(cfg),
        "c": 0.05,
        "mmselfsup_type": model.type,
    }
    if "hyp_neck" in model:
        neck = model.hyp_neck
        kind = model.get("hyperbolic_head", "separate")
        if kind == "shared":  # a BallMap of the projection neck's output: the sizes are the neck's
            sizes = dict(hyp_hidden_dim=model.neck.hid_channels, hyp_output_dim=model.neck.out_channels)
        else:
            sizes = dict(hyp_hidden_dim=neck.hid_channels, hyp_output_dim=neck.out_channels)
        hp.update(sizes, hyperbolic_head=kind,
                  c=_curvature(model, checkpoint["state_dict"]), clip_r=neck.get("clip_r"),
                  feature_scale=neck.get("feature_scale"), learn_scale=neck.get("learn_scale", False),
                  lambda_hyp=model.get("lambda_hyp", model.get("hyp_lambda")),
                  riemannian_grad=bool(neck.get("riemannian_grad", False)),  # training-only (metadata)
                  decoupled=bool(neck.get("decoupled", False)))
    return state, hp


#: MMSelfSup / MMEngine checkpoints (``tools/train.py`` output).
MMSelfSupCheckpointAdapter = CheckpointAdapter("mmselfsup", _matches, _convert, stand_ins=mmengine_stand_ins())

_registered = False


def register() -> None:
    """Register the adapter (first in line), with the message-hub globals for ``weights_only`` loading."""
    global _registered
    if not _registered:
        register_checkpoint_adapter(MMSelfSupCheckpointAdapter, first=True)
        _registered = True
