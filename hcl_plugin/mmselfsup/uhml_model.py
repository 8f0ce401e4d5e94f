r"""UHML's model for MMSelfSup: ``UHML`` and ``UHMLNeck`` in ``MODELS`` (Yan et al., CVPR 2021 [1]).

The embedding is

.. math:: z = \exp_0^c\big(\operatorname{clip}_r(s\,(W\,\mathrm{GAP}(f(x)) + b))\big)

with a learnable scale :math:`s` and **no** L2 normalisation (the released code normalises, which
pins every point to the norm :math:`\tanh(1)`; see :mod:`hcl_plugin.uhml.embedding`), trained with
the hierarchical log-ratio loss

.. math::
    \mathcal{L} = \frac{1}{|T|} \sum_{(i, j, l) \in T}
        \left(\log\frac{d(z_i, z_j)}{d(z_i, z_l)} - (s_{ij} - s_{il})\log\Omega\right)^2,
    \qquad s_{ij} = K - \min\{k : y^{(k)}_i = y^{(k)}_j\}

(:func:`hcl_plugin.uhml.similarity_levels`; :math:`T` the distinct triplets with
:math:`s_{ij} > s_{il}`; ``d`` the Poincaré distance; :class:`~hcl_plugin.losses.HierarchicalLogRatioLoss`)
on the pseudo-labels :math:`y^{(k)}` that ``UHMLReclusterHook`` (:mod:`hcl_plugin.mmselfsup.hooks`)
stores in the model's buffer ``pseudo_labels`` (saved in every checkpoint). The data set, the batch
sampler and the hook are in :mod:`hcl_plugin.mmselfsup.datasets`, :mod:`hcl_plugin.mmselfsup.samplers`
and :mod:`hcl_plugin.mmselfsup.hooks`; docs/uhml_mmengine.md shows how they fit.

[1] J. Yan, L. Luo, C. Deng, H. Huang. "Unsupervised Hyperbolic Metric Learning". CVPR 2021.
    https://openaccess.thecvf.com/content/CVPR2021/html/Yan_Unsupervised_Hyperbolic_Metric_Learning_CVPR_2021_paper.html
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.model import BaseModule
from mmselfsup.models.algorithms.base import BaseModel
from mmselfsup.registry import MODELS
from mmselfsup.structures import SelfSupDataSample
from torch import Tensor, nn

from hcl_plugin.losses import HierarchicalLogRatioLoss
from hcl_plugin.uhml.embedding import LinearBallProjection
from hcl_plugin.uhml.similarity import similarity_levels

__all__ = ["UHML", "UHMLNeck"]


@MODELS.register_module()
class UHMLNeck(BaseModule):
    r"""Backbone feature map -> a point in the Poincaré ball: GAP -> linear -> scale -> clip -> :math:`\exp_0^c`.

    .. math:: z = \exp_0^c\big(\operatorname{clip}_r(e^{\log s}\,(W\,\mathrm{GAP}(x) + b))\big),
        \qquad \exp_0^c(v) = \tanh(\sqrt c\,\|v\|)\,\frac{v}{\sqrt c\,\|v\|}

    the MMSelfSup counterpart of :class:`hcl_plugin.uhml.UHMLEmbedding` (same layers after the
    backbone, same defaults; no L2 normalisation, see the module docstring).

    Args:
        in_channels: channels of the last backbone stage (512 for ResNet-18, 2048 for ResNet-50).
        out_channels: embedding dimension D (default 128, as :class:`hcl_plugin.uhml.UHMLEmbedding`).
        c: curvature magnitude of the ball (UHML: 1).
        clip_r: feature-clipping radius before ``expmap0``; ``None`` = no clipping.
        feature_scale: initial scale (> 0); ``None``: :math:`1/\sqrt D` (why: :mod:`hcl_plugin.uhml.embedding`).
        learn_scale: learn the scale (else a fixed buffer).
        with_avg_pool: global average pooling of a (B, C, H, W) map; False for (B, C) inputs.
        init_cfg: MMEngine initialisation config.

    Attributes:
        stats: detached health metrics of the last forward (``clipped_fraction``, ``hyp_norm_mean``,
            ``hyp_norm_min``, ``hyp_norm_max``, ``feature_scale``).

    Raises:
        ValueError: ``in_channels``/``out_channels`` < 1, ``clip_r`` or ``feature_scale`` <= 0, ``c`` <= 0.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 128,
        c: float = 1.0,
        clip_r: Optional[float] = 2.3,
        feature_scale: Optional[float] = None,
        learn_scale: bool = True,
        with_avg_pool: bool = True,
        init_cfg: Optional[Union[dict, List[dict]]] = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        try:
            self.projection = LinearBallProjection(in_channels, out_channels, c=float(c), clip_r=clip_r,
                                                   feature_scale=feature_scale, learn_scale=learn_scale)
        except ValueError as error:
            raise ValueError(f"UHMLNeck: {error}") from None
        self.with_avg_pool = with_avg_pool

    @property
    def stats(self) -> Dict[str, Tensor]:
        """Health metrics of the last forward (see :class:`hcl_plugin.uhml.LinearBallProjection`)."""
        return self.projection.stats

    @property
    def c(self) -> float:
        """The curvature magnitude."""
        return float(self.projection.c)

    def forward(self, x: Union[Tensor, Sequence[Tensor]]) -> Tensor:
        """Last element of a backbone's tuple of maps (or one tensor) -> (B, D) points strictly inside the ball."""
        if isinstance(x, (tuple, list)):
            if len(x) == 0:
                raise ValueError("UHMLNeck: got an empty tuple of backbone features")
            x = x[-1]
        if self.with_avg_pool:
            if x.dim() != 4:
                raise ValueError(f"UHMLNeck(with_avg_pool=True) expects (B, C, H, W) features, got {tuple(x.shape)}")
            x = x.mean(dim=(2, 3))
        elif x.dim() != 2:
            raise ValueError(f"UHMLNeck(with_avg_pool=False) expects (B, C) features, got {tuple(x.shape)}")
        return self.projection(x)


