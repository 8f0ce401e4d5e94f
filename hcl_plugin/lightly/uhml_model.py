r"""UHML's Lightning model: :class:`UHML` (Yan et al., CVPR 2021 [1]).

The embedding (:class:`~hcl_plugin.uhml.UHMLEmbedding`) is

.. math:: z = \exp_0^c\big(\operatorname{clip}_r(s\,(W f(x) + b))\big)

with a learnable scale :math:`s` and **no** L2 normalisation (see :mod:`hcl_plugin.uhml.embedding`),
trained with the hierarchical log-ratio loss (:class:`~hcl_plugin.losses.HierarchicalLogRatioLoss`)

.. math::
    \mathcal{L} = \frac{1}{|T|} \sum_{(i, j, l) \in T}
        \left(\log\frac{d(z_i, z_j)}{d(z_i, z_l)} - (s_{ij} - s_{il})\log\Omega\right)^2,
    \qquad s_{ij} = K - \min\{k : y^{(k)}_i = y^{(k)}_j\}

(:func:`hcl_plugin.uhml.similarity_levels`; :math:`T` the distinct triplets with
:math:`s_{ij} > s_{il}`; ``d`` the Poincaré distance, or the Euclidean one for the paper's ablation)
on the K levels of pseudo-labels :math:`y^{(k)}` (fine -> coarse) that
:class:`~hcl_plugin.lightly.uhml_recluster.ReclusterCallback` recomputes every epoch and hands over
with :meth:`UHML.set_pseudo_labels`. The data, evaluation and command line of the Lightning example
(``lightly_examples/uhml.py``) are in :mod:`hcl_plugin.lightly.uhml_training`; the MMEngine
counterpart is :mod:`hcl_plugin.mmselfsup.uhml_model`.

Needs ``pytorch_lightning`` and ``torchvision`` (``pip install 'hcl_plugin[lightly,uhml]'``).

    >>> from hcl_plugin.lightly.uhml_model import UHML
    >>> module = UHML(backbone="resnet18", dim=128, c=1.0)        # doctest: +SKIP

[1] J. Yan, L. Luo, C. Deng, H. Huang. "Unsupervised Hyperbolic Metric Learning". CVPR 2021.
    https://openaccess.thecvf.com/content/CVPR2021/html/Yan_Unsupervised_Hyperbolic_Metric_Learning_CVPR_2021_paper.html
"""

from __future__ import annotations

from typing import Optional, Tuple

import pytorch_lightning as pl
import torch
from torch import Tensor

from hcl_plugin.losses import HierarchicalLogRatioLoss
from hcl_plugin.uhml import UHMLEmbedding, similarity_levels

__all__ = ["UHML"]


class UHML(pl.LightningModule):
    """UHML: :class:`~hcl_plugin.uhml.UHMLEmbedding` trained with :class:`~hcl_plugin.losses.HierarchicalLogRatioLoss`.

    Batches are ``(images, class labels (unused), sample indices)``; the indices pick the columns of
    the stored pseudo-labels (:meth:`set_pseudo_labels`, set by
    :class:`~hcl_plugin.lightly.uhml_recluster.ReclusterCallback`), whose similarity levels are the
    loss's targets. The checkpoint's ``state_dict`` holds ``embedding.backbone.<torchvision key>``,
    ``embedding.linear.*`` and ``embedding.log_scale``.

    Args:
        backbone: torchvision ResNet name (:data:`hcl_plugin.uhml.embedding.BACKBONES`).
        dim: embedding dimension D.
        c: curvature magnitude (the ball has curvature -c; paper: 1).
        clip_r: feature-clipping radius before ``expmap0``; ``None``: no clipping.
        feature_scale: initial scale s (default :math:`1/\\sqrt{D}`).
        learn_scale: learn s (stored as its log).
        weights: local backbone weights (torchvision ``state_dict`` or a checkpoint of this project),
            read once here and recorded as ``initial_weights`` (metadata only: ``load_from_checkpoint``
            does not need the file again).
        omega: the loss's :math:`\\Omega`.
        distance: ``"poincare"`` (UHML) or ``"euclidean"`` (the paper's ablation).
        lr: Adam learning rate (paper: 1e-5).
        weight_decay: Adam weight decay (paper: 5e-4).
        image_size: training crop side (recorded in the hyper-parameters).
        initial_weights: the weights file of an earlier build (set from ``weights``; kept by checkpoints).
        train_bn: train the backbone's BatchNorm statistics; default ``False``: frozen, as the released
            code (:class:`~hcl_plugin.uhml.UHMLEmbedding`'s ``train_bn``), so the re-clustering features and
            the features the loss sees come from the same BatchNorm state.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        dim: int = 128,
        c: float = 1.0,
        clip_r: Optional[float] = 2.3,
        feature_scale: Optional[float] = None,
        learn_scale: bool = True,
        weights: Optional[str] = None,
        omega: float = 0.1,
        distance: str = "poincare",
        lr: float = 1e-4,
        weight_decay: float = 5e-4,
        image_size: int = 32,
        initial_weights: Optional[str] = None,
        train_bn: bool = False,
    ) -> None:
        super().__init__()
        # ``weights`` is read once here; the checkpoint records the file as ``initial_weights`` (metadata),
        # so load_from_checkpoint does not need the file any more
        self.save_hyperparameters(ignore=["weights"])
        if weights is not None:
            self.hparams.initial_weights = str(weights)
        self.embedding = UHMLEmbedding(backbone, dim=dim, c=c, clip_r=clip_r, feature_scale=feature_scale,
                                       learn_scale=learn_scale, weights=weights, train_bn=train_bn)
        self.criterion = HierarchicalLogRatioLoss(omega=omega, distance=distance, c=c)
        self.pseudo_labels: Optional[Tensor] = None

    @property
    def curvature_value(self) -> float:
        """The curvature magnitude c as a float."""
        return float(self.hparams.c)

    def set_pseudo_labels(self, labels: Tensor) -> None:
        """(K, N) int64 labels of the training samples, fine -> coarse."""
        self.pseudo_labels = labels.to(torch.int64).cpu()

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) images -> (B, D) points of the Poincaré ball."""
        return self.embedding(images)

    def training_step(self, batch: Tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        """The loss of one balanced batch; logs ``loss`` and the embedding's ``health/*`` statistics."""
        images, _, index = batch
        if self.pseudo_labels is None:
            raise RuntimeError("no pseudo-labels: train with a ReclusterCallback (or call set_pseudo_labels first)")
        levels = similarity_levels(self.pseudo_labels[:, index.cpu()]).to(images.device)
        z = self(images)
        loss = self.criterion(z, levels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.global_step}")
        batch_size = images.shape[0]
        self.log("loss", loss, prog_bar=True, batch_size=batch_size)
        self.log_dict({f"health/{k}": v for k, v in self.embedding.stats.items()}, batch_size=batch_size)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam with ``lr`` and ``weight_decay`` (the paper's optimiser)."""
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
