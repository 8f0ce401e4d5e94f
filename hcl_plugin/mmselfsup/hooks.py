"""Hooks registered in MMSelfSup's ``HOOKS``: ``HCLLambdaWarmupHook`` (HCL), ``CosineKeyMomentumHook`` (the
momentum encoders of MoCo-v2 / DenseCL and their HCL algorithms) and ``UHMLReclusterHook`` (UHML).

``HCLLambdaWarmupHook`` ramps the hyperbolic loss weight λ:

.. math:: \\lambda_t = \\lambda \\cdot \\mathrm{clip}\\Big(\\frac{t - t_0}{T}, 0, 1\\Big)

``t`` the iteration, ``t_0 = start_iters`` (λ = 0 before it, like MMSelfSup's ``DenseCLHook``),
``T = warmup_iters`` (0: a step at ``t_0``). The hyperbolic branch still runs at λ = 0, so its queue
fills with keys before the loss counts. The target λ is the model's λ attribute at the start of
training (``lambda_hyp``, or ``hyp_lambda`` for a model that only has the old name), and the ramp
sets the same attribute; it depends only on ``runner.iter``, so a resumed run continues it exactly.

``UHMLReclusterHook`` runs UHML's re-clustering (Yan et al., CVPR 2021): the step is the
framework-free :func:`hcl_plugin.uhml.recluster.recluster` (embed the training set, cluster it,
hierarchically or by flat k-means, compare with the last labels), shared with the PyTorch Lightning
callback (:mod:`hcl_plugin.lightly.uhml_recluster`); the hook adds when it runs, the embedding data
set and loader, the rank-0 computation with the result or the error broadcast
(:func:`hcl_plugin.utils.distributed.compute_on_rank0` over ``mmengine.dist.broadcast_object_list``),
and the logging.

Ordering in MMEngine 0.10's ``EpochBasedTrainLoop.run_epoch``: ``before_train_epoch`` hooks run,
then ``for data_batch in self.dataloader`` creates the epoch's iterator; so
:meth:`UHMLReclusterHook.before_train_epoch` re-clusters before the epoch's first batch is drawn
(unlike PyTorch Lightning, where the first epoch's iterator exists before the epoch-start callback).
Resume: the labels are the model buffer ``pseudo_labels`` (K, N), saved in every checkpoint; a
resumed run with ``interval > 1`` continues with the saved labels until the next re-clustering epoch.

Logged per clustering (``runner.message_hub``, shown by ``LoggerHook`` and written to the vis
backends): ``recluster/clusters_level<k>`` (clusters at level k, 0 = finest), ``recluster/seconds``
(embedding + clustering on rank 0), ``recluster/changed_fraction`` (fraction of samples whose finest
label changed, clusters matched by majority overlap; 1.0 the first time), and a line in the MMEngine
log.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dataset import BaseDataset, default_collate
from mmengine.dist import broadcast_object_list, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import ExponentialMovingAverage
from mmselfsup.models.utils import CosineEMA
from mmselfsup.registry import DATASETS, HOOKS
from mmselfsup.utils import get_model
from torch import Tensor, nn
from torch.utils.data import DataLoader

from hcl_plugin.uhml import recluster as uhml_recluster
from hcl_plugin.uhml.batch_sampler import BalancedBatchSampler
from hcl_plugin.uhml.recluster import ReclusterResult, check_clustering, embed_batches
from hcl_plugin.utils.distributed import compute_on_rank0

__all__ = ["CosineKeyMomentumHook", "HCLLambdaWarmupHook", "UHMLReclusterHook", "cosine_key_momentum", "embed_with_model", "hyp_lambda_at"]


def hyp_lambda_at(iteration: int, target: float, start_iters: int, warmup_iters: int) -> float:
    """λ at ``iteration``: 0 before ``start_iters``, then linear to ``target`` over ``warmup_iters``."""
    if iteration < start_iters:
        return 0.0
    if warmup_iters <= 0:
        return target
    return target * min(1.0, (iteration - start_iters + 1) / warmup_iters)


@HOOKS.register_module()
class HCLLambdaWarmupHook(Hook):
    """Linear warm-up of ``lambda_hyp`` (old name ``hyp_lambda``) of ``HCLMoCoV2`` / ``HCLDenseCL``.

    Args:
        warmup_iters: iterations of the linear ramp after ``start_iters``.
        start_iters: iterations with λ = 0 first.
    """

    priority = "NORMAL"

    def __init__(self, warmup_iters: int = 1000, start_iters: int = 0) -> None:
        if warmup_iters < 0 or start_iters < 0:
            raise ValueError(f"HCLLambdaWarmupHook: warmup_iters and start_iters must be >= 0, "
                             f"got {warmup_iters}, {start_iters}")
        self.warmup_iters = int(warmup_iters)
        self.start_iters = int(start_iters)
        self.target: Optional[float] = None

    @staticmethod
    def _attribute(model) -> Optional[str]:
        """The model's λ attribute: ``lambda_hyp``, else the old name ``hyp_lambda``, else None."""
        for name in ("lambda_hyp", "hyp_lambda"):
            if hasattr(model, name):
                return name
        return None

    def before_train(self, runner) -> None:
        model = get_model(runner.model)
        name = self._attribute(model)
        if name is None:
            raise AttributeError(f"HCLLambdaWarmupHook needs a model with 'lambda_hyp' (or 'hyp_lambda') "
                                 f"(HCLMoCoV2, HCLDenseCL); got {type(model).__name__}")
        self.target = float(getattr(model, name))

    def before_train_iter(self, runner, batch_idx: int, data_batch: Optional[Sequence[dict]] = None) -> None:
        value = hyp_lambda_at(runner.iter, self.target, self.start_iters, self.warmup_iters)
        model = get_model(runner.model)
        setattr(model, self._attribute(model) or "lambda_hyp", value)
        runner.message_hub.update_scalar("train/hyp_lambda", value)


