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

__all__ = ["EUCLIDEAN_HEAD_KEYS", "HYPERBOLIC_HEAD_KEYS", "ModelHyperParameters", "REQUIRED_HYPER_PARAMETERS"]

#: keys needed only when the Euclidean projection head is built
EUCLIDEAN_HEAD_KEYS: Tuple[str, ...] = ("proj_hidden_dim", "proj_output_dim")
#: keys needed only when the hyperbolic (Poincaré) head is built
HYPERBOLIC_HEAD_KEYS: Tuple[str, ...] = ("hyp_hidden_dim", "hyp_output_dim", "clip_r", "feature_scale", "learn_scale")
_ALWAYS: Tuple[str, ...] = ("backbone", "c", "image_size")


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

    @classmethod
    def from_mapping(cls, hyper_parameters: Mapping[str, Any], projection_head: bool = True,
                     hyperbolic_head: bool = True) -> "ModelHyperParameters":
        """Validate and convert a checkpoint's flat ``hyper_parameters`` (other keys are ignored).

        Raises:
            ValueError: a key the requested heads need is missing (all of them listed), or a value has
                the wrong type or range (the key and value named).
        """
        hp = dict(hyper_parameters)
        needed = list(_ALWAYS) + (list(EUCLIDEAN_HEAD_KEYS) if projection_head else []) + (
            list(HYPERBOLIC_HEAD_KEYS) if hyperbolic_head else [])
        missing = [key for key in needed if key not in hp]
        if missing:
            raise ValueError(
                f"hyper_parameters lack {', '.join(repr(k) for k in missing)} (have: {', '.join(sorted(hp)) or 'none'})"
            )
        c = _number(hp["c"], "c")
        if c is None or not (math.isfinite(c) and c > 0):
            raise ValueError(f"hyper-parameter 'c' must be > 0, got {hp['c']!r}")
        values: Dict[str, Any] = {"backbone": str(hp["backbone"]), "c": c, "image_size": _integer(hp["image_size"], "image_size"),
                                  "lambda_hyp": _number(hp.get("lambda_hyp"), "lambda_hyp")}
        if projection_head:
            values.update({k: _integer(hp[k], k) for k in EUCLIDEAN_HEAD_KEYS})
        if hyperbolic_head:
            values.update({k: _integer(hp[k], k) for k in ("hyp_hidden_dim", "hyp_output_dim")})
            values.update(clip_r=_number(hp["clip_r"], "clip_r"), feature_scale=_number(hp["feature_scale"], "feature_scale"),
                          learn_scale=bool(hp["learn_scale"]), learn_c=bool(hp.get("learn_c", False)))
        return cls(**values)

    def to_dict(self) -> Dict[str, Any]:
        """The flat dict a checkpoint stores (every field, ``None`` included)."""
        return asdict(self)


#: every key of the contract except the optional ``learn_c`` and the metadata ``lambda_hyp``
REQUIRED_HYPER_PARAMETERS: Tuple[str, ...] = tuple(f.name for f in fields(ModelHyperParameters)
                                                   if f.name not in ("learn_c", "lambda_hyp"))


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
