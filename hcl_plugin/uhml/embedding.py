r"""UHML's embedding network: torchvision ResNet -> linear -> learnable scale -> (clipping) -> expmap0.

UHML [1] maps images with a backbone and a linear layer onto the Poincaré ball. The released code
L2-normalises the linear output before :math:`\exp_0` (c = 1), which puts every point at the same
norm :math:`\tanh(1)`: the distance to the origin then carries no information (docs/background.md, UHML).
Here there is **no normalisation**; instead the linear output is multiplied by a learnable scalar
:math:`s = e^{\log s}` (stored as its log, as in MERU [3]), so the network can set the range of the
norms without every point being pinned to one sphere, and optionally clipped at radius ``clip_r``
(feature clipping [2]) so that no point reaches the boundary, where the distance ratios of the loss
become extreme:

.. math:: z = \exp_0^c\big(\operatorname{clip}_r(s\,(W f(x) + b))\big).

The scale starts at ``feature_scale``, by default :math:`1/\sqrt{D}`: for a linear output whose D
entries are of order one, :math:`\|s\,(W f + b)\|` then starts of order one, inside the clip radius,
so the clipping does not cut every point (a clipped point passes no gradient to :math:`s`) and the
scale is learnt from there (docs/uhml.md, "Embedding"; docs/background.md, norms and clipping).
:attr:`UHMLEmbedding.stats` records the clipped fraction and the hyperbolic norms of the last
forward pass as health metrics.

Weights (``weights=`` a local file; nothing is downloaded): a torchvision ResNet ``state_dict``
(``conv1.weight``, ...; its ``fc.*`` entries are dropped, the classifier is replaced by the linear
layer), or a checkpoint of this project — a dict with ``"state_dict"`` whose entries
``backbone.<torchvision key>`` (HCL / MoCo / SimCLR examples) or ``embedding.backbone.<key>`` (the
UHML example) hold the backbone; other entries (heads, momentum encoders, queues) are ignored. The
backbone is loaded **strictly**: missing, unexpected or wrongly shaped keys raise
:class:`WeightsMismatchError` listing them. Files are read with
:func:`hcl_plugin.checkpoints.safe_load` (nothing from the file runs).

torchvision is imported when the module is built (the ``data`` extra), not when this file is imported.

[1] J. Yan, L. Luo, C. Deng, H. Huang. "Unsupervised Hyperbolic Metric Learning". CVPR 2021.
[2] Y. Guo et al. "Clipped Hyperbolic Classifiers Are Super-Hyperbolic Classifiers". CVPR 2022.
[3] K. Desai et al. "Hyperbolic Image-Text Representations". ICML 2023.
"""

from __future__ import annotations

import math
import os
from typing import Dict, Mapping, Optional, Tuple, Union

from torch import Tensor, nn

from hcl_plugin.checkpoints import (
    BACKBONE_FEATURE_DIMS,
    BackboneNotFoundError,
    KeyMismatchError,
    compare_keys,
    safe_load,
    select_prefixed,
)
from hcl_plugin.checkpoints import build_resnet as _build_resnet
from hcl_plugin.geometry import Curvature
from hcl_plugin.modules.poincare_head import BallProjection
from hcl_plugin.utils.checks import check_nonempty

__all__ = ["BACKBONES", "LinearBallProjection", "UHMLEmbedding", "WeightsMismatchError", "backbone_state_dict",
           "load_backbone_strict"]

BACKBONES = tuple(BACKBONE_FEATURE_DIMS)
#: Prefixes under which a project checkpoint's ``state_dict`` holds the torchvision backbone.
BACKBONE_PREFIXES = ("backbone.", "embedding.backbone.")
PathLike = Union[str, "os.PathLike[str]"]


class WeightsMismatchError(KeyMismatchError):
    """A weights file does not fit the backbone; the message lists the missing/unexpected/mis-shaped keys."""


