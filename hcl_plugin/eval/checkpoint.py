"""Load a pretrained backbone + projection heads for evaluation, without any training framework.

The model analysed by :mod:`hcl_plugin.eval` is an :class:`EvalModel`: a torchvision ResNet whose
``fc`` is ``nn.Identity()``, an optional Euclidean projection head (MoCo-v2's Linear-ReLU-Linear MLP
under a ``layers`` attribute, key-compatible with Lightly's ``MoCoProjectionHead``), an optional
:class:`~hcl_plugin.modules.PoincareProjectionHead`, the curvature magnitude ``c`` and the side of the
square crops the model was trained on.

Checkpoint contract (docs/eval.md): a ``torch.save``'d dict — a PyTorch Lightning ``.ckpt`` is one —
with

* ``"state_dict"``: ``backbone.<k>`` (torchvision names: ``conv1.weight``, ``layer1.0.bn1.running_mean``,
  ...), ``projection_head.layers.{0,2}.{weight,bias}``, ``hyperbolic_head.mlp.{0,2}.{weight,bias}``
  (+ ``hyperbolic_head.log_scale`` when ``feature_scale`` is set). Keys under any other prefix
  (momentum encoders, memory banks) are ignored.
* ``"hyper_parameters"``: a flat dict with ``backbone`` (``"resnet18"`` | ``"resnet50"``),
  ``proj_hidden_dim``, ``proj_output_dim``, ``hyp_hidden_dim``, ``hyp_output_dim``, ``c``, ``clip_r``,
  ``feature_scale``, ``learn_scale``, ``image_size`` (and ``lambda_hyp``, kept as metadata).

Other formats plug in as a :class:`CheckpointAdapter` (``matches`` + ``convert`` to the canonical
``(state_dict, hyper_parameters)``) registered with :func:`register_checkpoint_adapter`; an MMSelfSup
adapter only has to rename its keys (``backbone.`` is already MMSelfSup's prefix, its neck and head
map to ``projection_head.`` / ``hyperbolic_head.``) and read its config into the same hyper-parameters.

Loading is safe by default: :func:`hcl_plugin.checkpoints.safe_load` (``torch.load(weights_only=True)``;
numeric numpy arrays and the adapters' types rebuilt from validated data; nothing from the file runs,
docs/security.md). Full unpickling runs code from the file and happens only with ``trusted=True``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from hcl_plugin.checkpoints import (
    BACKBONE_FEATURE_DIMS,
    CheckpointReadError,
    KeyMismatchError,
    UnsafeCheckpointError,
    build_resnet,
    compare_keys,
    safe_load,
)
from hcl_plugin.checkpoints.contract import REQUIRED_HYPER_PARAMETERS, ModelHyperParameters
from hcl_plugin.geometry import expmap0
from hcl_plugin.modules import PoincareProjectionHead

__all__ = [
    "BACKBONE_FEATURE_DIMS",
    "CheckpointAdapter",
    "CheckpointFormatError",
    "CheckpointMismatchError",
    "EuclideanProjectionHead",
    "EvalModel",
    "HCLCheckpointAdapter",
    "REQUIRED_HYPER_PARAMETERS",
    "build_model",
    "load_checkpoint",
    "load_state_into_model",
    "register_checkpoint_adapter",
]

PathLike = Union[str, "os.PathLike[str]"]

class CheckpointFormatError(ValueError):
    """The file is not a checkpoint this package can read; the message names the file and what is missing."""


class CheckpointMismatchError(KeyMismatchError):
    """The checkpoint's weights do not fit the architecture its hyper-parameters describe.

    A :class:`hcl_plugin.checkpoints.KeyMismatchError`: ``missing``, ``unexpected`` (under the model's
    prefixes) and ``shape_mismatch`` (``(key, checkpoint shape, model shape)``) list the keys.
    """


class EuclideanProjectionHead(nn.Module):
    """MoCo-v2's projection MLP ``Linear -> ReLU -> Linear`` under ``layers``.

    Same parameter names as Lightly's ``MoCoProjectionHead(input_dim, hidden_dim, output_dim)``
    (``layers.0.weight``, ``layers.0.bias``, ``layers.2.weight``, ``layers.2.bias``), so a Lightly
    state dict loads into it without importing Lightly.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.ReLU(inplace=True),
                                    nn.Linear(hidden_dim, output_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class EvalModel(nn.Module):
    """Backbone + heads + geometry of a pretrained model, in evaluation mode.

    Args:
        backbone: maps ``(B, 3, S, S)`` images to ``(B, F)`` features (e.g. a torchvision ResNet with
            ``fc = nn.Identity()``).
        projection_head: Euclidean head ``(B, F) -> (B, D)``, or ``None``.
        hyperbolic_head: head ``(B, F) -> (B, D')`` returning points in the Poincaré ball of curvature
            ``-c``, or ``None``; then :meth:`embed` maps the Euclidean head's output with
            :math:`\\exp_0^c` (the hyperbolic view of a model trained without a hyperbolic branch).
        c: curvature magnitude (> 0) of the ball the hyperbolic embeddings live in.
        image_size: side of the square crops fed to the backbone.
        hyper_parameters: metadata kept for the report (e.g. the checkpoint's hyper-parameters).

    Raises:
        ValueError: neither head is given, ``c <= 0`` or ``image_size < 1``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        projection_head: Optional[nn.Module] = None,
        hyperbolic_head: Optional[nn.Module] = None,
        c: float = 0.05,
        image_size: int = 224,
        hyper_parameters: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__()
        if projection_head is None and hyperbolic_head is None:
            raise ValueError("EvalModel needs a projection_head, a hyperbolic_head or both")
        if not (isinstance(c, (int, float)) and math.isfinite(c) and c > 0):
            raise ValueError(f"c must be a finite number > 0, got {c!r}")
        if int(image_size) < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size!r}")
        curvature = getattr(hyperbolic_head, "curvature", None)
        if callable(curvature):
            head_c = float(curvature())  # a learnable curvature is compared at its current value
            if not math.isclose(head_c, float(c), rel_tol=1e-6):
                raise ValueError(f"c={c} differs from the hyperbolic head's curvature {head_c}")
        self.backbone = backbone
        self.projection_head = projection_head
        self.hyperbolic_head = hyperbolic_head
        self.c = float(c)
        self.image_size = int(image_size)
        self.hyper_parameters: Dict[str, Any] = dict(hyper_parameters or {})

    @property
    def hyperbolic_source(self) -> str:
        """How the hyperbolic embeddings are made: ``"hyperbolic_head"`` or ``"expmap0(projection_head)"``."""
        return "hyperbolic_head" if self.hyperbolic_head is not None else "expmap0(projection_head)"

    @torch.no_grad()
    def embed(self, images: Tensor) -> Dict[str, Optional[Tensor]]:
        """Backbone features, Euclidean head output and points on the ball for a batch of images.

        Returns:
            ``{"backbone": (B, F), "euclidean": (B, D) or None, "hyperbolic": (B, D')}``, float32.
        """
        features = self.backbone(images).flatten(1).float()
        euclidean = self.projection_head(features).float() if self.projection_head is not None else None
        if self.hyperbolic_head is not None:
            hyperbolic = self.hyperbolic_head(features).float()
        else:
            hyperbolic = expmap0(euclidean, self.c)
        return {"backbone": features, "euclidean": euclidean, "hyperbolic": hyperbolic}

    def forward(self, images: Tensor) -> Dict[str, Optional[Tensor]]:
        return self.embed(images)


def _resnet(name: str) -> Tuple[nn.Module, int]:
    try:
        return build_resnet(name)
    except ValueError as error:
        raise CheckpointFormatError(str(error)) from None


def build_model(
    hyper_parameters: Mapping[str, Any],
    with_projection_head: bool = True,
    with_hyperbolic_head: bool = True,
) -> EvalModel:
    """Build an untrained :class:`EvalModel` from the contract's hyper-parameters.

    Args:
        hyper_parameters: the contract of :class:`hcl_plugin.checkpoints.ModelHyperParameters`; the keys
            of a head that is not built may be absent.
        with_projection_head, with_hyperbolic_head: which heads to build (a baseline trained without
            a hyperbolic branch has no ``hyperbolic_head.*`` weights).

    Raises:
        CheckpointFormatError: a required hyper-parameter is missing or invalid (the message lists them).
    """
    try:
        hp = ModelHyperParameters.from_mapping(hyper_parameters, projection_head=with_projection_head,
                                               hyperbolic_head=with_hyperbolic_head)
    except ValueError as error:
        raise CheckpointFormatError(str(error)) from None
    backbone, feature_dim = _resnet(hp.backbone)
    projection_head = None
    if with_projection_head:
        projection_head = EuclideanProjectionHead(feature_dim, hp.proj_hidden_dim, hp.proj_output_dim)
    hyperbolic_head = None
    if with_hyperbolic_head:
        hyperbolic_head = PoincareProjectionHead(feature_dim, hp.hyp_hidden_dim, hp.hyp_output_dim, c=hp.c,
                                                 clip_r=hp.clip_r, feature_scale=hp.feature_scale,
                                                 learn_scale=hp.learn_scale)
    return EvalModel(backbone, projection_head, hyperbolic_head, c=hp.c, image_size=hp.image_size,
                     hyper_parameters=dict(hyper_parameters))


def load_state_into_model(model: EvalModel, state_dict: Mapping[str, Tensor], source: str = "checkpoint") -> EvalModel:
    """Copy ``state_dict`` (keys ``backbone.*``, ``projection_head.*``, ``hyperbolic_head.*``) into ``model``.

    Keys under other prefixes are ignored. Every key of the model must be present with the same
    shape, and no unknown key may appear under the model's prefixes.

    Raises:
        CheckpointMismatchError: listing the missing, unexpected and shape-mismatched keys.
    """
    prefixes = tuple(f"{name}." for name in ("backbone", "projection_head", "hyperbolic_head")
                     if getattr(model, name) is not None)
    relevant = {k: v for k, v in state_dict.items() if k.startswith(prefixes)}
    report = compare_keys(model.state_dict(), relevant)
    if not report.ok:
        raise CheckpointMismatchError(
            f"{source}: the weights do not match the architecture described by its hyper-parameters", report)
    model.load_state_dict(relevant, strict=True)
    return model


@dataclass
class CheckpointAdapter:
    """How to read one checkpoint format.

    Attributes:
        name: shown in errors and recorded in the analysis metadata.
        matches: ``checkpoint dict -> bool``; the first registered adapter that matches is used.
        convert: ``checkpoint dict -> (state_dict, hyper_parameters)`` in the canonical contract.
        stand_ins: ``{"module.Name": stand-in}`` globals the format needs beyond tensors and numpy
            (e.g. MMEngine's message-hub types), passed to :func:`hcl_plugin.checkpoints.safe_load`
            while reading a checkpoint: inert records that validate their data, never the real class.
    """

    name: str
    matches: Callable[[Mapping[str, Any]], bool]
    convert: Callable[[Mapping[str, Any]], Tuple[Dict[str, Tensor], Dict[str, Any]]]
    stand_ins: Mapping[str, Any] = field(default_factory=dict)


def _hcl_matches(checkpoint: Mapping[str, Any]) -> bool:
    return isinstance(checkpoint.get("state_dict"), Mapping) and isinstance(checkpoint.get("hyper_parameters"), Mapping)


def _hcl_convert(checkpoint: Mapping[str, Any]) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    return dict(checkpoint["state_dict"]), dict(checkpoint["hyper_parameters"])


#: The hcl_plugin contract (Lightly examples, PyTorch Lightning ``.ckpt`` or a plain dict).
HCLCheckpointAdapter = CheckpointAdapter("hcl_plugin", _hcl_matches, _hcl_convert)

_ADAPTERS: List[CheckpointAdapter] = [HCLCheckpointAdapter]


def register_checkpoint_adapter(adapter: CheckpointAdapter, first: bool = True) -> None:
    """Add a checkpoint format (e.g. MMSelfSup's ``{"meta", "state_dict"}``); ``first`` gives it priority."""
    if first:
        _ADAPTERS.insert(0, adapter)
    else:
        _ADAPTERS.append(adapter)


def _read(path: str, trusted: bool) -> Any:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file {path!r} does not exist")
    if trusted:  # the caller states it wrote the file: full unpickling
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:  # noqa: BLE001 - any failure of a trusted load is a format error here
            raise CheckpointFormatError(f"{path}: not a readable torch checkpoint ({error})") from None
    stand_ins: Dict[str, Any] = {}
    for adapter in _ADAPTERS:
        stand_ins.update(adapter.stand_ins)
    try:
        return safe_load(path, map_location="cpu", stand_ins=stand_ins)
    except UnsafeCheckpointError as error:
        raise CheckpointFormatError(
            f"{error}. If you wrote this file yourself and trust it, load it with trusted=True "
            "(tools/analyze.py --trust-checkpoint): full unpickling runs code from the file."
        ) from None
    except CheckpointReadError as error:
        raise CheckpointFormatError(str(error)) from None


def load_checkpoint(
    checkpoint: Union[PathLike, Mapping[str, Any]],
    trusted: bool = False,
    map_location: Union[str, torch.device] = "cpu",
) -> EvalModel:
    """Read a checkpoint (a path or an already loaded dict) into an :class:`EvalModel` in eval mode.

    The Euclidean head is built when ``projection_head.*`` keys are present, the hyperbolic head when
    ``hyperbolic_head.*`` keys are present (a baseline without a hyperbolic branch then gets
    :math:`\\exp_0^c` of its Euclidean head, see :class:`EvalModel`).

    Raises:
        FileNotFoundError: the path does not exist.
        CheckpointFormatError: not a dict, no adapter matches, or hyper-parameters missing.
        CheckpointMismatchError: the weights do not fit the architecture (lists the keys).
    """
    source = "checkpoint (in-memory dict)"
    if isinstance(checkpoint, (str, os.PathLike)):
        source = os.fspath(checkpoint)
        checkpoint = _read(source, trusted)
    if not isinstance(checkpoint, Mapping):
        raise CheckpointFormatError(f"{source}: expected a dict, got {type(checkpoint).__name__}")
    adapter = next((a for a in _ADAPTERS if a.matches(checkpoint)), None)
    if adapter is None:
        raise CheckpointFormatError(
            f"{source}: no checkpoint adapter matches (top-level keys: {', '.join(map(str, checkpoint)) or 'none'}); "
            f"the hcl_plugin contract needs 'state_dict' and 'hyper_parameters' (adapters: "
            f"{', '.join(a.name for a in _ADAPTERS)})"
        )
    try:
        state_dict, hyper_parameters = adapter.convert(checkpoint)
    except CheckpointFormatError as error:
        raise CheckpointFormatError(f"{source}: {error}") from None
    except (KeyError, AttributeError, TypeError) as error:
        raise CheckpointFormatError(f"{source}: the {adapter.name} checkpoint lacks or mistypes {error}") from None
    has_projection = any(k.startswith("projection_head.") for k in state_dict)
    has_hyperbolic = any(k.startswith("hyperbolic_head.") for k in state_dict)
    if not (has_projection or has_hyperbolic):
        raise CheckpointFormatError(
            f"{source}: state_dict has neither 'projection_head.*' nor 'hyperbolic_head.*' keys "
            f"(prefixes present: {', '.join(sorted({k.split('.', 1)[0] for k in state_dict})) or 'none'})"
        )
    try:
        model = build_model(hyper_parameters, with_projection_head=has_projection, with_hyperbolic_head=has_hyperbolic)
    except CheckpointFormatError as error:
        raise CheckpointFormatError(f"{source}: {error}") from None
    load_state_into_model(model, state_dict, source)
    model.hyper_parameters["checkpoint_format"] = adapter.name
    return model.to(map_location).eval()
