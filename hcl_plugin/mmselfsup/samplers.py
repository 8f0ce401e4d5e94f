"""``UHMLBalancedBatchSampler``: UHML's P x M batch sampler as an MMEngine ``batch_sampler`` (``DATA_SAMPLERS``).

A thin wrapper of the framework-free :class:`hcl_plugin.uhml.BalancedBatchSampler` (P pseudo-classes x M
instances per batch, small classes filled with replacement, batches sharded by rank); it takes the
arguments ``Runner.build_dataloader`` passes to a ``batch_sampler`` and the world size and rank from
``mmengine.dist``. ``UHMLReclusterHook`` (:mod:`hcl_plugin.mmselfsup.hooks`) sets its labels.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from mmengine.dist import get_dist_info
from mmselfsup.registry import DATA_SAMPLERS

from hcl_plugin.uhml.batch_sampler import BalancedBatchSampler

__all__ = ["UHMLBalancedBatchSampler"]


@DATA_SAMPLERS.register_module()
class UHMLBalancedBatchSampler(BalancedBatchSampler):
    """:class:`~hcl_plugin.uhml.BalancedBatchSampler` as an MMEngine ``batch_sampler``.

    Config (train dataloader)::

        batch_size=32,                                  # = P x M
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_sampler=dict(type='UHMLBalancedBatchSampler', instances_per_class=4),

    ``Runner.build_dataloader`` passes ``sampler`` (the built sampler; only its ``dataset`` and
    ``seed`` are used, and it is kept as ``.sampler`` so MMEngine's ``DistSamplerSeedHook`` finds a
    ``set_epoch``) and ``batch_size``. The world size and rank come from ``mmengine.dist``. Until
    :class:`~hcl_plugin.mmselfsup.hooks.UHMLReclusterHook` sets labels, every sample is its own class.

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
