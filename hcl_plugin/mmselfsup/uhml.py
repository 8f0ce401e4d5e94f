r"""UHML (Unsupervised Hyperbolic Metric Learning, Yan et al. CVPR 2021 [1]) as MMSelfSup 1.0 / MMEngine components.

Registered in MMSelfSup's registries (``default_scope='mmselfsup'``) on import::

    custom_imports = dict(imports=['hcl_plugin.mmselfsup', 'hcl_plugin.mmselfsup.uhml'],
                          allow_failed_imports=False)

- ``MODELS``: ``UHML`` (backbone -> :class:`UHMLNeck` -> :class:`~hcl_plugin.losses.HierarchicalLogRatioLoss`),
  ``UHMLNeck`` (global average pooling -> linear -> learnable scale -> clipping -> :math:`\exp_0^c`);
- ``DATASETS``: ``UHMLImageFolder`` (``root/<class>/<img>`` or ``root/<superclass>/<class>/<img>``,
  split by class halves as :class:`~hcl_plugin.eval.RetrievalImageFolder`);
- ``DATA_SAMPLERS``: ``UHMLBalancedBatchSampler`` (a ``batch_sampler`` of the train dataloader:
  P pseudo-classes x M instances, :class:`~hcl_plugin.cluster.BalancedBatchSampler`);
- ``HOOKS``: ``UHMLReclusterHook`` (embed the training set, cluster it hierarchically, hand the
  labels to the model and the sampler; every ``interval`` epochs).

One epoch of UHML [1]: embed every training image with the current network (no augmentation),
cluster the embeddings at K levels fine -> coarse (:func:`hcl_plugin.cluster.hierarchical_labels`:
Ward linkage in ``logmap0`` coordinates, cut at cluster counts or at Ward heights), then train on
batches of P finest-level pseudo-classes x M instances with the hierarchical log-ratio loss

.. math::
    \mathcal{L} = \frac{1}{|T|} \sum_{(i, j, l) \in T}
        \left(\log\frac{d(z_i, z_j)}{d(z_i, z_l)} - (s_{ij} - s_{il})\log\Omega\right)^2,
    \qquad s_{ij} = K - \min\{k : y^{(k)}_i = y^{(k)}_j\}

(:func:`hcl_plugin.cluster.similarity_levels`; :math:`T` the distinct triplets with
:math:`s_{ij} > s_{il}`; ``d`` the Poincaré distance). The embedding is
:math:`z = \exp_0^c(\operatorname{clip}_r(s\,(W\,\mathrm{GAP}(f(x)) + b)))` with a learnable scale
:math:`s` and **no** L2 normalisation (the released code normalises, which pins every point to the
norm :math:`\tanh(1)`; see :mod:`hcl_plugin.cluster.embedding`).

Ordering in MMEngine 0.10's ``EpochBasedTrainLoop.run_epoch``: ``before_train_epoch`` hooks run,
then ``for data_batch in self.dataloader`` creates the epoch's iterator; so
:meth:`UHMLReclusterHook.before_train_epoch` re-clusters before the epoch's first batch is drawn
(unlike PyTorch Lightning, where the first epoch's iterator exists before the epoch-start callback;
:mod:`hcl_plugin.lightly.uhml_recluster`). ``Runner.build_dataloader`` builds a ``batch_sampler``
dict from ``DATA_SAMPLERS`` with ``default_args=dict(sampler=<the built sampler>,
batch_size=<the loader's batch_size>)``; :class:`UHMLBalancedBatchSampler` takes both (the data set
is ``sampler.dataset``; ``batch_size`` must equal P x M).

Multi-process (DDP): rank 0 embeds and clusters, the labels are broadcast
(``mmengine.dist.broadcast_object_list``; an error on rank 0 is broadcast too, so no rank waits
forever); the batch sampler shards the epoch's batches by rank. Resume: the labels are the model
buffer ``pseudo_labels`` (K, N) and so are saved in every checkpoint; a resumed run with
``interval > 1`` continues with the saved labels until the next re-clustering epoch.

Logged per clustering (``runner.message_hub``, shown by ``LoggerHook`` and written to the vis
backends): ``recluster/clusters_level<k>`` (clusters at level k, 0 = finest), ``recluster/seconds``
(embedding + clustering + broadcast), ``recluster/changed_fraction`` (fraction of samples whose
finest label changed, clusters matched by majority overlap; 1.0 the first time), and a line in the
MMEngine log with the progress of the embedding pass.

[1] J. Yan, L. Luo, C. Deng, H. Huang. "Unsupervised Hyperbolic Metric Learning". CVPR 2021.
    https://openaccess.thecvf.com/content/CVPR2021/html/Yan_Unsupervised_Hyperbolic_Metric_Learning_CVPR_2021_paper.html
"""