@MODELS.register_module()
class UHML(BaseModel):
    r"""UHML: backbone + :class:`UHMLNeck` trained with :class:`~hcl_plugin.losses.HierarchicalLogRatioLoss`.

    ``loss(inputs, data_samples)`` reads each sample's data-set index (metainfo ``dataset_index``,
    packed by ``PackSelfSupInputs(meta_keys=['img_path', 'dataset_index'])`` from
    :class:`~hcl_plugin.mmselfsup.datasets.UHMLImageFolder`), takes those columns of the stored
    pseudo-labels (buffer ``pseudo_labels``, (K, N) int64, fine -> coarse, set by
    :class:`~hcl_plugin.mmselfsup.hooks.UHMLReclusterHook` through :meth:`set_pseudo_labels`), forms
    the (B, B) similarity levels :math:`s_{ij}` (:func:`~hcl_plugin.uhml.similarity_levels`) and returns
    ``dict(loss_uhml=...)`` plus the neck's health metrics (not summed into the loss by MMEngine:
    their names hold no ``loss``). The loss formula is in the module docstring.

    The buffer is part of the ``state_dict``: checkpoints carry the labels, and loading one resizes
    the buffer to the saved shape (:meth:`_load_from_state_dict`).

    Args:
        backbone: backbone config (MMSelfSup/MMClassification ``ResNet``, ``out_indices=[4]``).
        neck: neck config (``UHMLNeck``); its ``c`` is the curvature of the loss too.
        omega: :math:`\Omega \in (0, 1)`, the distance ratio per level (paper/code: 0.1).
        distance: ``"poincare"`` (default) or ``"euclidean"`` (the paper's ablation).
        min_distance: distance floor of the loss, relative to the ball radius.
        pretrained, data_preprocessor, init_cfg: as in MMSelfSup's ``BaseModel``.

    Raises:
        ValueError: no neck; bad ``omega``/``distance`` (from the loss).
    """

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        omega: float = 0.1,
        distance: str = "poincare",
        min_distance: float = 1e-5,
        pretrained: Optional[str] = None,
        data_preprocessor: Optional[Union[dict, nn.Module]] = None,
        init_cfg: Optional[Union[dict, List[dict]]] = None,
    ) -> None:
        if neck is None:
            raise ValueError("UHML needs a neck (e.g. dict(type='UHMLNeck', in_channels=512)) mapping into the ball")
        super().__init__(backbone=backbone, neck=neck, head=None, pretrained=pretrained,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.criterion = HierarchicalLogRatioLoss(omega=omega, distance=distance, c=self.curvature_value,
                                                  min_distance=min_distance)
        self.register_buffer("pseudo_labels", torch.zeros(0, 0, dtype=torch.int64))

    @property
    def curvature_value(self) -> float:
        """Curvature magnitude of the ball the neck maps into (1.0 if the neck has none)."""
        return float(getattr(self.neck, "c", 1.0))

    @property
    def has_pseudo_labels(self) -> bool:
        return self.pseudo_labels.numel() > 0

    def set_pseudo_labels(self, labels: Union[Tensor, np.ndarray]) -> None:
        """Store (K, N) integer labels (fine -> coarse) of the N training samples."""
        labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, Tensor) else labels)
        if labels.dim() != 2 or labels.numel() == 0:
            raise ValueError(f"pseudo-labels must have shape (K, N) with K, N >= 1, got {tuple(labels.shape)}")
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"pseudo-labels must be integers, got {labels.dtype}")
        self.pseudo_labels = labels.to(device=self.pseudo_labels.device, dtype=torch.int64).contiguous()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # the buffer's shape is only known once a clustering has run: take the saved one
        saved = state_dict.get(prefix + "pseudo_labels")
        if isinstance(saved, Tensor) and saved.shape != self.pseudo_labels.shape:
            self.pseudo_labels = torch.zeros(saved.shape, dtype=torch.int64, device=self.pseudo_labels.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extract_feat(self, inputs: Union[Tensor, List[Tensor]], data_samples: Optional[list] = None,
                     **kwargs) -> Tensor:
        """(B, 3, H, W) images (or MMSelfSup's one-view list of them) -> (B, D) points in the ball."""
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 1:
                raise ValueError(f"UHML takes one view per image, got {len(inputs)} views")
            inputs = inputs[0]
        return self.neck(self.backbone(inputs))

    @staticmethod
    def sample_indices(data_samples: Sequence[SelfSupDataSample]) -> Tensor:
        """The ``dataset_index`` of every data sample as an int64 tensor (clear error if it was not packed)."""
        indices = []
        for position, sample in enumerate(data_samples):
            if "dataset_index" not in sample.metainfo:
                raise KeyError(
                    f"data sample {position} has no 'dataset_index' in its metainfo (keys: {sorted(sample.metainfo)}); "
                    "use dict(type='UHMLImageFolder', ...) and pack it with "
                    "dict(type='PackSelfSupInputs', meta_keys=['img_path', 'dataset_index'])"
                )
            indices.append(int(sample.metainfo["dataset_index"]))
        return torch.tensor(indices, dtype=torch.int64)

    def loss(self, inputs: Union[Tensor, List[Tensor]], data_samples: List[SelfSupDataSample],
             **kwargs) -> Dict[str, Tensor]:
        """``dict(loss_uhml=L, clipped_fraction=..., hyp_norm_mean=..., feature_scale=...)`` of a batch."""
        if not self.has_pseudo_labels:
            raise RuntimeError("UHML has no pseudo-labels yet: add dict(type='UHMLReclusterHook', ...) to "
                               "custom_hooks (or call model.set_pseudo_labels first)")
        index = self.sample_indices(data_samples).to(self.pseudo_labels.device)
        num_samples = self.pseudo_labels.shape[1]
        if int(index.min()) < 0 or int(index.max()) >= num_samples:
            raise IndexError(f"dataset_index {int(index.max())} outside the {num_samples} clustered training samples; "
                             "is the train dataset the one the UHMLReclusterHook embedded?")
        z = self.extract_feat(inputs)
        levels = similarity_levels(self.pseudo_labels[:, index]).to(z.device)
        loss = self.criterion(z, levels)
        out = {"loss_uhml": loss}
        out.update({k: v for k, v in getattr(self.neck, "stats", {}).items() if k != "hyp_norm_min"})
        return out

    def predict(self, inputs: Union[Tensor, List[Tensor]], data_samples: Optional[List[SelfSupDataSample]] = None,
                **kwargs) -> List[SelfSupDataSample]:
        """Data samples with field ``embedding`` = the (D,) point in the ball of each image."""
        z = self.extract_feat(inputs)
        if data_samples is None:
            data_samples = [SelfSupDataSample() for _ in range(z.shape[0])]
        for sample, point in zip(data_samples, z):
            sample.embedding = point
        return data_samples