def backbone_state_dict(source: Union[PathLike, Mapping[str, object]]) -> Tuple[Dict[str, Tensor], str]:
    """The torchvision backbone entries of a weights file or loaded object, and a description of the format.

    Accepts a torchvision ``state_dict`` (``fc.*`` dropped), or a dict with ``"state_dict"`` holding
    ``backbone.<key>`` or ``embedding.backbone.<key>`` entries (the first prefix found wins).

    Raises:
        FileNotFoundError: the path does not exist.
        WeightsMismatchError: nothing in the file looks like a ResNet backbone.
    """
    name = "weights"
    if not isinstance(source, Mapping):
        name = os.fspath(source)
        if not os.path.isfile(name):
            raise FileNotFoundError(f"weights file {name!r} does not exist")
        source = safe_load(name, map_location="cpu")
    if not isinstance(source, Mapping):
        raise WeightsMismatchError(f"{name}: expected a state_dict or a checkpoint dict, got {type(source).__name__}")
    state = source.get("state_dict", source)
    if not isinstance(state, Mapping):
        raise WeightsMismatchError(f"{name}: 'state_dict' is a {type(state).__name__}, not a mapping")
    try:
        picked, prefix = select_prefixed(state, BACKBONE_PREFIXES, name)
        return picked, f"checkpoint ({prefix}* entries)"
    except BackboneNotFoundError:
        pass
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    if "conv1.weight" in tensors:
        return {k: v for k, v in tensors.items() if not k.startswith("fc.")}, "torchvision state_dict"
    sample = ", ".join(sorted(tensors)[:5]) or "no tensors"
    raise WeightsMismatchError(
        f"{name}: no backbone weights found — expected a torchvision ResNet state_dict (conv1.weight, ...) "
        f"or a checkpoint whose state_dict has {' or '.join(p + '<key>' for p in BACKBONE_PREFIXES)} entries; "
        f"first keys: {sample}"
    )


def load_backbone_strict(backbone: nn.Module, weights: Union[PathLike, Mapping[str, object]]) -> str:
    """Load ``weights`` into ``backbone`` strictly; return the detected format.

    Raises:
        WeightsMismatchError: listing missing, unexpected and wrongly shaped keys.
    """
    state, kind = backbone_state_dict(weights)
    report = compare_keys(backbone.state_dict(), state)
    if not report.ok:
        where = weights if not isinstance(weights, Mapping) else "weights"
        raise WeightsMismatchError(f"{where} ({kind}) does not match the backbone:", report,
                                   hint="is --backbone the architecture the weights were trained with?")
    backbone.load_state_dict(state, strict=True)
    return kind


