"""Lightning callback for UHML: re-cluster the training set into multi-level pseudo-labels every epoch.

UHML [1] alternates clustering and training: before every epoch the whole training set is embedded
with the current network, clustered hierarchically (:func:`hcl_plugin.uhml.hierarchical_labels`,
cluster counts or Ward thresholds per level) or, as the flat control, by k-means
(:func:`hcl_plugin.uhml.flat_kmeans_labels`), and the new labels drive the balanced batch sampler
(:class:`hcl_plugin.uhml.BalancedBatchSampler`, finest level) and the similarity levels of the loss
(the module's stored pseudo-labels, indexed by the batch's sample indices). The step itself is the
framework-free :func:`hcl_plugin.uhml.recluster.recluster`, shared with the MMEngine hook
(:mod:`hcl_plugin.mmselfsup.hooks`); this module adds when it runs, the broadcast and the logging.

When it runs. PyTorch Lightning 2.x creates the first epoch's data-loader iterator (and prefetches a
batch) before ``on_train_start``/``on_train_epoch_start``, but later epochs' iterators after
``on_train_epoch_start``. So the labels for the first epoch of a fit are computed in ``on_fit_start``
and the following ones in ``on_train_epoch_start``, which also calls ``sampler.set_epoch(epoch)``
(Lightning does not call ``set_epoch`` on a batch sampler). With ``every_n_epochs > 1`` the labels are
kept in between. When a fit resumes from a checkpoint, ``on_fit_start`` runs before Lightning restores
the epoch counter: the labels come from the restored weights, but the first resumed epoch's batches
are drawn with the sampler's epoch-0 seed (later epochs use their own).

Multi-process (DDP): the embedding and the clustering run on global rank 0 only and the result is
broadcast with ``trainer.strategy.broadcast``, so every process trains on the same labels; an error on
rank 0 is broadcast too (:func:`hcl_plugin.utils.distributed.compute_on_rank0`): rank 0 raises it and
the other ranks raise a ``RuntimeError`` quoting it, instead of waiting forever.
:meth:`ReclusterCallback.setup` tells the sampler the world size and rank (the trainer needs
``use_distributed_sampler=False``, since the batch sampler already shards).

Logged per clustering (through the trainer's logger, at the current global step):
``recluster/clusters_level<k>`` (number of clusters at level k, 0 = finest), ``recluster/seconds``
(embedding + clustering time on rank 0) and ``recluster/changed_fraction`` (fraction of samples whose finest
label differs from the previous clustering after matching clusters by majority overlap; 1.0 the first
time). :attr:`ReclusterCallback.history` keeps the same numbers in memory.

[1] J. Yan, L. Luo, C. Deng, H. Huang. "Unsupervised Hyperbolic Metric Learning". CVPR 2021.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from hcl_plugin.uhml import recluster as uhml_recluster
from hcl_plugin.uhml.batch_sampler import BalancedBatchSampler
from hcl_plugin.uhml.clustering import label_change_fraction
from hcl_plugin.uhml.recluster import ReclusterResult, check_clustering, embed_dataset, images_of
from hcl_plugin.utils.distributed import compute_on_rank0

__all__ = ["ReclusterCallback", "embed_dataset", "label_change_fraction"]


class ReclusterCallback(pl.Callback):
    """Embed the training set, cluster it at K levels and update the sampler and the module's pseudo-labels.

    Args:
        dataset: the training images in a fixed order with a deterministic transform (no augmentation);
            item i must be the sample the training loader's index i refers to.
        sampler: the :class:`~hcl_plugin.uhml.BalancedBatchSampler` of the training loader (optional).
        n_clusters: cluster counts per level, fine -> coarse (e.g. ``[100, 50]``); or
        thresholds: Ward heights per level (exclusive with ``n_clusters``; see ``hierarchical_labels``).
        c: curvature of the ball the module embeds into (default: ``pl_module.curvature_value``, else 1).
        batch_size, num_workers: of the embedding pass.
        every_n_epochs: re-cluster at epochs 0, n, 2n, ...
        seed: k-means seed of the two-stage scheme (plus the epoch).
        progress: show a progress bar while embedding.
        cluster_kwargs: passed on to the clustering function (e.g. ``max_exact``).
        method: ``"ward"`` (UHML: :func:`~hcl_plugin.uhml.hierarchical_labels`) or ``"kmeans"``
            (the flat control: :func:`~hcl_plugin.uhml.flat_kmeans_labels`, one level; needs exactly
            one ``n_clusters`` count).

    The module must map a batch of images to points in the ball with ``pl_module(images)`` and accept
    the labels through ``pl_module.set_pseudo_labels(labels)`` (a (K, N) int64 tensor) or, failing
    that, an attribute ``pseudo_labels``.

    Raises:
        ValueError: both or neither of ``n_clusters``/``thresholds``; ``every_n_epochs < 1``; unknown
            ``method``; ``method="kmeans"`` without exactly one count.
    """

    def __init__(
        self,
        dataset: Dataset,
        sampler: Optional[BalancedBatchSampler] = None,
        n_clusters: Optional[Sequence[int]] = None,
        thresholds: Optional[Sequence[float]] = None,
        c: Optional[float] = None,
        batch_size: int = 256,
        num_workers: int = 0,
        every_n_epochs: int = 1,
        seed: int = 0,
        progress: bool = True,
        cluster_kwargs: Optional[Dict[str, Any]] = None,
        method: str = "ward",
    ) -> None:
        super().__init__()
        method, n_clusters, thresholds = check_clustering(method, n_clusters, thresholds)
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.method = method
        self.dataset = dataset
        self.sampler = sampler
        self.n_clusters = n_clusters
        self.thresholds = thresholds
        self.c = c
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.progress = progress
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.labels: Optional[np.ndarray] = None
        self.history: List[Dict[str, float]] = []
        self._fresh = False

    # ------------------------------------------------------------------ hooks

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.sampler is not None and trainer.world_size > 1:
            self.sampler.num_replicas = trainer.world_size
            self.sampler.rank = trainer.global_rank

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # before the first epoch's loader iterator exists (Lightning creates it before on_train_epoch_start)
        self.recluster(trainer, pl_module)
        self._fresh = True

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        if self._fresh:  # the labels from on_fit_start serve the first epoch of this fit
            self._fresh = False
            return
        if epoch % self.every_n_epochs == 0:
            self.recluster(trainer, pl_module)

    def _curvature(self, pl_module: pl.LightningModule) -> float:
        if self.c is not None:
            return float(self.c)
        return float(getattr(pl_module, "curvature_value", 1.0))

    def compute(self, pl_module: pl.LightningModule, epoch: int) -> ReclusterResult:
        """One re-clustering with ``pl_module`` (eval mode, no grad): :func:`hcl_plugin.uhml.recluster.recluster`."""
        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)
        batches: Any = loader
        if self.progress:
            from tqdm.auto import tqdm

            batches = tqdm(loader, desc=f"re-clustering (epoch {epoch}): embedding", leave=False, dynamic_ncols=True)
        device = pl_module.device
        return uhml_recluster.recluster(
            lambda batch: pl_module(images_of(batch).to(device)), batches, self._curvature(pl_module),
            method=self.method, n_clusters=self.n_clusters, thresholds=self.thresholds, previous=self.labels,
            epoch=epoch, seed=self.seed, model=pl_module, cluster_kwargs=self.cluster_kwargs)

    def compute_labels(self, pl_module: pl.LightningModule, epoch: int) -> np.ndarray:
        """Embed ``dataset`` with ``pl_module`` (eval mode, no grad) and cluster it: (K, N) int64."""
        return self.compute(pl_module, epoch).labels

    def recluster(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> np.ndarray:
        """Compute new labels (rank 0, result or error broadcast), hand them to the sampler and the module, log."""
        epoch = trainer.current_epoch
        result = compute_on_rank0(lambda: self.compute(pl_module, epoch), "UHML re-clustering",
                                  is_source=trainer.is_global_zero, distributed=trainer.world_size > 1,
                                  broadcast=lambda obj: trainer.strategy.broadcast(obj, src=0))
        labels = result.labels
        self.labels = labels
        if self.sampler is not None:
            self.sampler.set_labels(labels[0])
        tensor = torch.as_tensor(labels, dtype=torch.int64)
        if hasattr(pl_module, "set_pseudo_labels"):
            pl_module.set_pseudo_labels(tensor)
        else:
            pl_module.pseudo_labels = tensor
        record = result.record()
        self.history.append(record)
        metrics = {f"recluster/{k}": v for k, v in record.items() if k != "epoch"}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        rank_zero_info(result.summary())
        return labels

    def state_dict(self) -> Dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
