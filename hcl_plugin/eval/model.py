"""The model analysed by :mod:`hcl_plugin.eval` and its builder, independent of any checkpoint format.

An :class:`EvalModel` is a torchvision ResNet whose ``fc`` is ``nn.Identity()`` (built by
:func:`hcl_plugin.checkpoints.build_resnet`, the project's one ResNet builder), an optional Euclidean
projection head (MoCo-v2's Linear-ReLU-Linear MLP under a ``layers`` attribute, key-compatible with
Lightly's ``MoCoProjectionHead``), an optional :class:`~hcl_plugin.modules.PoincareProjectionHead`
on the backbone features (``hyperbolic_head="separate"``) or :class:`~hcl_plugin.modules.BallMap` of
the projection head's raw output (``"shared"``, the released HCL code's), the curvature magnitude
``c`` and the side of the square crops the model was trained on.

:func:`build_model` makes an untrained one from the hyper-parameters of the checkpoint contract
(:class:`hcl_plugin.checkpoints.ModelHyperParameters`); reading weights into it is
:mod:`hcl_plugin.eval.checkpoint`'s job.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from hcl_plugin.checkpoints import build_resnet
from hcl_plugin.checkpoints.contract import ModelHyperParameters, check_hyperbolic_head_kind
from hcl_plugin.eval.errors import CheckpointFormatError
from hcl_plugin.geometry import Curvature, expmap0
from hcl_plugin.modules import BallMap, PoincareProjectionHead

__all__ = ["EuclideanProjectionHead", "EvalModel", "build_model"]


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
        hyperbolic_input: what ``hyperbolic_head`` maps: ``"backbone"`` (the features; a separate
            head) or ``"projection_head"`` (the Euclidean head's raw output; a shared head, e.g. a
            :class:`~hcl_plugin.modules.BallMap`).
        c: curvature magnitude (> 0) of the ball the hyperbolic embeddings live in.
        image_size: side of the square crops fed to the backbone.
        hyper_parameters: metadata kept for the report (e.g. the checkpoint's hyper-parameters).

    Raises:
        ValueError: neither head is given, ``c <= 0``, ``image_size < 1``, or ``hyperbolic_input`` is
            ``"projection_head"`` without both heads.
    """

    def __init__(
        self,
        backbone: nn.Module,
        projection_head: Optional[nn.Module] = None,
        hyperbolic_head: Optional[nn.Module] = None,
        c: float = 0.05,
        image_size: int = 224,
        hyper_parameters: Optional[Mapping[str, Any]] = None,
        hyperbolic_input: str = "backbone",
    ) -> None:
        super().__init__()
        if projection_head is None and hyperbolic_head is None:
            raise ValueError("EvalModel needs a projection_head, a hyperbolic_head or both")
        if hyperbolic_input not in ("backbone", "projection_head"):
            raise ValueError(f"hyperbolic_input must be 'backbone' or 'projection_head', got {hyperbolic_input!r}")
        if hyperbolic_input == "projection_head" and (projection_head is None or hyperbolic_head is None):
            raise ValueError("hyperbolic_input='projection_head' needs both a projection_head and a hyperbolic_head")
        if not (isinstance(c, (int, float)) and math.isfinite(c) and c > 0):
            raise ValueError(f"c must be a finite number > 0, got {c!r}")
        if int(image_size) < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size!r}")
        curvature = getattr(hyperbolic_head, "curvature", None)
        if callable(curvature):
            head_c = float(torch.as_tensor(curvature()).detach())  # a learnable curvature is compared at its current value
            if not math.isclose(head_c, float(c), rel_tol=1e-6):
                raise ValueError(f"c={c} differs from the hyperbolic head's curvature {head_c}")
        self.backbone = backbone
        self.projection_head = projection_head
        self.hyperbolic_head = hyperbolic_head
        self.hyperbolic_input = hyperbolic_input
        self._c = float(c)
        self.image_size = int(image_size)
        self.hyper_parameters: Dict[str, Any] = dict(hyper_parameters or {})

    @property
    def c(self) -> float:
        """Curvature magnitude: the hyperbolic head's current value (a learnt one after loading), else ``c``."""
        curvature = getattr(self.hyperbolic_head, "curvature", None)
        return float(torch.as_tensor(curvature()).detach()) if callable(curvature) else self._c

    @property
    def hyperbolic_source(self) -> str:
        """How the hyperbolic embeddings are made: ``"hyperbolic_head"``, ``"hyperbolic_head(projection_head)"``
        (a shared head) or ``"expmap0(projection_head)"``."""
        if self.hyperbolic_head is None:
            return "expmap0(projection_head)"
        return "hyperbolic_head(projection_head)" if self._shared() else "hyperbolic_head"

    def _shared(self) -> bool:
        return self.__dict__.get("hyperbolic_input", "backbone") == "projection_head"

    @torch.no_grad()
    def embed(self, images: Tensor) -> Dict[str, Optional[Tensor]]:
        """Backbone features, Euclidean head output and points on the ball for a batch of images.

        Returns:
            ``{"backbone": (B, F), "euclidean": (B, D) or None, "hyperbolic": (B, D')}``, float32.
        """
        features = self.backbone(images).flatten(1).float()
        euclidean = self.projection_head(features).float() if self.projection_head is not None else None
        if self.hyperbolic_head is not None:
            hyperbolic = self.hyperbolic_head(euclidean if self._shared() else features).float()
        else:
            hyperbolic = expmap0(euclidean, self.c)
        return {"backbone": features, "euclidean": euclidean, "hyperbolic": hyperbolic}

    def forward(self, images: Tensor) -> Dict[str, Optional[Tensor]]:
        return self.embed(images)