from __future__ import annotations

import copy
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.dataset import BaseDataset, default_collate
from mmengine.dist import broadcast_object_list, get_dist_info, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmselfsup.models.algorithms.base import BaseModel
from mmselfsup.registry import DATA_SAMPLERS, DATASETS, HOOKS, MODELS
from mmselfsup.structures import SelfSupDataSample
from mmselfsup.utils import get_model
from torch import Tensor, nn
from torch.utils.data import DataLoader

from hcl_plugin.cluster import (BalancedBatchSampler, LinearBallProjection, hierarchical_labels, label_change_fraction,
                                similarity_levels)
from hcl_plugin.eval.image_folder import LAYOUTS, RetrievalImageFolder
from hcl_plugin.losses import HierarchicalLogRatioLoss

__all__ = [
    "UHML",
    "UHMLNeck",
    "UHMLImageFolder",
    "UHMLBalancedBatchSampler",
    "UHMLReclusterHook",
    "detect_layout",
    "embed_with_model",
    "label_change_fraction",
]


# ----------------------------------------------------------------------------------------------- model


@MODELS.register_module()
class UHMLNeck(BaseModule):
    r"""Backbone feature map -> a point in the Poincaré ball: GAP -> linear -> scale -> clip -> :math:`\exp_0^c`.

    .. math:: z = \exp_0^c\big(\operatorname{clip}_r(e^{\log s}\,(W\,\mathrm{GAP}(x) + b))\big),
        \qquad \exp_0^c(v) = \tanh(\sqrt c\,\|v\|)\,\frac{v}{\sqrt c\,\|v\|}

    the MMSelfSup counterpart of :class:`hcl_plugin.cluster.UHMLEmbedding` (same layers after the
    backbone, same defaults; no L2 normalisation, see the module docstring).

    Args:
        in_channels: channels of the last backbone stage (512 for ResNet-18, 2048 for ResNet-50).
        out_channels: embedding dimension D (default 128, as :class:`hcl_plugin.cluster.UHMLEmbedding`).
        c: curvature magnitude of the ball (UHML: 1).
        clip_r: feature-clipping radius before ``expmap0``; ``None`` = no clipping.
        feature_scale: initial scale (> 0); ``None``: :math:`1/\sqrt D` (measured choice, see
            :mod:`hcl_plugin.cluster.embedding`).
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
        """Health metrics of the last forward (see :class:`hcl_plugin.cluster.LinearBallProjection`)."""
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
    :class:`UHMLImageFolder`), takes those columns of the
    stored pseudo-labels (buffer ``pseudo_labels``, (K, N) int64, fine -> coarse, set by
    :class:`UHMLReclusterHook` through :meth:`set_pseudo_labels`), forms the (B, B) similarity levels
    :math:`s_{ij}` (:func:`~hcl_plugin.cluster.similarity_levels`) and returns
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


# ----------------------------------------------------------------------------------------------- data


def detect_layout(root: str) -> str:
    """``"class"`` when the first visible sub-folder holds files, ``"superclass/class"`` when only folders."""
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir() and not entry.name.startswith("."):
            inner = [e for e in os.scandir(entry.path) if not e.name.startswith(".")]
            return "superclass/class" if inner and all(e.is_dir() for e in inner) else "class"
    return "class"


@DATASETS.register_module()
class UHMLImageFolder(BaseDataset):
    """Retrieval image folder for MMEngine: ``data_root/<class>/<img>`` or ``data_root/<super>/<class>/<img>``.

    Listing and splitting are those of :class:`~hcl_plugin.eval.RetrievalImageFolder`: classes in
    sorted order, ``split='train'`` the first ``num_classes // 2`` classes (the UHML / deep metric
    learning protocol: CUB classes 1-100), ``'test'`` the rest, ``'all'`` everything. Each item is
    ``dict(img_path=..., gt_label=<class index, unused by UHML>, dataset_index=<the index the batch
    sampler drew>)``, which ``PackSelfSupInputs(meta_keys=['img_path', 'dataset_index'])`` must pack
    for :class:`UHML`. (MMEngine's own ``sample_idx`` cannot be packed as a meta key: MMSelfSup's
    ``SelfSupDataSample.sample_idx`` is a property that only accepts ``InstanceData``.)

    Args:
        data_root: the top folder (e.g. ``data/CUB_200_2011/images``).
        layout: ``'class'``, ``'superclass/class'`` or ``'auto'`` (detected from the first folder).
        split: ``'train'``, ``'test'`` or ``'all'``.
        pipeline, serialize_data, lazy_init, max_refetch, indices: as in ``mmengine.dataset.BaseDataset``.

    Raises:
        FileNotFoundError: ``data_root`` missing; ValueError: unknown layout/split, no classes, a
        class folder without images (named), an empty split.
    """

    def __init__(self, data_root: str, layout: str = "auto", split: str = "train", pipeline: Sequence = (),
                 serialize_data: bool = True, lazy_init: bool = False, max_refetch: int = 1000,
                 indices: Optional[Union[int, Sequence[int]]] = None, **kwargs: Any) -> None:
        if layout != "auto" and layout not in LAYOUTS:
            raise ValueError(f"UHMLImageFolder: layout must be 'auto' or one of {LAYOUTS}, got {layout!r}")
        self.layout = layout
        self.split = split
        super().__init__(data_root=data_root, pipeline=list(pipeline), serialize_data=serialize_data,
                         lazy_init=lazy_init, max_refetch=max_refetch, indices=indices, **kwargs)

    def load_data_list(self) -> List[dict]:
        root = os.fspath(self.data_root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"UHMLImageFolder: data_root {root!r} does not exist or is not a folder")
        layout = detect_layout(root) if self.layout == "auto" else self.layout
        folder = RetrievalImageFolder(root, layout=layout, split=self.split)
        if not folder.samples:
            raise ValueError(f"UHMLImageFolder: split {self.split!r} of {root!r} is empty "
                             f"({folder.num_classes} class(es) in all; 'train' needs at least 2)")
        self._metainfo["classes"] = tuple(folder.class_names)
        self._metainfo["layout"] = layout
        return [dict(img_path=path, gt_label=label) for path, label in folder.samples]

    def get_data_info(self, idx: int) -> dict:
        """The item's info with ``dataset_index`` = MMEngine's ``sample_idx`` (the index the sampler drew)."""
        info = super().get_data_info(idx)
        info["dataset_index"] = info["sample_idx"]
        return info


@DATA_SAMPLERS.register_module()
class UHMLBalancedBatchSampler(BalancedBatchSampler):
    """:class:`~hcl_plugin.cluster.BalancedBatchSampler` as an MMEngine ``batch_sampler``.

    Config (train dataloader)::

        batch_size=32,                                  # = P x M
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_sampler=dict(type='UHMLBalancedBatchSampler', instances_per_class=4),

    ``Runner.build_dataloader`` passes ``sampler`` (the built sampler; only its ``dataset`` and
    ``seed`` are used, and it is kept as ``.sampler`` so MMEngine's ``DistSamplerSeedHook`` finds a
    ``set_epoch``) and ``batch_size``. The world size and rank come from ``mmengine.dist``. Until
    :class:`UHMLReclusterHook` sets labels, every sample is its own class.

    Args:
        sampler: the dataloader's sampler (``DefaultSampler``: has ``dataset`` and ``seed``).
        batch_size: P x M.
        instances_per_class: M (UHML: 8).
        classes_per_batch: P (default ``batch_size // M``); if given, P x M must equal ``batch_size``.
        num_batches: batches per epoch and process (default ``N // (P M world_size)``, at least 1).
        seed: default: ``sampler.seed`` (MMEngine's ``randomness.seed``), else 0.

    Raises:
        ValueError: ``batch_size`` not a multiple of M or not P x M; a sampler without a data set.
    """

    def __init__(self, sampler: Any, batch_size: int, instances_per_class: int = 8,
                 classes_per_batch: Optional[int] = None, num_batches: Optional[int] = None,
                 seed: Optional[int] = None) -> None:
        dataset = getattr(sampler, "dataset", getattr(sampler, "data_source", None))
        if dataset is None:
            raise ValueError(f"UHMLBalancedBatchSampler: the sampler {type(sampler).__name__} has no 'dataset'; "
                             "use sampler=dict(type='DefaultSampler', shuffle=True)")
        if int(instances_per_class) != instances_per_class or instances_per_class < 1:
            raise ValueError(f"UHMLBalancedBatchSampler: instances_per_class must be a positive integer, "
                             f"got {instances_per_class}")
        if classes_per_batch is None:
            if batch_size % instances_per_class:
                raise ValueError(f"UHMLBalancedBatchSampler: batch_size ({batch_size}) must be a multiple of "
                                 f"instances_per_class ({instances_per_class})")
            classes_per_batch = batch_size // instances_per_class
        elif classes_per_batch * instances_per_class != batch_size:
            raise ValueError(f"UHMLBalancedBatchSampler: classes_per_batch x instances_per_class = "
                             f"{classes_per_batch} x {instances_per_class} != the dataloader's batch_size {batch_size}")
        if seed is None:
            seed = getattr(sampler, "seed", None) or 0
        rank, world_size = get_dist_info()
        self.sampler = sampler
        super().__init__(torch.arange(len(dataset)), classes_per_batch=classes_per_batch,
                         instances_per_class=instances_per_class, num_batches=num_batches, seed=int(seed),
                         num_replicas=world_size, rank=rank)


# ----------------------------------------------------------------------------------------------- hook


@torch.no_grad()
def embed_with_model(model: UHML, loader: DataLoader, log_every: int = 0, desc: str = "embedding") -> Tensor:
    """Embed every batch of ``loader`` (MMEngine-style items) with ``model``: (N, D) float32 on the CPU, in order.

    Runs ``model.data_preprocessor(batch, training=False)`` then ``model.extract_feat``; the model's
    train/eval mode is the caller's choice. ``log_every > 0`` logs progress every that many batches.
    """
    chunks: List[Tensor] = []
    total = len(loader)
    for step, batch in enumerate(loader):
        data = model.data_preprocessor(batch, False)
        # MMSelfSup's SelfSupDataPreprocessor returns (inputs, data_samples); MMEngine's a dict
        inputs = data["inputs"] if isinstance(data, dict) else data[0]
        chunks.append(model.extract_feat(inputs).detach().float().cpu())
        if log_every and ((step + 1) % log_every == 0 or step + 1 == total):
            print_log(f"{desc}: {step + 1}/{total} batches", logger="current")
    if not chunks:
        raise ValueError(f"{desc}: the data set to embed is empty")
    return torch.cat(chunks)


@HOOKS.register_module()
class UHMLReclusterHook(Hook):
    """Every ``interval`` epochs: embed the training set, cluster it at K levels, update model and sampler.

    Before the epoch's data iterator exists (``before_train_epoch``; see the module docstring), rank
    0 embeds the training images without augmentation, clusters them with
    :func:`~hcl_plugin.cluster.hierarchical_labels` and broadcasts the (K, N) labels; every rank
    stores them in the model (``UHML.set_pseudo_labels``, a buffer saved in checkpoints) and in the
    train loader's :class:`UHMLBalancedBatchSampler` (finest level) and calls its ``set_epoch``.

    The embedding data set is the train dataloader's dataset config with ``pipeline`` replaced by
    ``embed_pipeline`` (e.g. resize + centre crop + ``PackSelfSupInputs``), or ``embed_dataset``
    given in full; it must list the same images in the same order as the training set (checked).

    Args:
        n_clusters: cluster counts per level, fine -> coarse (CUB: ``[100, 50]``); or
        thresholds: Ward heights per level, fine -> coarse (exclusive with ``n_clusters``).
        interval: re-cluster at epochs 0, interval, 2 interval, ...
        embed_pipeline: test-time pipeline for the embedding pass (used with the train dataset config).
        embed_dataset: a full dataset config for the embedding pass (overrides ``embed_pipeline``).
        batch_size, num_workers: of the embedding pass.
        seed: k-means seed of the two-stage scheme (plus the epoch).
        log_every: log the embedding progress every that many batches (0: off).
        cluster_kwargs: passed on to ``hierarchical_labels`` (``max_exact``, ``num_centroids``, ...).

    Attributes:
        history: one dict per clustering (``epoch``, ``seconds``, ``changed_fraction``,
            ``clusters_level<k>``), on every rank.

    Raises:
        ValueError: both or neither of ``n_clusters``/``thresholds``; ``interval < 1``; neither
            ``embed_pipeline`` nor ``embed_dataset``; at run time: fewer training samples than
            clusters, an embedding set that differs from the training set.
        TypeError: the model is not a ``UHML``-like model (no ``set_pseudo_labels``) or the train
            loader's batch sampler has no ``set_labels``.
    """

    priority = "NORMAL"

    def __init__(
        self,
        n_clusters: Optional[Sequence[int]] = None,
        thresholds: Optional[Sequence[float]] = None,
        interval: int = 1,
        embed_pipeline: Optional[Sequence[dict]] = None,
        embed_dataset: Optional[dict] = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        log_every: int = 0,
        cluster_kwargs: Optional[Dict[str, Any]] = None,
    ) -> None:
        if (n_clusters is None) == (thresholds is None):
            raise ValueError("UHMLReclusterHook: give exactly one of n_clusters (e.g. [100, 50]) or thresholds")
        if int(interval) != interval or interval < 1:
            raise ValueError(f"UHMLReclusterHook: interval must be a positive integer, got {interval}")
        if embed_pipeline is None and embed_dataset is None:
            raise ValueError("UHMLReclusterHook: give embed_pipeline (a test pipeline applied to the train dataset "
                             "config) or embed_dataset (a full dataset config)")
        self.n_clusters = None if n_clusters is None else [int(k) for k in n_clusters]
        self.thresholds = None if thresholds is None else [float(t) for t in thresholds]
        self.interval = int(interval)
        self.embed_pipeline = None if embed_pipeline is None else [dict(t) for t in embed_pipeline]
        self.embed_dataset_cfg = None if embed_dataset is None else dict(embed_dataset)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.log_every = int(log_every)
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.history: List[Dict[str, float]] = []
        self._loader: Optional[DataLoader] = None

    # -------------------------------------------------------------------------------- helpers

    @staticmethod
    def _model(runner) -> UHML:
        model = get_model(runner.model)
        if not hasattr(model, "set_pseudo_labels") or not hasattr(model, "pseudo_labels"):
            raise TypeError(f"UHMLReclusterHook needs a model with set_pseudo_labels/pseudo_labels (UHML), "
                            f"got {type(model).__name__}")
        return model

    @staticmethod
    def _batch_sampler(runner) -> BalancedBatchSampler:
        sampler = getattr(runner.train_dataloader, "batch_sampler", None)
        if not hasattr(sampler, "set_labels"):
            raise TypeError(
                f"UHMLReclusterHook: the train dataloader's batch_sampler is {type(sampler).__name__}, which takes no "
                "labels; set train_dataloader.batch_sampler=dict(type='UHMLBalancedBatchSampler', "
                "instances_per_class=M) and batch_size=P*M")
        return sampler

    def _train_dataset(self, runner) -> BaseDataset:
        return runner.train_dataloader.dataset

    def _embedding_loader(self, runner) -> DataLoader:
        if self._loader is not None:
            return self._loader
        if self.embed_dataset_cfg is not None:
            cfg = copy.deepcopy(self.embed_dataset_cfg)
        else:
            train_cfg = runner.cfg.get("train_dataloader", {}).get("dataset")
            if not isinstance(train_cfg, dict):
                raise ValueError("UHMLReclusterHook: no train_dataloader.dataset config to derive the embedding "
                                 "set from; give embed_dataset=dict(...)")
            cfg = copy.deepcopy(dict(train_cfg))
            cfg["pipeline"] = copy.deepcopy(self.embed_pipeline)
        dataset = DATASETS.build(cfg)
        train = self._train_dataset(runner)
        if len(dataset) != len(train):
            raise ValueError(f"UHMLReclusterHook: the embedding set has {len(dataset)} samples, the training set "
                             f"{len(train)}; they must list the same images in the same order")
        if hasattr(dataset, "get_data_info") and hasattr(train, "get_data_info"):
            for i in range(len(train)):
                a, b = dataset.get_data_info(i).get("img_path"), train.get_data_info(i).get("img_path")
                if a != b:
                    raise ValueError(f"UHMLReclusterHook: sample {i} of the embedding set is {a!r}, of the training "
                                     f"set {b!r}; they must list the same images in the same order")
        # a plain sequential loader: only rank 0 embeds, so MMEngine's DefaultSampler (which shards) is not used
        self._loader = DataLoader(dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                                  collate_fn=default_collate)
        return self._loader

    def compute_labels(self, runner, epoch: int) -> np.ndarray:
        """Embed the training set with the current model (eval mode) and cluster it: (K, N) int64 labels."""
        model = self._model(runner)
        loader = self._embedding_loader(runner)
        was_training = model.training
        model.eval()
        try:
            z = embed_with_model(model, loader, self.log_every, desc=f"UHML re-clustering (epoch {epoch}): embedding")
        finally:
            model.train(was_training)
        return hierarchical_labels(z, model.curvature_value, n_clusters=self.n_clusters, thresholds=self.thresholds,
                                   seed=self.seed + epoch, name=f"epoch {epoch} embeddings of the training set",
                                   **self.cluster_kwargs)

    # -------------------------------------------------------------------------------- hooks

    def before_train(self, runner) -> None:
        """Check the configuration early (on every rank: the same error everywhere, no rank left waiting)."""
        self._model(runner)
        sampler = self._batch_sampler(runner)
        n = sampler.num_samples
        if self.n_clusters is not None and self.n_clusters[0] > n:
            raise ValueError(f"UHMLReclusterHook: fewer training samples ({n}) than clusters requested "
                             f"({self.n_clusters[0]} at the finest level, n_clusters={self.n_clusters}); "
                             "lower n_clusters or add images")

    def before_train_epoch(self, runner) -> None:
        epoch = runner.epoch
        model = self._model(runner)
        sampler = self._batch_sampler(runner)
        sampler.set_epoch(epoch)
        if epoch % self.interval == 0 or not model.has_pseudo_labels:
            self.recluster(runner)
        else:  # e.g. resumed between two re-clusterings: the checkpoint's labels drive the sampler
            sampler.set_labels(model.pseudo_labels.cpu())

    def recluster(self, runner) -> np.ndarray:
        """Compute new labels on rank 0, broadcast them, hand them to model and sampler, and log."""
        epoch = runner.epoch
        model = self._model(runner)
        sampler = self._batch_sampler(runner)
        start = time.perf_counter()
        payload: Any = None
        if get_rank() == 0:
            runner.logger.info(f"epoch {epoch}: UHML re-clustering of {sampler.num_samples} training samples")
            try:
                payload = self.compute_labels(runner, epoch)
            except Exception as error:  # noqa: BLE001  (sent to the other ranks, then re-raised)
                payload = error
        if get_world_size() > 1:
            box = [payload if not isinstance(payload, Exception) else f"{type(payload).__name__}: {payload}"]
            broadcast_object_list(box, src=0)
            if isinstance(payload, Exception):
                raise payload
            if isinstance(box[0], str):
                raise RuntimeError(f"UHML re-clustering failed on rank 0: {box[0]}")
            labels = np.asarray(box[0])
        else:
            if isinstance(payload, Exception):
                raise payload
            labels = np.asarray(payload)
        if labels.shape[1] != sampler.num_samples:
            raise ValueError(f"UHMLReclusterHook: {labels.shape[1]} labels for {sampler.num_samples} training samples")
        seconds = time.perf_counter() - start
        previous = model.pseudo_labels[0].cpu().numpy() if model.has_pseudo_labels else None
        changed = 1.0 if previous is None else label_change_fraction(previous, labels[0])
        model.set_pseudo_labels(torch.from_numpy(labels))
        sampler.set_labels(labels[0])
        record: Dict[str, float] = {"epoch": float(epoch), "seconds": seconds, "changed_fraction": changed}
        record.update({f"clusters_level{k}": float(len(np.unique(row))) for k, row in enumerate(labels)})
        self.history.append(record)
        for key, value in record.items():
            if key != "epoch":
                runner.message_hub.update_scalar(f"train/recluster/{key}", value)
        counts = ", ".join(str(int(record[f"clusters_level{k}"])) for k in range(labels.shape[0]))
        runner.logger.info(f"epoch {epoch}: re-clustered {labels.shape[1]} samples into [{counts}] clusters "
                           f"(fine -> coarse) in {seconds:.1f} s; {100 * changed:.1f}% of the finest labels changed")
        return labels