def cosine_key_momentum(iteration: int, max_iters: int, start_momentum: float) -> float:
    """The key encoder's momentum at ``iteration`` on the cosine schedule towards 1 (BYOL, MoCo-v3):

    .. math:: m_t = 1 - (1 - m_0)\\,\\frac{\\cos(\\pi t / (T - 1)) + 1}{2}

    ``m_0 = start_momentum`` (MoCo's convention: the fraction of the key encoder kept per step), ``T =
    max_iters``; ``m_{T-1} = 1``. The same schedule as the Lightly examples' ``--momentum-schedule cosine``
    (Lightly's ``cosine_schedule``).
    """
    if max_iters <= 1:
        return float(start_momentum)
    t = min(max(int(iteration), 0), max_iters - 1)
    return 1.0 - (1.0 - start_momentum) * (math.cos(math.pi * t / (max_iters - 1)) + 1.0) / 2.0


@HOOKS.register_module()
class CosineKeyMomentumHook(Hook):
    """Anneals the momentum of every momentum (EMA) encoder of the model towards 1 on a cosine schedule.

    MMSelfSup's MoCo-v2 and DenseCL keep a constant momentum ``m`` (``model.momentum``, 0.999). Over a
    few hundred iterations a constant 0.999 leaves most of the key encoder at its initialisation
    (0.999^300 = 0.74); the schedule of BYOL / MoCo-v3 (:func:`cosine_key_momentum`) sums to
    ``(1 - m_0) T / 2`` updates, so ``m_0 = 1 - 6/T`` leaves about e^-3 = 5 % of it. ``m_0`` is the
    model's own ``momentum``: the hook reads each ``mmengine.model.ExponentialMovingAverage`` of the
    model at the start of training (``ema.momentum = 1 - m_0`` in MMEngine's convention; the HCL
    algorithms' momentum copy of the hyperbolic neck included) and sets ``ema.momentum = 1 - m_t``
    before every iteration. It depends only on ``runner.iter`` and the config, so a resumed run
    continues it exactly. Logged as ``train/key_momentum``.
    """

    priority = "NORMAL"

    def __init__(self) -> None:
        #: (encoder, its m_0) for every momentum encoder of the model, found once at the start of training
        self.encoders: List[Tuple[ExponentialMovingAverage, float]] = []

    @staticmethod
    def _momentum_encoders(model: nn.Module) -> Dict[str, ExponentialMovingAverage]:
        """Every plain ``ExponentialMovingAverage`` of ``model`` by name (MMSelfSup's ``CosineEMA`` has its own schedule)."""
        return {name: module for name, module in model.named_modules()
                if isinstance(module, ExponentialMovingAverage) and not isinstance(module, CosineEMA)}

    def before_train(self, runner) -> None:
        model = get_model(runner.model)
        encoders = self._momentum_encoders(model)
        if not encoders:
            raise AttributeError(f"CosineKeyMomentumHook needs a model with a momentum encoder "
                                 f"(mmengine ExponentialMovingAverage: MoCo, DenseCL, HCLMoCoV2, HCLDenseCL); "
                                 f"got {type(model).__name__}")
        self.encoders = [(ema, 1.0 - float(ema.momentum)) for ema in encoders.values()]

    def before_train_iter(self, runner, batch_idx: int, data_batch: Optional[Sequence[dict]] = None) -> None:
        for ema, start in self.encoders:
            value = cosine_key_momentum(runner.iter, runner.max_iters, start)
            ema.momentum = 1.0 - value
            runner.message_hub.update_scalar("train/key_momentum", value)


