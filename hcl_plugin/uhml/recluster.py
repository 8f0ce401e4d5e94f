r"""One UHML re-clustering step, framework-free: embed the training set, cluster it, compare with the last labels.

UHML [1] alternates clustering and training: before an epoch, every training image is embedded with
the current network (eval mode, no gradient, no augmentation), the embeddings :math:`z_i` are
clustered into K levels of pseudo-labels :math:`y^{(k)}`, fine -> coarse, and training draws its
batches and the similarity levels :math:`s_{ij} = K - \min\{k : y^{(k)}_i = y^{(k)}_j\}` of its loss
from them. :func:`recluster` is that step; it returns a :class:`ReclusterResult`.

Clustering (``method``):

* ``"ward"`` (UHML): :func:`~hcl_plugin.uhml.clustering.hierarchical_labels`, Ward linkage on
  :math:`\log_0^c(z_i)` cut at ``n_clusters`` counts per level or at Ward heights ``thresholds``;
* ``"kmeans"`` (the flat control): :func:`~hcl_plugin.uhml.clustering.flat_kmeans_labels`, one level,
  ``n_clusters=[k]``.

The k-means seed is ``seed + epoch``. The change against the previous clustering is
:func:`~hcl_plugin.uhml.clustering.label_change_fraction` of the finest levels (1.0 without one).

The framework adapters add only when the step runs, where it runs (rank 0, the result or the error
broadcast to every rank: :func:`hcl_plugin.utils.distributed.compute_on_rank0`), where the labels go
(model, batch sampler) and logging: :class:`hcl_plugin.lightly.uhml_recluster.ReclusterCallback`
(PyTorch Lightning) and ``UHMLReclusterHook`` in :mod:`hcl_plugin.mmselfsup.hooks` (MMEngine).

[1] J. Yan, L. Luo, C. Deng, H. Huang. "Unsupervised Hyperbolic Metric Learning". CVPR 2021.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from hcl_plugin.uhml.clustering import flat_kmeans_labels, hierarchical_labels, label_change_fraction

__all__ = [
    "METHODS",
    "ReclusterResult",
    "check_clustering",
    "cluster_labels",
    "embed_batches",
    "embed_dataset",
    "images_of",
    "recluster",
]

#: Clustering methods: hierarchical Ward (UHML) and flat k-means (the control).
METHODS = ("ward", "kmeans")


def check_clustering(
    method: str, n_clusters: Optional[Sequence[int]], thresholds: Optional[Sequence[float]]
) -> Tuple[str, Optional[List[int]], Optional[List[float]]]:
    """Validate a clustering request; returns ``(method, n_clusters, thresholds)`` as plain lists.

    Raises:
        ValueError: both or neither of ``n_clusters``/``thresholds``; unknown ``method``;
            ``method="kmeans"`` without exactly one count.
    """
    if (n_clusters is None) == (thresholds is None):
        raise ValueError("give exactly one of n_clusters (e.g. [100, 50]) or thresholds")
    if method not in METHODS:
        raise ValueError(f"method must be 'ward' or 'kmeans', got {method!r}")
    if method == "kmeans" and (n_clusters is None or len(n_clusters) != 1):
        raise ValueError(f"method='kmeans' is one flat level: give n_clusters=[k], got n_clusters={n_clusters}, "
                         f"thresholds={thresholds}")
    counts = None if n_clusters is None else [int(k) for k in n_clusters]
    deltas = None if thresholds is None else [float(t) for t in thresholds]
    return method, counts, deltas


def cluster_labels(
    embeddings: Union[Tensor, np.ndarray],
    c: float,
    *,
    method: str = "ward",
    n_clusters: Optional[Sequence[int]] = None,
    thresholds: Optional[Sequence[float]] = None,
    seed: int = 0,
    name: str = "embeddings",
    **cluster_kwargs: Any,
) -> np.ndarray:
    """(K, N) int64 pseudo-labels of (N, D) points in the ball: Ward levels (``"ward"``) or one k-means level.

    ``cluster_kwargs`` go to :func:`~hcl_plugin.uhml.clustering.hierarchical_labels` or
    :func:`~hcl_plugin.uhml.clustering.flat_kmeans_labels` (e.g. ``max_exact``).
    """
    method, n_clusters, thresholds = check_clustering(method, n_clusters, thresholds)
    if method == "kmeans":
        return flat_kmeans_labels(embeddings, c, n_clusters[0], seed=seed, name=name, **cluster_kwargs)
    return hierarchical_labels(embeddings, c, n_clusters=n_clusters, thresholds=thresholds, seed=seed, name=name,
                               **cluster_kwargs)


def images_of(batch: Any) -> Tensor:
    """The image tensor of a batch: the batch itself, or the first element of a tuple/list, or ``batch["image"]``."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, dict):
        return batch["image"]
    raise TypeError(f"cannot find the images in a batch of type {type(batch).__name__}")


