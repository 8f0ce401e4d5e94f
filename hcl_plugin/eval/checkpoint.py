"""Read a pretrained checkpoint into an :class:`~hcl_plugin.eval.model.EvalModel`, without any training framework.

This module is checkpoint I/O only: the adapter registry (:class:`CheckpointAdapter`,
:func:`register_checkpoint_adapter`), safe reading and :func:`load_checkpoint`. The model and its
builder live in :mod:`hcl_plugin.eval.model`; :class:`EvalModel`, :class:`EuclideanProjectionHead`
and :func:`build_model` are re-exported here so existing imports keep working.

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

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Tuple, Union

import torch
from torch import Tensor

from hcl_plugin.checkpoints import (
    BACKBONE_FEATURE_DIMS,
    CheckpointReadError,
    UnsafeCheckpointError,
    compare_keys,
    safe_load,
)
from hcl_plugin.checkpoints.contract import REQUIRED_HYPER_PARAMETERS
from hcl_plugin.eval.errors import CheckpointFormatError, CheckpointMismatchError
from hcl_plugin.eval.model import EuclideanProjectionHead, EvalModel, build_model

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