# ----------------------------------------------------------------------------------------------- UHML


def _features(model: nn.Module, batch: Any) -> Tensor:
    data = model.data_preprocessor(batch, False)
    # MMSelfSup's SelfSupDataPreprocessor returns (inputs, data_samples); MMEngine's a dict
    inputs = data["inputs"] if isinstance(data, dict) else data[0]
    return model.extract_feat(inputs)


def _progress_logger(total: int, log_every: int, desc: str):
    if not log_every:
        return None

    def on_batch(done: int) -> None:
        if done % log_every == 0 or done == total:
            print_log(f"{desc}: {done}/{total} batches", logger="current")

    return on_batch


@torch.no_grad()
def embed_with_model(model: nn.Module, loader: DataLoader, log_every: int = 0, desc: str = "embedding") -> Tensor:
    """Embed every batch of ``loader`` (MMEngine-style items) with ``model``: (N, D) float32 on the CPU, in order.

    Runs ``model.data_preprocessor(batch, training=False)`` then ``model.extract_feat``; the model's
    train/eval mode is the caller's choice. ``log_every > 0`` logs progress every that many batches.
    """
    return embed_batches(lambda batch: _features(model, batch), loader,
                         on_batch=_progress_logger(len(loader), log_every, desc), desc=desc)


def _broadcast_from_rank0(obj: Any) -> Any:
    box = [obj]
    broadcast_object_list(box, src=0)
    return box[0]


