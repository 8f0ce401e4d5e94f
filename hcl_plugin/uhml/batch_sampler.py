r"""Balanced batch sampler over (pseudo-)classes: P classes x M instances per batch (UHML, metric learning).

UHML [1] trains on batches of 128 = 16 pseudo-classes x 8 instances, the pseudo-classes being the
finest level of the current clustering (:func:`hcl_plugin.uhml.hierarchical_labels`). Every
batch then holds positives at every level, which the log-ratio loss needs (a batch of singletons
has no pair with :math:`s_{ij} > s_{il}`).

Sampling, per batch:

* P distinct classes, uniformly at random among the classes that have at least one member. When
  there are fewer than P classes, all classes are taken and the remaining slots are filled with
  classes drawn again at random (with replacement), so a batch always has P x M indices.
* M members of each chosen class, without replacement when the class has at least M members. A
  class with fewer than M members contributes all of its members once, plus ``M - n`` members drawn
  again at random **with replacement** (so small clusters, common after re-clustering, still fill
  their slots; the repeated images are the same samples, which the loss handles: the distance of a
  pair of identical embeddings is floored, see :class:`~hcl_plugin.losses.HierarchicalLogRatioLoss`).

An epoch is ``num_batches`` batches (default ``len(labels) // (P * M)``, at least 1): the epoch
length is a parameter because classes are drawn independently per batch, not partitioned.
Determinism: the batches are a function of ``(seed, epoch, labels)`` only; call :meth:`set_epoch`
to get a different epoch (PyTorch Lightning 2.x calls ``set_epoch`` on ``DataLoader.sampler`` and on
``batch_sampler.sampler``, not on a batch sampler itself; the re-clustering drivers,
:class:`hcl_plugin.lightly.uhml_recluster.ReclusterCallback` and the MMEngine ``UHMLReclusterHook``, do it).
:meth:`set_labels` replaces the labels after a re-clustering; it takes effect at the next
``__iter__``. Multi-process (DDP): with ``num_replicas`` and ``rank``, the epoch's
``num_replicas * num_batches`` batches are generated identically on every process and process
``rank`` takes every ``num_replicas``-th one, so the processes see disjoint batches.

Framework-free (torch only); the sampler yields lists of indices, for
``torch.utils.data.DataLoader(dataset, batch_sampler=sampler)``. (HCL's object/scene *box* sampler is
:class:`hcl_plugin.data.box_sampler.SceneObjectSampler`.)

[1] J. Yan, L. Luo, C. Deng, H. Huang. "Unsupervised Hyperbolic Metric Learning". CVPR 2021.
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler

__all__ = ["BalancedBatchSampler"]

LabelsLike = Union[Tensor, np.ndarray, Sequence[int], Sequence[Sequence[int]]]


def _as_label_vector(labels: LabelsLike) -> Tensor:
    """1-D int64 labels; a (K, N) multi-level array gives its first (finest) row."""
    y = torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels))
    if y.dim() == 2:
        y = y[0]
    if y.dim() != 1 or y.numel() == 0:
        raise ValueError(f"labels must be (N,) or (K, N) with N >= 1, got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"labels must be integers, got {y.dtype}")
    return y.to(torch.int64)


class BalancedBatchSampler(Sampler[List[int]]):
    """Batches of ``classes_per_batch`` (P) classes x ``instances_per_class`` (M) indices each.

    See the module docstring for the sampling rules (small classes are filled with replacement).

    Args:
        labels: (N,) class label of every sample, or (K, N) multi-level labels (row 0, the finest,
            is used).
        classes_per_batch: P (UHML: 16).
        instances_per_class: M (UHML: 8).
        num_batches: batches per epoch (per process); default ``max(1, N // (P * M))``.
        seed: base seed; the batches of epoch e depend on ``(seed, e)`` only.
        num_replicas, rank: for multi-process training (see the module docstring).

    Raises:
        ValueError: P or M < 1, num_batches < 1, bad labels, rank outside [0, num_replicas).

    Example:
        >>> sampler = BalancedBatchSampler([0, 0, 1, 1, 1, 2], classes_per_batch=2, instances_per_class=2, seed=0)
        >>> [len(batch) for batch in sampler]
        [4]
    """

    def __init__(
        self,
        labels: LabelsLike,
        classes_per_batch: int = 16,
        instances_per_class: int = 8,
        num_batches: Optional[int] = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if int(classes_per_batch) != classes_per_batch or classes_per_batch < 1:
            raise ValueError(f"classes_per_batch must be a positive integer, got {classes_per_batch}")
        if int(instances_per_class) != instances_per_class or instances_per_class < 1:
            raise ValueError(f"instances_per_class must be a positive integer, got {instances_per_class}")
        if num_batches is not None and (int(num_batches) != num_batches or num_batches < 1):
            raise ValueError(f"num_batches must be a positive integer or None, got {num_batches}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas}, {rank}")
        self.classes_per_batch = int(classes_per_batch)
        self.instances_per_class = int(instances_per_class)
        self._num_batches = None if num_batches is None else int(num_batches)
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        self.set_labels(labels)

    @property
    def batch_size(self) -> int:
        """P x M, the size of every batch."""
        return self.classes_per_batch * self.instances_per_class

    @property
    def num_batches(self) -> int:
        """Batches per epoch on this process."""
        if self._num_batches is not None:
            return self._num_batches
        return max(1, self.num_samples // (self.batch_size * self.num_replicas))

    @property
    def num_samples(self) -> int:
        return int(self.labels.numel())

    @property
    def num_classes(self) -> int:
        """Number of distinct (non-empty) classes in the current labels."""
        return len(self._members)

    def set_labels(self, labels: LabelsLike) -> None:
        """Replace the labels (e.g. after re-clustering); used from the next ``__iter__`` on.

        The number of samples must not change once set (the data set is the same).
        """
        y = _as_label_vector(labels)
        if hasattr(self, "labels") and y.numel() != self.labels.numel():
            raise ValueError(f"new labels have {y.numel()} entries, the sampler was built for {self.labels.numel()}")
        self.labels = y
        order = torch.argsort(y, stable=True)
        classes, counts = torch.unique_consecutive(y[order], return_counts=True)
        self._classes = classes
        self._members = list(torch.split(order, counts.tolist()))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches ``__iter__`` yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def _batch(self, gen: torch.Generator) -> List[int]:
        p, m = self.classes_per_batch, self.instances_per_class
        num_classes = len(self._members)
        if num_classes >= p:
            chosen = torch.randperm(num_classes, generator=gen)[:p]
        else:  # all classes, then repeats to keep the batch size
            extra = torch.randint(num_classes, (p - num_classes,), generator=gen)
            chosen = torch.cat([torch.randperm(num_classes, generator=gen), extra])
        batch: List[Tensor] = []
        for k in chosen.tolist():
            members = self._members[k]
            n = members.numel()
            if n >= m:
                batch.append(members[torch.randperm(n, generator=gen)[:m]])
            else:  # every member once, the rest drawn with replacement
                fill = members[torch.randint(n, (m - n,), generator=gen)]
                batch.append(torch.cat([members[torch.randperm(n, generator=gen)], fill]))
        return torch.cat(batch).tolist()

    def __iter__(self) -> Iterator[List[int]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        for index in range(self.num_batches * self.num_replicas):
            batch = self._batch(gen)  # generated on every process, so all stay in step
            if index % self.num_replicas == self.rank:
                yield batch