@torch.no_grad()
def embed_batches(
    embed: Callable[[Any], Tensor],
    batches: Iterable[Any],
    *,
    on_batch: Optional[Callable[[int], None]] = None,
    desc: str = "embedding",
) -> Tensor:
    """``embed(batch)`` of every batch, in order, without gradient: (N, D) float32 on the CPU.

    ``on_batch(number of batches done)`` is called after each batch (e.g. to log progress).

    Raises:
        ValueError: no batches.
    """
    chunks: List[Tensor] = []
    for step, batch in enumerate(batches):
        chunks.append(embed(batch).detach().float().cpu())
        if on_batch is not None:
            on_batch(step + 1)
    if not chunks:
        raise ValueError(f"{desc}: the data set to embed is empty")
    return torch.cat(chunks)


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
    ``"image"`` (:func:`images_of`). Modules are not switched to eval mode here: the caller decides.
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    batches: Iterable[Any] = loader
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)

    def embed_images(batch: Any) -> Tensor:
        images = images_of(batch)
        return embed(images if device is None else images.to(device))

    return embed_batches(embed_images, batches, desc=desc)


@dataclass
class ReclusterResult:
    """One re-clustering.

    Attributes:
        labels: (K, N) int64 pseudo-labels, fine -> coarse (K = 1 for k-means).
        changed_fraction: :func:`~hcl_plugin.uhml.clustering.label_change_fraction` of the finest level
            against the previous labels; 1.0 without previous labels.
        seconds: wall time of the embedding and the clustering.
        epoch: the epoch it was computed for.
    """

    labels: np.ndarray
    changed_fraction: float
    seconds: float
    epoch: int = 0

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[1])

    @property
    def clusters_per_level(self) -> List[int]:
        """Number of clusters at each level, fine -> coarse."""
        return [len(np.unique(row)) for row in self.labels]

    def record(self) -> Dict[str, float]:
        """``{"epoch", "seconds", "changed_fraction", "clusters_level<k>"}`` as floats (the adapters' history)."""
        out = {"epoch": float(self.epoch), "seconds": float(self.seconds),
               "changed_fraction": float(self.changed_fraction)}
        out.update({f"clusters_level{k}": float(n) for k, n in enumerate(self.clusters_per_level)})
        return out

    def summary(self) -> str:
        """One log line."""
        counts = ", ".join(str(n) for n in self.clusters_per_level)
        return (f"epoch {self.epoch}: re-clustered {self.num_samples} samples into [{counts}] clusters "
                f"(fine -> coarse) in {self.seconds:.1f} s; {100 * self.changed_fraction:.1f}% of the finest "
                "labels changed")


def _finest(labels: Union[Tensor, np.ndarray, Sequence[int]]) -> np.ndarray:
    array = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels)
    return array[0] if array.ndim == 2 else array


def recluster(
    embed: Callable[[Any], Tensor],
    batches: Iterable[Any],
    c: float,
    *,
    method: str = "ward",
    n_clusters: Optional[Sequence[int]] = None,
    thresholds: Optional[Sequence[float]] = None,
    previous: Optional[Union[Tensor, np.ndarray]] = None,
    epoch: int = 0,
    seed: int = 0,
    model: Optional[nn.Module] = None,
    name: Optional[str] = None,
    on_batch: Optional[Callable[[int], None]] = None,
    cluster_kwargs: Optional[Dict[str, Any]] = None,
) -> ReclusterResult:
    """Embed ``batches`` with ``embed``, cluster the points and compare with ``previous``: one UHML re-clustering.

    Args:
        embed: ``batch -> (B, D)`` points in the ball of curvature :math:`-c` (the framework's forward).
        batches: the training set in a fixed order with a deterministic transform (e.g. a ``DataLoader``).
        c: curvature magnitude of the ball.
        method: ``"ward"`` (hierarchical, UHML) or ``"kmeans"`` (flat, one level).
        n_clusters: cluster counts per level, fine -> coarse; or
        thresholds: Ward heights per level (``"ward"`` only; exclusive with ``n_clusters``).
        previous: the labels in use, (K, N) or (N,); their finest level is compared with the new one.
        epoch: the epoch the labels are for (k-means seed ``seed + epoch``, messages, result).
        seed: base k-means seed.
        model: switched to eval mode for the embedding pass and restored afterwards (optional).
        name: how errors refer to the embeddings (default ``"epoch <e> embeddings"``).
        on_batch: called with the number of batches embedded so far.
        cluster_kwargs: passed on to the clustering function (e.g. ``max_exact``).

    Raises:
        ValueError: a bad clustering request (:func:`check_clustering`), no batches, fewer samples than
            clusters, points outside the ball or not finite (from the clustering, naming ``name``).
    """
    method, n_clusters, thresholds = check_clustering(method, n_clusters, thresholds)
    start = time.perf_counter()
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    try:
        z = embed_batches(embed, batches, on_batch=on_batch, desc=f"re-clustering (epoch {epoch}): embedding")
    finally:
        if model is not None:
            model.train(was_training)
    labels = cluster_labels(z, c, method=method, n_clusters=n_clusters, thresholds=thresholds, seed=seed + epoch,
                            name=name or f"epoch {epoch} embeddings", **dict(cluster_kwargs or {}))
    changed = 1.0 if previous is None else label_change_fraction(_finest(previous), labels[0])
    return ReclusterResult(labels=labels, changed_fraction=float(changed), seconds=time.perf_counter() - start,
                           epoch=int(epoch))
