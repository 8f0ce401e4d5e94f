"""Lightning callback for UHML: re-cluster the training set into multi-level pseudo-labels every epoch.

UHML [1] alternates clustering and training: before every epoch the whole training set is embedded
with the current network, clustered hierarchically (:func:`hcl_plugin.cluster.hierarchical_labels`,
cluster counts or Ward thresholds per level) and the new labels drive the balanced batch sampler
(:class:`hcl_plugin.cluster.BalancedBatchSampler`, finest level) and the similarity levels of the loss
(the module's stored pseudo-labels, indexed by the batch's sample indices).

When it runs. PyTorch Lightning 2.x creates the first epoch's data-loader iterator (and prefetches a
batch) before ``on_train_start``/``on_train_epoch_start``, but later epochs' iterators after
``on_train_epoch_start``. So the labels for the first epoch of a fit are computed in ``on_fit_start``
and the following ones in ``on_train_epoch_start``, which also calls ``sampler.set_epoch(epoch)``
(Lightning does not call ``set_epoch`` on a batch sampler). With ``every_n_epochs > 1`` the labels are
kept in between. When a fit resumes from a checkpoint, ``on_fit_start`` runs before Lightning restores
the epoch counter: the labels come from the restored weights, but the first resumed epoch's batches
are drawn with the sampler's epoch-0 seed (later epochs use their own).

Multi-process (DDP): the embedding and the clustering run on global rank 0 only and the labels are
broadcast, so every process trains on the same labels; :meth:`ReclusterCallback.setup` tells the
sampler the world size and rank (the trainer needs ``use_distributed_sampler=False``, since the batch
sampler already shards).

Logged per clustering (through the trainer's logger, at the current global step):
``recluster/clusters_level<k>`` (number of clusters at level k, 0 = finest), ``recluster/seconds``
(embedding + clustering time) and ``recluster/changed_fraction`` (fraction of samples whose finest
label differs from the previous clustering after matching clusters by majority overlap; 1.0 the first
time). :attr:`ReclusterCallback.history` keeps the same numbers in memory.

[1] J. Yan, L. Luo, C. Deng, H. Huang. "Unsupervised Hyperbolic Metric Learning". CVPR 2021.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from hcl_plugin.cluster import BalancedBatchSampler, flat_kmeans_labels, hierarchical_labels, label_change_fraction

__all__ = ["ReclusterCallback", "embed_dataset", "label_change_fraction"]


def _images_of(batch: Any) -> Tensor:
    """The image tensor of a batch: the batch itself, or the first element of a tuple/list/dict."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, dict):
        return batch["image"]
    raise TypeError(f"cannot find the images in a batch of type {type(batch).__name__}")