def _resnet(name: str, stem: str = "imagenet") -> Tuple[nn.Module, int]:
    """``(torchvision ResNet with fc = Identity, feature width)`` from :func:`~hcl_plugin.checkpoints.build_resnet`
    (``stem``: ``"imagenet"`` or ``"small"``).

    Raises:
        CheckpointFormatError: ``name`` is not a supported backbone or ``stem`` not a stem (the message lists them).
    """
    try:
        return build_resnet(name, stem=stem)
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
            a hyperbolic branch has no ``hyperbolic_head.*`` weights). A ``"shared"`` hyperbolic head
            (``hyper_parameters["hyperbolic_head"]``) is built whatever ``with_hyperbolic_head`` says: it
            is a :class:`~hcl_plugin.modules.BallMap` of the projection head's output, whose only weights
            are a feature scale and a learnt curvature (none in the released code's setting); it needs
            the projection head. The backbone's stem is the contract's ``stem`` (``"imagenet"`` when absent).

    Raises:
        CheckpointFormatError: a required hyper-parameter is missing or invalid (the message lists them).
    """
    try:
        shared = check_hyperbolic_head_kind(hyper_parameters.get("hyperbolic_head", "separate"),
                                            "hyper-parameter 'hyperbolic_head'") == "shared"
        if shared and not with_projection_head:
            raise ValueError("hyperbolic_head='shared' maps the projection head's output, but the checkpoint "
                             "has no projection head")
        with_hyperbolic_head = with_hyperbolic_head or shared
        hp = ModelHyperParameters.from_mapping(hyper_parameters, projection_head=with_projection_head,
                                               hyperbolic_head=with_hyperbolic_head)
    except ValueError as error:
        raise CheckpointFormatError(str(error)) from None
    backbone, feature_dim = _resnet(hp.backbone, hp.stem)  # "small": the 3x3 stride-1 stem, no max-pool
    projection_head = None
    if with_projection_head:
        projection_head = EuclideanProjectionHead(feature_dim, hp.proj_hidden_dim, hp.proj_output_dim)
    hyperbolic_head: Optional[nn.Module] = None
    if with_hyperbolic_head:
        curvature = Curvature(hp.c, learnable=hp.learn_c)  # a learnt c is then loaded from the state dict
        if shared:
            hyperbolic_head = BallMap(curvature, clip_r=hp.clip_r, feature_scale=hp.feature_scale,
                                      learn_scale=hp.learn_scale)
        else:
            hyperbolic_head = PoincareProjectionHead(feature_dim, hp.hyp_hidden_dim, hp.hyp_output_dim, c=curvature,
                                                     clip_r=hp.clip_r, feature_scale=hp.feature_scale,
                                                     learn_scale=hp.learn_scale)
    return EvalModel(backbone, projection_head, hyperbolic_head, c=hp.c, image_size=hp.image_size,
                     hyper_parameters=dict(hyper_parameters),
                     hyperbolic_input="projection_head" if shared else "backbone")
