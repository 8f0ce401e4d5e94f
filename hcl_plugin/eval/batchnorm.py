r"""One BatchNorm procedure for every model an analysis compares.

A network in eval mode normalises with the running statistics stored in its BatchNorm layers. Those
of a trained network were accumulated during training (an exponential moving average over augmented
training views, with the weights still moving); those of a network at random initialisation are the
initial ones (mean 0, variance 1), which make it a different function from the trained networks:
its activations are not normalised at all. Comparing the two compares BatchNorm states, not
representations. So every model goes through the same procedure before its features are extracted:

* ``"recompute"`` (default): reset every BatchNorm layer's running statistics and re-estimate them
  on a fixed sample of crops of the *training* images: ``num_batches`` batches of ``batch_size``
  crops, drawn once from all whole-image, scene and object crops of the training split with
  ``numpy.random.default_rng(seed)`` (the same crops, in the same order, for every model), forward
  passes with only the BatchNorm layers in training mode, statistics averaged cumulatively over the
  batches (``momentum=None``, as ``torch.optim.swa_utils.update_bn`` does). The crops are made
  exactly as the analysed crops are (:mod:`hcl_plugin.eval.features`). Cost: ``num_batches``
  forward passes (1,024 crops by default: 47 s for a ResNet-18 at 64 px on a busy 2-core CPU,
  a third of it decoding, against 82 s for the features of 200 validation and 400 training images).
* ``"as_trained"``: keep the stored statistics. An analysis reports how many layers still hold their
  initial statistics (a random-init control, or a checkpoint saved without its buffers).

The model passed in is never changed (:func:`apply_batchnorm_procedure` works on a copy). The record
of what was done (``details.batchnorm`` in ``metrics.json``) includes a SHA-1 of the crop sample, so
:func:`hcl_plugin.eval.compare.check_comparable` can tell whether two analyses used the same one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from hcl_plugin.data.boxes import union_box
from hcl_plugin.data.image_io import load_rgb_image
from hcl_plugin.eval.features import CROP_KINDS, preprocess_crop, resolve_device
from hcl_plugin.eval.model import EvalModel
from hcl_plugin.eval.scenes import SceneSet

__all__ = [
    "BN_PROCEDURES",
    "BatchNormProcedure",
    "apply_batchnorm_procedure",
    "batchnorm_layers",
    "batchnorm_sample",
    "describe_batchnorm",
    "initial_statistics_layers",
    "recompute_batchnorm",
    "resolve_batchnorm_procedure",
]

#: ``"recompute"`` (re-estimate on training crops, the default) or ``"as_trained"`` (stored statistics).
BN_PROCEDURES = ("recompute", "as_trained")

#: Keys of a ``"recompute"`` record that must agree between analyses compared with each other.
MATCHED_KEYS = ("procedure", "num_batches", "batch_size", "seed", "crop_kinds", "num_crops", "sample_sha1")

Crop = Tuple[int, str, int]  # (scene index, crop kind, box index or -1)


@dataclass(frozen=True)
class BatchNormProcedure:
    """How the BatchNorm running statistics are set before features are extracted (module docstring).

    Attributes:
        name: ``"recompute"`` or ``"as_trained"``.
        num_batches, batch_size: size of the re-estimation sample (``"recompute"`` only); the batch
            size is fixed here, independent of the analysis' ``batch_size``, so the procedure does not
            change with it.
        seed: seed of the crop sample.
        kinds: crop kinds the sample is drawn from (:data:`~hcl_plugin.eval.features.CROP_KINDS`).
    """

    name: str = "recompute"
    num_batches: int = 16
    batch_size: int = 64
    seed: int = 0
    kinds: Tuple[str, ...] = CROP_KINDS

    def __post_init__(self) -> None:
        if self.name not in BN_PROCEDURES:
            raise ValueError(f"bn must be one of {BN_PROCEDURES}, got {self.name!r}")
        if int(self.num_batches) < 1:
            raise ValueError(f"bn num_batches must be >= 1, got {self.num_batches}")
        if int(self.batch_size) < 2:
            raise ValueError(f"bn batch_size must be >= 2 (BatchNorm needs two samples per batch), "
                             f"got {self.batch_size}")
        unknown = [k for k in self.kinds if k not in CROP_KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"bn kinds must be a non-empty subset of {CROP_KINDS}, got {tuple(self.kinds)}")
        object.__setattr__(self, "kinds", tuple(self.kinds))

    def to_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "kinds": list(self.kinds)}


def resolve_batchnorm_procedure(bn: Union[str, BatchNormProcedure, None]) -> BatchNormProcedure:
    """A :class:`BatchNormProcedure` from itself, a name of :data:`BN_PROCEDURES` or ``None`` (the default)."""
    if bn is None:
        return BatchNormProcedure()
    if isinstance(bn, BatchNormProcedure):
        return bn
    if isinstance(bn, str):
        return BatchNormProcedure(name=bn)
    raise TypeError(f"bn must be one of {BN_PROCEDURES} or a BatchNormProcedure, got {type(bn).__name__}")


def batchnorm_layers(model: nn.Module) -> List[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer (1d/2d/3d, SyncBatchNorm) of ``model`` that tracks running statistics."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def initial_statistics_layers(model: nn.Module) -> int:
    """How many BatchNorm layers hold their initial running statistics (mean 0, variance 1)."""
    count = 0
    for layer in batchnorm_layers(model):
        mean, var = layer.running_mean, layer.running_var
        if mean is not None and var is not None and bool((mean == 0).all()) and bool((var == 1).all()):
            count += 1
    return count


def batchnorm_sample(scene_set: SceneSet, procedure: BatchNormProcedure) -> List[Crop]:
    """The crops the statistics are estimated on: ``min(all, num_batches * batch_size)`` of them,
    drawn without replacement from every crop of ``procedure.kinds`` of ``scene_set``, in a random
    order fixed by ``procedure.seed``."""
    crops: List[Crop] = []
    for index, scene in enumerate(scene_set.scenes):
        if "image" in procedure.kinds:
            crops.append((index, "image", -1))
        if "scene" in procedure.kinds:
            crops.append((index, "scene", -1))
        if "object" in procedure.kinds:
            crops.extend((index, "object", j) for j in range(int(scene.boxes.shape[0])))
    order = np.random.default_rng(procedure.seed).permutation(len(crops))
    return [crops[k] for k in order[: procedure.num_batches * procedure.batch_size]]


def _sample_digest(scene_set: SceneSet, sample: Sequence[Crop]) -> str:
    scenes = scene_set.scenes
    rows = [[str(scenes[i].image_id), kind, box] for i, kind, box in sample]
    return hashlib.sha1(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


class _CropSample(Dataset):
    """Item ``k``: crop ``sample[k]`` preprocessed as the analysed crops are, ``(3, size, size)``."""

    def __init__(self, scene_set: SceneSet, sample: Sequence[Crop], size: int) -> None:
        self.scene_set, self.sample, self.size = scene_set, list(sample), int(size)

    def __len__(self) -> int:
        return len(self.sample)

    def __getitem__(self, k: int) -> Tensor:
        index, kind, box = self.sample[k]
        scene = self.scene_set.scenes[index]
        image = load_rgb_image(scene.path)
        if kind == "image":
            return preprocess_crop(image, self.size)
        if kind == "scene":
            return preprocess_crop(image, self.size, union_box(scene.boxes) if scene.boxes.shape[0] else None)
        return preprocess_crop(image, self.size, scene.boxes[box])


@torch.no_grad()
def recompute_batchnorm(
    model: EvalModel,
    scene_set: SceneSet,
    procedure: Union[str, BatchNormProcedure, None] = None,
    device: Union[str, torch.device, None] = "cpu",
    num_workers: int = 0,
    progress: bool = False,
) -> Dict[str, Any]:
    """Re-estimate, in place, the running statistics of every BatchNorm layer of ``model`` on the
    :func:`batchnorm_sample` of ``scene_set`` (cumulative average, ``momentum=None``), and leave the
    model in eval mode on ``device``.

    Only the BatchNorm layers run in training mode (anything else, e.g. dropout, stays in eval mode);
    each layer's ``momentum`` is restored afterwards. A last batch of one crop is dropped (BatchNorm
    cannot normalise a single sample).

    Returns:
        The record of what was done (module docstring); ``num_layers`` is 0 and nothing runs when the
        model has no BatchNorm layer.

    Raises:
        ValueError: the model has BatchNorm layers and ``scene_set`` yields fewer than two crops.
    """
    from tqdm import tqdm

    procedure = resolve_batchnorm_procedure(procedure)
    if procedure.name != "recompute":
        raise ValueError(f"recompute_batchnorm needs the 'recompute' procedure, got {procedure.name!r}")
    start = time.perf_counter()
    device = resolve_device(device)
    sample = batchnorm_sample(scene_set, procedure)
    if len(sample) % procedure.batch_size == 1:
        sample = sample[:-1]
    layers = batchnorm_layers(model)
    if layers and len(sample) < 2:
        raise ValueError(f"{scene_set.annotation_file}: {len(sample)} crop(s); BatchNorm statistics need at least 2")
    record: Dict[str, Any] = {
        "procedure": "recompute",
        "images": scene_set.annotation_file,
        "num_images": len(scene_set),
        "crop_kinds": list(procedure.kinds),
        "seed": procedure.seed,
        "batch_size": procedure.batch_size,
        "num_batches": -(-len(sample) // procedure.batch_size),
        "num_crops": len(sample),
        "sample_sha1": _sample_digest(scene_set, sample),
        "statistics": "cumulative average over the batches (BatchNorm momentum=None)",
        "num_layers": len(layers),
    }
    model.eval().to(device)
    if layers:
        momenta = [layer.momentum for layer in layers]
        loader = DataLoader(_CropSample(scene_set, sample, model.image_size), batch_size=procedure.batch_size,
                            shuffle=False, num_workers=num_workers)
        try:
            for layer in layers:
                layer.reset_running_stats()
                layer.momentum = None
                layer.train()
            with tqdm(total=len(sample), desc="BatchNorm statistics", unit="crop", disable=not progress) as bar:
                for batch in loader:
                    model.embed(batch.to(device, non_blocking=True))
                    bar.update(batch.shape[0])
        finally:
            for layer, momentum in zip(layers, momenta):
                layer.momentum = momentum
            model.eval()
    record["seconds"] = time.perf_counter() - start
    return record


def apply_batchnorm_procedure(
    model: EvalModel,
    train_set: SceneSet,
    procedure: Union[str, BatchNormProcedure, None] = None,
    device: Union[str, torch.device, None] = "cpu",
    num_workers: int = 0,
    progress: bool = False,
) -> Tuple[EvalModel, Dict[str, Any], List[str]]:
    """``(model to analyse, record, notes)`` under ``procedure``; ``model`` itself is not changed.

    ``"recompute"`` returns a copy with re-estimated statistics (:func:`recompute_batchnorm` on
    ``train_set``); ``"as_trained"`` returns ``model`` and notes layers that still hold their initial
    statistics.
    """
    procedure = resolve_batchnorm_procedure(procedure)
    if procedure.name == "as_trained":
        initial = initial_statistics_layers(model)
        layers = len(batchnorm_layers(model))
        notes: List[str] = []
        if initial:
            notes.append(f"BatchNorm as trained: {initial} of {layers} BatchNorm layers hold their initial running "
                         "statistics (mean 0, variance 1), so this model normalises differently from a trained one; "
                         "compare models with bn='recompute'")
        return model, {"procedure": "as_trained", "num_layers": layers, "initial_statistics_layers": initial}, notes
    copied = copy.deepcopy(model)
    record = recompute_batchnorm(copied, train_set, procedure, device=device, num_workers=num_workers,
                                 progress=progress)
    return copied, record, []


def describe_batchnorm(record: Optional[Dict[str, Any]]) -> str:
    """One sentence for the report."""
    if not record:
        return "BatchNorm: not recorded"
    if record.get("procedure") == "as_trained":
        return (f"BatchNorm: running statistics as stored in the checkpoint ({record.get('num_layers')} layers, "
                f"{record.get('initial_statistics_layers')} at their initial values).")
    return (f"BatchNorm: running statistics of all {record.get('num_layers')} layers re-estimated on "
            f"{record.get('num_crops')} crops ({', '.join(record.get('crop_kinds', []))}) of "
            f"`{record.get('images')}` ({record.get('num_batches')} batches of {record.get('batch_size')}, seed "
            f"{record.get('seed')}, cumulative average; sample SHA-1 {str(record.get('sample_sha1'))[:12]}).")
