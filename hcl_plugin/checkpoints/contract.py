"""The checkpoint hyper-parameter contract: the one definition of what a trained model is built from.

Every checkpoint the project writes or reads for analysis carries these flat ``hyper_parameters``
(docs/eval.md): the Lightly examples write them (:func:`hcl_plugin.lightly.training.head_hparams`),
the MMSelfSup analysis adapter derives them from the stored config, and
:func:`hcl_plugin.eval.checkpoint.build_model` builds the model from them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Mapping, Optional, Tuple

from hcl_plugin.checkpoints.backbones import check_stem

__all__ = ["EUCLIDEAN_HEAD_KEYS", "HYPERBOLIC_HEAD_KEYS", "HYPERBOLIC_HEAD_KINDS", "ModelHyperParameters",
           "REQUIRED_HYPER_PARAMETERS", "check_hyperbolic_head_kind"]

#: keys needed only when the Euclidean projection head is built
EUCLIDEAN_HEAD_KEYS: Tuple[str, ...] = ("proj_hidden_dim", "proj_output_dim")
#: keys needed only when the hyperbolic (Poincaré) head is built
HYPERBOLIC_HEAD_KEYS: Tuple[str, ...] = ("hyp_hidden_dim", "hyp_output_dim", "clip_r", "feature_scale", "learn_scale")
_ALWAYS: Tuple[str, ...] = ("backbone", "c", "image_size")
#: ``hyperbolic_head``: ``"separate"`` (a Poincaré head with its own MLP on the backbone features) or
#: ``"shared"`` (the projection head's raw output mapped onto the ball, the released HCL code's)
HYPERBOLIC_HEAD_KINDS: Tuple[str, ...] = ("separate", "shared")
#: keys of a shared head's map (scale and clipping of the projection head's output)
_SHARED_MAP_KEYS: Tuple[str, ...] = ("clip_r", "feature_scale", "learn_scale")


def check_hyperbolic_head_kind(kind: Any, name: str = "hyperbolic_head") -> str:
    """``kind`` if it is one of :data:`HYPERBOLIC_HEAD_KINDS`; ``ValueError`` naming ``name`` otherwise."""
    if kind not in HYPERBOLIC_HEAD_KINDS:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, HYPERBOLIC_HEAD_KINDS))}, got {kind!r}")
    return kind


@dataclass(frozen=True)
class ModelHyperParameters:
    """Backbone, heads and geometry of a trained model.

    Attributes:
        backbone: torchvision ResNet name (``"resnet18"``, ``"resnet50"``, ...).
        c: curvature magnitude of the ball (> 0).
        image_size: side of the square crops the model was trained on.
        proj_hidden_dim, proj_output_dim: the Euclidean projection MLP (``None`` without that head).
        hyp_hidden_dim, hyp_output_dim: the hyperbolic head's MLP (``None`` without that head).
        clip_r: feature-clipping radius before ``expmap0`` (``None`` = no clipping).
        feature_scale: initial scale of the hyperbolic head's output (``None`` = no scaling).
        learn_scale: whether that scale is learnt.
        learn_c: whether the curvature was learnt (then the checkpoint holds the learnt value as
            ``hyperbolic_head.curvature.log_c`` and ``c`` is its initial value); optional, default ``False``.
        lambda_hyp: weight of the hyperbolic loss (metadata; ``None`` when unknown).
        hyperbolic_head: ``"separate"`` (``hyperbolic_head.*`` is a
            :class:`~hcl_plugin.modules.PoincareProjectionHead` on the backbone features) or ``"shared"``
            (``hyperbolic_head.*`` is a :class:`~hcl_plugin.modules.BallMap` of the projection head's raw
            output: ``clip_r``, ``feature_scale`` and ``learn_scale`` describe it, ``hyp_hidden_dim`` and
            ``hyp_output_dim`` are not used); optional, default ``"separate"`` (checkpoints written
            before the option existed).
        stem: the ResNet's input stem, ``"imagenet"`` (torchvision's) or ``"small"`` (3x3 stride-1 conv,
            no max-pool; :func:`~hcl_plugin.checkpoints.build_resnet`); optional, default ``"imagenet"``
            (checkpoints written before the option existed).
    """

    backbone: str
    c: float
    image_size: int
    proj_hidden_dim: Optional[int] = None
    proj_output_dim: Optional[int] = None
    hyp_hidden_dim: Optional[int] = None
    hyp_output_dim: Optional[int] = None
    clip_r: Optional[float] = None
    feature_scale: Optional[float] = None
    learn_scale: bool = False
    learn_c: bool = False
    lambda_hyp: Optional[float] = None
    hyperbolic_head: str = "separate"
    stem: str = "imagenet"

    @classmethod
    def from_mapping(cls, hyper_parameters: Mapping[str, Any], projection_head: bool = True,
                     hyperbolic_head: bool = True) -> "ModelHyperParameters":
        """Validate and convert a checkpoint's flat ``hyper_parameters`` (other keys are ignored).

        ``hyperbolic_head`` (the head's kind) is always read. For a ``"shared"`` head, the hyperbolic
        head's keys are ``clip_r``, ``feature_scale`` and ``learn_scale`` (its MLP sizes are read when present).

        Raises:
            ValueError: a key the requested heads need is missing (all of them listed), or a value has
                the wrong type or range (the key and value named).
        """
        hp = dict(hyper_parameters)
        kind = check_hyperbolic_head_kind(hp.get("hyperbolic_head", "separate"), "hyper-parameter 'hyperbolic_head'")
        shared = kind == "shared"
        needed = list(_ALWAYS) + (list(EUCLIDEAN_HEAD_KEYS) if projection_head else []) + (
            list(_SHARED_MAP_KEYS if shared else HYPERBOLIC_HEAD_KEYS) if hyperbolic_head else [])
        missing = [key for key in needed if key not in hp]
        if missing:
            raise ValueError(
                f"hyper_parameters lack {', '.join(repr(k) for k in missing)} (have: {', '.join(sorted(hp)) or 'none'})"
            )
        c = _number(hp["c"], "c")
        if c is None or not (math.isfinite(c) and c > 0):
            raise ValueError(f"hyper-parameter 'c' must be > 0, got {hp['c']!r}")
        values: Dict[str, Any] = {"backbone": str(hp["backbone"]), "c": c, "image_size": _integer(hp["image_size"], "image_size"),
                                  "lambda_hyp": _number(hp.get("lambda_hyp"), "lambda_hyp"), "hyperbolic_head": kind,
                                  "stem": check_stem(hp.get("stem") or "imagenet", "hyper-parameter 'stem'")}
        if projection_head:
            values.update({k: _integer(hp[k], k) for k in EUCLIDEAN_HEAD_KEYS})
        if hyperbolic_head:
            values.update({k: _integer(hp[k], k) for k in ("hyp_hidden_dim", "hyp_output_dim")
                           if not shared or hp.get(k) is not None})
            values.update(clip_r=_number(hp["clip_r"], "clip_r"), feature_scale=_number(hp["feature_scale"], "feature_scale"),
                          learn_scale=bool(hp["learn_scale"]), learn_c=bool(hp.get("learn_c", False)))
        return cls(**values)

    def to_dict(self) -> Dict[str, Any]:
        """The flat dict a checkpoint stores (every field, ``None`` included)."""
        return asdict(self)


#: every key of the contract except the optional ``learn_c``, ``hyperbolic_head`` and ``stem`` and the metadata ``lambda_hyp``
REQUIRED_HYPER_PARAMETERS: Tuple[str, ...] = tuple(f.name for f in fields(ModelHyperParameters)
                                                   if f.name not in ("learn_c", "lambda_hyp", "hyperbolic_head", "stem"))


def _number(value: Any, key: str) -> Optional[float]:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"hyper-parameter {key!r} must be a number or None, got {value!r}") from None


def _integer(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or int(value) < 1:
        raise ValueError(f"hyper-parameter {key!r} must be a positive integer, got {value!r}")
    return int(value)