@HOOKS.register_module()
class UHMLReclusterHook(Hook):
    """Every ``interval`` epochs: embed the training set, cluster it at K levels, update model and sampler.

    Before the epoch's data iterator exists (``before_train_epoch``; see the module docstring), rank
    0 embeds the training images without augmentation and clusters them
    (:func:`hcl_plugin.uhml.recluster.recluster`: :func:`~hcl_plugin.uhml.hierarchical_labels`, or
    :func:`~hcl_plugin.uhml.flat_kmeans_labels` with ``method='kmeans'``); the (K, N) labels, or the
    error, are broadcast; every rank stores them in the model (``UHML.set_pseudo_labels``, a buffer
    saved in checkpoints) and in the train loader's
    :class:`~hcl_plugin.mmselfsup.samplers.UHMLBalancedBatchSampler` (finest level) and calls its
    ``set_epoch``.

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
        seed: k-means seed (plus the epoch).
        log_every: log the embedding progress every that many batches (0: off).
        cluster_kwargs: passed on to the clustering function (``max_exact``, ``num_centroids``, ...).
        method: ``'ward'`` (UHML, hierarchical) or ``'kmeans'`` (the flat control; ``n_clusters=[k]``).

    Attributes:
        history: one dict per clustering (``epoch``, ``seconds``, ``changed_fraction``,
            ``clusters_level<k>``), on every rank.

    Raises:
        ValueError: both or neither of ``n_clusters``/``thresholds``; ``interval < 1``; neither
            ``embed_pipeline`` nor ``embed_dataset``; unknown ``method``, ``'kmeans'`` without exactly
            one count; at run time: fewer training samples than clusters, an embedding set that
            differs from the training set (rank 0 raises it, the other ranks a ``RuntimeError``
            quoting it).
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
        method: str = "ward",
    ) -> None:
        try:
            method, n_clusters, thresholds = check_clustering(method, n_clusters, thresholds)
        except ValueError as error:
            raise ValueError(f"UHMLReclusterHook: {error}") from None
        if int(interval) != interval or interval < 1:
            raise ValueError(f"UHMLReclusterHook: interval must be a positive integer, got {interval}")
        if embed_pipeline is None and embed_dataset is None:
            raise ValueError("UHMLReclusterHook: give embed_pipeline (a test pipeline applied to the train dataset "
                             "config) or embed_dataset (a full dataset config)")
        self.method = method
        self.n_clusters = n_clusters
        self.thresholds = thresholds
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
    def _model(runner) -> nn.Module:
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

    def compute(self, runner, epoch: int) -> ReclusterResult:
        """One re-clustering with the current model (eval mode): :func:`hcl_plugin.uhml.recluster.recluster`."""
        model = self._model(runner)
        loader = self._embedding_loader(runner)
        desc = f"UHML re-clustering (epoch {epoch}): embedding"
        previous = model.pseudo_labels if model.has_pseudo_labels else None
        return uhml_recluster.recluster(
            lambda batch: _features(model, batch), loader, model.curvature_value, method=self.method,
            n_clusters=self.n_clusters, thresholds=self.thresholds, previous=previous, epoch=epoch, seed=self.seed,
            model=model, name=f"epoch {epoch} embeddings of the training set",
            on_batch=_progress_logger(len(loader), self.log_every, desc), cluster_kwargs=self.cluster_kwargs)

    def compute_labels(self, runner, epoch: int) -> np.ndarray:
        """Embed the training set with the current model (eval mode) and cluster it: (K, N) int64 labels."""
        return self.compute(runner, epoch).labels

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
        """Compute new labels on rank 0, broadcast them (or the error), hand them to model and sampler, and log."""
        epoch = runner.epoch
        model = self._model(runner)
        sampler = self._batch_sampler(runner)

        def compute() -> ReclusterResult:
            runner.logger.info(f"epoch {epoch}: UHML re-clustering of {sampler.num_samples} training samples")
            return self.compute(runner, epoch)

        result = compute_on_rank0(compute, "UHML re-clustering", is_source=get_rank() == 0,
                                  distributed=get_world_size() > 1, broadcast=_broadcast_from_rank0)
        labels = np.asarray(result.labels)
        if labels.shape[1] != sampler.num_samples:
            raise ValueError(f"UHMLReclusterHook: {labels.shape[1]} labels for {sampler.num_samples} training samples")
        model.set_pseudo_labels(torch.from_numpy(labels))
        sampler.set_labels(labels[0])
        record = result.record()
        self.history.append(record)
        for key, value in record.items():
            if key != "epoch":
                runner.message_hub.update_scalar(f"train/recluster/{key}", value)
        runner.logger.info(result.summary())
        return labels