@torch.no_grad()
def embed_dataset(
    embed: Callable[[Tensor], Tensor],
    dataset: Dataset,
    batch_size: int = 256,
    num_workers: int = 0,
    device: Optional[torch.device] = None,
    progress: bool = True,
    desc: str = "embedding",
) -> Tensor:
    """Embed every item of ``dataset`` in order (batched, no gradient); returns (N, D) float32 on the CPU.

    ``dataset`` items are images, or tuples/lists whose first element is the image, or dicts with
    ``"image"``. Modules are not switched to eval mode here: the caller decides.
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    iterator = loader
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)
    chunks: List[Tensor] = []
    for batch in iterator:
        images = _images_of(batch)
        if device is not None:
            images = images.to(device)
        chunks.append(embed(images).detach().float().cpu())
    if not chunks:
        raise ValueError("the data set to embed is empty")
    return torch.cat(chunks)


class ReclusterCallback(pl.Callback):
    """Embed the training set, cluster it at K levels and update the sampler and the module's pseudo-labels.

    Args:
        dataset: the training images in a fixed order with a deterministic transform (no augmentation);
            item i must be the sample the training loader's index i refers to.
        sampler: the :class:`~hcl_plugin.cluster.BalancedBatchSampler` of the training loader (optional).
        n_clusters: cluster counts per level, fine -> coarse (e.g. ``[100, 50]``); or
        thresholds: Ward heights per level (exclusive with ``n_clusters``; see ``hierarchical_labels``).
        c: curvature of the ball the module embeds into (default: ``pl_module.curvature_value``, else 1).
        batch_size, num_workers: of the embedding pass.
        every_n_epochs: re-cluster at epochs 0, n, 2n, ...
        seed: k-means seed of the two-stage scheme (plus the epoch).
        progress: show a progress bar while embedding.
        cluster_kwargs: passed on to :func:`~hcl_plugin.cluster.hierarchical_labels` (e.g. ``max_exact``).
        method: ``"ward"`` (UHML: :func:`~hcl_plugin.cluster.hierarchical_labels`) or ``"kmeans"``
            (the flat control: :func:`~hcl_plugin.cluster.flat_kmeans_labels`, one level; needs exactly
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
        if (n_clusters is None) == (thresholds is None):
            raise ValueError("give exactly one of n_clusters (e.g. [100, 50]) or thresholds")
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        if method not in ("ward", "kmeans"):
            raise ValueError(f"method must be 'ward' or 'kmeans', got {method!r}")
        if method == "kmeans" and (n_clusters is None or len(n_clusters) != 1):
            raise ValueError(f"method='kmeans' is one flat level: give n_clusters=[k], got n_clusters={n_clusters}, "
                             f"thresholds={thresholds}")
        self.method = method
        self.dataset = dataset
        self.sampler = sampler
        self.n_clusters = None if n_clusters is None else [int(k) for k in n_clusters]
        self.thresholds = None if thresholds is None else [float(t) for t in thresholds]
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

    def compute_labels(self, pl_module: pl.LightningModule, epoch: int) -> np.ndarray:
        """Embed ``dataset`` with ``pl_module`` (eval mode, no grad) and cluster it: (K, N) int64."""
        was_training = pl_module.training
        pl_module.eval()
        try:
            z = embed_dataset(pl_module, self.dataset, self.batch_size, self.num_workers, pl_module.device,
                              self.progress, desc=f"re-clustering (epoch {epoch}): embedding")
        finally:
            pl_module.train(was_training)
        if self.method == "kmeans":
            return flat_kmeans_labels(z, self._curvature(pl_module), self.n_clusters[0], seed=self.seed + epoch,
                                      name=f"epoch {epoch} embeddings", **self.cluster_kwargs)
        return hierarchical_labels(z, self._curvature(pl_module), n_clusters=self.n_clusters,
                                   thresholds=self.thresholds, seed=self.seed + epoch,
                                   name=f"epoch {epoch} embeddings", **self.cluster_kwargs)

    def recluster(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> np.ndarray:
        """Compute new labels (rank 0, broadcast), hand them to the sampler and the module, and log."""
        epoch = trainer.current_epoch
        start = time.perf_counter()
        labels = self.compute_labels(pl_module, epoch) if trainer.is_global_zero else None
        if trainer.world_size > 1:
            labels = trainer.strategy.broadcast(labels, src=0)
        seconds = time.perf_counter() - start
        changed = 1.0 if self.labels is None else label_change_fraction(self.labels[0], labels[0])
        self.labels = labels
        if self.sampler is not None:
            self.sampler.set_labels(labels[0])
        tensor = torch.as_tensor(labels, dtype=torch.int64)
        if hasattr(pl_module, "set_pseudo_labels"):
            pl_module.set_pseudo_labels(tensor)
        else:
            pl_module.pseudo_labels = tensor
        record = {"epoch": float(epoch), "seconds": seconds, "changed_fraction": changed}
        record.update({f"clusters_level{k}": float(len(np.unique(row))) for k, row in enumerate(labels)})
        self.history.append(record)
        metrics = {f"recluster/{k}": v for k, v in record.items() if k != "epoch"}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        counts = ", ".join(str(int(record[f"clusters_level{k}"])) for k in range(len(labels)))
        rank_zero_info(f"epoch {epoch}: re-clustered {labels.shape[1]} samples into [{counts}] clusters "
                       f"(fine -> coarse) in {seconds:.1f} s; {100 * changed:.1f}% of the finest labels changed")
        return labels

    def state_dict(self) -> Dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