class LinearBallProjection(BallProjection):
    r"""Features -> linear (to ``dim``) -> learnable scale -> optional clipping -> :math:`\exp_0^c`.

    .. math:: z = \exp_0^c\big(\operatorname{clip}_r(e^{\log s}\,(W f + b))\big),
        \qquad \exp_0^c(v) = \tanh(\sqrt c\,\|v\|)\,\frac{v}{\sqrt c\,\|v\|}

    UHML's embedding head [1] without the released code's L2 normalisation (see the module
    docstring); shared by :class:`UHMLEmbedding` and the MMSelfSup ``UHMLNeck``. A
    :class:`hcl_plugin.modules.BallProjection` whose Euclidean map is one linear layer.

    Args:
        in_features: width of the backbone features.
        dim: embedding dimension D.
        c: curvature magnitude of the ball (UHML: 1), a float or a :class:`~hcl_plugin.geometry.Curvature`.
        clip_r: feature-clipping radius before ``expmap0``; ``None`` = no clipping.
        feature_scale: initial value of the scale of the linear output (> 0); ``None``: :math:`1/\sqrt{D}`.
        learn_scale: learn the scale (else it is a fixed buffer).

    Attributes:
        linear: the ``nn.Linear(in_features, dim)``; log_scale: log of the feature scale (a parameter
        or a buffer); stats: detached health metrics of the last forward (``clipped_fraction``,
        ``hyp_norm_{mean,min,max}``, ``feature_scale``).

    Raises:
        ValueError: in_features or dim < 1, clip_r or feature_scale <= 0.
    """

    def __init__(
        self,
        in_features: int,
        dim: int = 128,
        c: Union[float, Curvature] = 1.0,
        clip_r: Optional[float] = 2.3,
        feature_scale: Optional[float] = None,
        learn_scale: bool = True,
    ) -> None:
        for name, value in (("in_features", in_features), ("dim", dim)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if feature_scale is None:
            feature_scale = 1 / math.sqrt(dim)
        if not feature_scale > 0:
            raise ValueError(f"feature_scale must be > 0, got {feature_scale}")
        super().__init__(c, clip_r, feature_scale, learn_scale)
        self.linear = nn.Linear(int(in_features), int(dim))

    def euclidean(self, features: Tensor) -> Tensor:
        """The linear layer."""
        return self.linear(features)

    def tangent_of(self, features: Tensor) -> Tensor:
        """Tangent-space (Euclidean) vectors of backbone ``features`` before ``expmap0``: linear, scale, clipping."""
        return self.scale_and_clip(self.linear(features))

    def project(self, features: Tensor) -> Tensor:
        """(B, in_features) backbone features -> (B, dim) points strictly inside the ball; records :attr:`stats`."""
        check_nonempty(features, "features", type(self).__name__)
        return self.to_ball(self.tangent_of(features))


class UHMLEmbedding(LinearBallProjection):
    r"""Backbone -> linear (to ``dim``) -> learnable scale -> optional clipping -> :math:`\exp_0^c`.

    See the module docstring for the design (no L2 normalisation before ``expmap0``) and the accepted
    weight files.

    Args:
        backbone: torchvision ResNet name (``fc`` replaced by ``Identity``; random init unless ``weights``).
        dim: embedding dimension D.
        c: curvature magnitude of the ball (UHML: 1), a float or a :class:`~hcl_plugin.geometry.Curvature`.
        clip_r: feature-clipping radius before ``expmap0``; ``None`` = no clipping.
        feature_scale: initial value of the scale of the linear output (> 0); ``None``: :math:`1/\sqrt{D}`.
        learn_scale: learn the scale (else it is a fixed buffer).
        weights: optional local weights file for the backbone (see the module docstring).
        train_bn: let the backbone's BatchNorm layers update their running statistics in training mode.
            Default ``False``, as the released UHML code (``freeze_BN``): every BatchNorm layer of the
            backbone stays in eval mode whatever :meth:`train` is called with, so training, the
            re-clustering embeddings and the evaluation all normalise with the same (initial or
            pretrained) statistics; the affine weights are still trained (MMCV's ``norm_eval``).

    Attributes:
        backbone, linear: the torchvision ResNet and the ``nn.Linear(width, dim)``.
        log_scale: log of the feature scale (a parameter or a buffer).
        stats: detached health metrics of the last forward (``clipped_fraction``, ``hyp_norm_{mean,min,max}``).
        weights_format: how ``weights`` was read (``None`` without weights).

    Raises:
        ValueError: unknown backbone, dim < 1, clip_r or feature_scale <= 0.
        WeightsMismatchError: ``weights`` does not fit the backbone (lists the keys).

    Example:
        >>> net = UHMLEmbedding("resnet18", dim=16, c=1.0, clip_r=2.3)
        >>> z = net(torch.rand(2, 3, 32, 32))
        >>> bool((z.norm(dim=1) < 1).all())
        True
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        dim: int = 128,
        c: Union[float, Curvature] = 1.0,
        clip_r: Optional[float] = 2.3,
        feature_scale: Optional[float] = None,
        learn_scale: bool = True,
        weights: Optional[PathLike] = None,
        train_bn: bool = False,
    ) -> None:
        network, width = _build_resnet(backbone)
        super().__init__(width, dim, c=c, clip_r=clip_r, feature_scale=feature_scale, learn_scale=learn_scale)
        self.backbone = network
        self.train_bn = bool(train_bn)
        self.weights_format = None if weights is None else load_backbone_strict(self.backbone, weights)
        self.train(self.training)

    def train(self, mode: bool = True) -> "UHMLEmbedding":
        """``nn.Module.train``, then, unless ``train_bn``, every BatchNorm layer of the backbone back in eval
        mode (frozen running statistics, as the released code's ``freeze_BN``)."""
        super().train(mode)
        if not self.train_bn:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def euclidean(self, images: Tensor) -> Tensor:
        """Backbone, then the linear layer: :meth:`to_tangent` and :meth:`forward` take (B, 3, H, W) images
        and return tangent vectors / points strictly inside the ball (float32, or float64 for float64 input)."""
        return self.linear(self.backbone(images))
